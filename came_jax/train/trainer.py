"""The time-bounded pretraining loop shared by BERT, GPT-2 and T5: `train_and_evaluate(config, workdir)`.

Config -> tokenizer + data + model + optimizer -> one jitted, buffer-donating train step -> steps until the
budget (or `max_steps`) is spent -> final evaluation and checkpoint -> `WORKDIR/summary.json`.

The loop knows the model only through the protocol of `came_jax.models` (`models.get(config.model.name)`: its
`Config` from the config's `model` section, `init_params`, `loss_fn`, `flops_per_token`, `max_len`), and the data
only through `came_jax.train.input_pipeline`.

Devices (`came_jax.train.sharding`): the state is created, stepped and checkpointed on the `config.mesh` mesh, with
FSDP-sharded params and optimizer state and batches split over every device; the default mesh is one device. With
several processes (`config.distributed`), each loads only its rows of every batch; process 0 alone writes the
tokenizer, `run_config.json`, metrics and the summary, while all take part in checkpoints.

`config.init_from` (a run directory or a Hugging Face folder, `came_jax.pretrained.load`) starts from a pretrained
model: its parameters replace the random initialisation (the optimizer state starts fresh), and its model Config and
tokenizer are the run's (`validation.init_model_config` says what the config must then agree with); the Config is
recorded in `WORKDIR/model_config.json` and the tokenizer saved in `WORKDIR/tokenizer`.

Budget accounting (as cramming): the clock starts after data and model setup, so it counts compilation; it is
paused for evaluation and checkpointing. The host stays at most one step ahead of the device (after dispatching a
step it reads the previous step's non-finite counter), so the budget is honoured within one step and a streak of
non-finite gradients is noticed within one step. (Several processes agree on the budget spent, and on signals, at
each log step, so that all take the same decisions: see `_Run._stop`.)

What a run on a shared cluster meets:

- *One writer per workdir*: process 0 holds `WORKDIR/.lock` for the run's lifetime (`came_jax.train.lock`); a
  second run in the same workdir is refused. The kernel drops the lock when the process dies, however it dies.
- *Preemption*: on SIGTERM or SIGINT the step in flight finishes, a checkpoint is written, `summary.json` records
  the signal as `stop_reason`, and `Interrupted` is raised (exit status 128 + the signal's number in the launcher);
  a second signal ends the process at once (`came_jax.train.preemption`). The same command resumes, bitwise as after
  an interval checkpoint.
- *Damaged checkpoints*: every checkpoint carries checksums; a damaged one is moved aside and the newest intact one
  restored, never silently step 0 (`came_jax.train.checkpoint`).
- *Records*: re-running a finished run is a no-op that leaves `summary.json` as it was, unless `config.max_steps`
  or `config.budget` grew; on resume, `metrics.jsonl` drops the rows past the restored step, so it reads as one
  timeline.
- *Non-finite values*: a step with non-finite gradients is skipped and counted; `config.max_consecutive_nonfinite`
  in a row, or parameters that an update made non-finite, stop the run with `NonFiniteError` and a summary, and
  nothing non-finite is ever checkpointed.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import signal as signal_lib
from typing import Any, Callable, Iterable, Optional

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from came_jax import models, pretrained
from came_jax.optim import registry
from came_jax.train import budget as budget_lib
from came_jax.train import checkpoint as ckpt_lib
from came_jax.train import input_pipeline, preemption, schedules, sharding, validation
from came_jax.train import lock as lock_lib
from came_jax.train import metrics as metrics_lib
from came_jax.train import step as step_lib

log = logging.getLogger(__name__)


class NonFiniteError(FloatingPointError):
  """Too many consecutive non-finite gradients, or non-finite parameters; the last good checkpoint is left as it
  was."""


Interrupted = preemption.Interrupted
FINISHED = ("max_steps", "budget")  # the stop reasons of a run that is done


def evaluate(eval_fn: Callable, params, batches: Iterable[dict]) -> dict[str, float]:
  """Token-weighted held-out loss (and model metrics such as accuracy) and perplexity over `batches`."""
  sums: dict[str, float] = {}
  for batch in batches:
    for k, v in jax.device_get(eval_fn(params, batch)).items():
      sums[k] = sums.get(k, 0.0) + float(v)
  n = max(sums.get("num_tokens", 0.0), 1.0)
  result = {k[: -len("_sum")]: v / n for k, v in sums.items() if k.endswith("_sum")}
  result["perplexity"] = float(math.exp(min(result["loss"], 50.0)))
  result["num_tokens"] = sums.get("num_tokens", 0.0)
  return result


def train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str, *, time_fn: Optional[Callable[[], float]] = None
) -> dict[str, Any]:
  """Pretrains `config.model` on `config.data` for `config.budget` (or `config.max_steps`); resumes `workdir`.

  Args:
    config: a pretraining config (see `configs/bert_cramming.py`).
    workdir: run directory: checkpoints, tokenizer, `metrics.jsonl`, `summary.json`, TensorBoard events.
    time_fn: the budget clock's time source (monotonic seconds); tests inject a fake one.

  Returns:
    The summary also written to `WORKDIR/summary.json`.

  Raises:
    ValueError: an invalid config value (naming its key), before anything is built or compiled.
    came_jax.train.checkpoint.IncompatibleWorkdirError: `workdir` holds a different run.
    came_jax.train.lock.WorkdirBusyError: another live run holds `workdir`.
    came_jax.train.checkpoint.DamagedCheckpointError: every checkpoint in `workdir` is damaged.
    NonFiniteError: `config.max_consecutive_nonfinite` non-finite gradients in a row, or non-finite parameters.
    Interrupted: a SIGTERM or SIGINT stopped the run (after a checkpoint).
  """
  sharding.initialize_distributed(config.distributed)  # before anything touches a device
  budget_s = budget_lib.parse_budget(config.budget)
  init = validation.load_init(config)  # None, or the pretrained model to start from
  model_cfg = validation.check(config, init)
  model = models.get(config.model.name)
  resuming = ckpt_lib.check_workdir(workdir, config)
  with contextlib.ExitStack() as cleanup:
    if jax.process_index() == 0:
      cleanup.enter_context(lock_lib.WorkdirLock(workdir))
    done = finished_summary(workdir, config, budget_s) if resuming else None
    if done is not None:
      log.info(
        "The run in %s is finished (%s at step %d, %s of the budget spent): nothing to do. Raise config.max_steps "
        "or config.budget to extend it.",
        workdir,
        done["stop_reason"],
        done["steps"],
        budget_lib.format_seconds(done["elapsed_s"]),
      )
      return done
    log.info(
      "%s %s:%s with %s in %s; budget %s%s.",
      "Resuming" if resuming else "Starting",
      config.model.name,
      config.model.preset,
      config.optimizer.name,
      workdir,
      budget_lib.format_seconds(budget_s),
      f", max_steps {config.max_steps}" if config.max_steps else "",
    )
    run = _Run(config, workdir, model, model_cfg, budget_s, time_fn, cleanup, init)
    return run.train()


def finished_summary(workdir: str, config: ml_collections.ConfigDict, budget_s: float) -> Optional[dict[str, Any]]:
  """The summary of the finished run in `workdir`, or None when there is training left to do.

  A run is finished when its `summary.json` says it stopped at `max_steps` or the budget, its newest checkpoint
  is that summary's step, and neither `config.max_steps` nor `config.budget` leaves room for another step.
  """
  path = os.path.join(workdir, "summary.json")
  try:
    with open(path) as f:
      summary = json.load(f)
  except (OSError, ValueError):
    return None
  newest = max(pretrained.checkpoint_steps(workdir), default=None)
  if summary.get("stop_reason") not in FINISHED or summary.get("steps") != newest:
    return None
  more_steps = not config.max_steps or summary["steps"] < config.max_steps
  more_time = summary.get("elapsed_s", 0.0) < budget_s
  return None if more_steps and more_time else summary


class _Run:
  """One run's objects and host-side counters; `train()` is the loop."""

  def __init__(self, config, workdir, model, model_cfg, budget_s, time_fn, cleanup: contextlib.ExitStack, init=None):
    self.config, self.workdir, self.model = config, workdir, model
    self.seq_len, self.micro = config.data.seq_len, config.data.batch_size
    self.max_micro = config.batch_size // self.micro
    self.mesh = sharding.make_mesh(*validation.mesh_shape(config))
    self.process_index, self.process_count = jax.process_index(), jax.process_count()
    self.is_chief = self.process_index == 0

    # --- tokenizer and data: this process's rows of every batch
    tokenizer = sharding.process_zero_first(
      "came_jax:tokenizer", lambda: input_pipeline.make_tokenizer(config, workdir, init.tokenizer if init else None)
    )
    processes = dict(process_index=self.process_index, process_count=self.process_count)
    self.train_iter = input_pipeline.make_train_iterator(config, tokenizer, **processes)
    cleanup.callback(self.train_iter.close)
    rows = getattr(self.train_iter, "num_rows", None)
    if rows is not None and rows * self.process_count < config.batch_size:
      log.warning(
        "The training data (%s) packs into %d rows of %d tokens, fewer than one step's batch of %d rows "
        "(config.batch_size): every step repeats the same text. Use more data for a meaningful run.",
        config.data.path,
        rows * self.process_count,
        self.seq_len,
        config.batch_size,
      )
    self.eval_batches = input_pipeline.make_eval_batches(config, tokenizer, **processes)
    local_shapes = self.train_iter.batch_shapes()
    shapes = {k: ((s[0] * self.process_count, *s[1:]), d) for k, (s, d) in local_shapes.items()}
    self.stacker = input_pipeline.MicroBatchStacker(local_shapes, self.max_micro)
    self.batch_shardings = sharding.batch_shardings(
      self.mesh, {k: ((self.max_micro, *s), d) for k, (s, d) in shapes.items()}, batch_axis=1
    )
    self.eval_shardings = sharding.batch_shardings(self.mesh, shapes, batch_axis=0)
    self._check_process_rows(shapes)

    # --- model, optimizer, state (created where it lives: FSDP shards are never whole on one device)
    loss_fn = functools.partial(model.loss_fn, cfg=model_cfg)
    init_fn = functools.partial(model.init_params, model_cfg)
    tx = registry.make(config.optimizer)

    def create_state(params=None):  # `params`: those of `config.init_from`, else a random initialisation
      init_rng, state_rng = jax.random.split(jax.random.PRNGKey(config.seed))
      return step_lib.TrainState.create(init_fn(init_rng) if params is None else params, tx, state_rng)

    state_shape = jax.eval_shape(create_state)
    validation.check_batch_fits_model(config, loss_fn, state_shape.params, shapes)
    self.lr_fn = schedules.make_lr_schedule(config.schedule, registry.peak_learning_rate(config.optimizer))
    self.state_shardings = sharding.train_state_shardings(state_shape, tx, self.mesh, config.mesh.fsdp_min_size)
    self.state = jax.jit(create_state, out_shardings=self.state_shardings)(init.params if init else None)
    self.num_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(self.state.params))
    self.flops_per_token = float(model.flops_per_token(model_cfg, {k: s for k, (s, _) in shapes.items()}))

    if self.is_chief:
      ckpt_lib.record_run(workdir, config)
      if init is not None:
        pretrained.record_model_config(workdir, config.model.name, model_cfg)
    self.checkpointer = ckpt_lib.Checkpointer(workdir, max_to_keep=config.checkpoint.max_to_keep)
    cleanup.callback(self.checkpointer.close)
    elapsed, self.tokens_seen = 0.0, 0
    restored = self.checkpointer.restore_latest(self.state)  # newest intact checkpoint; damaged ones moved aside
    if restored is not None:
      self.state, meta, _ = restored
      self.train_iter.set_state(meta["data_state"])
      elapsed, self.tokens_seen = float(meta["elapsed_s"]), int(meta["tokens_seen"])
      log.info("Restored step %d (%s of the budget spent).", meta["step"], budget_lib.format_seconds(elapsed))
    self.step = int(jax.device_get(self.state.step))

    replicated = sharding.replicated(self.mesh)
    param_shardings = self.state_shardings.params
    self.train_step = jax.jit(
      functools.partial(step_lib.train_step, loss_fn=loss_fn, tx=tx, grad_shardings=param_shardings),
      in_shardings=(self.state_shardings, self.batch_shardings, replicated, replicated),
      out_shardings=(self.state_shardings, replicated),
      donate_argnums=0,
    )
    self.eval_step = jax.jit(
      functools.partial(step_lib.eval_step, loss_fn=loss_fn),
      in_shardings=(param_shardings, self.eval_shardings),
      out_shardings=replicated,
    )
    self.writer = (  # rows past the restored step, from a process that died, are dropped
      metrics_lib.MetricWriter(workdir, tensorboard=config.tensorboard, resume_step=self.step)
      if self.is_chief
      else metrics_lib.NullWriter()
    )
    cleanup.callback(self.writer.close)
    self.clock = budget_lib.BudgetClock(budget_s, elapsed_s=elapsed, time_fn=time_fn)
    self._last_eval: tuple[int, dict] = (-1, {})
    log.info(
      "%s: %.2fM parameters, %.3g training FLOPs/token; batch %d = up to %d micro-batches of %d x %d "
      "tokens; mesh %s over %d device(s), %d process(es).",
      config.model.name,
      self.num_params / 1e6,
      self.flops_per_token,
      config.batch_size,
      self.max_micro,
      self.micro,
      self.seq_len,
      dict(self.mesh.shape),
      self.mesh.size,
      self.process_count,
    )

  def _check_process_rows(self, shapes) -> None:
    """Each process's devices must hold the rows its data iterator loads (`make_array_from_process_local_data`)."""
    name, (shape, _) = next(iter(shapes.items()))
    lo, hi = sharding.process_rows(self.batch_shardings[name], (self.max_micro, *shape), batch_axis=1)
    rows = shape[0] // self.process_count
    if (lo, hi) != (self.process_index * rows, (self.process_index + 1) * rows):
      raise ValueError(
        f"process {self.process_index}'s devices hold rows [{lo}, {hi}) of each micro-batch but its "
        f"data iterator loads rows [{self.process_index * rows}, {(self.process_index + 1) * rows})"
      )

  def put_batch(self, batch: dict[str, np.ndarray], shardings, batch_axis: int) -> dict[str, jax.Array]:
    """This process's rows -> global arrays laid out as the step expects."""
    return sharding.global_batch(batch, shardings, batch_axis, self.process_count)

  # ------------------------------------------------------------------------------------------------- pieces
  def progress(self) -> float:
    c = self.config
    by_steps = c.schedule.progress == "steps" or (c.schedule.progress == "auto" and c.max_steps)
    if by_steps:
      return min(1.0, self.step / c.max_steps)
    if self.process_count == 1:
      return self.clock.fraction
    return min(1.0, self._agreed[1][1] / self.clock.budget_s)  # the budget spent as the processes agreed on it

  def save(self, why: str) -> None:
    with self.clock.paused():
      self.checkpointer.save(
        self.step,
        self.state,
        elapsed_s=self.clock.elapsed,
        data_state=self.train_iter.get_state(),
        extra={"tokens_seen": self.tokens_seen},
      )
    log.info("Saved checkpoint at step %d (%s).", self.step, why)

  def evaluate(self, why: str) -> dict[str, float]:
    if self.eval_batches is None:
      return {}
    if self._last_eval[0] == self.step:
      return self._last_eval[1]
    with self.clock.paused():
      batches = (self.put_batch(b, self.eval_shardings, 0) for b in self.eval_batches)
      result = evaluate(self.eval_step, self.state.params, batches)
    self.writer.write(self.step, {**result, "elapsed_s": self.clock.elapsed}, prefix="heldout")
    log.info(
      "Held-out (%s) at step %d: loss %.4f, perplexity %.2f%s",
      why,
      self.step,
      result["loss"],
      result["perplexity"],
      f", accuracy {result['accuracy']:.3f}" if "accuracy" in result else "",
    )
    self._last_eval = (self.step, result)
    return result

  def check_finite(self, metrics) -> None:
    """Raises `NonFiniteError` after `config.max_consecutive_nonfinite` non-finite gradients in a row, or when an
    update left the parameters non-finite (no later step could bring them back). One host sync, on `metrics`'s
    step."""
    consecutive, param_norm = jax.device_get((metrics["nonfinite_consecutive"], metrics["param_norm"]))
    limit = self.config.max_consecutive_nonfinite
    if np.isfinite(param_norm) and int(consecutive) < limit:
      return
    if int(consecutive) >= limit:
      cause = f"{int(consecutive)} consecutive non-finite gradients (config.max_consecutive_nonfinite={limit})"
    else:
      cause = "non-finite parameters after an update whose gradients were finite (a lower learning rate may help)"
    last = self.checkpointer.latest_step()
    kept = (
      f"The last good checkpoint (step {last}) in {self.checkpointer.directory} is left intact."
      if last is not None
      else "No checkpoint had been written: a rerun starts from step 0."
    )
    raise NonFiniteError(f"{cause} by step {self.step}: stopping. {kept}")

  def log(self, metrics, n_micro: int) -> dict[str, Any]:
    """Reads one step's metrics (a host sync), adds throughput and budget, writes and prints them."""
    row: dict[str, Any] = {k: float(v) for k, v in jax.device_get(metrics).items()}
    for k in ("num_tokens", "skipped", "nonfinite_consecutive", "nonfinite_total"):
      row[k] = int(row[k])
    elapsed = self.clock.elapsed
    row["tokens_per_sec"] = self._since_tokens / max(elapsed - self._since_elapsed, 1e-9)
    self._since_elapsed, self._since_tokens = elapsed, 0
    m = metrics_lib.mfu(row["tokens_per_sec"], self.flops_per_token, devices=list(self.mesh.devices.flat))
    row["mfu"] = m if m is not None else "n/a"
    row.update(
      batch_size=n_micro * self.micro,
      tokens_seen=self.tokens_seen,
      elapsed_s=elapsed,
      remaining_s=self.clock.remaining,
      compiles=metrics_lib.compile_count() - self._compiles0,
      step=self.step,
    )
    self.writer.write(self.step, {k: v for k, v in row.items() if k != "step"})
    log.info("%s", metrics_lib.progress_line(row, self.clock.budget_s, self.config.max_steps))
    self._logs += 1
    if self._logs == 2:  # the first interval that does not include compilation
      self.report_pipeline(row["tokens_per_sec"])
    return row

  def report_pipeline(self, step_tokens_per_sec: float) -> None:
    """Logs the input pipeline's rate beside the training step's; warns when it leaves under 2x headroom."""
    ratio = self.pipeline_tokens_per_sec / max(step_tokens_per_sec, 1e-9)
    text = (
      f"input pipeline {self.pipeline_tokens_per_sec:,.0f} tokens/s (one thread) vs training step "
      f"{step_tokens_per_sec:,.0f} tokens/s: {ratio:.1f}x"
    )
    if ratio < 2.0:
      log.warning("%s. The pipeline may hold training back (a slow source or objective).", text)
    else:
      log.info("%s.", text)

  # ---------------------------------------------------------------------------------------------- the loop
  def train(self) -> dict[str, Any]:
    """The loop, then the final evaluation, checkpoint and summary; see the module docstring for how it stops."""
    with preemption.StopSignals() as signals:
      self._last_row: dict[str, Any] = {}
      try:
        stop_reason = self._loop(signals)
      except NonFiniteError:
        self.write_summary("nonfinite", self._last_row, {})
        raise
      log.info(
        "Stopped at step %d (%s) after %s of the %s budget.",
        self.step,
        stop_reason,
        budget_lib.format_seconds(self.clock.elapsed),
        budget_lib.format_seconds(self.clock.budget_s),
      )
      if stop_reason not in FINISHED:  # a signal: checkpoint and go, no final evaluation (the grace period is short)
        if self.checkpointer.latest_step() != self.step:
          self.save(stop_reason)
        self.write_summary(stop_reason, self._last_row, {})
        raise Interrupted(
          f"stopped by {stop_reason} at step {self.step}, checkpoint saved in {self.checkpointer.directory}; "
          "run the same command to resume.",
          signal_lib.Signals[stop_reason].value,
        )
      # The end (outside the budget). A signal from here on changes nothing but makes a second one fatal.
      heldout = self.evaluate("final")
      if self.checkpointer.latest_step() != self.step:
        self.save("final")
      return self.write_summary(stop_reason, self._last_row, heldout)

  def _stop(self, signals: preemption.StopSignals) -> tuple[Optional[int], bool]:
    """`(signal to stop on or None, budget spent)`.

    One process decides alone. Several must take every decision alike (each step, evaluation and checkpoint is
    collective, and each process loads its rows of the batch the ramp sets), but each has its own clock and its
    own signals. So they agree at each log step, where the host syncs anyway, with one `process_allgather`: on a
    signal any of them received, and on the budget spent as the furthest clock says. Between log steps the budget
    spent stays where they agreed: time-driven schedules, checkpoint and evaluation intervals move in steps of
    `log_every_steps`, and the budget is honoured within that many steps.
    """
    if self.process_count == 1:
      return signals.signum, self.clock.exhausted()
    first = self._agreed[0] < 0  # the loop's first step (all start from the same checkpoint): agree at once
    if (first or self.step % self.config.log_every_steps == 0) and self.step != self._agreed[0]:
      mine = np.array([signals.signum or 0, self.clock.elapsed], np.float32)
      everyone = np.asarray(multihost_utils.process_allgather(mine)).reshape(-1, 2)
      signum = next((int(s) for s in everyone[:, 0] if s), None)
      self._agreed = (self.step, (signum, float(everyone[:, 1].max())))
    signum, elapsed = self._agreed[1]
    return signum, elapsed >= self.clock.budget_s

  def _loop(self, signals: preemption.StopSignals) -> str:
    """Steps until `max_steps`, the budget or a signal; returns why it stopped, with the last step checked finite
    and logged."""
    c, clock = self.config, self.clock
    at_max = lambda: bool(c.max_steps) and self.step >= c.max_steps
    pending, n_micro = None, 1  # the previous step's metrics, read once the next step is dispatched
    stop_reason = "max_steps"
    self._agreed: tuple[int, tuple[Optional[int], float]] = (-1, (None, 0.0))  # (step, (signal, budget spent))
    # The budget spent, for time-driven decisions: this clock, or with several processes what they agreed on.
    spent_s = lambda: clock.elapsed if self.process_count == 1 else self._agreed[1][1]
    self._since_elapsed, self._since_tokens = clock.elapsed, 0
    self._compiles0 = metrics_lib.compile_count()
    self._logs = 0
    self.pipeline_tokens_per_sec = input_pipeline.build_rate(self.train_iter)  # before the clock starts
    self._stop(signals)  # with several processes, their first agreement, before any time-driven decision
    last_ckpt = (self.step, spent_s())
    last_eval = spent_s()

    clock.start()
    try:
      while True:
        stop_signal, spent = self._stop(signals)  # first: with several processes, every one reaches it
        if at_max():
          break
        if spent:
          stop_reason = "budget"
          break
        if stop_signal is not None:
          stop_reason = signal_lib.Signals(stop_signal).name
          break
        progress = self.progress()
        n_micro = schedules.num_micro_batches(progress, self.max_micro, c.batch_ramp)
        batch = self.put_batch(
          self.stacker.stack([next(self.train_iter) for _ in range(n_micro)]), self.batch_shardings, 1
        )
        self.state, metrics = self.train_step(self.state, batch, np.int32(n_micro), np.float32(self.lr_fn(progress)))
        self.step += 1
        self.tokens_seen += n_micro * self.micro * self.seq_len
        self._since_tokens += n_micro * self.micro * self.seq_len
        if pending is not None:
          self.check_finite(pending)  # the one sync per step: waits for the previous step only
        pending = metrics

        if self.step % c.log_every_steps == 0:
          self._last_row = self.log(metrics, n_micro)
        if self._stop(signals) != (None, False) or at_max():
          continue  # the final checkpoint follows the loop
        if (c.checkpoint.every_steps and self.step - last_ckpt[0] >= c.checkpoint.every_steps) or (
          c.checkpoint.every_s and spent_s() - last_ckpt[1] >= c.checkpoint.every_s
        ):
          self.check_finite(metrics)
          if int(metrics["nonfinite_consecutive"]) == 0:  # never checkpoint inside a non-finite streak
            self.save("interval")
            last_ckpt = (self.step, spent_s())
        if (c.eval.every_steps and self.step % c.eval.every_steps == 0) or (
          c.eval.every_s and spent_s() - last_eval >= c.eval.every_s
        ):
          self.evaluate("interval")
          last_eval = spent_s()
    finally:
      clock.stop()
    if pending is not None:  # the last step: checked (nothing non-finite is checkpointed) and logged
      self.check_finite(pending)
      if self._last_row.get("step") != self.step:
        self._last_row = self.log(pending, n_micro)
    return stop_reason

  def write_summary(self, stop_reason: str, last_row: dict, heldout: dict) -> dict[str, Any]:
    summary = {
      "steps": self.step,
      "stop_reason": stop_reason,
      "tokens_seen": self.tokens_seen,
      "final_train_loss": last_row.get("loss"),
      "final_train_accuracy": last_row.get("accuracy"),
      "heldout_loss": heldout.get("loss"),
      "heldout_perplexity": heldout.get("perplexity"),
      "heldout_accuracy": heldout.get("accuracy"),
      "budget_s": self.clock.budget_s,
      "elapsed_s": self.clock.elapsed,
      "paused_s": self.clock.paused_s,
      "nonfinite_steps": int(jax.device_get(self.state.nonfinite_total)),
      "train_step_compilations": self.train_step._cache_size(),  # pylint: disable=protected-access
      "num_params": self.num_params,
      "flops_per_token": self.flops_per_token,
      "pipeline_tokens_per_sec": self.pipeline_tokens_per_sec,  # one thread building batches (see train)
      "optimizer": self.config.optimizer.name,
      "model": f"{self.config.model.name}:{self.config.model.preset}",
      "device": jax.devices()[0].device_kind,
      "mesh": dict(self.mesh.shape),
      "processes": self.process_count,
      "config": json.loads(self.config.to_json_best_effort()),
    }
    if self.is_chief:
      path = os.path.join(self.workdir, "summary.json")
      with open(path + ".tmp", "w") as f:
        json.dump(summary, f, indent=2)
      os.replace(path + ".tmp", path)
    if stop_reason not in FINISHED:
      return summary
    fmt = lambda x: "n/a" if x is None else f"{x:.4f}"
    log.info(
      "Done: %d steps, %.4g tokens, final train loss %s, held-out loss %s (perplexity %s).",
      self.step,
      self.tokens_seen,
      fmt(summary["final_train_loss"]),
      fmt(summary["heldout_loss"]),
      "n/a" if summary["heldout_perplexity"] is None else f"{summary['heldout_perplexity']:.2f}",
    )
    return summary
