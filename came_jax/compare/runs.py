"""Running a comparison's pretraining runs: one optimizer at one rate and seed, rate sweeps, the kept rate, seeds.

An optimizer is a registry name (`came`, `adamw`, `adafactor`) or a label of `config.variants`: a registry
optimizer with fields of its section changed (`came_bc`: CAME with `bias_correction=True`). Every run is
`came_jax.train.trainer.train_and_evaluate` on `config.pretrain` with `max_steps`, `batch_size`, `seed`,
`data.seed` and the optimizer's name and rate replaced. A run whose `record.json` is in its folder is not run
again, so an interrupted comparison resumes where it stopped.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import pathlib
import shutil
import time
from typing import Any, Callable, Optional, Sequence

import ml_collections
import numpy as np

from came_jax.optim import registry
from came_jax.train import metrics as metrics_lib
from came_jax.train import trainer

log = logging.getLogger(__name__)

METRICS = (
  "heldout_loss",
  "heldout_accuracy",
  "heldout_perplexity",
  "final_train_loss",
  "final_train_accuracy",
  "train_s",
  "tokens_per_sec",
)


# ------------------------------------------------------------------------------------------------ one run
def optimizer_config(
  base: ml_collections.ConfigDict, variants: ml_collections.ConfigDict, optimizer: str
) -> ml_collections.ConfigDict:
  """A copy of `base` (a registry config) set to `optimizer`.

  Args:
    base: the `optimizer` section of a training config.
    variants: label -> `optimizer` (a registry name) and `overrides` (fields of its section).
    optimizer: a registry name, or a label of `variants` (e.g. CAME with `bias_correction=True`).
  """
  c = copy.deepcopy(base)
  variant = variants.get(optimizer)
  c.name = variant.optimizer if variant is not None else optimizer
  if variant is not None:
    c[c.name].update(variant.overrides.to_dict())
  return c


def check_optimizers(config: ml_collections.ConfigDict) -> None:
  """Each of `config.optimizers` is a registry name or a label of `config.variants`, with a rate grid.

  Raises:
    ValueError: naming `config.optimizers` and the first optimizer that is neither.
  """
  for opt in config.optimizers:
    known = opt in registry.OPTIMIZERS or config.variants.get(opt) is not None
    if not known or not config.learning_rates.get(opt):
      raise ValueError(
        f"config.optimizers: {opt!r} needs a known name {registry.OPTIMIZERS} or a label of "
        f"config.variants {tuple(config.variants)}, and a grid config.learning_rates.{opt}."
      )


def run_config(
  config: ml_collections.ConfigDict,
  *,
  phase: str,
  optimizer: str,
  learning_rate: float,
  batch_size: int,
  seed: int,
  steps: int,
  tokenizer_path: str,
) -> ml_collections.ConfigDict:
  """`config.pretrain` with this run's optimizer, rate, batch size, seed, step count (and sweep evaluations)."""
  c = copy.deepcopy(config.pretrain)
  c.optimizer = optimizer_config(config.pretrain.optimizer, config.variants, optimizer)
  c.optimizer[c.optimizer.name].learning_rate = float(learning_rate)
  c.batch_size = int(batch_size)
  c.seed = int(seed)
  c.data.seed = int(seed)
  c.max_steps = int(steps)
  c.tokenizer_path = tokenizer_path
  if phase == "sweep":
    c.eval.every_steps = int(config.sweep.eval_every_steps)
  return c


def curve_rows(workdir: str | pathlib.Path) -> list[dict[str, Any]]:
  """A run's logged rows (`metrics.read_rows`) as curve rows: training (`split='train'`) and held-out rows."""
  return [
    {
      "split": r["split"],
      "step": int(r["step"]),
      "tokens_seen": r.get("tokens_seen"),
      "elapsed_s": r.get("elapsed_s"),
      "loss": r.get("loss"),
      "accuracy": r.get("accuracy"),
      "perplexity": r.get("perplexity"),
      "lr_now": r.get("learning_rate"),
      "grad_norm": r.get("grad_norm"),
      "tokens_per_sec": r.get("tokens_per_sec"),
    }
    for r in metrics_lib.read_rows(workdir)
  ]


def _finite(x) -> Optional[float]:
  return float(x) if x is not None and math.isfinite(float(x)) else None


