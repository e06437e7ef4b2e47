"""Each optimizer's kept learning rate per model and horizon, and its ratio to AdamW's, from recorded comparisons.

Reads the `summary.json` of results folders of the pretraining comparison (`came_jax.compare.pretraining`) and
of the GLUE comparison (`came_jax.compare.glue`, one row per task): the kept rate of every optimizer, its ratio to
AdamW's kept rate in the same comparison, and the held-out loss (mean over seeds) or dev score (median) it gave.
A rate kept at an end of its grid is marked with an arrow.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, Sequence

from came_jax.compare import report


def pretraining_rows(summary: dict[str, Any]) -> list[list[str]]:
  """The rows of a pretraining comparison's summary: one per batch size and optimizer."""
  rows = []
  for b in summary["batch_sizes"]:
    res = {k.split("/", 1)[1]: v for k, v in summary["results"].items() if k.startswith(f"{b}/")}
    adamw = res.get("adamw", {}).get("learning_rate")
    for opt, r in res.items():
      loss = r.get("heldout_loss", {}).get("mean")
      rows.append(
        [
          summary["model"],
          f"{summary['steps']} steps × {b}",
          opt,
          f"{r['learning_rate']:g}{report.EDGE_ARROW.get(r.get('at_grid_edge'), '')}",
          f"{r['learning_rate'] / adamw:.2g}×" if adamw else "–",
          "–" if loss is None else f"held-out loss {loss:.3f}",
        ]
      )
  return rows


def glue_rows(summary: dict[str, Any]) -> list[list[str]]:
  """The rows of a GLUE comparison's summary: one per task and optimizer that ran."""
  glue = summary["config"]["glue"]
  rows = []
  for task in summary["tasks"]:
    adamw = summary["chosen"].get("adamw", {}).get(task, {}).get("learning_rate")
    for opt in summary["optimizers"]:
      c = summary["chosen"][opt].get(task, {})
      if c.get("learning_rate") is None:
        continue
      rows.append(
        [
          f"{summary['model'].split(' (')[0]}, GLUE {task}",
          f"{glue['epochs']} epochs × {glue['batch_size']} ({c['num_train']} examples)",
          opt,
          f"{c['learning_rate']:g}{report.EDGE_ARROW.get(c.get('at_grid_edge'), '')}",
          f"{c['learning_rate'] / adamw:.2g}×" if adamw else "–",
          f"dev {c['metric']} {100 * c['median']:.1f}",
        ]
      )
  return rows


def is_glue(summary: dict[str, Any]) -> bool:
  """Whether a summary is a GLUE comparison's (else a pretraining comparison's)."""
  return "chosen" in summary and "sweep" in summary


def table(folders: Sequence[pathlib.Path]) -> str:
  """The markdown table over the results folders `folders`, in order."""
  rows = []
  for folder in folders:
    summary = json.loads((folder / "summary.json").read_text())
    rows += glue_rows(summary) if is_glue(summary) else pretraining_rows(summary)
  lines = ["| model | horizon | optimizer | kept rate | vs AdamW's | result at it |", "|---|---|---|---:|---:|---|"]
  lines += ["| " + " | ".join(r) + " |" for r in rows]
  return "\n".join(lines)


def comparing_adamw(results: pathlib.Path) -> list[pathlib.Path]:
  """The `compare_*` folders of `results` with a summary whose optimizers include AdamW, sorted."""
  return [
    f
    for f in sorted(results.glob("compare_*"))
    if (f / "summary.json").exists() and "adamw" in json.loads((f / "summary.json").read_text())["config"]["optimizers"]
  ]
