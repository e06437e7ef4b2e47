r"""Does CAME train as well with bf16 or 8-bit momentum as with fp32? Same run, three momentum dtypes.

Pretrains the same model (same seeds, data order and step count) with CAME keeping its momentum in float32,
bfloat16 (stochastically rounded) and block-wise 8-bit codes, and prints, per seed and averaged, the final
train loss (mean of the last logged steps) and the held-out loss, with differences to float32, and the
optimizer-state bytes (`came_jax.compare.momentum_precision`).

  python -m experiments.momentum_precision --config configs/bert_cramming.py:tiny --workdir runs/momentum \
      --config.data.path=../shared/data/corpus --config.max_steps=400 --config.budget=1h --seeds=0,1,2

Each run goes through the real trainer (`train_and_evaluate`) into WORKDIR/seed<k>/<dtype>; rerunning resumes
them. `--seeds` sets both `config.seed` (init, dropout) and `config.data.seed` (data order, masking).
"""

import logging as std_logging

from absl import app, flags, logging
from ml_collections import config_flags

from came_jax import cli
from came_jax.compare import momentum_precision

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Pretraining configuration (a configs/*.py file).", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory holding one run per momentum dtype.")
flags.DEFINE_integer("last", 5, "Number of final logged steps whose train loss is averaged.")
flags.DEFINE_list("seeds", ["0"], "Seeds to run; each sets config.seed and config.data.seed.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Too many command-line arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # as experiments/pretrain.py: came_jax at INFO, libraries quieter
  std_logging.getLogger("came_jax").setLevel(std_logging.INFO)
  base = FLAGS.config
  if base.optimizer.name != "came":
    raise app.UsageError("--config.optimizer.name must be 'came' for this experiment")
  seeds = [int(s) for s in FLAGS.seeds]
  results, sizes = momentum_precision.run(base, FLAGS.workdir, seeds, FLAGS.last)
  print("\n" + momentum_precision.table(base, seeds, results, sizes))


if __name__ == "__main__":
  cli.run(main)
