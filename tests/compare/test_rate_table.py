"""came_jax.compare.rate_table: kept rates of pretraining and GLUE comparisons against AdamW's."""

import json

from came_jax.compare import rate_table


def _write(folder, summary):
  folder.mkdir()
  (folder / "summary.json").write_text(json.dumps(summary))
  return folder


def test_rows_of_pretraining_and_glue_comparisons(tmp_path):
  pretraining = _write(
    tmp_path / "compare_gpt2",
    {
      "model": "gpt2:tiny",
      "steps": 300,
      "batch_sizes": [16],
      "config": {"optimizers": ["came", "adamw"]},
      "results": {
        "16/came": {"learning_rate": 3e-4, "at_grid_edge": "highest", "heldout_loss": {"mean": 4.25}},
        "16/adamw": {"learning_rate": 1e-3, "at_grid_edge": None, "heldout_loss": {"mean": 4.5}},
      },
    },
  )
  glue = _write(
    tmp_path / "compare_glue",
    {
      "model": "bert:tiny (2 steps)",
      "tasks": ["RTE"],
      "optimizers": ["came", "adamw"],
      "sweep": {},
      "config": {"optimizers": ["came"], "glue": {"epochs": 3, "batch_size": 16}},
      "chosen": {
        "came": {
          "RTE": {
            "learning_rate": 5e-5,
            "at_grid_edge": "lowest",
            "num_train": 32,
            "metric": "accuracy",
            "median": 0.625,
          }
        },
        "adamw": {"RTE": {"learning_rate": None}},
      },
    },
  )
  lines = rate_table.table([pretraining, glue]).splitlines()
  assert lines[:2] == [
    "| model | horizon | optimizer | kept rate | vs AdamW's | result at it |",
    "|---|---|---|---:|---:|---|",
  ]
  assert lines[2:] == [
    "| gpt2:tiny | 300 steps × 16 | came | 0.0003↑ | 0.3× | held-out loss 4.250 |",
    "| gpt2:tiny | 300 steps × 16 | adamw | 0.001 | 1× | held-out loss 4.500 |",
    "| bert:tiny, GLUE RTE | 3 epochs × 16 (32 examples) | came | 5e-05↓ | – | dev accuracy 62.5 |",
  ]
  assert rate_table.comparing_adamw(tmp_path) == [pretraining]  # the GLUE comparison here has no AdamW
