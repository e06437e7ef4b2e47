"""The three real models through the loop on real sample text (`:tiny` configs, step-bounded): the loss falls,
the step compiles once; and a GPT-2 run stopped by SIGKILL (after its first checkpoint), by SIGTERM (preemption)
or by two SIGINTs, then resumed by the same command, ends with bitwise the parameters of an uninterrupted run."""

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


@pytest.fixture(scope="module")
def gpt2_runs(tiny_config, tmp_path_factory):
  """`launch(script, name) -> CompletedProcess` of the tiny GPT-2 recipe with CAME, 8 steps, checkpoints every 3,
  in `root / name`; and the uninterrupted run `root / "straight"` (with its rows) to compare with."""
  c = tiny_config("gpt2")
  root = tmp_path_factory.mktemp("gpt2_runs")
  flags = [
    "--config.max_steps=8",
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
    JAX_COMPILATION_CACHE_DIR=str(root / "jax_cache"),
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1",
  )
  launch = lambda script, name: _launch(script, root / name, flags, env)  # noqa: E731
  straight = launch(LAUNCHER, "straight")
  assert straight.returncode == 0, straight.stderr[-3000:]
  assert "Done: 8 steps" in straight.stderr and "held-out loss" in straight.stderr
  rows = _train_rows(root / "straight")
  _assert_learns_and_compiles_once(rows, 8)
  return launch, root, rows


LAUNCHER = ["-m", "experiments.pretrain"]


def _assert_resumed_like_straight(root, name, rows, restored_step):
  """`root / name`, resumed from `restored_step`, ended bitwise where the uninterrupted run did, and its metrics
  hold each step once."""
  jax.tree.map(np.testing.assert_array_equal, _params(root / "straight", 8), _params(root / name, 8))
  resumed_rows = _train_rows(root / name)
  assert [r["step"] for r in resumed_rows] == list(range(1, 9))  # one timeline: rows past the restore dropped
  assert {r["step"]: r["loss"] for r in resumed_rows if r["step"] > restored_step} == {
    r["step"]: r["loss"] for r in rows if r["step"] > restored_step
  }
  summaries = [json.loads((root / w / "summary.json").read_text()) for w in ("straight", name)]
  assert summaries[1]["stop_reason"] == "max_steps"
  assert summaries[0]["heldout_loss"] == summaries[1]["heldout_loss"]
  assert summaries[0]["tokens_seen"] == summaries[1]["tokens_seen"]


def test_gpt2_sigkill_and_resume_is_bitwise_identical(gpt2_runs):
  """GPT-2 with CAME: uninterrupted vs killed (SIGKILL while starting its 2nd checkpoint) and resumed."""
  launch, root, rows = gpt2_runs
  killed = launch([str(REPO / "tests" / "train" / "kill_after_checkpoint.py")], "killed")
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
  assert sorted(os.listdir(root / "killed" / "checkpoints")) == ["3"]
  assert max(r["step"] for r in _train_rows(root / "killed")) == 6  # steps 4-6 are lost with the process

  resumed = launch(LAUNCHER, "killed")
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "Resuming" in resumed.stderr and "Restored step 3" in resumed.stderr
  _assert_resumed_like_straight(root, "killed", rows, 3)


def test_gpt2_sigterm_checkpoints_the_step_and_resumes_bitwise(gpt2_runs):
  """Preemption: SIGTERM at step 4 (between the checkpoints of steps 3 and 6). The run checkpoints step 4,
  records the signal, exits 143 with one line; the same command resumes from step 4, losing nothing."""
  launch, root, rows = gpt2_runs
  stopped = launch([str(REPO / "tests" / "train" / "signal_at_step.py"), "TERM", "4", "1"], "sigterm")
  assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-3000:]
  last_line = stopped.stderr.strip().splitlines()[-1]
  assert last_line.startswith("error: Interrupted: stopped by SIGTERM at step 4, checkpoint saved in "), last_line
  assert "Traceback" not in stopped.stderr
  assert sorted(os.listdir(root / "sigterm" / "checkpoints")) == ["3", "4"]
  summary = json.loads((root / "sigterm" / "summary.json").read_text())
  assert summary["stop_reason"] == "SIGTERM" and summary["steps"] == 4 and summary["heldout_loss"] is None

  resumed = launch(LAUNCHER, "sigterm")
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "Restored step 4" in resumed.stderr
  _assert_resumed_like_straight(root, "sigterm", rows, 4)


def test_gpt2_second_sigint_exits_at_once(gpt2_runs):
  """Ctrl-C twice at step 5: the second signal ends the process at once, without a checkpoint; the run resumes
  from step 3 and still ends bitwise as the uninterrupted one."""
  launch, root, rows = gpt2_runs
  stopped = launch([str(REPO / "tests" / "train" / "signal_at_step.py"), "INT", "5", "2"], "sigint")
  assert stopped.returncode == -signal.SIGINT, stopped.stderr[-3000:]
  assert sorted(os.listdir(root / "sigint" / "checkpoints")) == ["3"]
  assert not (root / "sigint" / "summary.json").exists()

  resumed = launch(LAUNCHER, "sigint")
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "Restored step 3" in resumed.stderr
  _assert_resumed_like_straight(root, "sigint", rows, 3)


def test_gpt2_write_failure_mid_checkpoint_is_one_line(gpt2_runs):
  """A checkpoint write that fails halfway (no file may pass 300 kB; the state files are up to ~1.7 MB, the
  tokenizer 0.27 MB): one line naming the checkpoint and the system's reason, instead of orbax's and asyncio's
  ~1,300; nothing half-written is restored, and the run, rerun with room, ends as the uninterrupted one."""
  launch, root, rows = gpt2_runs
  failed = launch([str(REPO / "tests" / "train" / "file_size_limit.py"), "300000"], "full")
  assert failed.returncode == 1, failed.stderr[-3000:]
  lines = [line for line in failed.stderr.splitlines() if not line.startswith(("I", "W"))]
  assert lines == [
    f"error: OSError: [Errno 27] writing checkpoint 3 in {root / 'full' / 'checkpoints'} failed: File too large "
    "(orbax left its partial copy in a *.orbax-checkpoint-tmp directory, which it ignores; the run resumes from its "
    "last checkpoint) (CAME_JAX_TRACEBACK=1 shows the traceback)"
  ], failed.stderr[-3000:]
  resumed = launch(LAUNCHER, "full")
  assert resumed.returncode == 0 and "Restored" not in resumed.stderr, resumed.stderr[-3000:]
  _assert_resumed_like_straight(root, "full", rows, 0)
