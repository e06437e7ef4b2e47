"""The pretraining comparison of a `configs/compare_*.py` config: optimizers at equal steps and tokens, each at
the rate a sweep picks.

For each batch size in `config.batch_sizes` (several: the large-batch study, same steps, more tokens):

1. Sweep: every optimizer at every rate of `config.learning_rates.<optimizer>` for `config.sweep.steps` steps
   (seed `config.sweep.seed`); the rate with the lowest held-out loss at the end is kept (`runs.sweep_rates`: the
   grid goes on past an end while the best rate sits there, at most `config.sweep.extend` times).
2. Full runs: every optimizer at its kept rate for `config.steps` steps, for each seed of `config.seeds`
   (seeds in the outer loop, so a slower stretch of a shared machine falls on all optimizers alike).

One tokenizer is trained for all runs. The summary adds the optimizers' state memory and the context-free
reference: the held-out loss of the best prediction that ignores the input.
"""

from __future__ import annotations

import json
import logging
import pathlib
import time
from typing import Any, Optional

import jax
import ml_collections
import numpy as np

from came_jax import models
from came_jax.bench import memory as memory_lib
from came_jax.bench import shapes
from came_jax.compare import report, runs
from came_jax.data import objectives, pipeline
from came_jax.optim import registry

log = logging.getLogger(__name__)


def memory(config: ml_collections.ConfigDict, vocab_size: int) -> dict[str, Any]:
  """Optimizer-state bytes of the compared model with the compared optimizers (as configured), and those of
  every optimizer of `came_jax.bench.memory` on `config.memory_model` (a `came_jax.bench.shapes` model)."""
  p = config.pretrain
  module = models.get(p.model.name)
  model_cfg = models.from_config_section(p.model, vocab_size)
  params = jax.eval_shape(lambda rng: module.init_params(model_cfg, rng), jax.random.PRNGKey(0))
  param_bytes = shapes.num_bytes(params)
  compared = {}
  for opt in config.optimizers:
    opt_cfg = runs.optimizer_config(p.optimizer, config.variants, opt)
    compared[opt] = shapes.num_bytes(jax.eval_shape(registry.make(opt_cfg).init, params))
  big = shapes.param_shapes(config.memory_model)
  return {
    "model": f"{p.model.name}:{p.model.preset}",
    "param_bytes": param_bytes,
    "state_bytes": compared,
    "reference_model": config.memory_model,
    "reference_param_bytes": shapes.num_bytes(big),
    "reference_state_bytes": memory_lib.state_bytes(big),
  }


