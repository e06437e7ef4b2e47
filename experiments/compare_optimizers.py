r"""Optimizers (CAME, AdamW, Adafactor, ...) on one model, at equal steps and tokens, each at the rate a sweep picks.

  python -m experiments.compare_optimizers --config configs/compare_bert.py --workdir runs/compare_bert \
      [--out experiments/results/compare_bert] [--config.seeds='(0,1)'] [--config.steps=300]

For each batch size in `config.batch_sizes` (several: the large-batch study, same steps, more tokens):

1. Sweep: every optimizer at every rate of `config.learning_rates.<optimizer>` for `config.sweep.steps` steps
   (seed `config.sweep.seed`); the rate with the lowest held-out loss at the end is kept (a run that stopped on
   non-finite gradients counts as +inf). While the best rate is at an end of the grid, the grid goes on one step
   beyond it (the ratio of the two outermost rates), at most `config.sweep.extend` times; a rate still at an end
   is flagged in the results. The configs sweep at the full step count (a shorter run has another schedule and
   favours other rates) on a seed of its own (the kept run is the luckiest of its grid: reusing it would bias
   the reported mean).
2. Full runs: every optimizer at its kept rate for `config.steps` steps, for each seed of `config.seeds`
   (seeds in the outer loop, so a slower stretch of a shared machine falls on all optimizers alike).

An optimizer is a registry name (`came`, `adamw`, `adafactor`) or a label of `config.variants`: a registry
optimizer with fields of its section changed (`came_bc`: CAME with `bias_correction=True`).

Every run is `came_jax.train.trainer.train_and_evaluate` on `config.pretrain` with `max_steps`, `batch_size`,
`seed`, `data.seed` and the optimizer's name and rate replaced; one tokenizer is trained for all of them. A run
whose `record.json` is in WORKDIR is not run again, so an interrupted comparison resumes where it stopped.

Results in `--out` (default `experiments/results/<config.name>`):
  runs.csv        one row per run: phase, batch, optimizer, rate, seed, held-out and train metrics, times
  curves.csv      every logged point of every run (train and held-out rows), long format
  summary.json    chosen rates, per-optimizer means/std/min/max over seeds, the context-free reference loss,
                  memory, wall time, config
  results.md      the markdown tables (pasted into experiments/README.md)
  *.png           loss vs step and vs training time (mean over seeds, min-max band), sweep, memory, batch sizes

The training time on the x-axis is the trainer's budget clock (`elapsed_s`: compilation included, evaluation
excluded), averaged over seeds at each logged step. "Final train loss" is the mean of the logged training losses
over the last 10% of the steps (single-step losses are noisy). The context-free reference is the held-out loss of
the best prediction that ignores the input: the target frequencies of the training stream the runs saw. A run near
it has learnt which tokens are common, not yet how to use their context.
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import math
import os
import pathlib
import shutil
import sys
import time
from typing import Any, Callable, Optional

import jax
import ml_collections
import numpy as np

from came_jax.data import pipeline
from came_jax.optim import registry
from came_jax.train import trainer
from came_jax.train import validation
from experiments import compare_plots
from experiments import memory_table
from experiments import model_shapes

log = logging.getLogger(__name__)

RUN_FIELDS = ("phase", "batch_size", "optimizer", "learning_rate", "seed", "steps", "tokens_seen", "diverged",
              "heldout_loss", "heldout_accuracy", "heldout_perplexity", "final_train_loss", "final_train_accuracy",
              "train_s", "wall_s", "tokens_per_sec")
CURVE_FIELDS = ("phase", "batch_size", "optimizer", "learning_rate", "seed", "split", "step", "tokens_seen",
                "elapsed_s", "loss", "accuracy", "perplexity", "lr_now", "grad_norm")
METRICS = ("heldout_loss", "heldout_accuracy", "heldout_perplexity", "final_train_loss", "final_train_accuracy",
           "train_s", "tokens_per_sec")


# ------------------------------------------------------------------------------------------------ one run
def optimizer_config(base: ml_collections.ConfigDict, variants: ml_collections.ConfigDict,
                     optimizer: str) -> ml_collections.ConfigDict:
  """A copy of `base` (a registry config) set to `optimizer`: a registry name, or a label of `variants` (a
  registry optimizer with some of its fields changed, e.g. CAME with `bias_correction=True`)."""
  c = copy.deepcopy(base)
  variant = variants.get(optimizer)
  c.name = variant.optimizer if variant is not None else optimizer
  if variant is not None:
    c[c.name].update(variant.overrides.to_dict())
  return c


def check_optimizers(config: ml_collections.ConfigDict) -> None:
  """Each of `config.optimizers` is a registry name or a label of `config.variants`, with a rate grid."""
  for opt in config.optimizers:
    known = opt in registry.OPTIMIZERS or config.variants.get(opt) is not None
    if not known or not config.learning_rates.get(opt):
      raise ValueError(f"config.optimizers: {opt!r} needs a known name {registry.OPTIMIZERS} or a label of "
                       f"config.variants {tuple(config.variants)}, and a grid config.learning_rates.{opt}.")


def run_config(config: ml_collections.ConfigDict, *, phase: str, optimizer: str, learning_rate: float,
               batch_size: int, seed: int, steps: int, tokenizer_path: str) -> ml_collections.ConfigDict:
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


def _read_curves(workdir: pathlib.Path) -> list[dict[str, Any]]:
  """The run's `metrics.jsonl` as curve rows: training rows (`split='train'`) and held-out rows."""
  rows = []
  for line in (workdir / "metrics.jsonl").read_text().splitlines():
    r = json.loads(line)
    split = r.get("split") or ("train" if "tokens_per_sec" in r else "heldout")  # older rows lack "split"
    rows.append({"split": split, "step": int(r["step"]), "tokens_seen": r.get("tokens_seen"),
                 "elapsed_s": r.get("elapsed_s"), "loss": r.get("loss"), "accuracy": r.get("accuracy"),
                 "perplexity": r.get("perplexity"), "lr_now": r.get("learning_rate"),
                 "grad_norm": r.get("grad_norm"), "tokens_per_sec": r.get("tokens_per_sec")})
  return rows


