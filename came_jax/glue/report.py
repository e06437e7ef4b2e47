"""GLUE reporting: the headline table (BERT's / cramming's column layout), `results.md`, submission files.

Columns, as in Devlin et al. (2019, Table 1) and Geiping & Goldstein (2022): MNLI-(m/mm), QQP, QNLI, SST-2, CoLA,
STS-B, MRPC, RTE, Avg. One headline metric per task: F1 for QQP and MRPC, Spearman correlation for STS-B,
Matthews correlation for CoLA, accuracy otherwise. The average counts MNLI once (the mean of m and mm) and leaves
out WNLI, as both papers do; when some columns have no score it is the mean over those that do, and says so.
Absent tasks show '–' with a note giving the reason.

Submission files follow the GLUE server's format: `index<TAB>prediction` with a header row, one file per test set
(`CoLA.tsv`, ..., `MNLI-m.tsv`, `MNLI-mm.tsv`); predictions are label strings for the NLI tasks
(`entailment`/`not_entailment`, MNLI's three labels), `0`/`1` for CoLA, SST-2, MRPC, QQP and WNLI, and scores
with three decimals for STS-B.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from typing import Any

import numpy as np

from came_jax.glue import tasks as tasks_lib

# (column title, task, eval sets shown in the column)
COLUMNS = (
  ("MNLI-(m/mm)", "MNLI", ("MNLI-m", "MNLI-mm")),
  ("QQP", "QQP", ("QQP",)),
  ("QNLI", "QNLI", ("QNLI",)),
  ("SST-2", "SST-2", ("SST-2",)),
  ("CoLA", "CoLA", ("CoLA",)),
  ("STS-B", "STS-B", ("STS-B",)),
  ("MRPC", "MRPC", ("MRPC",)),
  ("RTE", "RTE", ("RTE",)),
)
MISSING = "–"


def headline_table(tasks: dict[str, dict[str, Any]]) -> dict[str, Any]:
  """Headline dev scores (fractions, not percentages) per eval set, `None` where absent, plus `Avg` and
  `avg_over` (the columns it averages)."""
  table: dict[str, Any] = {}
  column_scores = {}
  for title, task, evals in COLUMNS:
    result = tasks.get(task, {})
    values = [result.get("headline", {}).get(e) if result.get("status") == "ok" else None for e in evals]
    for e, v in zip(evals, values):
      table[e] = v
    if all(v is not None and math.isfinite(v) for v in values):
      column_scores[title] = float(np.mean(values))
  wnli = tasks.get("WNLI", {})
  table["WNLI"] = wnli.get("headline", {}).get("WNLI") if wnli.get("status") == "ok" else None
  table["Avg"] = float(np.mean(list(column_scores.values()))) if column_scores else None
  table["avg_over"] = list(column_scores)
  return table


def _pct(value) -> str:
  if value is None:
    return MISSING
  return "nan" if not math.isfinite(value) else f"{100 * value:.1f}"


def _short_model(summary: dict[str, Any]) -> str:
  model = (summary.get("model") or "?").split(" (")[0]
  return f"{model}, {summary.get('optimizer', '?')}"


def markdown_table(summary: dict[str, Any]) -> str:
  """The one-row headline table in cramming's layout."""
  table = summary["table"]
  cells = []
  for _, _, evals in COLUMNS:
    cells.append("/".join(_pct(table.get(e)) for e in evals))
  avg = _pct(table.get("Avg"))
  if table.get("Avg") is not None and len(table.get("avg_over", [])) < len(COLUMNS):
    avg += "*"
  header = "| Model | " + " | ".join(t for t, _, _ in COLUMNS) + " | Avg |"
  rule = "|:---|" + "---:|" * (len(COLUMNS) + 1)
  return "\n".join([header, rule, f"| {_short_model(summary)} | " + " | ".join(cells) + f" | {avg} |"])


def format_metrics(dev: dict[str, dict[str, float]]) -> str:
  """`CoLA matthews_corr 12.3` style, for logs."""
  return "; ".join(f"{name} " + ", ".join(f"{k} {_pct(v)}" for k, v in m.items()) for name, m in dev.items())


