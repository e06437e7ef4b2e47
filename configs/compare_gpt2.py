r"""CAME vs AdamW vs Adafactor pretraining GPT-2 (causal LM), at equal steps and tokens, each at its swept rate.

Default (CPU, one command; measured wall time in experiments/README.md, budgeted for <= 20 minutes on a shared
2-core CPU):

  python -m experiments.compare_optimizers --config configs/compare_gpt2.py --workdir runs/compare_gpt2

The model of `configs/gpt2.py:tiny` (2 layers, width 64, 2048-piece vocabulary, context 128) on the whole sample
corpus (../shared/data/corpus, ~7M tokens: no sequence is seen twice), 16 sequences per step, nanoGPT's
warm-up + cosine schedule (5% warm-up, down to 10%) over 300 steps (0.6M tokens). Learning rates: 3 per
optimizer, each run for the full 300 steps on a seed of its own (100), the one with the lowest held-out
(WikiText-103) loss kept (the grid goes on past an end, twice at most, while the best rate sits there); then 300
steps with seeds 0, 1 and 2 (a seed sets the initialisation, data order and dropout; seed k is the same data for
every optimizer). Reported: held-out loss and perplexity, training loss.

Longer horizon (CAME's β3 = 0.9999 averages over ~10,000 steps; measured wall time in experiments/README.md):

  python -m experiments.compare_optimizers --config configs/compare_gpt2.py:long --workdir runs/compare_gpt2_long

The same model and data for 3000 steps (6.1M tokens, one pass over the corpus), held-out loss every 100 steps,
four optimizers: CAME as the reference, CAME bias-corrected (`came_bc`), AdamW and Adafactor, every rate swept at
3000 steps.

GPU sizes (not measured with this code): `:gpu` (GPT-2 small, 32768-piece vocabulary, context 1024, 64 sequences
per step, 3000 steps).

What the three share is in configs/compare_common.py; here, nanoGPT's gradient clipping (1.0) and AdamW betas
(0.9, 0.95).
"""

import pathlib

from came_jax import config_files

VARIANTS = ("", "long", "gpu")


def get_config(arg=None):
  """`arg`: one of VARIANTS."""
  variant = arg or ""
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r} of configs/compare_gpt2.py; use one of {VARIANTS}")
  gpu = variant == "gpu"
  common = config_files.load_module(pathlib.Path(__file__).with_name("compare_common.py"))
  p = common.equal_footing(common.recipe("gpt2", "" if gpu else "tiny"), gpu=gpu)
  p.data.update(dict(batch_size=16, eval_batches=32 if gpu else 8))
  p.schedule.update(dict(warmup=0.05, end_factor=0.1))
  rates = (
    dict(came=(1e-4, 3e-4, 1e-3), adamw=(3e-4, 1e-3, 3e-3), adafactor=(3e-4, 1e-3, 3e-3))
    if gpu
    else dict(came=(1e-4, 3e-4, 1e-3), adamw=(3e-3, 1e-2, 3e-2), adafactor=(1e-3, 3e-3, 1e-2))
  )
  if variant == "long":
    p.eval.every_steps = 100
    rates = dict(
      came=(1e-4, 3e-4, 1e-3), came_bc=(3e-4, 1e-3, 3e-3), adamw=(1e-3, 3e-3, 1e-2), adafactor=(1e-3, 3e-3, 1e-2)
    )
    c = common.comparison(
      "compare_gpt2_long", p, learning_rates=rates, batch_sizes=(16,), steps=3000, memory_model="GPT-2 small (124M)"
    )
    c.optimizers = ("came", "came_bc", "adamw", "adafactor")
    return c
  return common.comparison(
    "compare_gpt2" + ("_gpu" if gpu else ""),
    p,
    learning_rates=rates,
    batch_sizes=(64,) if gpu else (16,),
    steps=3000 if gpu else 300,
    memory_model="GPT-2 small (124M)",
  )