def run_one(
  config: ml_collections.ConfigDict,
  workdir: pathlib.Path,
  *,
  phase: str,
  optimizer: str,
  learning_rate: float,
  batch_size: int,
  seed: int,
  steps: int,
  tokenizer_path: str,
) -> dict[str, Any]:
  """Trains one run (or loads its finished record); returns its record with its curve rows under `curves`.

  A run stopped by `config.pretrain.max_consecutive_nonfinite` non-finite gradients is recorded as diverged.
  "Final train loss" is the mean of the logged training losses over the last 10% of the steps (single-step
  losses are noisy); tokens/s the median over the logged intervals but the first (which compiles).
  """
  record_path = workdir / "record.json"
  if record_path.exists():
    return json.loads(record_path.read_text())
  shutil.rmtree(workdir, ignore_errors=True)  # an unfinished attempt: start the run afresh
  workdir.mkdir(parents=True)
  cfg = run_config(
    config,
    phase=phase,
    optimizer=optimizer,
    learning_rate=learning_rate,
    batch_size=batch_size,
    seed=seed,
    steps=steps,
    tokenizer_path=tokenizer_path,
  )
  t0 = time.perf_counter()
  summary: dict[str, Any] = {}
  diverged = False
  try:
    summary = trainer.train_and_evaluate(cfg, str(workdir))
  except trainer.NonFiniteError as e:
    log.warning("%s %s lr=%g seed=%d: %s", phase, optimizer, learning_rate, seed, e)
    diverged = True
  wall = time.perf_counter() - t0
  curves = curve_rows(workdir) if (workdir / "metrics.jsonl").exists() else []
  train_rows = [r for r in curves if r["split"] == "train"]
  tail = [r for r in train_rows if r["step"] > 0.9 * steps] or train_rows[-1:]
  mean = lambda key: float(np.mean([r[key] for r in tail])) if tail and tail[0].get(key) is not None else None
  tps = [r["tokens_per_sec"] for r in train_rows[1:] if r["tokens_per_sec"]]  # the first interval compiles
  heldout = _finite(summary.get("heldout_loss"))
  record = {
    "phase": phase,
    "batch_size": batch_size,
    "optimizer": optimizer,
    "learning_rate": learning_rate,
    "seed": seed,
    "steps": summary.get("steps", 0),
    "tokens_seen": summary.get("tokens_seen", 0),
    "diverged": diverged or heldout is None,
    "heldout_loss": heldout,
    "heldout_accuracy": _finite(summary.get("heldout_accuracy")),
    "heldout_perplexity": _finite(summary.get("heldout_perplexity")),
    "final_train_loss": mean("loss"),
    "final_train_accuracy": mean("accuracy"),
    "train_s": summary.get("elapsed_s"),
    "wall_s": wall,
    "tokens_per_sec": float(np.median(tps)) if tps else None,
    "curves": curves,
  }
  if not config.keep_checkpoints:
    shutil.rmtree(workdir / "checkpoints", ignore_errors=True)
  record_path.write_text(json.dumps(record))
  return record


def describe(r: dict[str, Any]) -> str:
  """One line for the log: the run and its held-out loss.

  >>> describe({"phase": "full", "batch_size": 16, "optimizer": "came", "learning_rate": 1e-3, "seed": 0,
  ...           "diverged": False, "heldout_loss": 4.25, "steps": 300, "wall_s": 61.2})
  'full  batch   16 came      lr 0.001    seed 0: held-out loss 4.2500, 300 steps, 61s'
  """
  ho = "diverged" if r["diverged"] else f"held-out loss {r['heldout_loss']:.4f}"
  return (
    f"{r['phase']:5s} batch {r['batch_size']:4d} {r['optimizer']:9s} lr {r['learning_rate']:<8g} "
    f"seed {r['seed']}: {ho}, {r['steps']} steps, {r['wall_s']:.0f}s"
  )


# -------------------------------------------------------------------------------------------------- rates
def grid_edge(rate: float, grid: Sequence[float]) -> Optional[str]:
  """`"lowest"` or `"highest"` when `rate` is at that end of a grid of several rates, else None.

  >>> grid_edge(1e-3, (1e-3, 3e-3)), grid_edge(3e-3, (1e-3, 3e-3)), grid_edge(1e-3, (1e-3,))
  ('lowest', 'highest', None)
  """
  grid = sorted(grid)
  if len(grid) > 1 and rate == grid[0]:
    return "lowest"
  if len(grid) > 1 and rate == grid[-1]:
    return "highest"
  return None


def choose_rate(sweep: list[dict[str, Any]], grid: tuple[float, ...]) -> dict[str, Any]:
  """The rate with the lowest held-out loss (ties: the smaller rate; diverged: +inf); flags a choice at an end.

  >>> run = lambda lr, loss: {"learning_rate": lr, "heldout_loss": loss, "diverged": False}
  >>> choose_rate([run(1e-3, 4.0), run(1e-2, 3.5)], (1e-3, 1e-2))["at_grid_edge"]
  'highest'
  """
  key = lambda r: (r["heldout_loss"] if not r["diverged"] else math.inf, r["learning_rate"])
  best = min(sweep, key=key)
  return {
    "learning_rate": best["learning_rate"],
    "sweep_heldout_loss": best["heldout_loss"],
    "grid": sorted(grid),
    "at_grid_edge": grid_edge(best["learning_rate"], grid),
  }


def sweep_rates(run_rate: Callable[[float], dict[str, Any]], grid: tuple[float, ...], extend: int) -> dict[str, Any]:
  """Runs every rate of `grid`, then extends it past an end while the best rate sits there.

  At most `extend` times, one step beyond the end by the ratio of the two outermost rates (3 significant
  digits); returns `choose_rate` over every rate run.
  """
  sweep = [run_rate(lr) for lr in grid]
  rates = sorted(grid)
  chosen = choose_rate(sweep, tuple(rates))
  for _ in range(extend):
    if chosen["at_grid_edge"] is None:
      break
    low = chosen["at_grid_edge"] == "lowest"
    new = float(f"{(rates[0] ** 2 / rates[1]) if low else (rates[-1] ** 2 / rates[-2]):.3g}")
    sweep.append(run_rate(new))
    rates = sorted(rates + [new])
    chosen = choose_rate(sweep, tuple(rates))
  return chosen


def aggregate(records: list[dict[str, Any]]) -> dict[str, Any]:
  """Mean, std (ddof 1; 0 for one), min, max and count over seeds of each metric in :data:`METRICS` that has
  values, and the number of diverged runs.

  >>> agg = aggregate([{"heldout_loss": 1.0, "diverged": False}, {"heldout_loss": 3.0, "diverged": True}])
  >>> agg["heldout_loss"]["mean"], agg["heldout_loss"]["n"], agg["diverged"]
  (2.0, 2, 1)
  """
  out: dict[str, Any] = {}
  for m in METRICS:
    vals = [r[m] for r in records if r.get(m) is not None]
    if vals:
      out[m] = {
        "mean": float(np.mean(vals)),
        "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0,
        "min": float(np.min(vals)),
        "max": float(np.max(vals)),
        "n": len(vals),
      }
  out["diverged"] = sum(bool(r["diverged"]) for r in records)
  return out
