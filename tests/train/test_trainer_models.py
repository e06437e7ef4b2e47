"""The three real models through the loop on real sample text (`:tiny` configs, step-bounded):
the loss falls, the step compiles once, and a GPT-2 run SIGKILLed after its first checkpoint and resumed ends
with bitwise the same parameters as an uninterrupted run."""

import json
import os
import pathlib
import signal
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from came_jax.train import trainer
from tests.train.tiny_configs import REPO


def _train_rows(workdir):
  rows = [json.loads(line) for line in pathlib.Path(workdir, "metrics.jsonl").read_text().splitlines()]
  return [r for r in rows if "tokens_per_sec" in r]


def _params(workdir, step):
  state = ocp.StandardCheckpointer().restore(pathlib.Path(workdir, "checkpoints", str(step), "state").resolve())
  return jax.tree.map(np.asarray, state["params"])


def _assert_learns_and_compiles_once(rows, steps):
  assert [r["step"] for r in rows] == list(range(1, steps + 1))
  first, last = np.mean([r["loss"] for r in rows[:2]]), np.mean([r["loss"] for r in rows[-2:]])
  assert last < first - 0.3, (first, last)
  # Everything compiled by the end of step 1; nothing after it (learning rate and batch ramp are runtime values).
  assert len({r["compiles"] for r in rows[1:]}) == 1, [r["compiles"] for r in rows]
  assert all(np.isfinite(r["grad_norm"]) and r["skipped"] == 0 for r in rows)


@pytest.mark.parametrize("name,optimizer,lr", [("bert_cramming", "adafactor", 1e-2), ("t5", "adamw", 3e-3)])
def test_model_learns_on_sample_text(tiny_config, tmp_path, name, optimizer, lr):
  steps = 12
  config = tiny_config(
    name,
    max_steps=steps,
    **{"optimizer.name": optimizer, "batch_ramp": 0.5, f"optimizer.{optimizer}.learning_rate": lr},
  )
  summary = trainer.train_and_evaluate(config, str(tmp_path))
  rows = _train_rows(tmp_path)
  _assert_learns_and_compiles_once(rows, steps)
  assert rows[0]["batch_size"] < rows[-1]["batch_size"]  # the ramp ran without recompiling
  assert summary["train_step_compilations"] == 1 and summary["optimizer"] == optimizer
  assert summary["heldout_loss"] is not None and np.isfinite(summary["heldout_loss"])
  assert "accuracy" in rows[-1] and summary["heldout_accuracy"] is not None


def _launch(script, workdir, flags, env, **kwargs):
  return subprocess.run(
    [sys.executable, *script, "--config", "configs/gpt2.py:tiny", "--workdir", str(workdir), *flags],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
    **kwargs,
  )


def test_gpt2_sigkill_and_resume_is_bitwise_identical(tiny_config, tmp_path):
  """GPT-2 with CAME: uninterrupted vs killed (SIGKILL while starting its 2nd checkpoint) and resumed."""
  c = tiny_config("gpt2")
  steps = 8
  flags = [
    f"--config.max_steps={steps}",
    "--config.checkpoint.every_steps=3",
    "--config.checkpoint.every_s=0",
    "--config.eval.every_s=0",
    "--config.log_every_steps=1",
    "--config.data.eval_batches=2",
    f"--config.data.path={c.data.path}",
    f"--config.data.eval_path={c.data.eval_path}",
    f"--config.data.cache_dir={c.data.cache_dir}",
    f"--config.tokenizer_path={c.tokenizer_path}",
  ]
  env = dict(
    os.environ,
    JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax_cache"),
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1",
  )
  launcher = ["-m", "experiments.pretrain"]

  straight = _launch(launcher, tmp_path / "straight", flags, env)
  assert straight.returncode == 0, straight.stderr[-3000:]
  assert "Done: 8 steps" in straight.stderr and "held-out loss" in straight.stderr
  rows = _train_rows(tmp_path / "straight")
  _assert_learns_and_compiles_once(rows, steps)

  killed = _launch([str(REPO / "tests" / "train" / "kill_after_checkpoint.py")], tmp_path / "killed", flags, env)
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
  assert sorted(os.listdir(tmp_path / "killed" / "checkpoints")) == ["3"]
  assert max(r["step"] for r in _train_rows(tmp_path / "killed")) == 6  # steps 4-6 are lost with the process

  resumed = _launch(launcher, tmp_path / "killed", flags, env)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "Resuming" in resumed.stderr and "Restored step 3" in resumed.stderr

  jax.tree.map(
    np.testing.assert_array_equal, _params(tmp_path / "straight", steps), _params(tmp_path / "killed", steps)
  )
  after_resume = {r["step"]: r["loss"] for r in _train_rows(tmp_path / "killed")[6:]}
  assert after_resume == {r["step"]: r["loss"] for r in rows if r["step"] > 3}
  summaries = [json.loads((tmp_path / w / "summary.json").read_text()) for w in ("straight", "killed")]
  assert summaries[0]["heldout_loss"] == summaries[1]["heldout_loss"]
  assert summaries[0]["tokens_seen"] == summaries[1]["tokens_seen"]
