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
batch sees 4x the tokens; 4 rates per optimizer swept separately at each batch size (200 steps, seed 100), seeds 0 and 1.

GPU sizes (not measured with this code): `:gpu` (crammed BERT-base, 32768-piece vocabulary, 256 sequences per
step, 3000 steps) and `:gpu_large_batch` (1024 vs 4096 sequences per step, 1000 steps).

Equal footing for the three: the same clipping (0.5), no weight decay (optax's Adafactor decay is not scaled by
the learning rate, so no common setting would mean the same thing), momentum 0.9 for all three (Adafactor's
`momentum=0.9`), and every matrix factored by both Adafactor (`min_dim_size_to_factor=16`; optax's default of 128
would leave the tiny model's 64-wide matrices unfactored, i.e. Adam-like) and CAME.
Paths are relative to the repository root, next to which ../shared/data lies.
"""

import importlib.util
import pathlib

import ml_collections

VARIANTS = ("", "large_batch", "gpu", "gpu_large_batch")


def _base_config(name: str, variant: str) -> ml_collections.ConfigDict:
  """`configs/<name>.py:<variant>`, the pretraining recipe this comparison starts from."""
  path = pathlib.Path(__file__).with_name(f"{name}.py")
  spec = importlib.util.spec_from_file_location(f"_configs_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(variant)


def get_config(arg=None):
  """`arg`: one of VARIANTS."""
  variant = arg or ""
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r} of configs/compare_bert.py; use one of {VARIANTS}")
  gpu = variant.startswith("gpu")
  large_batch = variant.endswith("large_batch")
  c = ml_collections.ConfigDict()
  c.name = "compare_bert" + ("_gpu" if gpu else "") + ("_large_batch" if large_batch else "")

  p = _base_config("bert_cramming", "" if gpu else "tiny")
  p.data.update(dict(path="../shared/data/corpus", batch_size=128 if gpu else 32,
                     eval_batches=32 if gpu else 8))
  p.batch_ramp = 0.0  # a constant batch: every optimizer sees the same tokens at every step
  p.budget = "24h"  # runs are bounded by max_steps (set per run), so the schedules follow step / max_steps
  p.optimizer.came.update(dict(weight_decay=0.0, b1=0.9, b2=0.999, b3=0.9999))
  p.optimizer.adamw.update(dict(weight_decay=0.0))
  p.optimizer.adafactor.update(dict(weight_decay=0.0, momentum=0.9, min_dim_size_to_factor=16,
                                    multiply_by_parameter_scale=False))
  p.log_every_steps = 10
  p.eval.update(dict(every_steps=250 if gpu else 50, every_s=0.0))
  p.checkpoint.update(dict(every_steps=0, every_s=0.0, max_to_keep=1))
  p.tensorboard = False
  c.pretrain = p

  c.optimizers = ("came", "adamw", "adafactor")
  if gpu:
    c.learning_rates = ml_collections.ConfigDict(dict(
        came=(1e-4, 3e-4, 1e-3), adamw=(3e-4, 1e-3, 3e-3), adafactor=(3e-4, 1e-3, 3e-3)))
  else:
    c.learning_rates = ml_collections.ConfigDict(dict(
        came=(1e-4, 3e-4, 1e-3), adamw=(3e-3, 1e-2, 3e-2), adafactor=(3e-3, 1e-2, 3e-2)))
  c.batch_sizes = (256,) if gpu else (32,)  # sequences per step (multiples of pretrain.data.batch_size)
  c.steps = 3000 if gpu else 300
  c.seeds = (0, 1, 2)
  # The sweep: the full step count (a shorter run has another schedule, and favours other rates), on a seed of its
  # own (the kept sweep run is the best of its grid, so reusing it would flatter the mean); the grid goes on up to
  # `extend` rates past an end while the best rate sits there; eval_every_steps: held-out evaluations during a
  # sweep run (0: only the final one, which picks the rate).
  c.sweep = ml_collections.ConfigDict(dict(steps=c.steps, seed=100, extend=2, eval_every_steps=0))
  c.memory_model = "BERT-base (crammed)"  # experiments/model_shapes.py name for the memory chart
  c.keep_checkpoints = False  # each run's final checkpoint is deleted once its record is written

  if large_batch:
    c.batch_sizes = (1024, 4096) if gpu else (16, 64)
    c.pretrain.data.batch_size = 128 if gpu else 16  # the micro-batch: 64 = 4 accumulated micro-batches
    c.steps = 1000 if gpu else 200
    c.seeds = (0, 1)
    c.sweep.steps = c.steps
    if not gpu:  # 4 rates: the best rate moves with the batch size, and the grid must bracket it at both
      c.learning_rates = ml_collections.ConfigDict(dict(
          came=(3e-5, 1e-4, 3e-4, 1e-3), adamw=(1e-3, 3e-3, 1e-2, 3e-2), adafactor=(1e-3, 3e-3, 1e-2, 3e-2)))
  return c
