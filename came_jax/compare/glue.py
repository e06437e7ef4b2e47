"""Optimizers compared at fine-tuning: every optimizer at every rate of its grid on GLUE, the best rate per task.

For each optimizer of `config.optimizers` (a registry name or a label of `config.variants`, as in
`came_jax.compare.runs`) and each rate of `config.learning_rates.<optimizer>`:
`came_jax.glue.finetune.finetune_and_evaluate(config.glue, WORKDIR/<optimizer>/lr<rate>)`, every task and seed of
`config.glue`. Finished (task, seed) runs are reused by the fine-tuning code itself, so an interrupted comparison
resumes where it stopped. Per task and optimizer, the rate with the best median headline dev score over seeds is
kept; a rate at an end of its grid is flagged.

Results in the output folder: `summary.json` (every rate's medians, per-seed scores and fine-tuning train losses,
the kept rates) and `results.md` (cramming's table per optimizer at its kept rates, with [min, max] over seeds and
the train loss, then the whole sweep).
"""

from __future__ import annotations

import copy
import json
import logging
import pathlib
import time
from typing import Any, Optional

import ml_collections
import numpy as np

from came_jax.compare import report as compare_report
from came_jax.compare import runs
from came_jax.glue import finetune
from came_jax.glue import report as glue_report

log = logging.getLogger(__name__)


def glue_config(config: ml_collections.ConfigDict, optimizer: str, learning_rate: float) -> ml_collections.ConfigDict:
  """`config.glue` fine-tuning with `optimizer` at `learning_rate`."""
  c = copy.deepcopy(config.glue)
  c.optimizer = runs.optimizer_config(config.glue.optimizer, config.variants, optimizer)
  c.optimizer[c.optimizer.name].learning_rate = float(learning_rate)
  return c


def task_scores(result: dict[str, Any]) -> Optional[dict[str, Any]]:
  """One task's headline dev score (median and per seed) and fine-tuning train loss; None if it did not run."""
  if result.get("status") != "ok":
    return None
  dev_set, metric = next(iter(result["headline"])), result["headline_metric"]
  per_seed = [d[dev_set][metric] for d in result["per_seed"].values()]
  losses = [v for v in result.get("train_loss", {}).values() if v is not None]
  return {
    "metric": metric,
    "median": result["headline"][dev_set],
    "per_seed": per_seed,
    "min": float(np.min(per_seed)),
    "max": float(np.max(per_seed)),
    "train_loss": float(np.median(losses)) if losses else None,
    "num_train": result["num_train"],
  }


def choose(sweep: dict[float, Optional[dict[str, Any]]]) -> dict[str, Any]:
  """The rate with the best median score (ties: the smaller rate), flagged when at an end of the grid.

  >>> choose({1e-4: {"median": 0.6}, 1e-3: {"median": 0.7}, 1e-2: None})
  {'learning_rate': 0.001, 'at_grid_edge': None, 'median': 0.7}
  """
  ok = {lr: s for lr, s in sweep.items() if s is not None and np.isfinite(s["median"])}
  if not ok:
    return {"learning_rate": None, "at_grid_edge": None}
  best = min(ok, key=lambda lr: (-ok[lr]["median"], lr))
  return {"learning_rate": best, "at_grid_edge": runs.grid_edge(best, tuple(sweep)), **ok[best]}


