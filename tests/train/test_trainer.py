"""The loop on the stand-in model (fast to compile): budget stop with a fake clock, time-driven schedules,
non-finite streaks, config validation. (Kill-and-resume is tested with the real GPT-2 in test_trainer_models.py,
refusal of an incompatible workdir in test_checkpoint.py.)"""

import json
import logging
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from came_jax.train import checkpoint as ckpt_lib
from came_jax.train import metrics as metrics_lib
from came_jax.train import trainer
from tests.train import standin
from tests.train.tiny_configs import REPO


def _rows(workdir):
  return [json.loads(line) for line in pathlib.Path(workdir, "metrics.jsonl").read_text().splitlines()]


def _train_rows(workdir):
  return [r for r in _rows(workdir) if "tokens_per_sec" in r]


def _params(workdir, step):
  state = ocp.StandardCheckpointer().restore(pathlib.Path(workdir, "checkpoints", str(step), "state").resolve())
  return jax.tree.map(np.asarray, state["params"])


class TickingClock:
  """Advances by `dt` seconds at every reading: deterministic time that passes as the loop runs."""

  def __init__(self, dt):
    self.now, self.dt = 0.0, dt

  def __call__(self):
    self.now += self.dt
    return self.now


def test_budget_stop_with_fake_clock(tiny_config, tmp_path):
  config = tiny_config("standin", max_steps=0, budget="20s", **{"eval.every_steps": 10})
  clock = TickingClock(0.25)
  summary = trainer.train_and_evaluate(config, str(tmp_path), time_fn=clock)
  rows = _train_rows(tmp_path)
  assert summary["stop_reason"] == "budget" and summary["steps"] == len(rows)
  # Stops within one step of the budget: the last step began before the budget ran out.
  assert rows[-2]["elapsed_s"] < 20.0 <= rows[-1]["elapsed_s"] < 20.0 + 2.0
  assert summary["elapsed_s"] == pytest.approx(rows[-1]["elapsed_s"], abs=1.5)
  # Evaluation pauses are excluded from the budget.
  evals = [r for r in _rows(tmp_path) if "perplexity" in r]
  assert len(evals) >= 2 and summary["paused_s"] > 0
  assert clock.now > summary["elapsed_s"] + summary["paused_s"] - 1e-6
  # Time-driven schedules: the learning rate warms up then decays (budget-cosine), the batch ramps 16 -> 32.
  lrs = [r["learning_rate"] for r in rows]
  peak = int(np.argmax(lrs))
  assert 0 < peak < len(lrs) - 1 and lrs[-1] < lrs[peak]
  assert rows[0]["batch_size"] == 16 and rows[-1]["batch_size"] == 32
  assert summary["train_step_compilations"] == 1
  for key in (
    "step",
    "loss",
    "tokens_per_sec",
    "elapsed_s",
    "remaining_s",
    "learning_rate",
    "grad_norm",
    "update_norm",
    "param_norm",
    "mfu",
    "accuracy",
  ):
    assert key in rows[-1], key
  assert rows[-1]["mfu"] == "n/a"  # CPU


def test_summary_and_metrics_files(tiny_config, tmp_path, caplog):
  config = tiny_config("standin", max_steps=5, tensorboard=True)
  caplog.set_level(logging.INFO, logger=trainer.__name__)
  summary = trainer.train_and_evaluate(config, str(tmp_path))
  # The input pipeline's rate, beside the step's at the first interval after compilation (the second log).
  assert summary["pipeline_tokens_per_sec"] > 0
  assert len([m for m in caplog.messages if m.startswith("input pipeline ") and "vs training step" in m]) == 1
  on_disk = json.loads(pathlib.Path(tmp_path, "summary.json").read_text())
  assert on_disk["steps"] == summary["steps"] == 5 and summary["stop_reason"] == "max_steps"
  for key in (
    "tokens_seen",
    "final_train_loss",
    "heldout_loss",
    "heldout_perplexity",
    "budget_s",
    "elapsed_s",
    "optimizer",
    "config",
  ):
    assert on_disk[key] is not None, key
  assert on_disk["tokens_seen"] == sum(r["batch_size"] for r in _train_rows(tmp_path)) * 128
  assert on_disk["heldout_perplexity"] == pytest.approx(np.exp(on_disk["heldout_loss"]))
  assert os.listdir(pathlib.Path(tmp_path, "tensorboard"))
  assert (pathlib.Path(tmp_path) / "tokenizer").is_dir()
  assert [r["step"] for r in _train_rows(tmp_path)] == [1, 2, 3, 4, 5]


