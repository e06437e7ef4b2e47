r"""CAME vs AdamW vs Adafactor pretraining T5 (span corruption), at equal steps and tokens, each at its swept rate.

Default (CPU, one command; measured wall time in experiments/README.md, budgeted for <= 20 minutes on a shared
2-core CPU):

  python -m experiments.compare_optimizers --config configs/compare_t5.py --workdir runs/compare_t5

The model of `configs/t5.py:tiny` (T5 v1.1, 2+2 layers, width 64, 2048-piece vocabulary) on the whole sample
corpus (../shared/data/corpus), 128 input tokens (15% noise in spans of mean length 3), 16 sequences per step,
5% warm-up then linear decay over 200 steps (0.4M input tokens). Learning rates: 3 per optimizer, each run for the
full 200 steps on a seed of its own (100), the one with the lowest held-out (WikiText-103) span-corruption loss
kept (the grid goes on past an end, twice at most, while the best rate sits there); then 200 steps with seeds 0,
1 and 2 (a seed sets the initialisation, data order, noise spans and dropout; seed k is the same data
for every optimizer). Reported: span-corruption loss, held-out and on the training stream.

GPU sizes (not measured with this code): `:gpu` (T5.1.1 base, 32128-piece vocabulary, 512 input tokens, 128
sequences per step as in T5, 3000 steps).

What the three share is in configs/compare_common.py (T5 itself uses no weight decay either); Adafactor here
has momentum and no parameter scaling, so it is not T5's own variant. Gradient clipping: the recipe's 1.0.
"""

import pathlib

from came_jax import config_files

VARIANTS = ("", "gpu")


def get_config(arg=None):
  """`arg`: one of VARIANTS."""
  variant = arg or ""
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r} of configs/compare_t5.py; use one of {VARIANTS}")
  gpu = variant == "gpu"
  common = config_files.load_module(pathlib.Path(__file__).with_name("compare_common.py"))
  p = common.equal_footing(common.recipe("t5", "" if gpu else "tiny"), gpu=gpu)
  p.data.update(dict(batch_size=32 if gpu else 16, eval_batches=32 if gpu else 8))
  p.schedule.update(dict(warmup=0.05, end_factor=0.0))
  rates = (
    dict(came=(1e-4, 3e-4, 1e-3), adamw=(3e-4, 1e-3, 3e-3), adafactor=(1e-3, 3e-3, 1e-2))
    if gpu
    else dict(came=(1e-4, 3e-4, 1e-3), adamw=(3e-3, 1e-2, 3e-2), adafactor=(1e-3, 3e-3, 1e-2))
  )
  return common.comparison(
    "compare_t5" + ("_gpu" if gpu else ""),
    p,
    learning_rates=rates,
    batch_sizes=(128,) if gpu else (16,),
    steps=3000 if gpu else 200,
    memory_model="T5-base (v1.1)",
  )
