"""GPT-2 in Flax Linen: learned positions, pre-LN blocks with biases, tanh-GELU, causal attention, tied embeddings.

Numerically equal to Hugging Face ``GPT2LMHeadModel`` (conversion: :mod:`came_jax.hf.gpt2`); initialisation follows
GPT-2 / nanoGPT: normal(0.02) everywhere and normal(0.02 / sqrt(2 * num_layers)) for the kernels that write into the
residual stream. Parameter tree: ``wte``, ``wpe``, ``layers_{i}/{attention_norm, attention/{qkv,out}, mlp_norm,
mlp/{wi,wo}}``, ``final_norm``.

References:
  Radford et al., `Language models are unsupervised multitask learners
  <https://cdn.openai.com/better-language-models/language_models_are_unsupervised_multitask_learners.pdf>`_, 2019.
  Karpathy, nanoGPT (``model.py``, ``estimate_mfu``), https://github.com/karpathy/nanoGPT.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from came_jax.models import layers


@dataclasses.dataclass(frozen=True)
class Config:
  """GPT-2 sizes. Defaults are GPT-2 small (124M).

  Attributes:
    vocab_size, hidden_dim, num_layers, num_heads, ffn_dim: sizes (``ffn_dim`` is 4 * hidden_dim in GPT-2).
    max_len: context length (number of learned positions).
    dropout_rate: dropout on embeddings, residual branches and attention probabilities (GPT-2 used 0.1; off by
      default, as in nanoGPT pretraining).
    layer_norm_eps, init_std: LayerNorm epsilon; std of the normal initialisation.
    dtype: compute dtype, "float32" or "bfloat16" (parameters are always float32).
    attention_impl: ``implementation`` for :func:`jax.nn.dot_product_attention` (None = XLA, "cudnn").
  """

  vocab_size: int = 50257
  hidden_dim: int = 768
  num_layers: int = 12
  num_heads: int = 12
  ffn_dim: int = 3072
  max_len: int = 1024
  dropout_rate: float = 0.0
  layer_norm_eps: float = 1e-5
  init_std: float = 0.02
  dtype: str = "float32"
  attention_impl: str | None = None

  def __post_init__(self):
    if self.hidden_dim % self.num_heads:
      raise ValueError(f"hidden_dim={self.hidden_dim} not divisible by num_heads={self.num_heads}")
    layers.compute_dtype(self.dtype)


CONFIGS: dict[str, Config] = {
  "tiny": Config(hidden_dim=64, num_layers=2, num_heads=2, ffn_dim=256, max_len=256),
  "small": Config(),
  "medium": Config(hidden_dim=1024, num_layers=24, num_heads=16, ffn_dim=4096),
  "large": Config(hidden_dim=1280, num_layers=36, num_heads=20, ffn_dim=5120),
}


class GPT2(nn.Module):
  """GPT-2 language model; returns float32 next-token logits ``[B, T, V]``."""

  cfg: Config

  @nn.compact
  def __call__(self, input_ids, attention_mask=None, *, train: bool = False):
    cfg, dtype = self.cfg, layers.compute_dtype(self.cfg.dtype)
    t = input_ids.shape[1]
    if t > cfg.max_len:
      raise ValueError(f"sequence length {t} exceeds max_len={cfg.max_len}")
    embed = functools.partial(
      nn.Embed, dtype=dtype, param_dtype=jnp.float32, embedding_init=nn.initializers.normal(cfg.init_std)
    )
    wte = embed(cfg.vocab_size, cfg.hidden_dim, name="wte")
    x = wte(input_ids) + embed(cfg.max_len, cfg.hidden_dim, name="wpe")(jnp.arange(t))[None]
    x = nn.Dropout(cfg.dropout_rate)(x, deterministic=not train)
    mask = layers.padding_mask(attention_mask)
    for i in range(cfg.num_layers):
      x = layers.TransformerBlock(
        num_heads=cfg.num_heads,
        ffn_dim=cfg.ffn_dim,
        pre_ln=True,
        use_bias=True,
        glu=False,
        approximate_gelu=True,  # HF "gelu_new"
        is_causal=True,
        dropout_rate=cfg.dropout_rate,
        layer_norm_eps=cfg.layer_norm_eps,
        init_std=cfg.init_std,
        out_init_std=cfg.init_std / math.sqrt(2 * cfg.num_layers),
        dtype=dtype,
        attention_impl=cfg.attention_impl,
        name=f"layers_{i}",
      )(x, mask, deterministic=not train)
    x = layers.layer_norm(cfg.layer_norm_eps, dtype, "final_norm")(x)
    return layers.tied_logits(x, wte.embedding, dtype)


def max_len(cfg: Config) -> int | None:
  """Longest input in tokens (its learned positions)."""
  return cfg.max_len


def init_params(cfg: Config, rng: jax.Array) -> dict:
  """Float32 parameters of :class:`GPT2` (the Linen ``params`` collection)."""
  return GPT2(cfg).init({"params": rng}, jnp.zeros((1, min(8, cfg.max_len)), jnp.int32))["params"]


def logits_fn(params, batch, *, cfg: Config, train: bool = False, rng: jax.Array | None = None) -> jax.Array:
  """Float32 logits ``[B, T, V]`` of ``batch["input_ids"]``; causality is built in.

  ``batch``: ``input_ids`` [B, T] and optionally ``attention_mask`` [B, T] (1 = real token).
  """
  rngs = {"dropout": rng} if train and rng is not None else None
  return GPT2(cfg).apply({"params": params}, batch["input_ids"], batch.get("attention_mask"), train=train, rngs=rngs)


def loss_fn(params, batch, rng, *, cfg: Config, train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Causal LM loss: mean cross-entropy of ``labels`` (the next tokens) weighted by ``weights``.

  ``batch``: ``input_ids``, ``labels`` [B, T] int32, ``weights`` [B, T] float32, optional ``attention_mask``.
  Returns ``(loss, {"loss", "accuracy", "num_tokens"})``, all float32 scalars.
  """
  logits = logits_fn(params, batch, cfg=cfg, train=train, rng=rng)
  return layers.weighted_cross_entropy(logits, batch["labels"], batch["weights"])


@functools.cache
def _num_params_without_positions(cfg: Config) -> int:
  shapes = jax.eval_shape(functools.partial(init_params, cfg), jax.random.key(0))
  total = sum(math.prod(x.shape) for x in jax.tree.leaves(shapes))
  return total - cfg.max_len * cfg.hidden_dim


def flops_per_token(cfg: Config, batch_shapes: Mapping[str, tuple[int, ...]]) -> float:
  """Training FLOPs per token as in nanoGPT's ``estimate_mfu``: ``6 * N + 12 * L * d * T``.

  ``T`` is the sequence length of ``batch_shapes["input_ids"]`` ([B, T]).
  ``N`` counts every parameter except the position embeddings; the tied token embedding is included because it
  is the output projection (nanoGPT's ``get_num_params(non_embedding=True)``).
  """
  seq_len = batch_shapes["input_ids"][-1]
  return 6.0 * _num_params_without_positions(cfg) + 12.0 * cfg.num_layers * cfg.hidden_dim * seq_len
