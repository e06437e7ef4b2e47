"""GPT-2 <-> Hugging Face ``GPT2LMHeadModel``: ``config.json`` and state dict, both ways.

Our tree (``wte``, ``wpe``, ``layers_{i}/{attention_norm, attention/{qkv,out}, mlp_norm, mlp/{wi,wo}}``,
``final_norm``) maps one to one onto Hugging Face's ``transformer.*`` names. Hugging Face's ``Conv1D`` stores
``[in, out]`` like our kernels, so nothing is transposed, and ``c_attn`` is our fused ``qkv``. The output head is
tied to ``wte`` on both sides: ``lm_head.weight`` is neither written nor read.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from came_jax.data import tokenizer as tokenizer_lib
from came_jax.hf import _common
from came_jax.models import gpt2

MODEL_TYPES = ("gpt2",)  # the Hugging Face model types read here

_TANH_GELU = ("gelu_new", "gelu_pytorch_tanh")  # two Hugging Face names of the tanh GELU our MLP uses
_DROPOUTS = ("resid_pdrop", "embd_pdrop", "attn_pdrop")


def config_to_hf(cfg: gpt2.Config, params: Any = None) -> dict[str, Any]:
  """The ``config.json`` of ``GPT2LMHeadModel`` for ``cfg`` (``params`` unused: GPT-2 has one architecture)."""
  del params
  return {
    "architectures": ["GPT2LMHeadModel"],
    "model_type": "gpt2",
    "vocab_size": cfg.vocab_size,
    "n_positions": cfg.max_len,
    "n_embd": cfg.hidden_dim,
    "n_layer": cfg.num_layers,
    "n_head": cfg.num_heads,
    "n_inner": cfg.ffn_dim,
    "activation_function": "gelu_new",  # tanh GELU, as ours
    **{key: cfg.dropout_rate for key in _DROPOUTS},
    "layer_norm_epsilon": cfg.layer_norm_eps,
    "initializer_range": cfg.init_std,
    "scale_attn_weights": True,
    "scale_attn_by_inverse_layer_idx": False,
    "reorder_and_upcast_attn": False,
    "bos_token_id": tokenizer_lib.EOS_ID,
    "eos_token_id": tokenizer_lib.EOS_ID,
    "pad_token_id": tokenizer_lib.PAD_ID,
    "tie_word_embeddings": True,
  }


def config_from_hf(hf_config: Mapping[str, Any]) -> gpt2.Config:
  """Our ``Config`` for a Hugging Face GPT-2 ``config.json`` (absent keys take Hugging Face's defaults).

  ``dtype`` and ``attention_impl`` (ours alone) keep their defaults; token ids and the ``summary_*`` keys of the
  double-heads model do not change the language model and are ignored.

  Raises:
    ValueError: naming the Hugging Face key of a feature our GPT-2 lacks (another activation, unscaled or
      layer-scaled attention, cross-attention, an untied head, per-site dropout rates).
  """
  _common.check_model_type(hf_config, "gpt2")
  _common.expect(hf_config, "activation_function", _TANH_GELU, "gelu_new", "our MLP uses the tanh GELU")
  _common.expect(hf_config, "scale_attn_weights", (True,), True, "our attention scales by 1/sqrt(head_dim)")
  _common.expect(
    hf_config, "scale_attn_by_inverse_layer_idx", (False,), False, "our attention does not scale by the layer index"
  )
  _common.expect(hf_config, "add_cross_attention", (False,), False, "our GPT-2 has no cross-attention")
  _common.expect(hf_config, "tie_word_embeddings", (True,), True, "our output head is tied to wte")
  hidden = hf_config.get("n_embd", 768)
  ffn = hf_config.get("n_inner")
  return gpt2.Config(
    vocab_size=hf_config.get("vocab_size", 50257),
    hidden_dim=hidden,
    num_layers=hf_config.get("n_layer", 12),
    num_heads=hf_config.get("n_head", 12),
    ffn_dim=4 * hidden if ffn is None else ffn,  # Hugging Face's None: 4 * n_embd
    max_len=hf_config.get("n_positions", 1024),
    dropout_rate=_common.one_dropout_rate(hf_config, _DROPOUTS, 0.1),
    layer_norm_eps=hf_config.get("layer_norm_epsilon", 1e-5),
    init_std=hf_config.get("initializer_range", 0.02),
  )


def to_hf(params: Any, cfg: gpt2.Config) -> dict[str, np.ndarray]:
  """Our GPT-2 parameters -> ``GPT2LMHeadModel`` state dict, float32 (``lm_head`` omitted: tied to ``wte``)."""
  sd = {
    "transformer.wte.weight": _common.to_numpy(params["wte"]["embedding"]),
    "transformer.wpe.weight": _common.to_numpy(params["wpe"]["embedding"]),
  }

  def dense(prefix, p):
    sd[f"{prefix}.weight"], sd[f"{prefix}.bias"] = _common.to_numpy(p["kernel"]), _common.to_numpy(p["bias"])

  def norm(prefix, p):
    sd[f"{prefix}.weight"], sd[f"{prefix}.bias"] = _common.to_numpy(p["scale"]), _common.to_numpy(p["bias"])

  for i in range(cfg.num_layers):
    layer, h = params[f"layers_{i}"], f"transformer.h.{i}"
    norm(f"{h}.ln_1", layer["attention_norm"])
    dense(f"{h}.attn.c_attn", layer["attention"]["qkv"])
    dense(f"{h}.attn.c_proj", layer["attention"]["out"])
    norm(f"{h}.ln_2", layer["mlp_norm"])
    dense(f"{h}.mlp.c_fc", layer["mlp"]["wi"])
    dense(f"{h}.mlp.c_proj", layer["mlp"]["wo"])
  norm("transformer.ln_f", params["final_norm"])
  return sd


def from_hf(state_dict: Mapping[str, Any], cfg: gpt2.Config) -> dict:
  """A Hugging Face ``GPT2LMHeadModel`` (or ``GPT2Model``) state dict -> our parameters (jax arrays).

  Values may be torch tensors or arrays; ``lm_head`` is taken to be tied to ``wte``.

  Raises:
    ValueError: the tree or shapes differ from ``cfg``'s.
  """
  sd = {k.removeprefix("transformer."): _common.to_numpy(v) for k, v in state_dict.items()}

  def dense(prefix):
    return {"kernel": sd[f"{prefix}.weight"], "bias": sd[f"{prefix}.bias"]}

  def norm(prefix):
    return {"scale": sd[f"{prefix}.weight"], "bias": sd[f"{prefix}.bias"]}

  params = {
    "wte": {"embedding": sd["wte.weight"]},
    "wpe": {"embedding": sd["wpe.weight"]},
    "final_norm": norm("ln_f"),
  }
  for i in range(cfg.num_layers):
    p = f"h.{i}"
    params[f"layers_{i}"] = {
      "attention_norm": norm(f"{p}.ln_1"),
      "attention": {"qkv": dense(f"{p}.attn.c_attn"), "out": dense(f"{p}.attn.c_proj")},
      "mlp_norm": norm(f"{p}.ln_2"),
      "mlp": {"wi": dense(f"{p}.mlp.c_fc"), "wo": dense(f"{p}.mlp.c_proj")},
    }
  return _common.checked(params, gpt2.init_params, cfg)
