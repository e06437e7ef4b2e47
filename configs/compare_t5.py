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

Equal footing for the three: the same clipping (1.0), no weight decay (T5 uses none), momentum 0.9 for all
three (so Adafactor here is not T5's momentum-free, parameter-scaled variant: `multiply_by_parameter_scale=False`
keeps its rate on the same scale as the others'), every matrix factored by both Adafactor
(`min_dim_size_to_factor=16`) and CAME. Paths are relative to the repository root, next to which
../shared/data lies.
"""

import importlib.util
import pathlib

import ml_collections

VARIANTS = ("", "gpu")


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
    raise ValueError(f"unknown variant {variant!r} of configs/compare_t5.py; use one of {VARIANTS}")
  gpu = variant == "gpu"
  c = ml_collections.ConfigDict()
  c.name = "compare_t5" + ("_gpu" if gpu else "")

  p = _base_config("t5", "" if gpu else "tiny")
  p.data.update(dict(path="../shared/data/corpus", batch_size=32 if gpu else 16, eval_batches=32 if gpu else 8))
  p.batch_ramp = 0.0  # a constant batch: every optimizer sees the same tokens at every step
  p.budget = "24h"  # runs are bounded by max_steps (set per run), so the schedules follow step / max_steps
  p.schedule.update(dict(warmup=0.05, end_factor=0.0))
  p.optimizer.came.update(dict(weight_decay=0.0, b1=0.9, b2=0.999, b3=0.9999))
  p.optimizer.adamw.update(dict(weight_decay=0.0))
  p.optimizer.adafactor.update(dict(weight_decay=0.0, momentum=0.9, decay_rate=0.8, clipping_threshold=1.0,
                                    min_dim_size_to_factor=16, multiply_by_parameter_scale=False))
  p.log_every_steps = 10
  p.eval.update(dict(every_steps=250 if gpu else 50, every_s=0.0))
  p.checkpoint.update(dict(every_steps=0, every_s=0.0, max_to_keep=1))
  p.tensorboard = False
  c.pretrain = p

  c.optimizers = ("came", "adamw", "adafactor")
  if gpu:
    c.learning_rates = ml_collections.ConfigDict(dict(
        came=(1e-4, 3e-4, 1e-3), adamw=(3e-4, 1e-3, 3e-3), adafactor=(1e-3, 3e-3, 1e-2)))
  else:
    c.learning_rates = ml_collections.ConfigDict(dict(
        came=(1e-4, 3e-4, 1e-3), adamw=(3e-3, 1e-2, 3e-2), adafactor=(1e-3, 3e-3, 1e-2)))
  c.batch_sizes = (128,) if gpu else (16,)  # sequences per step (multiples of pretrain.data.batch_size)
  c.steps = 3000 if gpu else 200
  c.seeds = (0, 1, 2)
  # The sweep: the full step count (a shorter run has another schedule, and favours other rates), on a seed of its
  # own (the kept sweep run is the best of its grid, so reusing it would flatter the mean); the grid goes on up to
  # `extend` rates past an end while the best rate sits there; eval_every_steps: held-out evaluations during a
  # sweep run (0: only the final one, which picks the rate).
  c.sweep = ml_collections.ConfigDict(dict(steps=c.steps, seed=100, extend=2, eval_every_steps=0))
  c.memory_model = "T5-base (v1.1)"  # experiments/model_shapes.py name for the memory chart
  c.keep_checkpoints = False  # each run's final checkpoint is deleted once its record is written
  return c
