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
optimizer with fields of its section changed (`came_bc`: CAME with `bias_correction=True`). A run whose
`record.json` is in WORKDIR is not run again, so an interrupted comparison resumes where it stopped. The
comparison is `came_jax.compare.pretraining.run_comparison` (runs: `came_jax.compare.runs`).

Results in `--out` (default `experiments/results/<config.name>`, written by `came_jax.compare.report`):
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

import logging
import os
import sys

import jax
from absl import flags
from ml_collections import config_flags

from came_jax import cli
from came_jax.compare import pretraining

FLAGS = flags.FLAGS


def main(argv) -> None:
  del argv
  logging.getLogger().setLevel(logging.WARNING)
  logging.getLogger("came_jax.compare").setLevel(logging.INFO)
  if FLAGS.jax_cache != "none":  # runs of one optimizer and batch size share one program: compile it once
    jax.config.update("jax_compilation_cache_dir", FLAGS.jax_cache or os.path.join(FLAGS.workdir, "jax_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
  config = FLAGS.config
  out = FLAGS.out or os.path.join("experiments", "results", config.name)
  command = "python -m experiments.compare_optimizers " + " ".join(sys.argv[1:])
  pretraining.run_comparison(config, FLAGS.workdir, out, command=command)


if __name__ == "__main__":
  config_flags.DEFINE_config_file("config", None, "A configs/compare_*.py file.", lock_config=True)
  flags.DEFINE_string("workdir", None, "Directory for the runs (tokenizer, one folder per run).")
  flags.DEFINE_string("out", "", "Results folder; default experiments/results/<config.name>.")
  flags.DEFINE_string(
    "jax_cache", "", "Persistent compilation cache folder; default WORKDIR/jax_cache, 'none' to disable."
  )
  flags.mark_flags_as_required(["config", "workdir"])
  cli.run(main)
