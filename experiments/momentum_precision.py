r"""Does CAME train as well with bf16 or 8-bit momentum as with fp32? Same run, three momentum dtypes.

Pretrains the same model (same seeds, data order and step count) with CAME keeping its momentum in float32,
bfloat16 (stochastically rounded) and block-wise 8-bit codes, and prints, per seed and averaged, the final
train loss (mean of the last logged steps) and the held-out loss, with differences to float32, and the
optimizer-state bytes.

  python -m experiments.momentum_precision --config configs/bert_cramming.py:tiny --workdir runs/momentum \
      --config.data.path=../shared/data/corpus --config.max_steps=400 --config.budget=1h --seeds=0,1,2

Each run goes through the real trainer (`train_and_evaluate`) into WORKDIR/seed<k>/<dtype>; rerunning resumes
them. `--seeds` sets both `config.seed` (init, dropout) and `config.data.seed` (data order, masking).
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
flags.DEFINE_list("seeds", ["0"], "Seeds to run; each sets config.seed and config.data.seed.")
flags.mark_flags_as_required(["config", "workdir"])

DTYPES = ("float32", "bfloat16", "int8")


def _final_train_loss(workdir: str, last: int) -> float:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    losses = [row["loss"] for row in map(json.loads, f) if row.get("split") == "train"]
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
  results = {}  # (seed, dtype) -> (final train loss, held-out loss)
  state_bytes = {}
  for seed in map(int, FLAGS.seeds):
    for dtype in DTYPES:
      config = base.copy_and_resolve_references()
      config.seed, config.data.seed = seed, seed
      config.optimizer.came.momentum_dtype = dtype
      workdir = os.path.join(FLAGS.workdir, f"seed{seed}", dtype)
      summary = trainer.train_and_evaluate(config, workdir)
      results[seed, dtype] = (_final_train_loss(workdir, FLAGS.last), summary["heldout_loss"])
      if dtype not in state_bytes:
        model, model_cfg = validation.model_module(config), validation.check(config)
        params = jax.eval_shape(functools.partial(model.init_params, model_cfg), jax.random.PRNGKey(0))
        state = jax.eval_shape(registry.make(config.optimizer).init, params)
        state_bytes[dtype] = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))

  print(f"\n### CAME momentum precision: {base.model.name}:{base.model.preset}, {base.max_steps} steps, "
        f"seeds {','.join(FLAGS.seeds)}\n")
  print("| seed | momentum | final train loss | Δ vs fp32 | held-out loss | Δ vs fp32 | optimizer state (MB) |")
  print("|---|---|---:|---:|---:|---:|---:|")
  seeds = [int(s) for s in FLAGS.seeds]
  for seed in seeds + ["mean"]:
    for dtype in DTYPES:
      pick = lambda d: ([results[s, d] for s in seeds] if seed == "mean" else [results[seed, d]])  # noqa: E731
      train, heldout = (sum(v) / len(v) for v in zip(*pick(dtype)))
      ref_train, ref_heldout = (sum(v) / len(v) for v in zip(*pick("float32")))
      print(f"| {seed} | {dtype} | {train:.4f} | {train - ref_train:+.4f} | {heldout:.4f} | "
            f"{heldout - ref_heldout:+.4f} | {state_bytes[dtype] / 1e6:.2f} |")


if __name__ == "__main__":
  app.run(main)
