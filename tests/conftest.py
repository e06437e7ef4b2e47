"""Test-wide setup: 8 simulated CPU devices (for sharding tests) and paths to the shared sample data."""

import os
import pathlib

# Must be set before jax is imported anywhere.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402

SHARED_DATA = pathlib.Path(
  os.environ.get("CAME_JAX_DATA", pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data")
)


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
  """Root of ../shared/data (override with $CAME_JAX_DATA). Its absence is an error, never a skip."""
  if not SHARED_DATA.is_dir():
    raise FileNotFoundError(f"sample data not found at {SHARED_DATA}; set CAME_JAX_DATA")
  return SHARED_DATA


@pytest.fixture(scope="session")
def pretrained_run(shared_data, tmp_path_factory):
  """A real 2-step crammed-BERT `:tiny` pretraining run through the trainer (tokenizer trained on a small
  sample), so that fine-tuning reads exactly what the trainer writes."""
  from came_jax import config_files
  from came_jax.train import trainer

  repo = pathlib.Path(__file__).resolve().parents[1]
  c = config_files.load(repo / "configs" / "bert_cramming.py", "tiny")
  c.data.update(
    dict(
      path=str(shared_data / "corpus" / "state_union"),
      eval_path="",
      tokenizer_sentences=2000,
      cache_dir=str(tmp_path_factory.mktemp("cache")),
      prefetch=0,
    )
  )
  c.update(dict(max_steps=2, batch_size=16, log_every_steps=1, tensorboard=False))
  c.eval.every_s = c.checkpoint.every_s = 0.0
  run_dir = tmp_path_factory.mktemp("bert_run")
  trainer.train_and_evaluate(c, str(run_dir))
  return run_dir
