"""Parameter shapes of the models the benchmarks use, from the real Flax modules, without allocating."""

import jax

from came_jax.models import bert, gpt2, t5

# name -> (model module, preset). Vocabularies are the presets' own (crammed BERT: 32768, as in cramming).
MODELS = {
    "BERT-base (crammed)": (bert, "base"),
    "BERT-large (crammed)": (bert, "large"),
    "BERT-base (original)": (bert, "bert-base-original"),
    "GPT-2 small (124M)": (gpt2, "small"),
    "GPT-2 medium": (gpt2, "medium"),
    "GPT-2 large": (gpt2, "large"),
    "T5-base (v1.1)": (t5, "base"),
    "T5-large (v1.1)": (t5, "large"),
}


def param_shapes(name: str):
  """A pytree of `jax.ShapeDtypeStruct` (fp32) for model `name` of :data:`MODELS`."""
  module, preset = MODELS[name]
  cfg = module.get_model_config(preset)
  return jax.eval_shape(lambda rng: module.init_params(cfg, rng), jax.random.key(0))


def num_bytes(tree) -> int:
  return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))
