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


def test_run_identity_includes_init_from_when_set(tiny_config):
  """Resuming from another init_from source is refused; runs recorded before init_from existed still resume."""
  config = tiny_config("standin")
  assert "init_from" not in ckpt_lib.run_identity(config)
  config.init_from = "runs/other"
  assert ckpt_lib.run_identity(config)["init_from"] == "runs/other"
