r"""Fine-tunes a pretrained BERT on GLUE and writes results and submission files.

  python -m experiments.finetune_glue --config configs/glue.py --config.pretrained=RUN_DIR --workdir OUT \
      [--config.optimizer.name=came] [--config.tasks='("RTE","CoLA")'] [--config.seeds='(0,)']

Writes OUT/results.json, OUT/results.md (cramming's GLUE table) and OUT/submission/<TASK>.tsv. Re-running with
the same settings reuses the finished (task, seed) runs in OUT/runs.
"""

import logging as std_logging

from absl import app, flags, logging
from ml_collections import config_flags

from came_jax import cli
from came_jax.glue import finetune

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Fine-tuning configuration (configs/glue.py).", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for results, submission files and per-seed runs.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Too many command-line arguments: {argv[1:]}")
  # Progress and results from came_jax at INFO; other libraries (orbax, jax) at WARNING unless --verbosity says.
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  std_logging.getLogger("came_jax").setLevel(std_logging.INFO)
  finetune.finetune_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  cli.run(main)