def run_comparison(
  config: ml_collections.ConfigDict, workdir: str, out_dir: str, *, command: str = ""
) -> dict[str, Any]:
  """Fine-tunes every (optimizer, rate), keeps the best rate per task; writes and returns the summary.

  Raises:
    ValueError: before anything is written, for an unknown optimizer (a bad GLUE setting fails in the first run,
      before training).
  """
  runs.check_optimizers(config)
  t_start = time.perf_counter()
  root, out = pathlib.Path(workdir), pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  sweep: dict[str, dict[str, dict[float, Any]]] = {}  # optimizer -> task -> rate -> scores
  model = None
  for opt in config.optimizers:
    for lr in config.learning_rates[opt]:
      lr = float(lr)
      summary = finetune.finetune_and_evaluate(glue_config(config, opt, lr), str(root / opt / f"lr{lr:g}"))
      model = summary["model"]
      for task, result in summary["tasks"].items():
        sweep.setdefault(opt, {}).setdefault(task, {})[lr] = task_scores(result)
      log.info("%s lr %g: %s", opt, lr, glue_report.markdown_table(summary).splitlines()[-1])
  chosen = {opt: {task: choose(rates) for task, rates in tasks.items()} for opt, tasks in sweep.items()}
  summary = {
    "name": config.name,
    "command": command,
    "model": model,
    "seeds": list(config.glue.seeds),
    "tasks": list(config.glue.tasks),
    "optimizers": list(config.optimizers),
    "chosen": chosen,
    "sweep": {o: {t: {f"{lr:g}": s for lr, s in r.items()} for t, r in ts.items()} for o, ts in sweep.items()},
    "wall_s": time.perf_counter() - t_start,
    "config": json.loads(config.to_json_best_effort()),
  }
  glue_report.write_json(out / "summary.json", summary)
  (out / "results.md").write_text(results_markdown(summary))
  log.info("Done in %.0f s; results in %s", summary["wall_s"], out)
  return summary


def _pct(x: Optional[float]) -> str:
  """A score x100 to one decimal.

  >>> _pct(0.8125), _pct(None)
  ('81.2', '–')
  """
  return compare_report.fmt(None if x is None else 100 * x, ".1f")


def results_markdown(summary: dict[str, Any]) -> str:
  """The kept-rate table (median [min, max] over seeds, x100; train loss), the average, then the whole sweep."""
  tasks, opts, chosen = summary["tasks"], summary["optimizers"], summary["chosen"]
  glue = summary["config"]["glue"]
  lines = [
    f"Model: {summary['model']}. Dev sets, median over seeds {summary['seeds']} [min, max], x100 "
    "(Matthews correlation for CoLA, Spearman for STS-B, F1 for MRPC, accuracy otherwise); each optimizer "
    "at the rate with the best median per task (in the cell, with an arrow when at an end of its grid); "
    f"train loss: the fine-tuning loss over the last 10% of the steps (median over seeds). Sequence "
    f"{glue['max_len']}, {glue['epochs']} epochs of batch {glue['batch_size']}, at most "
    f"{glue['max_train_examples'] or 'all'} training examples per task.",
    "",
  ]
  sizes = {
    t: next((chosen[o][t].get("num_train") for o in opts if chosen[o].get(t, {}).get("num_train")), None) for t in tasks
  }
  lines += [
    "| optimizer | " + " | ".join(f"{t} ({sizes[t]} train)" for t in tasks) + " | Avg |",
    "|:---|" + "---:|" * (len(tasks) + 1),
  ]
  for opt in opts:
    cells, medians = [], []
    for t in tasks:
      c = chosen[opt].get(t, {})
      if c.get("learning_rate") is None:
        cells.append("–")
        continue
      medians.append(c["median"])
      arrow = compare_report.EDGE_ARROW.get(c["at_grid_edge"], "")
      loss = f", loss {c['train_loss']:.3f}" if c.get("train_loss") is not None else ""
      cells.append(f"{_pct(c['median'])} [{_pct(c['min'])}, {_pct(c['max'])}] (lr {c['learning_rate']:g}{arrow}{loss})")
    avg = _pct(float(np.mean(medians))) if len(medians) == len(tasks) else "–"
    lines.append(f"| {opt} | " + " | ".join(cells) + f" | {avg} |")
  lines += [
    "",
    "Every rate: median dev score x100 (train loss).",
    "",
    "| optimizer | lr | " + " | ".join(tasks) + " |",
    "|:---|---:|" + "---:|" * len(tasks),
  ]
  for opt in opts:
    for lr in sorted(float(x) for x in summary["config"]["learning_rates"][opt]):
      cells = []
      for t in tasks:
        s = summary["sweep"][opt].get(t, {}).get(f"{lr:g}")
        cells.append(
          "–"
          if s is None
          else f"{_pct(s['median'])}" + (f" ({s['train_loss']:.3f})" if s.get("train_loss") is not None else "")
        )
      lines.append(f"| {opt} | {lr:g} | " + " | ".join(cells) + " |")
  lines += ["", f"Wall time: {summary['wall_s'] / 60:.1f} min for this invocation."]
  return "\n".join(lines) + "\n"
