"""Does CAME train as well with bf16 or 8-bit momentum as with fp32? The same runs with three momentum dtypes.

The same model, seeds, data order and step count with CAME keeping its momentum in float32, bfloat16
(stochastically rounded) and block-wise 8-bit codes: per seed and averaged, the final train loss (mean of the last
logged steps) and the held-out loss, with differences to float32, and the optimizer-state bytes. Each run goes
through the real trainer into WORKDIR/seed<k>/<dtype>, so rerunning resumes them.
"""

from __future__ import annotations

import functools
import os
from typing import Sequence

import jax
import ml_collections

from came_jax import models
from came_jax.bench import shapes
from came_jax.optim import registry
from came_jax.train import metrics as metrics_lib
from came_jax.train import trainer

DTYPES = ("float32", "bfloat16", "int8")


def final_train_loss(workdir: str, last: int) -> float:
  """Mean training loss of the last `last` logged steps of a run."""
  losses = [row["loss"] for row in metrics_lib.read_rows(workdir) if row["split"] == "train"]
  tail = losses[-last:]
  return sum(tail) / len(tail)


def state_bytes(config: ml_collections.ConfigDict) -> int:
  """Optimizer-state bytes of `config`'s model and optimizer (`jax.eval_shape`, nothing allocated)."""
  module = models.get(config.model.name)
  model_cfg = models.from_config_section(config.model, config.data.vocab_size)
  params = jax.eval_shape(functools.partial(module.init_params, model_cfg), jax.random.PRNGKey(0))
  return shapes.num_bytes(jax.eval_shape(registry.make(config.optimizer).init, params))


def run(
  base: ml_collections.ConfigDict, workdir: str, seeds: Sequence[int], last: int
) -> tuple[dict[tuple[int, str], tuple[float, float]], dict[str, int]]:
  """Trains `base` (a CAME pretraining config) once per seed and momentum dtype.

  `seeds` set both `config.seed` (init, dropout) and `config.data.seed` (data order, masking).

  Returns:
    `{(seed, dtype): (final train loss, held-out loss)}` and `{dtype: optimizer-state bytes}`.

  Raises:
    ValueError: when `base.optimizer.name` is not `came`.
  """
  if base.optimizer.name != "came":
    raise ValueError("--config.optimizer.name must be 'came' for this experiment")
  results: dict[tuple[int, str], tuple[float, float]] = {}
  sizes: dict[str, int] = {}
  for seed in seeds:
    for dtype in DTYPES:
      config = base.copy_and_resolve_references()
      config.seed, config.data.seed = seed, seed
      config.optimizer.came.momentum_dtype = dtype
      run_dir = os.path.join(workdir, f"seed{seed}", dtype)
      summary = trainer.train_and_evaluate(config, run_dir)
      results[seed, dtype] = (final_train_loss(run_dir, last), summary["heldout_loss"])
      if dtype not in sizes:
        sizes[dtype] = state_bytes(config)
  return results, sizes


def table(
  base: ml_collections.ConfigDict,
  seeds: Sequence[int],
  results: dict[tuple[int, str], tuple[float, float]],
  sizes: dict[str, int],
) -> str:
  """The markdown report of `run`: per seed and the mean over seeds, each dtype against float32."""
  lines = [
    f"### CAME momentum precision: {base.model.name}:{base.model.preset}, {base.max_steps} steps, "
    f"seeds {','.join(str(s) for s in seeds)}",
    "",
    "| seed | momentum | final train loss | Δ vs fp32 | held-out loss | Δ vs fp32 | optimizer state (MB) |",
    "|---|---|---:|---:|---:|---:|---:|",
  ]
  for seed in [*seeds, "mean"]:
    over = seeds if seed == "mean" else [seed]
    ref_train, ref_heldout = _means([results[s, "float32"] for s in over])
    for dtype in DTYPES:
      train, heldout = _means([results[s, dtype] for s in over])
      lines.append(
        f"| {seed} | {dtype} | {train:.4f} | {train - ref_train:+.4f} | {heldout:.4f} | "
        f"{heldout - ref_heldout:+.4f} | {sizes[dtype] / 1e6:.2f} |"
      )
  return "\n".join(lines)


def _means(pairs: Sequence[tuple[float, float]]) -> tuple[float, ...]:
  """Column means of (train, held-out) pairs.

  >>> _means([(1.0, 4.0), (3.0, 6.0)])
  (2.0, 5.0)
  """
  return tuple(sum(v) / len(v) for v in zip(*pairs))