def _finite(x) -> Optional[float]:
  return float(x) if x is not None and math.isfinite(float(x)) else None


def run_one(config: ml_collections.ConfigDict, workdir: pathlib.Path, *, phase: str, optimizer: str,
            learning_rate: float, batch_size: int, seed: int, steps: int, tokenizer_path: str) -> dict[str, Any]:
  """Trains one run (or loads its finished record); returns its record with its curve rows under `curves`.

  A run stopped by `config.pretrain.max_consecutive_nonfinite` non-finite gradients is recorded as diverged.
  """
  record_path = workdir / "record.json"
  if record_path.exists():
    return json.loads(record_path.read_text())
  shutil.rmtree(workdir, ignore_errors=True)  # an unfinished attempt: start the run afresh
  workdir.mkdir(parents=True)
  cfg = run_config(config, phase=phase, optimizer=optimizer, learning_rate=learning_rate, batch_size=batch_size,
                   seed=seed, steps=steps, tokenizer_path=tokenizer_path)
  t0 = time.perf_counter()
  summary: dict[str, Any] = {}
  diverged = False
  try:
    summary = trainer.train_and_evaluate(cfg, str(workdir))
  except trainer.NonFiniteError as e:
    log.warning("%s %s lr=%g seed=%d: %s", phase, optimizer, learning_rate, seed, e)
    diverged = True
  wall = time.perf_counter() - t0
  curves = _read_curves(workdir) if (workdir / "metrics.jsonl").exists() else []
  train_rows = [r for r in curves if r["split"] == "train"]
  tail = [r for r in train_rows if r["step"] > 0.9 * steps] or train_rows[-1:]
  mean = lambda key: (float(np.mean([r[key] for r in tail])) if tail and tail[0].get(key) is not None else None)
  tps = [r["tokens_per_sec"] for r in train_rows[1:] if r["tokens_per_sec"]]  # the first interval compiles
  heldout = _finite(summary.get("heldout_loss"))
  record = {
      "phase": phase, "batch_size": batch_size, "optimizer": optimizer, "learning_rate": learning_rate,
      "seed": seed, "steps": summary.get("steps", 0), "tokens_seen": summary.get("tokens_seen", 0),
      "diverged": diverged or heldout is None,
      "heldout_loss": heldout, "heldout_accuracy": _finite(summary.get("heldout_accuracy")),
      "heldout_perplexity": _finite(summary.get("heldout_perplexity")),
      "final_train_loss": mean("loss"), "final_train_accuracy": mean("accuracy"),
      "train_s": summary.get("elapsed_s"), "wall_s": wall,
      "tokens_per_sec": float(np.median(tps)) if tps else None,
      "curves": curves,
  }
  if not config.keep_checkpoints:
    shutil.rmtree(workdir / "checkpoints", ignore_errors=True)
  record_path.write_text(json.dumps(record))
  return record


