"""Checks a pretraining config before anything is built: every bad value fails with a ValueError naming its key.

Unknown keys are refused earlier, by `lock_config=True` in the launcher (and by ConfigDict itself).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import ml_collections

from came_jax import models
from came_jax.models import layers
from came_jax.optim import registry
from came_jax.train import budget, schedules, sharding

OBJECTIVES = ("mlm", "causal", "span")


def _require(ok: bool, key: str, value: Any, requirement: str) -> None:
  if not ok:
    raise ValueError(f"config.{key}={value!r}: {requirement}.")


def check(config: ml_collections.ConfigDict, init: Any = None) -> Any:
  """Validates `config`; returns the model Config it describes (vocabulary from `config.data.vocab_size`), or with
  `config.init_from` the one of `init`, the `came_jax.pretrained.Pretrained` it names (see `init_model_config`).

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

  if init is None:
    model_cfg = models.from_config_section(config.model, config.data.vocab_size)
  else:
    model_cfg = init_model_config(config, init)
  limit = models.get(config.model.name).max_len(model_cfg)
  if limit is not None:
    _require(
      config.data.seq_len <= limit,
      "data.seq_len",
      config.data.seq_len,
      f"exceeds the model's maximum sequence length ({config.model.name}:{config.model.preset}: max_len={limit})",
    )
  return model_cfg


def load_init(config: ml_collections.ConfigDict) -> Any:
  """The pretrained model `config.init_from` names (`came_jax.pretrained.load`), or None when it is "".

  Raises:
    ValueError, FileNotFoundError: naming `config.init_from`.
  """
  if not config.init_from:
    return None
  from came_jax import pretrained  # pylint: disable=g-import-not-at-top  (it imports orbax)

  try:
    return pretrained.load(config.init_from)
  except (FileNotFoundError, ValueError) as e:
    raise type(e)(f"config.init_from={config.init_from!r}: {e}") from e


def init_model_config(config: ml_collections.ConfigDict, init: Any) -> Any:
  """The model Config of a run that starts from `init` (`config.init_from`: a run directory or a Hugging Face
  folder, loaded by `came_jax.pretrained.load`): its model and tokenizer, not `config.model`'s preset nor a
  tokenizer of `config.data`'s.

  `config.model.name` must be `init`'s model; the Config fields set in `config.model` replace `init`'s (dtype,
  dropout_rate, attention_impl, ...), as long as `init`'s parameters still fit; `config.model.preset` is not used.
  `config.data.vocab_size` must be the size of `init`'s tokenizer, which `config.tokenizer_path` must not replace.

  Raises:
    ValueError: naming the key that disagrees with `init`.
  """
  where = f"config.init_from={config.init_from!r}"
  _require(
    config.model.name == init.model_name,
    "model.name",
    config.model.name,
    f"{where} is a {init.model_name} model: set --config.model.name={init.model_name} (or a {init.model_name} recipe)",
  )
  _require(
    not config.tokenizer_path,
    "tokenizer_path",
    config.tokenizer_path,
    f"must be empty with {where}, whose tokenizer the run takes",
  )
  _require(
    config.data.vocab_size == init.tokenizer.vocab_size,
    "data.vocab_size",
    config.data.vocab_size,
    f"{where} brings a tokenizer of {init.tokenizer.vocab_size} ids: set --config.data.vocab_size="
    f"{init.tokenizer.vocab_size}",
  )

  def fit(cfg):
    layers.assert_same_shapes(init.params, jax.eval_shape(lambda: init.model.init_params(cfg, jax.random.key(0))))

  try:
    fit(init.model_cfg)
  except ValueError as e:
    raise ValueError(f"{where}: its parameters are not those of {init.model_name}.init_params: {e}") from e
  fields = models.overrides(config.model)
  try:
    model_cfg = dataclasses.replace(init.model_cfg, **fields)
    fit(model_cfg)
  except (TypeError, ValueError) as e:
    changed = {k: v for k, v in fields.items() if getattr(init.model_cfg, k, None) != v}
    shown = ", ".join(f"{k}={v!r} (the model has {getattr(init.model_cfg, k, None)!r})" for k, v in changed.items())
    raise ValueError(
      f"config.model.{next(iter(changed or fields))}: {where} fixes the model, and its parameters do not fit "
      f"config.model's {shown}: {e}"
    ) from e
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
