"""What the `configs/compare_*.py` comparisons share (run by `experiments/compare_optimizers.py`).

`recipe` loads the pretraining config a comparison starts from; `equal_footing` sets what must be the same for the three
optimizers; `comparison` builds the comparison's own fields around it.

Equal footing: a constant batch (every optimizer sees the same tokens at every step), runs bounded by `max_steps` (so
the schedules follow step / max_steps, not the clock), no weight decay (optax's Adafactor decay is not scaled by the
learning rate, so no common setting would mean the same thing), momentum 0.9 for all three (Adafactor's `momentum=0.9`,
and `multiply_by_parameter_scale=False` so its rate is on the same scale as the others'), CAME at the paper's betas
(0.9, 0.999, 0.9999) as the reference (no bias correction; `came_bc` is the corrected one), and every matrix factored by
both Adafactor (`min_dim_size_to_factor=16`; optax's 128 would leave the tiny models' 64-wide matrices unfactored, i.e.
Adam-like) and CAME. The gradient clipping and AdamW's betas stay the recipe's (cramming's for BERT, nanoGPT's for
GPT-2), the same for all three.
"""

import pathlib

import ml_collections

from came_jax import config_files

OPTIMIZERS = ("came", "adamw", "adafactor")


def recipe(name: str, variant: str) -> ml_collections.ConfigDict:
  """`configs/<name>.py:<variant>`, the pretraining config a comparison starts from."""
  return config_files.load(pathlib.Path(__file__).with_name(f"{name}.py"), variant)


def equal_footing(p: ml_collections.ConfigDict, *, gpu: bool) -> ml_collections.ConfigDict:
  """`p` (a pretraining config) with the settings above, on the whole sample corpus; logging for the curves."""
  p.data.path = "../shared/data/corpus"  # relative to the repository root, next to which ../shared/data lies
  p.batch_ramp = 0.0
  p.budget = "24h"  # runs are bounded by max_steps (set per run)
  p.optimizer.came.update(dict(weight_decay=0.0, b1=0.9, b2=0.999, b3=0.9999, bias_correction=False))
  p.optimizer.adamw.update(dict(weight_decay=0.0))
  p.optimizer.adafactor.update(
    dict(weight_decay=0.0, momentum=0.9, min_dim_size_to_factor=16, multiply_by_parameter_scale=False)
  )
  p.log_every_steps = 10
  p.eval.update(dict(every_steps=250 if gpu else 50, every_s=0.0))
  p.checkpoint.update(dict(every_steps=0, every_s=0.0, max_to_keep=1))
  p.tensorboard = False
  return p


def variants() -> ml_collections.ConfigDict:
  """Compared optimizers beyond the registry's names: label -> a registry optimizer and fields of its section."""
  return ml_collections.ConfigDict(
    dict(came_bc=dict(optimizer="came", overrides=dict(bias_correction=True)))
  )  # CAME, bias-corrected


def comparison(
  name: str,
  pretrain: ml_collections.ConfigDict,
  *,
  learning_rates: dict,
  batch_sizes: tuple,
  steps: int,
  memory_model: str,
  seeds: tuple = (0, 1, 2),
) -> ml_collections.ConfigDict:
  """The comparison config: `pretrain` and the fields `came_jax.compare.pretraining` reads."""
  c = ml_collections.ConfigDict()
  c.name = name
  c.pretrain = pretrain
  c.optimizers = OPTIMIZERS
  c.variants = variants()
  c.learning_rates = ml_collections.ConfigDict(learning_rates)  # the sweep's grid per optimizer
  c.batch_sizes = tuple(batch_sizes)  # sequences per step (multiples of pretrain.data.batch_size)
  c.steps = steps
  c.seeds = tuple(seeds)
  # The sweep: the full step count (a shorter run has another schedule, and favours other rates), on a seed of its
  # own (the kept sweep run is the best of its grid, so reusing it would flatter the mean); the grid goes on up to
  # `extend` rates past an end while the best rate sits there; eval_every_steps: held-out evaluations during a
  # sweep run (0: only the final one, which picks the rate).
  c.sweep = ml_collections.ConfigDict(dict(steps=steps, seed=100, extend=2, eval_every_steps=0))
  c.memory_model = memory_model  # a came_jax.bench.shapes.MODELS name, for the memory chart
  c.keep_checkpoints = False  # each run's final checkpoint is deleted once its record is written
  return c
