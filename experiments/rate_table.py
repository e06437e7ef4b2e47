r"""Each optimizer's swept learning rate per model and horizon, and its ratio to AdamW's, from recorded comparisons.

  python -m experiments.rate_table [experiments/results/compare_gpt2 experiments/results/compare_gpt2_long ...]

Reads the `summary.json` of each results folder written by `experiments/compare_optimizers.py` (pretraining; the
default: every `experiments/results/compare_*` folder with AdamW in it) and `experiments/compare_glue.py`
(fine-tuning, one row per task) and prints one markdown table: the kept rate of every optimizer, its ratio to
AdamW's kept rate in the same comparison, and the held-out loss (mean over seeds) or dev score (median) it gave.
A rate kept at an end of its grid is marked with an arrow.
"""

from __future__ import annotations

import argparse
import json
import pathlib
from typing import Any

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
ARROW = {"lowest": "↓", "highest": "↑"}


def pretraining_rows(summary: dict[str, Any]) -> list[list[str]]:
  rows = []
  for b in summary["batch_sizes"]:
    res = {k.split("/", 1)[1]: v for k, v in summary["results"].items() if k.startswith(f"{b}/")}
    adamw = res.get("adamw", {}).get("learning_rate")
    for opt, r in res.items():
      loss = r.get("heldout_loss", {}).get("mean")
      rows.append([summary["model"], f"{summary['steps']} steps × {b}", opt,
                   f"{r['learning_rate']:g}{ARROW.get(r.get('at_grid_edge'), '')}",
                   f"{r['learning_rate'] / adamw:.2g}×" if adamw else "–",
                   "–" if loss is None else f"held-out loss {loss:.3f}"])
  return rows


def glue_rows(summary: dict[str, Any]) -> list[list[str]]:
  glue = summary["config"]["glue"]
  rows = []
  for task in summary["tasks"]:
    adamw = summary["chosen"].get("adamw", {}).get(task, {}).get("learning_rate")
    for opt in summary["optimizers"]:
      c = summary["chosen"][opt].get(task, {})
      if c.get("learning_rate") is None:
        continue
      rows.append([f"{summary['model'].split(' (')[0]}, GLUE {task}",
                   f"{glue['epochs']} epochs × {glue['batch_size']} ({c['num_train']} examples)", opt,
                   f"{c['learning_rate']:g}{ARROW.get(c.get('at_grid_edge'), '')}",
                   f"{c['learning_rate'] / adamw:.2g}×" if adamw else "–",
                   f"dev {c['metric']} {100 * c['median']:.1f}"])
  return rows


def table(folders: list[pathlib.Path]) -> str:
  rows = []
  for folder in folders:
    summary = json.loads((folder / "summary.json").read_text())
    rows += glue_rows(summary) if "chosen" in summary and "sweep" in summary else pretraining_rows(summary)
  lines = ["| model | horizon | optimizer | kept rate | vs AdamW's | result at it |", "|---|---|---|---:|---:|---|"]
  lines += ["| " + " | ".join(r) + " |" for r in rows]
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("folders", nargs="*", type=pathlib.Path,
                      help="results folders; default: every experiments/results/compare_* comparing AdamW")
  args = parser.parse_args()
  folders = args.folders or [f for f in sorted(RESULTS.glob("compare_*")) if (f / "summary.json").exists()
                             and "adamw" in json.loads((f / "summary.json").read_text())["config"]["optimizers"]]
  print(table(folders))


if __name__ == "__main__":
  main()
