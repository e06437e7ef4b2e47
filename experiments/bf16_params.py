r"""Does stochastic rounding matter for bf16 parameters? CAME with float32, bf16 round-to-nearest and bf16
stochastically rounded parameters (`came_jax.compare.bf16_params`).

  python -m experiments.bf16_params --workdir runs/bf16_params

trains GPT-2 tiny on the State of the Union addresses for 250 steps of 8 x 128 tokens, at learning rates 2e-3
and 2e-5, seeds 0, 1, 2, with each of the three parameter formats (18 runs, 2-5 minutes on a shared 2-core CPU),
and prints a markdown table of final train and held-out (WikiText) losses. The tokenizer is trained once into
WORKDIR/tokenizer. Every setting of `bf16_params.default_config()` can be overridden: `--config.steps=100`,
`--config.learning_rates=(1e-3,)`, `--config.seeds=(0,)`, `--config.data.batch_size=16`.
"""

import shlex
import sys

from absl import app, flags
from ml_collections import config_flags

from came_jax import cli
from came_jax.compare import bf16_params

FLAGS = flags.FLAGS
config_flags.DEFINE_config_dict("config", bf16_params.default_config(), "Experiment settings.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for the tokenizer (reused when present).")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Too many command-line arguments: {argv[1:]}")
  results = bf16_params.run(FLAGS.config, FLAGS.workdir)
  command = shlex.join(["python", "-m", "experiments.bf16_params", *sys.argv[1:]])
  print("\n" + bf16_params.table(FLAGS.config, results, command, bf16_params.cpu_name()))


if __name__ == "__main__":
  cli.run(main)