def _describe(r: dict[str, Any]) -> str:
  ho = "diverged" if r["diverged"] else f"held-out loss {r['heldout_loss']:.4f}"
  return (f"{r['phase']:5s} batch {r['batch_size']:4d} {r['optimizer']:9s} lr {r['learning_rate']:<8g} "
          f"seed {r['seed']}: {ho}, {r['steps']} steps, {r['wall_s']:.0f}s")


# -------------------------------------------------------------------------------------- the comparison
def choose_rate(sweep: list[dict[str, Any]], grid: tuple[float, ...]) -> dict[str, Any]:
  """The rate with the lowest held-out loss (ties: the smaller rate); flags a choice at the grid's edge."""
  key = lambda r: (r["heldout_loss"] if not r["diverged"] else math.inf, r["learning_rate"])
  best = min(sweep, key=key)
  grid = sorted(grid)
  edge = None
  if len(grid) > 1 and best["learning_rate"] == grid[0]:
    edge = "lowest"
  elif len(grid) > 1 and best["learning_rate"] == grid[-1]:
    edge = "highest"
  return {"learning_rate": best["learning_rate"], "sweep_heldout_loss": best["heldout_loss"], "grid": grid,
          "at_grid_edge": edge}


def sweep_rates(run_rate: Callable[[float], dict[str, Any]], grid: tuple[float, ...], extend: int) -> dict[str, Any]:
  """Runs every rate of `grid`, then extends it past an end while the best rate sits there (`extend` times at
  most), one step beyond the end by the ratio of the two outermost rates; returns `choose_rate` over all."""
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


