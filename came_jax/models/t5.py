"""T5 v1.1 (T5.1.1) encoder-decoder in Flax Linen and its span-corruption loss (conversion: :mod:`came_jax.hf.t5`).

Architecture (Raffel et al. 2020, with the T5.1.1 changes):

* pre-norm residual blocks with RMSNorm (``T5LayerNorm``: no mean subtraction, no bias, statistics in fp32);
* bucketed relative position bias, bidirectional in the encoder and causal in the decoder, computed once per stack
  and shared by all its layers; cross-attention has no position bias;
* no ``1/sqrt(d_kv)`` scaling of the attention logits (it is folded into the query initialisation);
* gated-GELU feed-forward ``wo(gelu_tanh(wi_0 x) * wi_1 x)`` (Shazeer 2020);
* no biases anywhere, one embedding shared by encoder and decoder, untied LM head ``lm_head`` and no
  ``d_model**-0.5`` rescaling of the decoder output before it (T5.1.1 sets ``tie_word_embeddings=False``);
* dropout (off by default, as in T5.1.1 pretraining) on the embeddings, every sublayer output, inside the
  feed-forward after the gate, on attention probabilities and after the final norm, where Hugging Face puts it.

Parameters are always fp32; ``Config.dtype`` is the compute dtype of activations and matmuls. Norm statistics, the
attention softmax (``jax.nn.dot_product_attention`` accumulates logits in fp32) and the loss are fp32.

Parameter tree (``init_params``)::

    shared/embedding                      [vocab, d_model]
    encoder/relative_attention_bias/embedding   [num_buckets, num_heads]
    encoder/layers_{i}/{self_attn_norm,mlp_norm}/scale
    encoder/layers_{i}/self_attn/{q,k,v,o}/kernel, encoder/layers_{i}/mlp/{wi_0,wi_1,wo}/kernel
    encoder/final_norm/scale
    decoder/...                           as the encoder, plus cross_attn/{q,k,v,o} and cross_attn_norm
    lm_head/kernel                        [d_model, vocab]

Deviation from Hugging Face's initialisation: ``lm_head`` is drawn with std ``d_model**-0.5`` (t5x's
``variance_scaling(1, fan_in)``) instead of HF's 1.0, which makes initial logits O(1) for an untied head. Everything
else follows HF ``T5PreTrainedModel._init_weights`` (itself Mesh TensorFlow's): the ``1/sqrt(d_kv)`` attention
scaling lives in the std of ``q``.

References:
  Raffel et al., `Exploring the Limits of Transfer Learning with a Unified Text-to-Text Transformer
  <https://arxiv.org/abs/1910.10683>`_, JMLR 2020.
  T5.1.1 notes: `released checkpoints <https://github.com/google-research/text-to-text-transfer-transformer/blob/main/
  released_checkpoints.md#t511>`_ (GEGLU, no dropout in pretraining, no embedding/classifier sharing).
  Shazeer, `GLU Variants Improve Transformer <https://arxiv.org/abs/2002.05202>`_, 2020.
  Zhang & Sennrich, `Root Mean Square Layer Normalization <https://arxiv.org/abs/1910.07467>`_, 2019.
  Hugging Face ``transformers/models/t5/modeling_t5.py`` (the implementation the tests compare against).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from came_jax.models import layers

__all__ = [
  "CONFIGS",
  "Config",
  "T5",
  "flops_per_token",
  "init_params",
  "max_len",
  "logits_fn",
  "loss_fn",
  "relative_position_bucket",
  "shift_right",
]


# --------------------------------------------------------------------------------------------------------- config


@dataclasses.dataclass(frozen=True)
class Config:
  """Sizes of a T5 v1.1 model. Field names follow Hugging Face ``T5Config``.

  ``num_decoder_layers=None`` means as many decoder layers as encoder layers. ``dtype`` is the compute dtype
  ("float32" or "bfloat16"); parameters are fp32 regardless. ``attention_impl`` is the ``implementation`` of
  :func:`jax.nn.dot_product_attention` (None = XLA, "cudnn") where attention dropout is off.
  """

  vocab_size: int = 32128
  d_model: int = 512
  d_kv: int = 64
  d_ff: int = 1024
  num_layers: int = 8
  num_decoder_layers: int | None = None
  num_heads: int = 6
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  dropout_rate: float = 0.0
  layer_norm_epsilon: float = 1e-6
  dtype: str = "float32"
  pad_id: int = 0
  decoder_start_id: int = 0
  attention_impl: str | None = None

  def __post_init__(self):
    if self.dtype not in ("float32", "bfloat16"):
      raise ValueError(f"T5 Config.dtype must be 'float32' or 'bfloat16', got {self.dtype!r}")

  @property
  def n_decoder_layers(self) -> int:
    return self.num_layers if self.num_decoder_layers is None else self.num_decoder_layers


CONFIGS: dict[str, Config] = {
  # Well under a second per training step on a laptop CPU (batch 8, 128 inputs / 32 targets).
  "tiny": Config(d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4),
  # google/t5-v1_1-{small,base,large}: 77.0M, 247.6M, 783.2M parameters with the 32128-token vocabulary.
  "small": Config(d_model=512, d_kv=64, d_ff=1024, num_layers=8, num_heads=6),
  "base": Config(d_model=768, d_kv=64, d_ff=2048, num_layers=12, num_heads=12),
  "large": Config(d_model=1024, d_kv=64, d_ff=2816, num_layers=24, num_heads=16),
}


# ---------------------------------------------------------------------------------------------------- primitives


def relative_position_bucket(
  relative_position: jax.Array, *, bidirectional: bool, num_buckets: int = 32, max_distance: int = 128
) -> jax.Array:
  """Maps ``memory_position - query_position`` to a bucket in ``[0, num_buckets)``, as Mesh TensorFlow does.

  Half the buckets (per direction if ``bidirectional``) hold exact offsets ``0 .. max_exact-1``; the rest are
  logarithmically wider bins up to ``max_distance``, beyond which all offsets share the last bucket. In the causal
  (decoder) case positive offsets (the future) all map to bucket 0; they are masked anyway. Raffel et al. 2020, §2.1.
  """
  relative_position = jnp.asarray(relative_position, jnp.int32)
  buckets = jnp.zeros_like(relative_position)
  if bidirectional:
    num_buckets //= 2
    buckets = buckets + (relative_position > 0).astype(jnp.int32) * num_buckets
    n = jnp.abs(relative_position)
  else:
    n = -jnp.minimum(relative_position, 0)
  max_exact = num_buckets // 2
  is_small = n < max_exact
  # Same float32 operation order as HF/Mesh TF so that bucket boundaries agree bit for bit; the maximum() only
  # keeps log() finite where the result is discarded anyway.
  n_large = jnp.maximum(n, max_exact).astype(jnp.float32)
  if_large = max_exact + (
    jnp.log(n_large / max_exact) / math.log(max_distance / max_exact) * (num_buckets - max_exact)
  ).astype(jnp.int32)
  if_large = jnp.minimum(if_large, num_buckets - 1)
  return buckets + jnp.where(is_small, n, if_large)


def shift_right(labels: jax.Array, decoder_start_id: int) -> jax.Array:
  """Decoder inputs for teacher forcing: ``[start, labels[:-1]]`` along the last axis (HF ``_shift_right``)."""
  start = jnp.full(labels.shape[:-1] + (1,), decoder_start_id, labels.dtype)
  return jnp.concatenate([start, labels[..., :-1]], axis=-1)


def _attention_with_dropout(q, k, v, *, bias, mask, dropout_rate: float, dropout_rng) -> jax.Array:
  """``jax.nn.dot_product_attention(..., scale=1)`` written out, plus dropout on the probabilities.

  Only used when attention dropout is active (``jax.nn.dot_product_attention`` has none). Logits and softmax in
  fp32 as there. Shapes: q [B, T, N, H], k/v [B, S, N, H], bias/mask broadcastable to [B, N, T, S].
  """
  logits = jnp.einsum("btnh,bsnh->bnts", q, k, preferred_element_type=jnp.float32)
  if bias is not None:
    logits = logits + bias.astype(jnp.float32)
  if mask is not None:
    logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min * 0.7)
  probs = jax.nn.softmax(logits, axis=-1)
  if dropout_rate > 0.0 and dropout_rng is not None:
    keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, probs.shape)
    probs = jnp.where(keep, probs / (1.0 - dropout_rate), 0.0)
  return jnp.einsum("bnts,bsnh->btnh", probs.astype(v.dtype), v)


def _normal(std: float) -> nn.initializers.Initializer:
  return nn.initializers.normal(stddev=std)


# ------------------------------------------------------------------------------------------------------- modules


class RMSNorm(nn.Module):
  """T5LayerNorm: ``x / sqrt(mean(x^2) + eps) * scale``, statistics and scaling in fp32 (Zhang & Sennrich 2019)."""

  eps: float = 1e-6
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), jnp.float32)
    x = x.astype(jnp.float32)
    x = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + self.eps)
    return (x * scale).astype(self.dtype)


class RelativePositionBias(nn.Module):
  """Learned scalar bias per (bucket, head), returned as fp32 [1, num_heads, q_len, k_len]."""

  num_heads: int
  num_buckets: int
  max_distance: int
  bidirectional: bool
  init_std: float

  @nn.compact
  def __call__(self, q_len: int, k_len: int) -> jax.Array:
    table = self.param("embedding", _normal(self.init_std), (self.num_buckets, self.num_heads), jnp.float32)
    relative = jnp.arange(k_len)[None, :] - jnp.arange(q_len)[:, None]
    bucket = relative_position_bucket(
      relative, bidirectional=self.bidirectional, num_buckets=self.num_buckets, max_distance=self.max_distance
    )
    return jnp.transpose(table[bucket], (2, 0, 1))[None]


class Attention(nn.Module):
  """Multi-head attention without logit scaling; ``bias`` (relative positions) and boolean ``mask`` are added."""

  cfg: Config

  @nn.compact
  def __call__(self, x, kv, *, bias, mask, deterministic: bool) -> jax.Array:
    cfg = self.cfg
    dtype = jnp.dtype(cfg.dtype)
    inner = cfg.num_heads * cfg.d_kv

    def dense(features, std, name):
      return nn.Dense(features, use_bias=False, dtype=dtype, kernel_init=_normal(std), name=name)

    def heads(y):
      return y.reshape(y.shape[:-1] + (cfg.num_heads, cfg.d_kv))

    q = heads(dense(inner, (cfg.d_model * cfg.d_kv) ** -0.5, "q")(x))
    k = heads(dense(inner, cfg.d_model**-0.5, "k")(kv))
    v = heads(dense(inner, cfg.d_model**-0.5, "v")(kv))
    if deterministic or cfg.dropout_rate == 0.0:
      out = jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask, scale=1.0, implementation=cfg.attention_impl)
    else:
      out = _attention_with_dropout(
        q, k, v, bias=bias, mask=mask, dropout_rate=cfg.dropout_rate, dropout_rng=self.make_rng("dropout")
      )
    out = out.reshape(out.shape[:-2] + (inner,))
    return dense(cfg.d_model, inner**-0.5, "o")(out)


class GatedGeluMLP(nn.Module):
  """GEGLU feed-forward ``wo(dropout(gelu_tanh(wi_0 x) * wi_1 x))`` (Shazeer 2020; HF ``T5DenseGatedActDense``)."""

  cfg: Config

  @nn.compact
  def __call__(self, x: jax.Array, *, deterministic: bool) -> jax.Array:
    cfg = self.cfg
    dtype = jnp.dtype(cfg.dtype)
    dense = lambda f, std, name: nn.Dense(f, use_bias=False, dtype=dtype, kernel_init=_normal(std), name=name)
    gate = jax.nn.gelu(dense(cfg.d_ff, cfg.d_model**-0.5, "wi_0")(x), approximate=True)  # HF "gelu_new"
    h = gate * dense(cfg.d_ff, cfg.d_model**-0.5, "wi_1")(x)
    h = nn.Dropout(cfg.dropout_rate)(h, deterministic=deterministic)
    return dense(cfg.d_model, cfg.d_ff**-0.5, "wo")(h)


class Block(nn.Module):
  """Pre-norm layer: self-attention, cross-attention (decoder only), feed-forward, each ``x + drop(f(norm(x)))``."""

  cfg: Config
  is_decoder: bool

  @nn.compact
  def __call__(self, x, *, self_bias, self_mask, encoded=None, cross_mask=None, deterministic: bool):
    cfg = self.cfg
    dtype = jnp.dtype(cfg.dtype)
    drop = lambda y: nn.Dropout(cfg.dropout_rate)(y, deterministic=deterministic)
    norm = lambda name: RMSNorm(cfg.layer_norm_epsilon, dtype, name=name)

    h = norm("self_attn_norm")(x)
    attn = Attention(cfg, name="self_attn")
    x = x + drop(attn(h, h, bias=self_bias, mask=self_mask, deterministic=deterministic))
    if self.is_decoder:
      h = norm("cross_attn_norm")(x)
      x = x + drop(
        Attention(cfg, name="cross_attn")(h, encoded, bias=None, mask=cross_mask, deterministic=deterministic)
      )
    h = norm("mlp_norm")(x)
    return x + drop(GatedGeluMLP(cfg, name="mlp")(h, deterministic=deterministic))


class Stack(nn.Module):
  """Encoder (``is_decoder=False``) or decoder stack over already embedded tokens; ends with RMSNorm + dropout."""

  cfg: Config
  is_decoder: bool

  @nn.compact
  def __call__(self, x, *, self_mask, encoded=None, cross_mask=None, deterministic: bool):
    cfg = self.cfg
    position_bias = RelativePositionBias(
      num_heads=cfg.num_heads,
      num_buckets=cfg.relative_attention_num_buckets,
      max_distance=cfg.relative_attention_max_distance,
      bidirectional=not self.is_decoder,
      init_std=cfg.d_model**-0.5,
      name="relative_attention_bias",
    )(x.shape[1], x.shape[1])
    x = nn.Dropout(cfg.dropout_rate)(x, deterministic=deterministic)
    n_layers = cfg.n_decoder_layers if self.is_decoder else cfg.num_layers
    for i in range(n_layers):
      x = Block(cfg, self.is_decoder, name=f"layers_{i}")(
        x,
        self_bias=position_bias,
        self_mask=self_mask,
        encoded=encoded,
        cross_mask=cross_mask,
        deterministic=deterministic,
      )
    x = RMSNorm(cfg.layer_norm_epsilon, jnp.dtype(cfg.dtype), name="final_norm")(x)
    return nn.Dropout(cfg.dropout_rate)(x, deterministic=deterministic)


class T5(nn.Module):
  """T5 v1.1 encoder-decoder returning fp32 logits [B, T_dec, vocab]."""

  cfg: Config

  def setup(self):
    cfg = self.cfg
    dtype = jnp.dtype(cfg.dtype)
    self.shared = nn.Embed(cfg.vocab_size, cfg.d_model, dtype=dtype, embedding_init=_normal(1.0))
    self.encoder = Stack(cfg, is_decoder=False)
    self.decoder = Stack(cfg, is_decoder=True)
    self.lm_head = nn.Dense(cfg.vocab_size, use_bias=False, dtype=dtype, kernel_init=_normal(cfg.d_model**-0.5))

  def encode(self, input_ids, attention_mask, *, deterministic: bool = True) -> jax.Array:
    mask = attention_mask.astype(bool)[:, None, None, :]
    return self.encoder(self.shared(input_ids), self_mask=mask, deterministic=deterministic)

  def decode(self, decoder_input_ids, encoded, attention_mask, *, deterministic: bool = True) -> jax.Array:
    t = decoder_input_ids.shape[1]
    causal = jnp.tril(jnp.ones((t, t), bool))[None, None]
    x = self.decoder(
      self.shared(decoder_input_ids),
      self_mask=causal,
      encoded=encoded,
      cross_mask=attention_mask.astype(bool)[:, None, None, :],
      deterministic=deterministic,
    )
    return self.lm_head(x).astype(jnp.float32)

  def __call__(self, input_ids, attention_mask, decoder_input_ids, *, deterministic: bool = True) -> jax.Array:
    encoded = self.encode(input_ids, attention_mask, deterministic=deterministic)
    return self.decode(decoder_input_ids, encoded, attention_mask, deterministic=deterministic)


# ------------------------------------------------------------------------------------------ the common interface


def max_len(cfg: Config) -> int | None:
  """None: relative position buckets take inputs of any length."""
  return None


def init_params(cfg: Config, rng: jax.Array) -> dict:
  """Random fp32 parameters (the contents of the Linen ``params`` collection)."""
  ids = jnp.zeros((1, 2), jnp.int32)
  return jax.jit(lambda r: T5(cfg).init(r, ids, jnp.ones((1, 2), jnp.int32), ids)["params"])(rng)


def logits_fn(params, batch: Mapping[str, jax.Array], *, cfg: Config, train: bool = False, rng=None) -> jax.Array:
  """fp32 logits [B, To, vocab] of the decoder.

  ``batch``: ``input_ids`` [B, Ti], and ``decoder_input_ids`` [B, To] or ``labels`` [B, To] (then the decoder
  inputs are the labels shifted right behind ``cfg.decoder_start_id``); optional ``attention_mask`` [B, Ti]
  (default: ``input_ids != cfg.pad_id``). ``rng`` is the dropout key, used only when ``train`` and
  ``cfg.dropout_rate > 0`` (it may then not be None).
  """
  input_ids = batch["input_ids"]
  mask = batch.get("attention_mask")
  mask = input_ids != cfg.pad_id if mask is None else mask
  decoder_input_ids = batch.get("decoder_input_ids")
  if decoder_input_ids is None:
    decoder_input_ids = shift_right(batch["labels"], cfg.decoder_start_id)
  use_dropout = train and cfg.dropout_rate > 0.0
  return T5(cfg).apply(
    {"params": params},
    input_ids,
    mask,
    decoder_input_ids,
    deterministic=not use_dropout,
    rngs={"dropout": rng} if use_dropout else None,
  )


def loss_fn(params, batch: Mapping[str, jax.Array], rng, *, cfg: Config, train: bool):
  """Weighted mean token cross-entropy of span-corruption targets.

  Args:
    params: from ``init_params`` or ``came_jax.hf.t5.from_hf``.
    batch: ``input_ids`` [B, Ti] (pad = ``cfg.pad_id`` is masked out of attention), ``labels`` [B, To] and float
      ``weights`` [B, To]. Decoder inputs are ``labels`` shifted right behind ``cfg.decoder_start_id``.
    rng: dropout key, used only when ``train`` and ``cfg.dropout_rate > 0`` (may then not be None).
    cfg: static model config.
    train: enables dropout.

  Returns:
    ``(loss, metrics)``: fp32 scalar ``sum(w * ce) / sum(w)`` and fp32 scalars ``loss``, ``num_tokens`` (sum of
    weights) and ``accuracy`` (weighted argmax accuracy).
  """
  labels = batch["labels"]
  weights = batch["weights"].astype(jnp.float32)
  logits = logits_fn(params, {"input_ids": batch["input_ids"], "labels": labels}, cfg=cfg, train=train, rng=rng)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  num_tokens = weights.sum()
  denom = jnp.where(num_tokens > 0, num_tokens, 1.0)
  loss = (ce * weights).sum() / denom
  accuracy = (layers.is_argmax(logits, labels) * weights).sum() / denom
  return loss, {"loss": loss, "num_tokens": num_tokens, "accuracy": accuracy}


def flops_per_token(cfg: Config, batch_shapes: Mapping[str, tuple[int, ...]]) -> float:
  """Training FLOPs (forward + backward) per *encoder input token*, nanoGPT style (6N + attention).

  An example has ``Ti`` encoder tokens (``input_ids`` [B, Ti]) and ``To`` decoder tokens (``labels``
  or ``decoder_input_ids`` [B, To]; without either, Ti: for T5 span corruption with 15% noise and mean span 3 a
  512-token input has 114 targets). Per example, every weight matrix costs 6 FLOPs per token it is applied to:

  * encoder layers (q, k, v, o, wi_0, wi_1, wo) and the decoder's cross-attention k, v act on ``Ti`` tokens;
  * decoder self-attention, cross-attention q, o, feed-forward and ``lm_head`` act on ``To`` tokens;

  and attention adds ``12 * num_heads * d_kv`` per (query, key) pair per layer (QK^T and AV, forward and backward,
  no causal discount, as in nanoGPT): Ti^2 per encoder layer, To^2 + To*Ti per decoder layer. Embedding lookups,
  norms and softmax are not counted. The total is divided by ``Ti``.
  """
  ti = batch_shapes["input_ids"][-1]
  targets = batch_shapes.get("labels", batch_shapes.get("decoder_input_ids"))
  to = ti if targets is None else targets[-1]
  d, inner = cfg.d_model, cfg.num_heads * cfg.d_kv
  attn_proj, mlp = 4 * d * inner, 3 * d * cfg.d_ff
  le, ld = cfg.num_layers, cfg.n_decoder_layers
  matmul_params_times_tokens = ti * (le * (attn_proj + mlp) + ld * 2 * d * inner) + to * (
    ld * (attn_proj + 2 * d * inner + mlp) + d * cfg.vocab_size
  )
  attention_pairs = le * ti * ti + ld * (to * to + to * ti)
  return float(6 * matmul_params_times_tokens + 12 * inner * attention_pairs) / ti
