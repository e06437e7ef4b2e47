"""Parameter shapes of full-size models, from the real Flax modules without allocating, and their bytes."""

from __future__ import annotations

from typing import Any

import jax

from came_jax import models

# label -> (model name, preset): the models the benchmarks and the memory tables size. Vocabularies are the
# presets' own (crammed BERT: 32768, as in cramming).
MODELS = {
  "BERT-base (crammed)": ("bert", "base"),
  "BERT-large (crammed)": ("bert", "large"),
  "BERT-base (original)": ("bert", "bert-base-original"),
  "GPT-2 small (124M)": ("gpt2", "small"),
  "GPT-2 medium": ("gpt2", "medium"),
  "GPT-2 large": ("gpt2", "large"),
  "T5-base (v1.1)": ("t5", "base"),
  "T5-large (v1.1)": ("t5", "large"),
}


def param_shapes(label: str) -> Any:
  """A pytree of `jax.ShapeDtypeStruct` (fp32) of the parameters of model `label` of :data:`MODELS`."""
  name, preset = MODELS[label]
  cfg = models.make_config(name, preset)
  return jax.eval_shape(lambda rng: models.get(name).init_params(cfg, rng), jax.random.key(0))


def num_bytes(tree: Any) -> int:
  """Bytes of the arrays (or `jax.ShapeDtypeStruct`s) of a pytree.

  >>> import numpy as np
  >>> num_bytes({"w": np.zeros((2, 3), np.float32), "b": jax.ShapeDtypeStruct((4,), np.int8)})
  28
  """
  return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))


def num_params(tree: Any) -> int:
  """Number of parameters (array elements) of a pytree.

  >>> import numpy as np
  >>> num_params({"w": np.zeros((2, 3)), "b": np.zeros(4)})
  10
  """
  return sum(x.size for x in jax.tree.leaves(tree))