def context_free_loss(config: ml_collections.ConfigDict, tokenizer, max_batches: int = 2000) -> Optional[float]:
  """Held-out loss of the best input-independent prediction fit to the training data.

  The frequencies (add-one smoothed) of the targets in the first `config.steps` steps of seed 0 at the largest
  batch (at most `max_batches` micro-batches: the frequencies have long settled), scored on the held-out targets
  as the runs are (`objectives.unigram_log_probs`, `objectives.cross_entropy`). None without a held-out set.
  """
  p = config.pretrain.data
  heldout = pipeline.eval_from_config(p, tokenizer)
  if heldout is None:
    return None
  train = pipeline.from_config(p, tokenizer)
  n = min(config.steps * max(config.batch_sizes) // p.batch_size, max_batches)
  try:
    log_probs = objectives.unigram_log_probs((train.global_batch_at(i) for i in range(n)), tokenizer.vocab_size)
  finally:
    train.close()
  return objectives.cross_entropy(log_probs, heldout)


def summarize(
  config: ml_collections.ConfigDict,
  records: list[dict[str, Any]],
  chosen: dict[str, dict[str, Any]],
  mem: dict[str, Any],
  *,
  wall_s: float,
  reference_loss: Optional[float] = None,
  command: str = "",
) -> dict[str, Any]:
  """The comparison's summary: per batch size and optimizer the kept rate and the full runs' statistics, with
  the held-out loss minus the first optimizer's on the same seed (same data, same masks: a paired difference)."""
  results = {}
  full_runs = lambda b, opt: [
    r for r in records if r["phase"] == "full" and r["batch_size"] == b and r["optimizer"] == opt
  ]
  for b in config.batch_sizes:
    base = {r["seed"]: r["heldout_loss"] for r in full_runs(b, config.optimizers[0])}
    for opt in config.optimizers:
      full = full_runs(b, opt)
      results[f"{b}/{opt}"] = {
        "batch_size": b,
        "optimizer": opt,
        **chosen[f"{b}/{opt}"],
        "tokens_seen": full[0]["tokens_seen"] if full else 0,
        "steps": full[0]["steps"] if full else 0,
        **runs.aggregate(full),
      }
      deltas = [
        r["heldout_loss"] - base[r["seed"]]
        for r in full
        if r["heldout_loss"] is not None and base.get(r["seed"]) is not None
      ]
      if opt != config.optimizers[0] and deltas:
        results[f"{b}/{opt}"]["paired_delta"] = {
          "vs": config.optimizers[0],
          "mean": float(np.mean(deltas)),
          "min": float(np.min(deltas)),
          "max": float(np.max(deltas)),
          "n": len(deltas),
        }
  return {
    "name": config.name,
    "command": command,
    "device": jax.devices()[0].device_kind,
    "model": f"{config.pretrain.model.name}:{config.pretrain.model.preset}",
    "objective": config.pretrain.data.objective,
    "seq_len": config.pretrain.data.seq_len,
    "steps": config.steps,
    "sweep_steps": config.sweep.steps,
    "seeds": list(config.seeds),
    "batch_sizes": list(config.batch_sizes),
    "results": results,
    "memory": mem,
    "reference_loss": reference_loss,  # context-free held-out loss (see context_free_loss)
    "wall_s": wall_s,
    "run_wall_s": sum(r["wall_s"] for r in records),
    "config": json.loads(config.to_json_best_effort()),
  }


def run_comparison(
  config: ml_collections.ConfigDict, workdir: str, out_dir: str, *, command: str = ""
) -> dict[str, Any]:
  """Sweeps, full runs, tables and plots for `config`; returns the summary.

  Args:
    config: a `configs/compare_*.py` config.
    workdir: the runs (WORKDIR/tokenizer, WORKDIR/runs/<phase>_b<batch>_<optimizer>_lr<rate>_s<seed>).
    out_dir: where `report.write_outputs` writes the results.
    command: the command line, recorded in the summary.

  Raises:
    ValueError: before anything is written, for a batch size that is not a multiple of the micro-batch or an
      unknown optimizer.
  """
  t_start = time.perf_counter()
  root, out = pathlib.Path(workdir), pathlib.Path(out_dir)
  for b in config.batch_sizes:
    if b % config.pretrain.data.batch_size:
      raise ValueError(
        f"config.batch_sizes: {b} is not a multiple of the micro-batch "
        f"config.pretrain.data.batch_size={config.pretrain.data.batch_size}."
      )
  runs.check_optimizers(config)
  root.mkdir(parents=True, exist_ok=True)
  out.mkdir(parents=True, exist_ok=True)

  tokenizer = pipeline.build_tokenizer(config.pretrain.data, str(root))  # trained once, saved in root/tokenizer
  tokenizer_path = str(root / "tokenizer")
  records: list[dict[str, Any]] = []
  chosen: dict[str, dict[str, Any]] = {}

  def run(phase, b, opt, lr, seed, steps):
    name = f"{phase}_b{b}_{opt}_lr{lr:g}_s{seed}"
    r = runs.run_one(
      config,
      root / "runs" / name,
      phase=phase,
      optimizer=opt,
      learning_rate=lr,
      batch_size=b,
      seed=seed,
      steps=steps,
      tokenizer_path=tokenizer_path,
    )
    log.info("%s", runs.describe(r))
    records.append(r)
    return r

  for b in config.batch_sizes:
    for opt in config.optimizers:
      grid = tuple(float(x) for x in config.learning_rates[opt])
      if len(grid) == 1:  # nothing to choose
        chosen[f"{b}/{opt}"] = {
          "learning_rate": grid[0],
          "sweep_heldout_loss": None,
          "grid": list(grid),
          "at_grid_edge": None,
        }
        continue
      run_rate = lambda lr, b=b, opt=opt: run("sweep", b, opt, lr, config.sweep.seed, config.sweep.steps)
      chosen[f"{b}/{opt}"] = runs.sweep_rates(run_rate, grid, int(config.sweep.extend))
    for seed in config.seeds:
      for opt in config.optimizers:
        run("full", b, opt, chosen[f"{b}/{opt}"]["learning_rate"], seed, config.steps)

  summary = summarize(
    config,
    records,
    chosen,
    memory(config, tokenizer.vocab_size),
    reference_loss=context_free_loss(config, tokenizer),
    wall_s=time.perf_counter() - t_start,
    command=command,
  )
  report.write_outputs(summary, records, out)
  log.info("Done in %.0f s; results in %s", summary["wall_s"], out)
  return summary