def aggregate(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
  """Mean, std, min and max over seeds of each metric in METRICS."""
  out = {}
  for m in METRICS:
    vals = [r[m] for r in records if r[m] is not None]
    if vals:
      out[m] = {"mean": float(np.mean(vals)), "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0,
                "min": float(np.min(vals)), "max": float(np.max(vals)), "n": len(vals)}
  out["diverged"] = sum(bool(r["diverged"]) for r in records)
  return out


def memory(config: ml_collections.ConfigDict, vocab_size: int) -> dict[str, Any]:
  """Optimizer-state bytes of the compared model with the compared optimizers (as configured), and
  params + grads + state of `config.memory_model` for every optimizer of experiments/memory_table.py."""
  p = config.pretrain
  module = validation.model_module(p)
  model_cfg = validation.make_model_config(p, vocab_size)
  params = jax.eval_shape(lambda rng: module.init_params(model_cfg, rng), jax.random.PRNGKey(0))
  param_bytes = model_shapes.num_bytes(params)
  compared = {}
  for opt in config.optimizers:
    opt_cfg = optimizer_config(p.optimizer, config.variants, opt)
    compared[opt] = model_shapes.num_bytes(jax.eval_shape(registry.make(opt_cfg).init, params))
  big = model_shapes.param_shapes(config.memory_model)
  big_bytes = model_shapes.num_bytes(big)
  return {"model": f"{p.model.name}:{p.model.preset}", "param_bytes": param_bytes, "state_bytes": compared,
          "reference_model": config.memory_model, "reference_param_bytes": big_bytes,
          "reference_state_bytes": memory_table.state_bytes(big)}


def _targets(batch: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
  """The predicted token ids of a batch and their loss weights (MLM: the masked positions only)."""
  if "mlm_labels" in batch:
    return batch["mlm_labels"], batch["mlm_weights"]
  return batch["labels"], batch["weights"]


def context_free_loss(config: ml_collections.ConfigDict, tokenizer, max_batches: int = 2000) -> Optional[float]:
  """Held-out loss of the best input-independent prediction fit to the training data: the frequencies (add-one
  smoothed) of the targets in the first `config.steps` steps of seed 0 at the largest batch (at most
  `max_batches` micro-batches: the frequencies have long settled), scored on the held-out targets as the runs
  are. `None` without a held-out set."""
  p = config.pretrain.data
  heldout = pipeline.eval_from_config(p, tokenizer)
  if heldout is None:
    return None
  train = pipeline.from_config(p, tokenizer)
  counts = np.ones(tokenizer.vocab_size)
  try:
    for i in range(min(config.steps * max(config.batch_sizes) // p.batch_size, max_batches)):
      labels, weights = _targets(train.global_batch_at(i))
      np.add.at(counts, labels.ravel(), weights.ravel())
  finally:
    train.close()
  logp = np.log(counts / counts.sum())
  nll = total = 0.0
  for batch in heldout:
    labels, weights = _targets(batch)
    nll -= float((logp[labels] * weights).sum())
    total += float(weights.sum())
  return nll / total


def run_comparison(config: ml_collections.ConfigDict, workdir: str, out_dir: str, *,
                   command: str = "") -> dict[str, Any]:
  """Sweeps, full runs, tables and plots for `config` (see the module docstring); returns the summary."""
  t_start = time.perf_counter()
  root, out = pathlib.Path(workdir), pathlib.Path(out_dir)
  for b in config.batch_sizes:
    if b % config.pretrain.data.batch_size:
      raise ValueError(f"config.batch_sizes: {b} is not a multiple of the micro-batch "
                       f"config.pretrain.data.batch_size={config.pretrain.data.batch_size}.")
  check_optimizers(config)
  root.mkdir(parents=True, exist_ok=True)
  out.mkdir(parents=True, exist_ok=True)

  tokenizer = pipeline.build_tokenizer(config.pretrain.data, str(root))  # trained once, saved in root/tokenizer
  tokenizer_path = str(root / "tokenizer")
  records: list[dict[str, Any]] = []
  chosen: dict[str, dict[str, Any]] = {}

  def run(phase, b, opt, lr, seed, steps):
    name = f"{phase}_b{b}_{opt}_lr{lr:g}_s{seed}"
    r = run_one(config, root / "runs" / name, phase=phase, optimizer=opt, learning_rate=lr, batch_size=b,
                seed=seed, steps=steps, tokenizer_path=tokenizer_path)
    log.info("%s", _describe(r))
    records.append(r)
    return r

  for b in config.batch_sizes:
    for opt in config.optimizers:
      grid = tuple(float(x) for x in config.learning_rates[opt])
      if len(grid) == 1:  # nothing to choose
        chosen[f"{b}/{opt}"] = {"learning_rate": grid[0], "sweep_heldout_loss": None, "grid": list(grid),
                                "at_grid_edge": None}
        continue
      run_rate = lambda lr, b=b, opt=opt: run("sweep", b, opt, lr, config.sweep.seed, config.sweep.steps)
      chosen[f"{b}/{opt}"] = sweep_rates(run_rate, grid, int(config.sweep.extend))
    for seed in config.seeds:
      for opt in config.optimizers:
        run("full", b, opt, chosen[f"{b}/{opt}"]["learning_rate"], seed, config.steps)

  summary = summarize(config, records, chosen, memory(config, tokenizer.vocab_size),
                      reference_loss=context_free_loss(config, tokenizer), wall_s=time.perf_counter() - t_start,
                      command=command)
  write_outputs(summary, records, out)
  log.info("Done in %.0f s; results in %s", summary["wall_s"], out)
  return summary


def summarize(config: ml_collections.ConfigDict, records: list[dict[str, Any]], chosen: dict[str, dict[str, Any]],
              mem: dict[str, Any], *, wall_s: float, reference_loss: Optional[float] = None,
              command: str = "") -> dict[str, Any]:
  """The comparison's summary: per batch size and optimizer the kept rate and the full runs' statistics."""
  results = {}
  full_runs = lambda b, opt: [r for r in records if r["phase"] == "full" and r["batch_size"] == b
                              and r["optimizer"] == opt]
  for b in config.batch_sizes:
    base = {r["seed"]: r["heldout_loss"] for r in full_runs(b, config.optimizers[0])}
    for opt in config.optimizers:
      full = full_runs(b, opt)
      results[f"{b}/{opt}"] = {"batch_size": b, "optimizer": opt, **chosen[f"{b}/{opt}"],
                               "tokens_seen": full[0]["tokens_seen"] if full else 0,
                               "steps": full[0]["steps"] if full else 0, **aggregate(full)}
      # Held-out loss minus the first optimizer's on the same seed (same data, same masks): a paired difference.
      deltas = [r["heldout_loss"] - base[r["seed"]] for r in full
                if r["heldout_loss"] is not None and base.get(r["seed"]) is not None]
      if opt != config.optimizers[0] and deltas:
        results[f"{b}/{opt}"]["paired_delta"] = {"vs": config.optimizers[0], "mean": float(np.mean(deltas)),
                                                 "min": float(np.min(deltas)), "max": float(np.max(deltas)),
                                                 "n": len(deltas)}
  return {
      "name": config.name,
      "command": command,
      "device": jax.devices()[0].device_kind,
      "model": f"{config.pretrain.model.name}:{config.pretrain.model.preset}",
      "objective": config.pretrain.data.objective,
      "seq_len": config.pretrain.data.seq_len,
      "steps": config.steps, "sweep_steps": config.sweep.steps, "seeds": list(config.seeds),
      "batch_sizes": list(config.batch_sizes),
      "results": results, "memory": mem,
      "reference_loss": reference_loss,  # context-free held-out loss (see context_free_loss)
      "wall_s": wall_s,
      "run_wall_s": sum(r["wall_s"] for r in records),
      "config": json.loads(config.to_json_best_effort()),
  }


# -------------------------------------------------------------------------------------------- outputs
def _fmt(x, spec=".4f") -> str:
  return "–" if x is None else format(x, spec)


def _stat(agg: dict[str, Any], key: str, spec: str = ".4f", band: bool = False) -> str:
  """`mean ± std`, with `[min, max]` when `band`; just the value for one seed."""
  s = agg.get(key)
  if s is None:
    return "–"
  if s["n"] == 1:
    return format(s["mean"], spec)
  text = f"{format(s['mean'], spec)} ± {format(s['std'], spec)}"
  return text + (f" [{format(s['min'], spec)}, {format(s['max'], spec)}]" if band else "")


def results_markdown(summary: dict[str, Any], records: list[dict[str, Any]]) -> str:
  """The results tables: main (per batch size), the sweep, the large-batch comparison, memory."""
  objective = summary["objective"]
  res = list(summary["results"].values())
  n = len(summary["seeds"])
  lines = [f"Model {summary['model']} ({objective}, sequence {summary['seq_len']}), {summary['steps']} steps, "
           f"seeds {summary['seeds']} (mean ± std over {n} seeds, [min, max] of the held-out loss; the paired "
           "difference is mean [min, max] over seeds), device " + summary["device"] + ".", ""]
  base = summary["config"]["optimizers"][0]
  cols = ["batch", "optimizer", "lr (swept)", "tokens", "held-out loss", f"minus {base}'s, same seed"]
  if objective == "mlm":
    cols += ["held-out MLM acc.", "train MLM loss", "train MLM acc."]
  elif objective == "causal":
    cols += ["held-out perplexity", "train loss"]
  else:
    cols += ["train span loss"]
  cols += ["tokens/s"]
  lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * 2 + "---:|" * (len(cols) - 2)]
  for r in res:
    lr = f"{r['learning_rate']:g}" + (f" (grid {r['at_grid_edge']})" if r["at_grid_edge"] else "")
    d = r.get("paired_delta")
    row = [str(r["batch_size"]), r["optimizer"], lr, f"{r['tokens_seen'] / 1e6:.2f}M",
           _stat(r, "heldout_loss", band=True),
           f"{d['mean']:+.4f} [{d['min']:+.4f}, {d['max']:+.4f}]" if d else "–"]
    if objective == "mlm":
      row += [_stat(r, "heldout_accuracy", ".4f"), _stat(r, "final_train_loss"), _stat(r, "final_train_accuracy")]
    elif objective == "causal":
      row += [_stat(r, "heldout_perplexity", ".1f"), _stat(r, "final_train_loss")]
    else:
      row += [_stat(r, "final_train_loss")]
    tps = r.get("tokens_per_sec")
    row += [f"{tps['mean'] / 1e3:.1f}k" if tps else "–"]
    if r["diverged"]:
      row[4] += f" ({r['diverged']} diverged)"
    lines.append("| " + " | ".join(row) + " |")

  if summary.get("reference_loss") is not None:
    lines += ["", f"Context-free reference: held-out loss {summary['reference_loss']:.4f} for the training stream's "
              "target frequencies, whatever the input (a run near it has learnt only which tokens are common)."]

  sweep = [r for r in records if r["phase"] == "sweep"]
  if sweep:
    lines += ["", f"Learning-rate sweep: held-out loss after {summary['sweep_steps']} steps "
              "(seed " + str(summary["config"]["sweep"]["seed"]) + "); **bold**: kept.", ""]
    grid = sorted({r["learning_rate"] for r in sweep})
    lines += ["| batch | optimizer | " + " | ".join(f"{lr:g}" for lr in grid) + " |",
              "|---|---|" + "---:|" * len(grid)]
    for r in res:
      cells = []
      for lr in grid:
        hit = [s for s in sweep if s["batch_size"] == r["batch_size"] and s["optimizer"] == r["optimizer"]
               and s["learning_rate"] == lr]
        if not hit:
          cells.append("")
          continue
        v = "diverged" if hit[0]["diverged"] else f"{hit[0]['heldout_loss']:.4f}"
        cells.append(f"**{v}**" if lr == r["learning_rate"] else v)
      lines.append(f"| {r['batch_size']} | {r['optimizer']} | " + " | ".join(cells) + " |")

  batches = summary["batch_sizes"]
  if len(batches) > 1:
    b0 = batches[0]
    lines += ["", f"Batch size at equal steps ({summary['steps']}): held-out loss (mean over seeds) and its change "
              f"from batch {b0}.", ""]
    lines += ["| optimizer | " + " | ".join(f"batch {b}" for b in batches) + " | "
              + " | ".join(f"change at {b}" for b in batches[1:]) + " |",
              "|---|" + "---:|" * (2 * len(batches) - 1)]
    for opt in summary["config"]["optimizers"]:
      vals = [summary["results"][f"{b}/{opt}"].get("heldout_loss", {}).get("mean") for b in batches]
      deltas = [None if v is None or vals[0] is None else v - vals[0] for v in vals[1:]]
      lines.append(f"| {opt} | " + " | ".join(_fmt(v) for v in vals) + " | "
                   + " | ".join("–" if d is None else f"{d:+.4f}" for d in deltas) + " |")

  mem = summary["memory"]
  lines += ["", f"Optimizer state (`eval_shape`): {mem['model']} with the optimizers as compared, and "
            f"{mem['reference_model']} (experiments/memory_table.py), in multiples of the fp32 parameter bytes.", ""]
  lines += ["| model | " + " | ".join(mem["state_bytes"]) + " |", "|---|" + "---:|" * len(mem["state_bytes"])]
  lines.append(f"| {mem['model']} ({mem['param_bytes'] / 4e6:.2f}M params) | "
               + " | ".join(f"{v / mem['param_bytes']:.3f}×" for v in mem["state_bytes"].values()) + " |")
  ref = mem["reference_state_bytes"]
  lines += ["", "| model | " + " | ".join(ref) + " |", "|---|" + "---:|" * len(ref)]
  lines.append(f"| {mem['reference_model']} ({mem['reference_param_bytes'] / 4e6:.1f}M params) | "
               + " | ".join(f"{v / mem['reference_param_bytes']:.3f}×" for v in ref.values()) + " |")
  lines += ["", f"Wall time: {summary['wall_s'] / 60:.1f} min for this invocation; the {len(records)} runs took "
            f"{summary['run_wall_s'] / 60:.1f} min in all (sweep and full runs, compilation and evaluation "
            "included)."]
  return "\n".join(lines) + "\n"


def write_outputs(summary: dict[str, Any], records: list[dict[str, Any]], out: pathlib.Path) -> None:
  """runs.csv, curves.csv, summary.json, results.md and the plots."""
  with open(out / "runs.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=RUN_FIELDS, extrasaction="ignore")
    w.writeheader()
    for r in records:
      w.writerow(r)
  with open(out / "curves.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=CURVE_FIELDS, extrasaction="ignore")
    w.writeheader()
    for r in records:
      for row in r["curves"]:
        w.writerow({**{k: r[k] for k in ("phase", "batch_size", "optimizer", "learning_rate", "seed")},
                    **{k: (_round(v)) for k, v in row.items()}})
  (out / "summary.json").write_text(json.dumps(summary, indent=1))
  (out / "results.md").write_text(results_markdown(summary, records))
  compare_plots.plot_all(summary, records, out)


def _round(v):
  return float(f"{v:.6g}") if isinstance(v, float) else v


# ------------------------------------------------------------------------------------------------ main
def main(argv) -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top

  del argv
  FLAGS = flags.FLAGS  # pylint: disable=invalid-name
  logging.getLogger().setLevel(logging.WARNING)
  log.setLevel(logging.INFO)
  if FLAGS.jax_cache != "none":  # runs of one optimizer and batch size share one program: compile it once
    jax.config.update("jax_compilation_cache_dir", FLAGS.jax_cache or os.path.join(FLAGS.workdir, "jax_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
  config = FLAGS.config
  out = FLAGS.out or os.path.join("experiments", "results", config.name)
  command = "python -m experiments.compare_optimizers " + " ".join(sys.argv[1:])
  run_comparison(config, FLAGS.workdir, out, command=command)


if __name__ == "__main__":
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

  config_flags.DEFINE_config_file("config", None, "A configs/compare_*.py file.", lock_config=True)
  flags.DEFINE_string("workdir", None, "Directory for the runs (tokenizer, one folder per run).")
  flags.DEFINE_string("out", "", "Results folder; default experiments/results/<config.name>.")
  flags.DEFINE_string("jax_cache", "", "Persistent compilation cache folder; default WORKDIR/jax_cache, "
                      "'none' to disable.")
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main)
