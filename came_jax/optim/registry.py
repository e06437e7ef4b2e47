"""Builds any optimizer of this project by name from `config.optimizer`: the one place optimizers are made.

`config.optimizer` holds the shared settings (`name`, `grad_clip_norm`, `decay_mask`) and one section per
optimizer (`came`, `adamw`, `adafactor`) with its own peak `learning_rate`, `weight_decay` and betas, so
`--config.optimizer.name=adamw` switches to a complete, tuned recipe by one override.

The whole chain (global-norm clipping, then the optimizer with its decoupled, masked weight decay) is wrapped in
`optax.inject_hyperparams`: the learning rate and every numeric hyperparameter live in the optimizer state, and
the trainer writes the scheduled learning rate there at each step (`set_learning_rate`) -- a runtime value, so
schedules never recompile the step.

Example:

  >>> import jax, jax.numpy as jnp, ml_collections
  >>> from came_jax.optim import registry
  >>> cfg = registry.default_config()
  >>> cfg.name = "adamw"
  >>> tx = registry.make(cfg)
  >>> params = {"w": jnp.ones((2, 2)), "b": jnp.zeros(2)}
  >>> state = tx.init(params)
  >>> state = registry.set_learning_rate(state, 0.5)
  >>> float(registry.get_learning_rate(state))
  0.5
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

OPTIMIZERS = ("came", "adamw", "adafactor")
DECAY_MASKS = ("rank>=2", "all", "none")


def default_config() -> ml_collections.ConfigDict:
  """Every optimizer's defaults. Configs copy this and change what they need."""
  c = ml_collections.ConfigDict()
  c.name = "came"
  c.grad_clip_norm = 1.0  # global-norm clipping of the (accumulated) gradient; 0 disables it.
  c.decay_mask = "rank>=2"  # weight decay on matrices and embeddings only, never on norms and biases.
  # CAME (Luo et al., 2023) with the paper's betas; bias_correction=True is came_jax's start-up fix (see
  # came_jax/optim/came.py), not the paper's.
  c.came = ml_collections.ConfigDict(
    dict(
      learning_rate=2e-4,
      weight_decay=0.01,
      b1=0.9,
      b2=0.999,
      b3=0.9999,
      eps1=1e-30,
      eps2=1e-16,
      clip_threshold=1.0,
      factoring="last_two",
      momentum_dtype="float32",
      bias_correction=False,
    )
  )
  # AdamW as in cramming (Geiping & Goldstein, 2022).
  c.adamw = ml_collections.ConfigDict(dict(learning_rate=1e-3, weight_decay=0.01, b1=0.9, b2=0.98, eps=1e-12))
  # optax's Adafactor; weight decay here is optax's absolute `weight_decay_rate` (not scaled by the rate). Its
  # second-moment decay at step t is 1 - (t + 1 - decay_offset)^-decay_rate: a negative offset starts it near 1
  # (-5000: ~0.999, a fixed Adam-like beta2) instead of at 0.
  c.adafactor = ml_collections.ConfigDict(
    dict(
      learning_rate=1e-3,
      weight_decay=0.0,
      decay_rate=0.8,
      decay_offset=0,
      momentum=0.9,
      clipping_threshold=1.0,
      min_dim_size_to_factor=128,
      multiply_by_parameter_scale=False,
      eps=1e-30,
    )
  )
  return c


def hyperparams(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The section of the selected optimizer, e.g. `cfg.came`.

  >>> cfg = default_config()
  >>> cfg.name = "adamw"
  >>> hyperparams(cfg).b2, peak_learning_rate(cfg)
  (0.98, 0.001)
  """
  if cfg.name not in OPTIMIZERS:
    raise ValueError(f"config.optimizer.name={cfg.name!r} is not one of {OPTIMIZERS}.")
  return cfg[cfg.name]


def peak_learning_rate(cfg: ml_collections.ConfigDict) -> float:
  """The selected optimizer's `learning_rate`, the peak the schedule scales (see `hyperparams`)."""
  return float(hyperparams(cfg).learning_rate)


def decay_mask_fn(kind: str) -> Callable[[Any], Any] | None:
  """`rank>=2`: decay matrices/embeddings, skip norms and biases; `all`; `none` (returns None).

  >>> import jax.numpy as jnp
  >>> params = {"kernel": jnp.ones((3, 2)), "bias": jnp.zeros(2), "scale": jnp.ones(2)}
  >>> decay_mask_fn("rank>=2")(params)
  {'bias': False, 'kernel': True, 'scale': False}
  >>> decay_mask_fn("none") is None
  True
  """
  if kind == "rank>=2":
    return lambda params: jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)
  if kind == "all":
    return lambda params: jax.tree.map(lambda p: True, params)
  if kind == "none":
    return None
  raise ValueError(f"config.optimizer.decay_mask={kind!r} is not one of {DECAY_MASKS}.")


