r"""Does CAME train as well with bf16 or 8-bit momentum as with fp32? Same run, three momentum dtypes.

Pretrains the same model (same seed, data order and step count) with CAME keeping its momentum in float32,
bfloat16 and block-wise 8-bit codes, and prints the final train loss (mean of the last logged steps), the
held-out loss and the optimizer-state bytes of each, with differences to float32.

  python -m experiments.momentum_precision --config configs/bert_cramming.py:tiny --workdir runs/momentum \
      --config.data.path=../shared/data/corpus --config.max_steps=400 --config.budget=1h

Each run goes through the real trainer (`train_and_evaluate`) into WORKDIR/<dtype>; rerunning resumes them.
"""

import functools
import json
import logging as std_logging
import os

import jax
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from came_jax.optim import registry
from came_jax.train import trainer
from came_jax.train import validation

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Pretraining configuration (a configs/*.py file).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory holding one run per momentum dtype.")
flags.DEFINE_integer("last", 5, "Number of final logged steps whose train loss is averaged.")
flags.mark_flags_as_required(["config", "workdir"])

DTYPES = ("float32", "bfloat16", "int8")


def _final_train_loss(workdir: str, last: int) -> float:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    losses = [row["loss"] for row in map(json.loads, f) if "loss" in row]
  tail = losses[-last:]
  return sum(tail) / len(tail)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Too many command-line arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # as experiments/pretrain.py: came_jax at INFO, libraries quieter
  std_logging.getLogger("came_jax").setLevel(std_logging.INFO)
  base = FLAGS.config
  if base.optimizer.name != "came":
    raise app.UsageError("--config.optimizer.name must be 'came' for this experiment")
  rows = {}
  for dtype in DTYPES:
    config = base.copy_and_resolve_references()
    config.optimizer.came.momentum_dtype = dtype
    workdir = os.path.join(FLAGS.workdir, dtype)
    summary = trainer.train_and_evaluate(config, workdir)
    tx = registry.make(config.optimizer)
    model, model_cfg = validation.model_module(config), validation.check(config)
    params = jax.eval_shape(functools.partial(model.init_params, model_cfg), jax.random.PRNGKey(0))
    state_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(jax.eval_shape(tx.init, params)))
    rows[dtype] = (summary, _final_train_loss(workdir, FLAGS.last), state_bytes)

  ref_train, ref_heldout = rows["float32"][1], rows["float32"][0]["heldout_loss"]
  steps = rows["float32"][0]["steps"]
  print(f"\n### CAME momentum precision: {base.model.name}:{base.model.preset}, {steps} steps, "
        f"seed {base.seed}\n")
  print("| momentum | final train loss | Δ vs fp32 | held-out loss | Δ vs fp32 | optimizer state (MB) |")
  print("|---|---:|---:|---:|---:|---:|")
  for dtype, (summary, train_loss, state_bytes) in rows.items():
    heldout = summary["heldout_loss"]
    print(f"| {dtype} | {train_loss:.4f} | {train_loss - ref_train:+.4f} | {heldout:.4f} | "
          f"{heldout - ref_heldout:+.4f} | {state_bytes / 1e6:.2f} |")


if __name__ == "__main__":
  app.run(main)
