r"""CAME vs AdamW vs Adafactor pretraining crammed BERT (MLM), at equal steps and tokens, each at its swept rate.

Default (CPU, one command; measured wall time in experiments/README.md, budgeted for <= 20 minutes on a shared
2-core CPU):

  python -m experiments.compare_optimizers --config configs/compare_bert.py --workdir runs/compare_bert

The model of `configs/bert_cramming.py:tiny` (2 layers, width 64, 2048-piece vocabulary, sequence 128) on the
whole sample corpus (../shared/data/corpus, ~7M tokens, so no sequence is seen twice), 32 sequences per step,
cramming's budget-triangle schedule over 300 steps (1.2M tokens). Learning rates: 3 per optimizer, each run for
the full 300 steps on a seed of its own (100), the one with the lowest held-out (WikiText-103) MLM loss kept (the
grid goes on past an end, twice at most, while the best rate sits there); then 300 steps with seeds 0, 1 and 2 (a
seed sets the initialisation, data order and masking; seed k is the same data for every optimizer).
Reported: MLM loss and accuracy on the training stream, held-out MLM loss and accuracy.

Large-batch study (the CAME paper's 8K-vs-32K BERT experiment, scaled down; its own <= 20-minute run):

  python -m experiments.compare_optimizers --config configs/compare_bert.py:large_batch \
      --workdir runs/compare_bert_large_batch

16 and 64 sequences per step (4x, by accumulating 4 micro-batches of 16) at the same 200 steps, so the large
batch sees 4x the tokens; 4 rates per optimizer swept separately at each batch size (200 steps, seed 100), then
seeds 0 and 1.

Longer horizon (CAME's β3 = 0.9999 averages over ~10,000 steps; measured wall time in experiments/README.md):

  python -m experiments.compare_optimizers --config configs/compare_bert.py:long --workdir runs/compare_bert_long

The same model for 3000 steps of 16 sequences (6.1M tokens, one pass over the corpus), held-out loss every 100
steps, four optimizers: CAME as the reference, CAME bias-corrected (`came_bc`), AdamW and Adafactor, every rate
swept at 3000 steps.

GPU sizes (not measured with this code): `:gpu` (crammed BERT-base, 32768-piece vocabulary, 256 sequences per
step, 3000 steps) and `:gpu_large_batch` (1024 vs 4096 sequences per step, 1000 steps).

What the three share is in configs/compare_common.py; here, cramming's gradient clipping (0.5) and AdamW betas
(0.9, 0.98).
"""

import pathlib

from came_jax import config_files

VARIANTS = ("", "large_batch", "long", "gpu", "gpu_large_batch")


def get_config(arg=None):
  """`arg`: one of VARIANTS."""
  variant = arg or ""
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r} of configs/compare_bert.py; use one of {VARIANTS}")
  gpu = variant.startswith("gpu")
  common = config_files.load_module(pathlib.Path(__file__).with_name("compare_common.py"))
  p = common.equal_footing(common.recipe("bert_cramming", "" if gpu else "tiny"), gpu=gpu)
  p.data.update(dict(batch_size=128 if gpu else 32, eval_batches=32 if gpu else 8))
  name = "compare_bert" + ("_gpu" if gpu else "")
  if variant.endswith("large_batch"):  # 4x the batch by accumulating 4 micro-batches, at the same step count
    p.data.batch_size = 128 if gpu else 16  # the micro-batch
    # 4 rates: the best rate moves with the batch size, and the grid must bracket it at both.
    rates = (
      dict(came=(1e-4, 3e-4, 1e-3), adamw=(3e-4, 1e-3, 3e-3), adafactor=(3e-4, 1e-3, 3e-3))
      if gpu
      else dict(came=(3e-5, 1e-4, 3e-4, 1e-3), adamw=(1e-3, 3e-3, 1e-2, 3e-2), adafactor=(1e-3, 3e-3, 1e-2, 3e-2))
    )
    return common.comparison(
      name + "_large_batch",
      p,
      learning_rates=rates,
      batch_sizes=(1024, 4096) if gpu else (16, 64),
      steps=1000 if gpu else 200,
      seeds=(0, 1),
      memory_model="BERT-base (crammed)",
    )
  if variant == "long":
    p.data.batch_size = 16
    p.eval.every_steps = 100
    rates = dict(
      came=(3e-4, 1e-3, 3e-3), came_bc=(1e-3, 3e-3, 1e-2), adamw=(3e-3, 1e-2, 3e-2), adafactor=(3e-3, 1e-2, 3e-2)
    )
    c = common.comparison(
      name + "_long", p, learning_rates=rates, batch_sizes=(16,), steps=3000, memory_model="BERT-base (crammed)"
    )
    c.optimizers = ("came", "came_bc", "adamw", "adafactor")
    return c
  rates = (
    dict(came=(1e-4, 3e-4, 1e-3), adamw=(3e-4, 1e-3, 3e-3), adafactor=(3e-4, 1e-3, 3e-3))
    if gpu
    else dict(came=(1e-4, 3e-4, 1e-3), adamw=(3e-3, 1e-2, 3e-2), adafactor=(3e-3, 1e-2, 3e-2))
  )
  return common.comparison(
    name,
    p,
    learning_rates=rates,
    batch_sizes=(256,) if gpu else (32,),
    steps=3000 if gpu else 300,
    memory_model="BERT-base (crammed)",
  )