def test_nonfinite_streak_stops_and_keeps_last_good_checkpoint(tiny_config, tmp_path, monkeypatch):
  config = tiny_config("standin", max_steps=4)
  trainer.train_and_evaluate(config, str(tmp_path))
  good = _params(tmp_path, 4)
  healthy_loss = standin.loss_fn

  def poisoned(params, batch, rng, *, cfg, train):
    loss, metrics = healthy_loss(params, batch, rng, cfg=cfg, train=train)
    return loss * np.float32("nan"), metrics

  monkeypatch.setattr(standin, "loss_fn", poisoned)
  config = tiny_config("standin", max_steps=20, max_consecutive_nonfinite=3, **{"checkpoint.every_steps": 1})
  with pytest.raises(trainer.NonFiniteError, match="max_consecutive_nonfinite=3"):
    trainer.train_and_evaluate(config, str(tmp_path))
  rows = _train_rows(tmp_path)[4:]
  assert [r["skipped"] for r in rows] == [1] * len(rows) and len(rows) >= 3
  assert [r["nonfinite_total"] for r in rows] == list(range(1, len(rows) + 1))
  assert len({r["param_norm"] for r in rows}) == 1
  assert ckpt_lib.Checkpointer(str(tmp_path)).latest_step() == 4
  jax.tree.map(np.testing.assert_array_equal, good, _params(tmp_path, 4))


@pytest.mark.parametrize(
  "key,value,message",
  [
    ("budget", "-10m", "config.budget"),
    ("budget", "soon", "config.budget"),
    ("max_steps", -1, "config.max_steps"),
    ("batch_size", 40, r"config.batch_size=40: must be divisible by the micro-batch config.data.batch_size=16"),
    ("data.batch_size", 0, "config.data.batch_size"),
    ("data.seq_len", 512, r"config.data.seq_len=512: exceeds the model's maximum .*max_len=256"),
    ("data.objective", "mlm", r"config.data.objective='mlm'"),
    ("optimizer.name", "sgd", "config.optimizer.name"),
    ("optimizer.came.learning_rate", -1.0, "config.optimizer.came.learning_rate"),
    ("schedule.name", "linear-ish", "config.schedule.name"),
    ("batch_ramp", 1.5, "config.batch_ramp"),
    ("model.preset", "huge", "config.model.preset"),
    ("model.name", "resnet", "config.model.name"),
    ("max_consecutive_nonfinite", 0, "config.max_consecutive_nonfinite"),
  ],
)
def test_bad_config_fails_before_compilation(tiny_config, tmp_path, key, value, message):
  config = tiny_config("gpt2", **{key: value})
  compiles = metrics_lib.compile_count()
  with pytest.raises(ValueError, match=message):
    trainer.train_and_evaluate(config, str(tmp_path / "w"))
  assert metrics_lib.compile_count() == compiles
  if key != "data.objective":  # found by tracing the loss on the data's batch shapes, after the tokenizer
    assert not (tmp_path / "w").exists()


def test_unknown_model_field_is_named(tiny_config, tmp_path):
  config = tiny_config("gpt2")
  config.model.num_experts = 8
  with pytest.raises(ValueError, match="config.model.num_experts"):
    trainer.train_and_evaluate(config, str(tmp_path))


