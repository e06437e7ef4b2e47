"""The GLUE results table: missing tasks are marked, the average is over what is there (MNLI once, WNLI never)."""

import pytest

from came_jax.glue import report


def test_table_marks_missing_tasks_and_partial_average():
  ok = lambda name, value: {
    "status": "ok",
    "headline": {name: value},
    "dev": {name: {"accuracy": value}},
    "per_seed": {"0": {name: {"accuracy": value}}},
    "num_train": 10,
    "steps": 3,
    "epochs": 1.0,
    "train_seconds": 0.5,
    "submission": [],
  }
  mnli = {"status": "ok", "headline": {"MNLI-m": 0.8, "MNLI-mm": 0.7}}
  table = report.headline_table({"MNLI": mnli, "RTE": ok("RTE", 0.6)})
  assert table["Avg"] == pytest.approx((0.75 + 0.6) / 2)  # MNLI counts once
  assert "| 80.0/70.0 | – |" in report.markdown_table({"model": "m", "optimizer": "o", "table": table})
  results = {
    "MNLI": {"status": "missing", "reason": "no MNLI folder in /data"},
    "QNLI": {"status": "missing", "reason": "no train split (/data/QNLI/train.tsv is absent)"},
    "RTE": ok("RTE", 0.6),
    "SST-2": ok("SST-2", 0.8),
    "WNLI": ok("WNLI", 0.5),
  }
  table = report.headline_table(results)
  assert table["MNLI-m"] is None and table["QNLI"] is None and table["WNLI"] == 0.5
  assert table["Avg"] == pytest.approx(0.7) and table["avg_over"] == ["SST-2", "RTE"]  # WNLI never averaged
  md = report.markdown({"model": "bert:tiny (x)", "optimizer": "adamw", "seeds": [0], "tasks": results, "table": table})
  header, _, row = md.split("\n\n")[2].split("\n")[:3]
  assert header == "| Model | MNLI-(m/mm) | QQP | QNLI | SST-2 | CoLA | STS-B | MRPC | RTE | Avg |"
  assert row == "| bert:tiny, adamw | –/– | – | – | 80.0 | – | – | – | 60.0 | 70.0* |"
  assert "- – MNLI: missing: no MNLI folder in /data." in md
  assert "- – QNLI: missing: no train split (/data/QNLI/train.tsv is absent)." in md
  assert "- – QQP: not requested" in md and "Avg over the 2 of 8 columns" in md
