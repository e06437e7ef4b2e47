r"""Pretrains BERT (crammed), GPT-2 or T5 for a time budget.

  python -m experiments.pretrain --config configs/bert_cramming.py --workdir runs/bert \
      [--config.budget=10m] [--config.optimizer.name=adamw] [--config.max_steps=N]

Re-running with the same --workdir resumes the run; a workdir holding a different run is refused.
"""

import logging as std_logging

from absl import app, flags, logging
from ml_collections import config_flags

from came_jax import cli
from came_jax.train import trainer

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training configuration (a configs/*.py file).", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, tokenizer, metrics and summary.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Too many command-line arguments: {argv[1:]}")
  # Progress and results from came_jax at INFO; other libraries (orbax, jax) at WARNING unless --verbosity says.
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  std_logging.getLogger("came_jax").setLevel(std_logging.INFO)
  trainer.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  cli.run(main)