def _came(
  mask,
  learning_rate,
  weight_decay,
  b1,
  b2,
  b3,
  eps1,
  eps2,
  clip_threshold,
  *,
  factoring,
  momentum_dtype,
  bias_correction,
):
  from came_jax.optim.came import came  # pylint: disable=g-import-not-at-top

  return came(
    learning_rate,
    b1=b1,
    b2=b2,
    b3=b3,
    eps1=eps1,
    eps2=eps2,
    clip_threshold=clip_threshold,
    weight_decay=weight_decay,
    mask=mask,
    factoring=factoring,
    momentum_dtype=momentum_dtype,
    bias_correction=bias_correction,
  )


def _adamw(mask, learning_rate, weight_decay, b1, b2, eps):
  return optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=mask)


def _adafactor(
  mask,
  learning_rate,
  weight_decay,
  decay_rate,
  decay_offset,
  momentum,
  clipping_threshold,
  eps,
  *,
  min_dim_size_to_factor,
  multiply_by_parameter_scale,
):
  return optax.adafactor(
    learning_rate,
    min_dim_size_to_factor=min_dim_size_to_factor,
    decay_rate=decay_rate,
    decay_offset=decay_offset,
    multiply_by_parameter_scale=multiply_by_parameter_scale,
    clipping_threshold=clipping_threshold,
    momentum=momentum,
    eps=eps,
    weight_decay_rate=weight_decay,
    weight_decay_mask=mask,
  )


_BUILDERS = {"came": _came, "adamw": _adamw, "adafactor": _adafactor}
# Hyperparameters that change the program's structure, not a number in it: passed as Python values.
_STATIC = {
  "came": ("factoring", "momentum_dtype", "bias_correction"),
  "adafactor": ("min_dim_size_to_factor", "multiply_by_parameter_scale"),
}


def make(cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Returns `inject_hyperparams(chain(clip_by_global_norm, <optimizer>))` for `config.optimizer`.

  Its state's `hyperparams` hold `learning_rate` (read/written with `get/set_learning_rate`), the optimizer's
  numeric hyperparameters and `grad_clip_norm`.
  """
  hp = hyperparams(cfg).to_dict()
  if cfg.name == "adafactor" and not hp["weight_decay"]:
    hp["weight_decay"] = None  # optax's adafactor adds no decay step at all for None.
  static = {k: hp.pop(k) for k in _STATIC.get(cfg.name, ())}
  builder = _BUILDERS[cfg.name]
  mask = decay_mask_fn(cfg.decay_mask)
  clip = float(cfg.grad_clip_norm)
  if clip < 0:
    raise ValueError(f"config.optimizer.grad_clip_norm={clip} must be >= 0 (0 disables clipping).")

  # None (e.g. adafactor momentum=None) is a structural choice: bound statically, not injected.
  static.update({k: None for k, v in hp.items() if v is None})
  numeric = {k: v for k, v in hp.items() if v is not None}

  def factory(grad_clip_norm, **kwargs):
    tx = builder(mask, **kwargs, **static)
    if clip > 0:
      tx = optax.chain(optax.clip_by_global_norm(grad_clip_norm), tx)
    return tx

  # inject_hyperparams binds arguments by the factory's signature: spell out the names it will receive.
  factory.__signature__ = inspect.Signature(
    [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY) for k in ("grad_clip_norm", *numeric)]
  )
  # float32 hyperparameters whatever the params' dtype: in bf16, CAME's b3=0.9999 would round to 1.0.
  return optax.inject_hyperparams(factory, hyperparam_dtype=jnp.float32)(grad_clip_norm=clip, **numeric)


def set_learning_rate(opt_state, learning_rate) -> Any:
  """Writes a (traced or concrete) learning rate into the state made by `make`."""
  old = opt_state.hyperparams["learning_rate"]
  return opt_state._replace(
    hyperparams={**opt_state.hyperparams, "learning_rate": jnp.asarray(learning_rate, old.dtype)}
  )


def get_learning_rate(opt_state) -> jax.Array:
  return opt_state.hyperparams["learning_rate"]
