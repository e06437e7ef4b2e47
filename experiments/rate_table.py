r"""Each optimizer's swept learning rate per model and horizon, and its ratio to AdamW's, from recorded comparisons.

  python -m experiments.rate_table [experiments/results/compare_gpt2 experiments/results/compare_gpt2_long ...]

Reads the `summary.json` of each results folder written by `experiments/compare_optimizers.py` (pretraining; the
default: every `experiments/results/compare_*` folder with AdamW in it) and `experiments/compare_glue.py`
(fine-tuning, one row per task) and prints one markdown table: the kept rate of every optimizer, its ratio to
AdamW's kept rate in the same comparison, and the held-out loss (mean over seeds) or dev score (median) it gave.
A rate kept at an end of its grid is marked with an arrow (`came_jax.compare.rate_table`).
"""

from __future__ import annotations

import argparse
import pathlib

from came_jax.compare import rate_table

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument(
    "folders",
    nargs="*",
    type=pathlib.Path,
    help="results folders; default: every experiments/results/compare_* comparing AdamW",
  )
  args = parser.parse_args()
  print(rate_table.table(args.folders or rate_table.comparing_adamw(RESULTS)))


if __name__ == "__main__":
  main()
