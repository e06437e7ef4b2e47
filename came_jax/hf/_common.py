"""Helpers shared by the per-model Hugging Face conversions: arrays, shape checks, config keys."""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from came_jax.models import layers


def to_numpy(x: Any) -> np.ndarray:
  """A contiguous float32 numpy copy (or view) of a torch tensor, a jax array or anything ``np.asarray`` takes.

  Torch tensors are recognised by their ``detach`` method, so torch is never imported here.
  """
  if hasattr(x, "detach"):  # torch.Tensor (any device, any float dtype, bfloat16 included)
    x = x.detach().cpu().float().numpy()
  return np.ascontiguousarray(np.asarray(x, np.float32))


def checked(params: Any, init_params: Callable[..., Any], cfg: Any) -> Any:
  """``params`` as jax arrays, once their tree and shapes are those of ``init_params(cfg, key)``.

  Raises:
    ValueError: naming the leaves whose shapes differ (or both trees when their structures do).
  """
  layers.assert_same_shapes(params, jax.eval_shape(functools.partial(init_params, cfg), jax.random.key(0)))
  return jax.tree.map(jnp.asarray, params)


def expect(hf_config: Mapping[str, Any], key: str, allowed: tuple[Any, ...], default: Any, why: str) -> Any:
  """``hf_config[key]`` (``default``, Hugging Face's, when absent), which must be one of ``allowed``.

  Raises:
    ValueError: naming ``key``, its value and ``why`` our model cannot represent it.
  """
  value = hf_config.get(key, default)
  if value not in allowed:
    raise ValueError(f"Hugging Face config {key}={value!r} cannot be represented: {why}")
  return value


def check_model_type(hf_config: Mapping[str, Any], model_type: str) -> None:
  """Raises ValueError unless ``hf_config["model_type"]`` (when present) is ``model_type``."""
  found = hf_config.get("model_type", model_type)
  if found != model_type:
    raise ValueError(f"Hugging Face config model_type={found!r} is not {model_type!r}")


def one_dropout_rate(hf_config: Mapping[str, Any], keys: tuple[str, ...], default: float) -> float:
  """The one dropout rate the Hugging Face ``keys`` share (each ``default`` when absent).

  Raises:
    ValueError: naming the key that differs from the first (our models have one ``dropout_rate``).
  """
  rates = {k: hf_config.get(k, default) for k in keys}
  first = keys[0]
  for key, rate in rates.items():
    if rate != rates[first]:
      raise ValueError(
        f"Hugging Face config {key}={rate!r} cannot be represented: it differs from "
        f"{first}={rates[first]!r}, and our model has one dropout_rate"
      )
  return float(rates[first])
