"""Flax (Linen) models and the one protocol the trainer, GLUE, export and the benchmarks use to reach them.

A model is a module ``came_jax.models.<name>`` that defines:

* ``Config``: a frozen dataclass of sizes and options (``vocab_size`` among them), and ``CONFIGS``, its presets;
* ``init_params(cfg, rng)``: float32 parameters;
* ``loss_fn(params, batch, rng, *, cfg, train)``: ``(loss, metrics)`` of a training batch (a dict of arrays);
* ``logits_fn(params, batch, *, cfg, train=False, rng=None)``: float32 logits of the same batch;
* ``flops_per_token(cfg, batch_shapes)``: training FLOPs per input token of batches of these shapes
  (``{"input_ids": (B, T), ...}``);
* ``max_len(cfg)``: the longest input it takes, or None (relative positions).

A model that can be fine-tuned as a sequence classifier (GLUE) also defines ``init_classifier_params``,
``classification_loss_fn`` and ``classifier_logits_fn`` (see :data:`CLASSIFIER`). Adding a model is one new file
here (and one in ``came_jax/hf/`` for its Hugging Face conversion); nothing else names models.

>>> from came_jax import models
>>> bert = models.get("bert")
>>> cfg = models.make_config("bert", "tiny", num_layers=1)
>>> cfg.num_layers, bert.max_len(cfg)
(1, 128)
>>> section = models.config_section("gpt2", "tiny", dtype="float32")
>>> section.num_layers is None  # every Config field, None = the preset's value: --config.model.num_layers=4
True
>>> models.from_config_section(section, vocab_size=512).vocab_size
512
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import types
import typing
from types import ModuleType
from typing import Any, Mapping

import ml_collections

from came_jax import _modules

PROTOCOL = ("Config", "CONFIGS", "init_params", "loss_fn", "logits_fn", "flops_per_token", "max_len")
CLASSIFIER = ("init_classifier_params", "classification_loss_fn", "classifier_logits_fn")
_SECTION_KEYS = ("name", "preset")  # the keys of a config's `model` section that are not Config fields
_SCALARS = (bool, int, float, str)


@functools.cache
def names() -> tuple[str, ...]:
  """The model modules in this package (those with the whole :data:`PROTOCOL`)."""
  return _modules.with_interface(__name__, __path__, PROTOCOL)


def get(name: str) -> ModuleType:
  """The model module ``came_jax.models.<name>``.

  Raises:
    ValueError: naming ``config.model.name`` when there is no such model, or it lacks part of the protocol.
  """
  try:
    module = importlib.import_module(f"{__name__}.{name}")
  except ModuleNotFoundError as e:
    raise ValueError(f"config.model.name={name!r} is not a model (known: {', '.join(names())}).") from e
  missing = [a for a in PROTOCOL if not hasattr(module, a)]
  if missing:
    raise ValueError(
      f"config.model.name={name!r}: {module.__name__} lacks {', '.join(missing)} of the model "
      "protocol (came_jax/models/__init__.py)."
    )
  return module


def has_classifier(module: ModuleType) -> bool:
  """Whether the model can be fine-tuned as a sequence classifier (defines :data:`CLASSIFIER`)."""
  return all(hasattr(module, a) for a in CLASSIFIER)


def make_config(name: str, preset: str, **overrides: Any) -> Any:
  """``Config`` preset ``preset`` of model ``name`` with fields replaced by ``overrides``.

  Raises:
    ValueError: naming ``config.model.preset`` or the offending field.
  """
  module = get(name)
  if preset not in module.CONFIGS:
    raise ValueError(f"config.model.preset={preset!r} is not a preset of {name} (known: {sorted(module.CONFIGS)}).")
  fields = {f.name for f in dataclasses.fields(module.Config)}
  for key in overrides:
    if key not in fields:
      raise ValueError(f"config.model.{key} is not a field of {name}.Config ({sorted(fields)}).")
  try:
    return dataclasses.replace(module.CONFIGS[preset], **overrides)
  except (TypeError, ValueError) as e:
    raise ValueError(f"config.model ({name}:{preset}): {e}") from e


def _field_type(hint: Any) -> type:
  """The scalar (or tuple) type a command-line override of a field of type `hint` parses to."""
  if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if len(args) == 1:
      return _field_type(args[0])
  if hint in _SCALARS or typing.get_origin(hint) is tuple or hint is tuple:
    return typing.get_origin(hint) or hint
  raise TypeError(
    f"Config field type {hint!r} cannot be set from the command line; use bool, int, float, str or "
    "tuple (optionally | None)."
  )


def config_section(name: str, preset: str, **fields: Any) -> ml_collections.ConfigDict:
  """The ``model`` section of a config: ``name``, ``preset`` and every ``Config`` field.

  A field left None takes the preset's value; each can be set on the command line
  (``--config.model.num_layers=4``). ``vocab_size`` is not in it: the model takes ``config.data.vocab_size``.
  """
  module = get(name)
  make_config(name, preset, **fields)  # fails early, naming the key, on a wrong preset or field
  hints = typing.get_type_hints(module.Config)
  section = ml_collections.ConfigDict({"name": name, "preset": preset})
  for f in dataclasses.fields(module.Config):
    if f.name == "vocab_size":
      continue
    value = fields.get(f.name)
    section[f.name] = value if value is not None else ml_collections.config_dict.placeholder(_field_type(hints[f.name]))
  return section


def overrides(section: Mapping[str, Any]) -> dict[str, Any]:
  """The ``Config`` fields a ``model`` section sets (those not None), ``name``/``preset`` excluded."""
  return {k: v for k, v in section.items() if k not in _SECTION_KEYS and v is not None}


def from_config_section(section: Mapping[str, Any], vocab_size: int) -> Any:
  """The ``Config`` a ``model`` section describes, with the data's vocabulary size.

  Raises:
    ValueError: naming the offending ``config.model.*`` key.
  """
  fields = overrides(section)
  if "vocab_size" in fields:
    raise ValueError("config.model.vocab_size must not be set: the model takes config.data.vocab_size.")
  return make_config(section["name"], section["preset"], **fields, vocab_size=vocab_size)
