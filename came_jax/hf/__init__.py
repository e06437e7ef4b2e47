"""Hugging Face conversion: ``came_jax.hf.<name>`` beside each model ``came_jax.models.<name>``.

A conversion module defines, side by side (see :data:`INTERFACE`):

* ``MODEL_TYPES``: the Hugging Face ``model_type`` values it reads (:func:`model_for` maps them to our model);
* ``config_to_hf(cfg, params=None) -> dict``: the ``config.json`` of the Hugging Face model that equals ours;
  ``params``, where given, choose between the architectures one ``Config`` can fill (BERT: MLM or classifier);
* ``config_from_hf(hf_config) -> Config``: the inverse, for configs our model can represent; anything else raises
  ValueError naming the Hugging Face key;
* ``to_hf(params, cfg) -> dict[str, np.ndarray]``: the Hugging Face state dict (float32, contiguous; copies
  Hugging Face re-ties are left out);
* ``from_hf(state_dict, cfg) -> params``: the inverse, from torch tensors or arrays, checked against ``cfg``.

:func:`load` reads a Hugging Face folder (``config.json``, ``model.safetensors``, tokenizer files) into our model
(:mod:`came_jax.hf.load`): model, ``Config``, parameters and tokenizer, as :func:`came_jax.pretrained.load`
returns them for a run of ours.

For every config Hugging Face can express, ``from_hf(to_hf(params, cfg), cfg)`` is ``params`` exactly and
``config_from_hf(config_to_hf(cfg))`` is ``cfg``. A layout no stock Hugging Face class expresses gets a model type
of its own with remote code (crammed BERT: ``came_bert``, :mod:`came_jax.hf.bert`). Writing folders is
:mod:`came_jax.export`'s.

>>> from came_jax import hf, models
>>> cfg = models.make_config("gpt2", "tiny", vocab_size=97)
>>> gpt2 = hf.get("gpt2")
>>> gpt2.config_to_hf(cfg)["architectures"]
['GPT2LMHeadModel']
>>> gpt2.config_from_hf(gpt2.config_to_hf(cfg)) == cfg
True
>>> hf.get("bert").unsupported_features(models.make_config("bert", "tiny"))[0].split(" (")[0]
'pre-LN blocks with a final LayerNorm'
>>> hf.get("resnet")
Traceback (most recent call last):
  ...
ValueError: model 'resnet' has no Hugging Face conversion (came_jax/hf/resnet.py; known: bert, gpt2, t5).
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType

from came_jax import _modules
from came_jax.hf.load import load

__all__ = ["INTERFACE", "get", "load", "model_for", "names"]

INTERFACE = ("MODEL_TYPES", "config_to_hf", "config_from_hf", "to_hf", "from_hf")


@functools.cache
def names() -> tuple[str, ...]:
  """The models with a conversion module here (one that defines the whole :data:`INTERFACE`)."""
  return _modules.with_interface(__name__, __path__, INTERFACE)


def get(model_name: str) -> ModuleType:
  """The conversion module ``came_jax.hf.<model_name>`` of a model (``config.model.name``).

  Raises:
    ValueError: naming the model when it has no conversion.
  """
  if model_name not in names():
    raise ValueError(
      f"model {model_name!r} has no Hugging Face conversion (came_jax/hf/{model_name}.py; known: {', '.join(names())})."
    )
  return importlib.import_module(f"{__name__}.{model_name}")


def model_for(model_type: str) -> str:
  """Our model (``config.model.name``) whose conversion reads Hugging Face ``model_type`` (its ``MODEL_TYPES``).

  Raises:
    ValueError: naming the ``model_type`` when no conversion reads it.
  """
  for name in names():
    if model_type in get(name).MODEL_TYPES:
      return name
  known = ", ".join(t for name in names() for t in get(name).MODEL_TYPES)
  raise ValueError(f"model_type={model_type!r} has no conversion here (known: {known})")
