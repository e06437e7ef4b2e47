"""Learning-rate and batch-size schedules as functions of training progress in [0, 1].

Progress is the elapsed fraction of the time budget (cramming's time-driven schedules) or, when
`config.max_steps` is set, `step / max_steps` (deterministic runs). The host evaluates the schedules and feeds
the values to the jitted step as runtime arguments, so changing them never recompiles.

Names (`config.schedule.name`):
  * `budget-triangle`: cramming's "budget-triangle2": from `start_factor * lr` (0.25) linearly up to `lr` at
    `peak_at` (0.75) of the run, then linearly down to 0 at its end.
  * `budget-linear`: linear warm-up over `warmup` of the run from 0 to `lr`, then linear decay to `end_factor * lr`.
  * `budget-cosine`: the same warm-up, then cosine decay to `end_factor * lr`.
  * `constant`: the same warm-up, then `lr`.
"""

from __future__ import annotations

import math
from typing import Callable

import ml_collections

LR_SCHEDULES = ("budget-triangle", "budget-linear", "budget-cosine", "constant")
PROGRESS = ("auto", "time", "steps")


def _clip01(x: float) -> float:
  return min(1.0, max(0.0, float(x)))


def budget_triangle(progress: float, *, start_factor: float = 0.25, peak_at: float = 0.75) -> float:
  """Multiplier of the peak rate: `start_factor` -> 1 at `peak_at`, then -> 0 at the end.

  >>> [budget_triangle(p) for p in (0.0, 0.375, 0.75, 0.875, 1.0)]
  [0.25, 0.625, 1.0, 0.5, 0.0]
  """
  p = _clip01(progress)
  if p < peak_at:
    return start_factor + (1.0 - start_factor) * p / peak_at
  return max(0.0, (1.0 - p) / (1.0 - peak_at)) if peak_at < 1.0 else 1.0


def _warmup(p: float, warmup: float) -> float | None:
  if warmup > 0 and p < warmup:
    return p / warmup
  return None


def budget_linear(progress: float, *, warmup: float = 0.0, end_factor: float = 0.0) -> float:
  """Multiplier of the peak rate: 0 -> 1 over `warmup`, then linearly -> `end_factor` at the end.

  >>> [round(budget_linear(p, warmup=0.1, end_factor=0.1), 4) for p in (0.05, 0.1, 0.325, 1.0)]
  [0.5, 1.0, 0.775, 0.1]
  """
  p = _clip01(progress)
  w = _warmup(p, warmup)
  if w is not None:
    return w
  decay = (p - warmup) / (1.0 - warmup) if warmup < 1.0 else 1.0
  return 1.0 + (end_factor - 1.0) * decay


def budget_cosine(progress: float, *, warmup: float = 0.0, end_factor: float = 0.0) -> float:
  """Multiplier of the peak rate: 0 -> 1 over `warmup`, then a half cosine -> `end_factor` at the end.

  >>> [round(budget_cosine(p, warmup=0.1, end_factor=0.1), 4) for p in (0.05, 0.1, 0.325, 1.0)]
  [0.5, 1.0, 0.8682, 0.1]
  """
  p = _clip01(progress)
  w = _warmup(p, warmup)
  if w is not None:
    return w
  decay = (p - warmup) / (1.0 - warmup) if warmup < 1.0 else 1.0
  return end_factor + (1.0 - end_factor) * 0.5 * (1.0 + math.cos(math.pi * decay))


def constant(progress: float, *, warmup: float = 0.0) -> float:
  """Multiplier of the peak rate: 0 -> 1 over `warmup`, then 1.

  >>> [constant(p, warmup=0.1) for p in (0.05, 0.5)]
  [0.5, 1.0]
  """
  w = _warmup(_clip01(progress), warmup)
  return 1.0 if w is None else w


def make_lr_schedule(schedule: ml_collections.ConfigDict, peak_lr: float) -> Callable[[float], float]:
  """Returns `progress -> learning rate` for `config.schedule` and the optimizer's peak rate.

  >>> import ml_collections
  >>> schedule = ml_collections.ConfigDict(dict(name="budget-triangle", start_factor=0.25, peak_at=0.75))
  >>> lr = make_lr_schedule(schedule, peak_lr=1e-3)
  >>> [round(lr(p), 6) for p in (0.0, 0.75, 1.0)]
  [0.00025, 0.001, 0.0]
  """
  name = schedule.name
  if name == "budget-triangle":
    fn = lambda p: budget_triangle(p, start_factor=schedule.start_factor, peak_at=schedule.peak_at)
  elif name == "budget-linear":
    fn = lambda p: budget_linear(p, warmup=schedule.warmup, end_factor=schedule.end_factor)
  elif name == "budget-cosine":
    fn = lambda p: budget_cosine(p, warmup=schedule.warmup, end_factor=schedule.end_factor)
  elif name == "constant":
    fn = lambda p: constant(p, warmup=schedule.warmup)
  else:
    raise ValueError(f"config.schedule.name={name!r} is not one of {LR_SCHEDULES}.")
  return lambda p: float(peak_lr) * fn(p)


def num_micro_batches(progress: float, max_micro_batches: int, ramp: float) -> int:
  """Micro-batches to accumulate at `progress` (cramming's batch-size ramp).

  With `ramp` > 0 the batch grows linearly, one micro-batch at a time, from one micro-batch to
  `max_micro_batches` at `ramp` of the run; with `ramp` == 0 it is constant.

  >>> [num_micro_batches(p, max_micro_batches=4, ramp=0.6) for p in (0.0, 0.15, 0.3, 0.45, 0.6, 1.0)]
  [1, 2, 3, 4, 4, 4]
  >>> num_micro_batches(0.0, max_micro_batches=4, ramp=0.0)
  4
  """
  if ramp <= 0:
    return max_micro_batches
  return int(min(max_micro_batches, 1 + math.floor(_clip01(progress) / ramp * max_micro_batches)))
