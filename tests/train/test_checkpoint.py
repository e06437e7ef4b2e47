"""The workdir's run identity (`run_config.json`): a run with other settings is refused and the workdir left as it
was. Checkpoint save/restore across meshes is tested in test_sharding.py, kill-and-resume in
test_trainer_models.py."""

import pytest

from came_jax.train import checkpoint as ckpt_lib
from came_jax.train import trainer


def test_incompatible_workdir_is_refused(tiny_config, tmp_path):
  trainer.train_and_evaluate(tiny_config("standin", max_steps=2), str(tmp_path))
  before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
  other = tiny_config("standin", max_steps=2, **{"optimizer.name": "adamw"})
  with pytest.raises(ckpt_lib.IncompatibleWorkdirError, match=r"optimizer\.name: 'came' -> 'adamw'"):
    trainer.train_and_evaluate(other, str(tmp_path))
  other = tiny_config("standin", max_steps=2, **{"data.seq_len": 64})
  with pytest.raises(ckpt_lib.IncompatibleWorkdirError, match=r"data\.seq_len"):
    trainer.train_and_evaluate(other, str(tmp_path))
  assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before
