"""T5 v1.1 <-> Hugging Face ``T5ForConditionalGeneration`` (``feed_forward_proj="gated-gelu"``): config and weights.

Linear weights are ``[out, in]`` there and ``[in, out]`` here; everything else maps one to one (:func:`_hf_names`).
The head stays untied, as in Google's released T5.1.1 checkpoints: ``config.json`` says
``tie_word_embeddings=False``, which ``transformers`` 5 reads as "do not rescale the decoder output" (it then forces
``tie_word_embeddings=True`` and records ``scale_decoder_outputs=False``) while keeping the separate
``lm_head.weight`` of the checkpoint; it warns on loading that ``shared.weight`` and ``lm_head.weight`` differ and
will not be tied, which is intended. A checkpoint without ``lm_head.weight`` (a tied head) reads with the head
equal to the shared embedding.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from came_jax.data import tokenizer as tokenizer_lib
from came_jax.hf import _common
from came_jax.models import t5

MODEL_TYPES = ("t5",)  # the Hugging Face model types read here

# Present in Hugging Face state dicts but not separate parameters here (tied copies of ``shared``, an unused
# leftover).
_HF_IGNORED = (
  "encoder.embed_tokens.weight",
  "decoder.embed_tokens.weight",
  "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight",
)


def _hf_names(cfg: t5.Config) -> dict[tuple[str, ...], tuple[str, bool]]:
  """Our parameter path -> (Hugging Face ``T5ForConditionalGeneration`` state_dict key, whether to transpose)."""
  names: dict[tuple[str, ...], tuple[str, bool]] = {
    ("shared", "embedding"): ("shared.weight", False),
    ("lm_head", "kernel"): ("lm_head.weight", True),
  }
  for stack, n_layers in (("encoder", cfg.num_layers), ("decoder", cfg.n_decoder_layers)):
    names[(stack, "relative_attention_bias", "embedding")] = (
      f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
      False,
    )
    names[(stack, "final_norm", "scale")] = (f"{stack}.final_layer_norm.weight", False)
    for i in range(n_layers):
      ours, hf = (stack, f"layers_{i}"), f"{stack}.block.{i}.layer"
      sublayers = [("self_attn", "0.SelfAttention")]
      if stack == "decoder":
        sublayers.append(("cross_attn", "1.EncDecAttention"))
      for name, hf_name in sublayers:
        for p in "qkvo":
          names[ours + (name, p, "kernel")] = (f"{hf}.{hf_name}.{p}.weight", True)
        names[ours + (f"{name}_norm", "scale")] = (f"{hf}.{hf_name.split('.')[0]}.layer_norm.weight", False)
      ff = "2" if stack == "decoder" else "1"
      for p in ("wi_0", "wi_1", "wo"):
        names[ours + ("mlp", p, "kernel")] = (f"{hf}.{ff}.DenseReluDense.{p}.weight", True)
      names[ours + ("mlp_norm", "scale")] = (f"{hf}.{ff}.layer_norm.weight", False)
  return names


def config_to_hf(cfg: t5.Config, params: Any = None) -> dict[str, Any]:
  """The ``config.json`` of ``T5ForConditionalGeneration`` for ``cfg`` (``params`` unused: one architecture)."""
  del params
  return {
    "architectures": ["T5ForConditionalGeneration"],
    "model_type": "t5",
    "vocab_size": cfg.vocab_size,
    "d_model": cfg.d_model,
    "d_kv": cfg.d_kv,
    "d_ff": cfg.d_ff,
    "num_layers": cfg.num_layers,
    "num_decoder_layers": cfg.n_decoder_layers,
    "num_heads": cfg.num_heads,
    "relative_attention_num_buckets": cfg.relative_attention_num_buckets,
    "relative_attention_max_distance": cfg.relative_attention_max_distance,
    "dropout_rate": cfg.dropout_rate,
    "layer_norm_epsilon": cfg.layer_norm_epsilon,
    "feed_forward_proj": "gated-gelu",
    # T5.1.1: an untied head and no d_model**-0.5 rescaling before it; transformers reads this flag as
    # "do not rescale" and keeps the separate lm_head.weight found in the checkpoint.
    "tie_word_embeddings": False,
    "pad_token_id": cfg.pad_id,
    "decoder_start_token_id": cfg.decoder_start_id,
    "eos_token_id": tokenizer_lib.EOS_ID,
    "is_encoder_decoder": True,
  }


def config_from_hf(hf_config: Mapping[str, Any]) -> t5.Config:
  """Our ``Config`` for a Hugging Face T5 ``config.json`` of a T5 v1.1 (absent keys: Hugging Face's defaults).

  ``num_decoder_layers`` equal to ``num_layers`` becomes None (our "as many as the encoder"); a missing
  ``decoder_start_token_id`` is the pad id (T5's convention); ``dtype`` and ``attention_impl`` (ours alone) keep
  their defaults; ``initializer_factor`` only scales a fresh initialisation and is ignored.

  Raises:
    ValueError: naming the Hugging Face key of a feature our T5 v1.1 lacks (another feed-forward, as in the
      original T5's "relu"; the decoder-output rescaling of a tied head; no pad id).
  """
  _common.check_model_type(hf_config, "t5")
  _common.expect(hf_config, "feed_forward_proj", ("gated-gelu",), "relu", "our T5 v1.1 has a gated-GELU MLP")
  # transformers 5 records the rescaling as scale_decoder_outputs; older configs as tie_word_embeddings (True:
  # rescale), which transformers 5 then forces to True.
  if "scale_decoder_outputs" in hf_config:
    _common.expect(
      hf_config,
      "scale_decoder_outputs",
      (False,),
      True,
      "our T5 v1.1 does not rescale the decoder output by d_model**-0.5 before its untied head",
    )
  else:
    _common.expect(
      hf_config,
      "tie_word_embeddings",
      (False,),
      True,
      "our T5 v1.1 has an untied head without the d_model**-0.5 rescaling of a tied one",
    )
  pad_id = hf_config.get("pad_token_id", 0)
  if not isinstance(pad_id, int):
    raise ValueError(
      f"Hugging Face config pad_token_id={pad_id!r} cannot be represented: our T5 masks the "
      "encoder padding by one pad id"
    )
  num_layers = hf_config.get("num_layers", 6)
  num_decoder_layers = hf_config.get("num_decoder_layers")
  decoder_start_id = hf_config.get("decoder_start_token_id")
  return t5.Config(
    vocab_size=hf_config.get("vocab_size", 32128),
    d_model=hf_config.get("d_model", 512),
    d_kv=hf_config.get("d_kv", 64),
    d_ff=hf_config.get("d_ff", 2048),
    num_layers=num_layers,
    num_decoder_layers=None if num_decoder_layers in (None, num_layers) else num_decoder_layers,
    num_heads=hf_config.get("num_heads", 8),
    relative_attention_num_buckets=hf_config.get("relative_attention_num_buckets", 32),
    relative_attention_max_distance=hf_config.get("relative_attention_max_distance", 128),
    dropout_rate=float(hf_config.get("dropout_rate", 0.1)),
    layer_norm_epsilon=hf_config.get("layer_norm_epsilon", 1e-6),
    pad_id=pad_id,
    decoder_start_id=pad_id if decoder_start_id is None else decoder_start_id,
  )


def to_hf(params: Any, cfg: t5.Config) -> dict[str, np.ndarray]:
  """Inverse of :func:`from_hf`: float32 numpy arrays under Hugging Face names (tied embedding copies included)."""
  names = _hf_names(cfg)
  out: dict[str, np.ndarray] = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    hf, transpose = names[tuple(k.key for k in path)]
    value = _common.to_numpy(leaf)
    out[hf] = np.ascontiguousarray(value.T if transpose else value)
  out["encoder.embed_tokens.weight"] = out["shared.weight"]
  out["decoder.embed_tokens.weight"] = out["shared.weight"]
  return out


def from_hf(state_dict: Mapping[str, Any], cfg: t5.Config) -> dict:
  """A Hugging Face ``T5ForConditionalGeneration`` (``feed_forward_proj="gated-gelu"``) state dict -> ours.

  Accepts torch tensors or arrays. Linear weights [out, in] become kernels [in, out]. Raises on missing,
  unexpected or mis-shaped entries, so a config mismatch cannot load silently.

  Raises:
    ValueError: unexpected keys (naming them) or a shape that differs from ``cfg``'s.
    KeyError: a missing key (naming it).
  """
  shapes = jax.eval_shape(lambda: t5.init_params(cfg, jax.random.key(0)))
  names = _hf_names(cfg)
  unexpected = set(state_dict) - {hf for hf, _ in names.values()} - set(_HF_IGNORED)
  if unexpected:
    raise ValueError(f"unexpected keys in T5 state_dict (is it a gated-gelu T5 v1.1?): {sorted(unexpected)}")

  def convert(path, leaf):
    ours = tuple(k.key for k in path)
    hf, transpose = names[ours]
    if hf not in state_dict:
      if ours == ("lm_head", "kernel"):  # a tied checkpoint: the head is the embedding
        hf, transpose = "shared.weight", True
      else:
        raise KeyError(f"{hf} missing from T5 state_dict")
    value = _common.to_numpy(state_dict[hf])
    value = value.T if transpose else value
    if value.shape != leaf.shape:
      raise ValueError(f"{hf}: shape {value.shape} does not match {'/'.join(ours)} {leaf.shape}")
    return jnp.asarray(value)

  return jax.tree_util.tree_map_with_path(convert, shapes)
