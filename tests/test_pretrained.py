"""`came_jax.pretrained.load` on a run whose checkpoints are damaged: the newest intact one, never garbage."""

import logging
import pathlib

import jax
import numpy as np
import pytest

from came_jax import pretrained
from came_jax.optim import registry
from came_jax.train import checkpoint as ckpt_lib
from came_jax.train import step as step_lib
from tests.test_export import _fake_run, small_tokenizer  # noqa: F401  (a fixture)


def _two_checkpoints(run_dir, tokenizer):
  """A fake GPT-2 run with checkpoints 5 and 9 (other parameters); returns both steps' params."""
  _, params5 = _fake_run(run_dir, "gpt2", tokenizer, seed=0)
  config = pretrained.load_config(run_dir)
  params9 = jax.tree.map(lambda x: x * 2.0, params5)
  state = step_lib.TrainState.create(params9, registry.make(config.optimizer), jax.random.PRNGKey(1))
  checkpointer = ckpt_lib.Checkpointer(str(run_dir))
  checkpointer.save(9, state, elapsed_s=2.0, data_state={"batch": 9})
  checkpointer.close()
  return params5, params9


def _largest_state_file(step_dir: pathlib.Path) -> pathlib.Path:
  return max((p for p in (step_dir / "state").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def test_a_damaged_latest_checkpoint_is_skipped_with_a_warning(tmp_path, small_tokenizer, caplog):  # noqa: F811
  run = tmp_path / "run"
  params5, params9 = _two_checkpoints(run, small_tokenizer)
  latest = pretrained.load(run)
  assert latest.step == 9
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), latest.params, params9)

  victim = _largest_state_file(run / "checkpoints" / "9")
  data = bytearray(victim.read_bytes())
  data[len(data) // 2] ^= 0x10  # one flipped bit
  victim.write_bytes(bytes(data))
  caplog.set_level(logging.WARNING, logger=pretrained.__name__)
  loaded = pretrained.load(run)
  assert loaded.step == 5
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), loaded.params, params5)
  assert any(
    "checkpoint 9 in" in m and "checksum mismatch" in m and "loading checkpoint 5" in m for m in caplog.messages
  )

  with pytest.raises(
    ckpt_lib.DamagedCheckpointError, match=r"checkpoint 9 in .* is damaged \(.*checksum mismatch\); others: \[5\]"
  ):
    pretrained.load(run, step=9)
  _largest_state_file(run / "checkpoints" / "5").unlink()
  with pytest.raises(
    ckpt_lib.DamagedCheckpointError, match=r"every checkpoint in .* is damaged: 9 \(.*\); 5 \(.*missing\)"
  ):
    pretrained.load(run)
