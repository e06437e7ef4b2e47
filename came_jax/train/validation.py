"""Checks a pretraining config before anything is built: every bad value fails with a ValueError naming its key.

Unknown keys are refused earlier, by `lock_config=True` in the launcher (and by ConfigDict itself).
"""

from __future__ import annotations

from typing import Any

import jax
import ml_collections

from came_jax import models
from came_jax.optim import registry
from came_jax.train import budget, schedules, sharding

OBJECTIVES = ("mlm", "causal", "span")


def _require(ok: bool, key: str, value: Any, requirement: str) -> None:
  if not ok:
    raise ValueError(f"config.{key}={value!r}: {requirement}.")


def check(config: ml_collections.ConfigDict) -> Any:
  """Validates `config`; returns the model Config it describes (vocabulary from `config.tokenizer`).

  Raises:
    ValueError: naming the first offending key.
  """
  budget.parse_budget(config.budget)
  _require(
    isinstance(config.max_steps, int) and config.max_steps >= 0,
    "max_steps",
    config.max_steps,
    "must be an integer >= 0 (0: bounded by the budget only)",
  )
  micro = config.data.batch_size
  _require(micro > 0, "data.batch_size", micro, "must be positive (it is the micro-batch)")
  _require(config.batch_size > 0, "batch_size", config.batch_size, "must be positive")
  _require(
    config.batch_size % micro == 0,
    "batch_size",
    config.batch_size,
    f"must be divisible by the micro-batch config.data.batch_size={micro}",
  )
  _require(0.0 <= config.batch_ramp <= 1.0, "batch_ramp", config.batch_ramp, "must lie in [0, 1]")
  _require(config.data.seq_len > 0, "data.seq_len", config.data.seq_len, "must be positive")
  _require(config.data.vocab_size > 0, "data.vocab_size", config.data.vocab_size, "must be positive")
  _require(config.data.objective in OBJECTIVES, "data.objective", config.data.objective, f"must be one of {OBJECTIVES}")
  _require(
    config.max_consecutive_nonfinite >= 1, "max_consecutive_nonfinite", config.max_consecutive_nonfinite, "must be >= 1"
  )
  for key in ("log_every_steps", "eval.every_steps", "eval.every_s", "checkpoint.every_steps", "checkpoint.every_s"):
    section, _, leaf = key.rpartition(".")
    value = (config[section] if section else config)[leaf]
    _require(value >= 0, key, value, "must be >= 0 (0 disables it)")
  _require(config.log_every_steps > 0, "log_every_steps", config.log_every_steps, "must be positive")
  _require(config.checkpoint.max_to_keep >= 1, "checkpoint.max_to_keep", config.checkpoint.max_to_keep, "must be >= 1")

  s = config.schedule
  _require(s.name in schedules.LR_SCHEDULES, "schedule.name", s.name, f"must be one of {schedules.LR_SCHEDULES}")
  _require(s.progress in schedules.PROGRESS, "schedule.progress", s.progress, f"must be one of {schedules.PROGRESS}")
  _require(
    not (s.progress == "steps" and not config.max_steps), "schedule.progress", s.progress, "needs config.max_steps > 0"
  )
  _require(0.0 <= s.start_factor <= 1.0, "schedule.start_factor", s.start_factor, "must lie in [0, 1]")
  _require(0.0 < s.peak_at <= 1.0, "schedule.peak_at", s.peak_at, "must lie in (0, 1]")
  _require(0.0 <= s.warmup < 1.0, "schedule.warmup", s.warmup, "must lie in [0, 1)")
  _require(0.0 <= s.end_factor <= 1.0, "schedule.end_factor", s.end_factor, "must lie in [0, 1]")

  o = config.optimizer
  _require(o.name in registry.OPTIMIZERS, "optimizer.name", o.name, f"must be one of {registry.OPTIMIZERS}")
  _require(
    o.decay_mask in registry.DECAY_MASKS, "optimizer.decay_mask", o.decay_mask, f"must be one of {registry.DECAY_MASKS}"
  )
  _require(o.grad_clip_norm >= 0, "optimizer.grad_clip_norm", o.grad_clip_norm, "must be >= 0 (0 disables it)")
  hp = registry.hyperparams(o)
  _require(hp.learning_rate > 0, f"optimizer.{o.name}.learning_rate", hp.learning_rate, "must be positive")
  _require(
    hp.weight_decay is None or hp.weight_decay >= 0, f"optimizer.{o.name}.weight_decay", hp.weight_decay, "must be >= 0"
  )

  data, fsdp = mesh_shape(config)
  _require(
    micro % (data * fsdp) == 0,
    "data.batch_size",
    micro,
    f"must be divisible by the {data * fsdp} devices its rows are split over (config.mesh.data x "
    f"config.mesh.fsdp = {data} x {fsdp})",
  )

  model_cfg = models.from_config_section(config.model, config.data.vocab_size)
  limit = models.get(config.model.name).max_len(model_cfg)
  if limit is not None:
    _require(
      config.data.seq_len <= limit,
      "data.seq_len",
      config.data.seq_len,
      f"exceeds the model's maximum sequence length ({config.model.name}:{config.model.preset}: max_len={limit})",
    )
  return model_cfg


def mesh_shape(config: ml_collections.ConfigDict) -> tuple[int, int]:
  """`(data, fsdp)` axis sizes of `config.mesh` on this machine's devices (ValueError naming `mesh.*`)."""
  return sharding.mesh_shape(config.mesh, jax.device_count(), jax.process_count())


def check_batch_fits_model(config: ml_collections.ConfigDict, loss_fn, params_shape, batch_shapes) -> None:
  """Traces `loss_fn` on abstract values (no compilation): a batch the model cannot take fails here.

  Raises:
    ValueError: naming `data.objective` when the model's loss does not accept its batches.
  """
  batch = {k: jax.ShapeDtypeStruct(shape, dtype) for k, (shape, dtype) in batch_shapes.items()}
  try:
    jax.eval_shape(lambda p, b: loss_fn(p, b, jax.random.PRNGKey(0), train=True), params_shape, batch)
  except (KeyError, TypeError, ValueError) as e:
    raise ValueError(
      f"config.data.objective={config.data.objective!r} makes batches {sorted(batch)} that "
      f"{config.model.name}.loss_fn cannot take ({type(e).__name__}: {e})."
    ) from e