def markdown(summary: dict[str, Any]) -> str:
  """The whole `results.md`: headline table, notes on missing tasks and the average, then every metric."""
  tasks = summary["tasks"]
  table = summary["table"]
  seeds = ", ".join(str(s) for s in summary["seeds"])
  lines = [
    "# GLUE (dev sets)",
    "",
    f"Model: {summary.get('model')}. Fine-tuned with {summary.get('optimizer')}; median over seeds {seeds}. "
    "Scores x100: F1 for QQP and MRPC, Spearman for STS-B, Matthews correlation for CoLA, accuracy otherwise.",
    "",
    markdown_table(summary),
    "",
  ]
  notes = []
  for _, task, _ in COLUMNS:
    result = tasks.get(task)
    if result is None:
      notes.append(f"- {MISSING} {task}: not requested (config.tasks).")
    elif result["status"] != "ok":
      notes.append(f"- {MISSING} {task}: missing: {result['reason']}.")
  if table.get("Avg") is not None and len(table.get("avg_over", [])) < len(COLUMNS):
    notes.append(
      f"- \\* Avg over the {len(table['avg_over'])} of {len(COLUMNS)} columns with a score "
      f"({', '.join(table['avg_over'])})."
    )
  notes.append("- Avg counts MNLI once (mean of m and mm) and excludes WNLI, as BERT and cramming do.")
  if "WNLI" in tasks:
    wnli = tasks["WNLI"]
    notes.append(
      f"- WNLI: {_pct(table.get('WNLI'))}" if wnli["status"] == "ok" else f"- WNLI: missing: {wnli['reason']}."
    )
  lines += notes + [
    "",
    "## All metrics",
    "",
    "| Task | Dev set | Metric | Median | Per seed | Train examples | Steps | Epochs | Train s |",
    "|:---|:---|:---|---:|:---|---:|---:|---:|---:|",
  ]
  for name, result in tasks.items():
    if result["status"] != "ok":
      lines.append(f"| {name} | {MISSING} | {MISSING} | {MISSING} | {result['reason']} | | | | |")
      continue
    for eval_name, metrics in result["dev"].items():
      for metric, value in metrics.items():
        per_seed = ", ".join(f"{s}: {_pct(d[eval_name][metric])}" for s, d in result["per_seed"].items())
        lines.append(
          f"| {name} | {eval_name} | {metric} | {_pct(value)} | {per_seed} | "
          f"{result['num_train']} | {result['steps']} | {result['epochs']:g} | "
          f"{result['train_seconds']:.1f} |"
        )
  submitted = [p for r in tasks.values() if r["status"] == "ok" for p in r["submission"]]
  if submitted:
    lines += [
      "",
      "Test-set predictions (GLUE submission format, the median seed's): "
      + ", ".join(f"`{p}`" for p in submitted)
      + ".",
    ]
  return "\n".join(lines) + "\n"


def write_submission(path: str | os.PathLike, task: tasks_lib.Task, index: np.ndarray, predictions: np.ndarray) -> None:
  """`index<TAB>prediction` rows with a header, in GLUE's label vocabulary (see the module docstring)."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  if len(index) != len(predictions):
    raise ValueError(f"{len(index)} test rows but {len(predictions)} predictions for {path.name}")
  if task.is_regression:
    values = [f"{float(p):.3f}" for p in predictions]
  else:
    values = [task.labels[int(p)] for p in predictions]
  rows = ["index\tprediction", *(f"{int(i)}\t{v}" for i, v in zip(index, values))]
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text("\n".join(rows) + "\n")
  os.replace(tmp, path)


def write_json(path: str | os.PathLike, obj: Any) -> None:
  """Atomic JSON write (NaN written as null, so strict parsers read it)."""

  def clean(x):
    if isinstance(x, float) and not math.isfinite(x):
      return None
    if isinstance(x, dict):
      return {k: clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
      return [clean(v) for v in x]
    return x

  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(json.dumps(clean(obj), indent=2))
  os.replace(tmp, path)