@pytest.mark.parametrize(
  "override,message",
  [
    ("--config.no_such_key=1", "no_such_key"),
    ("--config.budgett=10m", 'Did you mean "budget"'),
    ("--config.budget=-5m", "config.budget='-5m' must be positive"),
  ],
)
def test_launcher_refuses_unknown_keys_and_bad_values(tmp_path, override, message):
  """Through the real launcher: lock_config refuses unknown keys while parsing flags; values fail at start."""
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.pretrain",
      "--config",
      "configs/bert_cramming.py:tiny",
      "--workdir",
      str(tmp_path / "w"),
      override,
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode != 0
  assert message in result.stderr, result.stderr[-2000:]
  assert not (tmp_path / "w").exists()


def test_failed_setup_does_not_claim_the_workdir(tiny_config, tmp_path):
  """A run that fails before training (here: a wrong data path) can be fixed and restarted in its workdir."""
  bad = tiny_config("standin", max_steps=2, **{"data.path": str(tmp_path / "no_such_corpus")})
  with pytest.raises((ValueError, FileNotFoundError)):
    trainer.train_and_evaluate(bad, str(tmp_path / "w"))
  assert not (tmp_path / "w" / "run_config.json").exists()
  assert trainer.train_and_evaluate(tiny_config("standin", max_steps=2), str(tmp_path / "w"))["steps"] == 2


def test_finished_run_rerun_is_a_noop_until_extended(tiny_config, tmp_path, caplog):
  config = tiny_config("standin", max_steps=4)
  first = trainer.train_and_evaluate(config, str(tmp_path))
  files = {name: (tmp_path / name).read_bytes() for name in ("summary.json", "metrics.jsonl")}
  compiles = metrics_lib.compile_count()
  caplog.set_level(logging.INFO, logger=trainer.__name__)
  again = trainer.train_and_evaluate(tiny_config("standin", max_steps=4), str(tmp_path))
  assert again == json.loads(files["summary.json"]) and again["final_train_loss"] == first["final_train_loss"]
  assert {name: (tmp_path / name).read_bytes() for name in files} == files  # nothing rewritten
  assert metrics_lib.compile_count() == compiles  # nothing built
  assert any("is finished (max_steps at step 4" in m for m in caplog.messages)
  # A larger max_steps extends the run; the summary then describes the extended run.
  extended = trainer.train_and_evaluate(tiny_config("standin", max_steps=6), str(tmp_path))
  assert extended["steps"] == 6 and extended["final_train_loss"] is not None
  assert [r["step"] for r in _train_rows(tmp_path)] == [1, 2, 3, 4, 5, 6]


def test_resume_drops_rows_past_the_restored_step(tiny_config, tmp_path):
  """A process that died after logging steps 4-6 but before checkpointing 6: the resumed run's metrics.jsonl
  holds each step once, as one timeline."""
  config = tiny_config("standin", max_steps=6, **{"checkpoint.every_steps": 3, "eval.every_steps": 2})
  trainer.train_and_evaluate(config, str(tmp_path))
  straight = {r["step"]: r["loss"] for r in _train_rows(tmp_path)}
  (tmp_path / "summary.json").unlink()
  shutil.rmtree(tmp_path / "checkpoints" / "6")
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 7, "split": "tra')  # a row cut short by the kill
  trainer.train_and_evaluate(config, str(tmp_path))
  rows = _rows(tmp_path)
  train_steps = [r["step"] for r in rows if r["split"] == "train"]
  assert train_steps == [1, 2, 3, 4, 5, 6]
  assert {r["step"]: r["loss"] for r in _train_rows(tmp_path)} == straight
  heldout = [r["step"] for r in rows if r["split"] == "heldout"]
  assert heldout == sorted(set(heldout)) and heldout[-1] == 6


