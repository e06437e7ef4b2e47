r"""Optimizers compared at fine-tuning: every optimizer at every rate of its grid on GLUE, the best rate per task.

  python -m experiments.compare_glue --config configs/compare_glue.py --workdir runs/compare_glue \
      [--out experiments/results/compare_glue]

For each optimizer of `config.optimizers` (a registry name or a label of `config.variants`, as in
`experiments/compare_optimizers.py`) and each rate of `config.learning_rates.<optimizer>`: every task and seed of
`config.glue`, fine-tuned in WORKDIR/<optimizer>/lr<rate>. Finished (task, seed) runs are reused, so an
interrupted comparison resumes where it stopped. Per task and optimizer, the rate with the best median headline
dev score over seeds is kept; a rate at an end of its grid is flagged (`came_jax.compare.glue`).

Results in `--out` (default `experiments/results/<config.name>`): `summary.json` (every rate's medians, per-seed
scores and fine-tuning train losses, the kept rates) and `results.md` (cramming's table per optimizer at its kept
rates, with [min, max] over seeds and the train loss, then the whole sweep).
"""

from __future__ import annotations

import logging
import pathlib
import sys

from absl import flags
from ml_collections import config_flags

from came_jax import cli
from came_jax.compare import glue

FLAGS = flags.FLAGS


def main(argv) -> None:
  del argv
  logging.getLogger().setLevel(logging.WARNING)
  for name in ("came_jax.compare", "came_jax.glue"):
    logging.getLogger(name).setLevel(logging.INFO)
  config = FLAGS.config
  out = FLAGS.out or str(pathlib.Path("experiments") / "results" / config.name)
  command = "python -m experiments.compare_glue " + " ".join(sys.argv[1:])
  glue.run_comparison(config, FLAGS.workdir, out, command=command)


if __name__ == "__main__":
  config_flags.DEFINE_config_file("config", None, "configs/compare_glue.py.", lock_config=True)
  flags.DEFINE_string("workdir", None, "Directory for the fine-tuning runs (one folder per optimizer and rate).")
  flags.DEFINE_string("out", "", "Results folder; default experiments/results/<config.name>.")
  flags.mark_flags_as_required(["config", "workdir"])
  cli.run(main)