def test_nonfinite_params_stop_at_once_and_are_never_checkpointed(tiny_config, tmp_path):
  """Finite gradients, an update that blows the parameters up (AdamW at a learning rate of 1e30): the first
  such step stops the run; nothing non-finite is saved; the summary says why."""
  config = tiny_config(
    "standin",
    max_steps=20,
    **{"optimizer.name": "adamw", "optimizer.adamw.learning_rate": 1e30, "checkpoint.every_steps": 1},
  )
  with pytest.raises(trainer.NonFiniteError, match=r"non-finite parameters after an update .* by step (\d+)") as e:
    trainer.train_and_evaluate(config, str(tmp_path))
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["stop_reason"] == "nonfinite" and summary["steps"] <= 3
  # The warm-up's first step (learning rate ~0) leaves finite parameters, checkpointed; the next one is not.
  last = ckpt_lib.Checkpointer(str(tmp_path)).latest_step()
  assert last is not None and last < summary["steps"] and f"checkpoint (step {last})" in str(e.value)
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(_params(tmp_path, last)))


def test_nonfinite_streak_without_a_checkpoint_says_so(tiny_config, tmp_path, monkeypatch):
  healthy_loss = standin.loss_fn

  def poisoned(params, batch, rng, *, cfg, train):
    loss, metrics = healthy_loss(params, batch, rng, cfg=cfg, train=train)
    return loss * np.float32("nan"), metrics

  monkeypatch.setattr(standin, "loss_fn", poisoned)
  config = tiny_config("standin", max_steps=20, max_consecutive_nonfinite=3)
  with pytest.raises(trainer.NonFiniteError, match=r"by step \d+: stopping. No checkpoint had been written"):
    trainer.train_and_evaluate(config, str(tmp_path))
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["stop_reason"] == "nonfinite" and summary["nonfinite_steps"] >= 3


def test_a_held_workdir_is_refused_before_anything_is_written(tiny_config, tmp_path):
  from came_jax.train import lock  # pylint: disable=import-outside-toplevel

  with lock.WorkdirLock(str(tmp_path)):
    with pytest.raises(lock.WorkdirBusyError, match="is in use by another run"):
      trainer.train_and_evaluate(tiny_config("standin", max_steps=2), str(tmp_path))
  assert sorted(os.listdir(tmp_path)) == [lock.LOCK_FILE]
  assert trainer.train_and_evaluate(tiny_config("standin", max_steps=2), str(tmp_path))["steps"] == 2


def test_a_corpus_smaller_than_one_batch_warns(tiny_config, tmp_path, caplog):
  corpus = tmp_path / "tiny.txt"
  corpus.write_text("A corpus of a dozen words, far less than one batch of rows.\n")
  config = tiny_config("standin", max_steps=1, **{"data.path": str(corpus)})
  caplog.set_level(logging.WARNING, logger=trainer.__name__)
  trainer.train_and_evaluate(config, str(tmp_path / "w"))
  assert any("fewer than one step's batch of" in m for m in caplog.messages), caplog.messages


def test_a_full_disk_is_found_before_a_checkpoint_is_written(tiny_config, tmp_path, monkeypatch):
  """The disk fills up after step 2's checkpoint: step 4's is refused before orbax writes anything, in one line
  naming the sizes; the run resumes from step 2 once there is room."""
  from came_jax import cli  # pylint: disable=import-outside-toplevel

  config = tiny_config("standin", max_steps=6, **{"checkpoint.every_steps": 2})
  real = ckpt_lib.shutil.disk_usage
  saves = []

  def filling_up(path):
    usage = real(path)
    saves.append(path)
    return usage._replace(free=usage.free if len(saves) == 1 else 1000)

  monkeypatch.setattr(ckpt_lib.shutil, "disk_usage", filling_up)
  with pytest.raises(OSError, match=r"No space left on device for checkpoint 4 in .*: it needs about \d+ MiB") as e:
    trainer.train_and_evaluate(config, str(tmp_path))
  assert cli.one_line(e.value).startswith("disk full: OSError: [Errno 28] No space left on device for checkpoint 4")
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2"]  # no partial checkpoint
  monkeypatch.undo()
  assert trainer.train_and_evaluate(config, str(tmp_path))["steps"] == 6
  assert [r["step"] for r in _train_rows(tmp_path)] == [1, 2, 3, 4, 5, 6]
