"""Transformer pieces shared by BERT and GPT-2 (and usable by T5): attention, MLP, block, tied logits, weighted loss.

Conventions, the same in every model file:

* Parameters are always float32 (``param_dtype=jnp.float32``); ``dtype`` is the *compute* dtype ("float32" or
  "bfloat16"). LayerNorm statistics, attention softmax, logits and losses are computed in float32.
* Every linear weight is a 2-D ``kernel`` of shape ``[in, out]`` (the fused query/key/value projection is one
  ``[d, 3d]`` kernel, like GPT-2's ``c_attn`` and cramming's ``query_key_value``), so a factored optimizer such as
  CAME or Adafactor sees the same matrices as its PyTorch reference does.
* Attention (:func:`attention`) is written out in jnp (scores, float32 softmax, optional dropout), which is what
  :func:`jax.nn.dot_product_attention` computes with ``implementation=None`` (XLA), less its wrapping; an
  ``attention_impl`` (``"cudnn"``: cuDNN flash attention, GPU only, bf16/fp16 only) is passed on to that function as
  its ``implementation``, except while attention dropout is active, which it does not support.

References:
  Vaswani et al., `Attention is all you need <https://arxiv.org/abs/1706.03762>`_, 2017.
  Xiong et al., `On layer normalization in the transformer architecture <https://arxiv.org/abs/2002.04745>`_, 2020
  (pre-LN).
  Shazeer, `GLU variants improve transformer <https://arxiv.org/abs/2002.05202>`_, 2020 (gated GELU).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Initializer = Callable[..., jax.Array]

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(name: str) -> Any:
  """The jnp dtype for a config's ``dtype`` string ("float32" or "bfloat16")."""
  if name not in _DTYPES:
    raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {name!r}")
  return _DTYPES[name]


def layer_norm(eps: float, dtype: Any, name: str | None = None) -> nn.LayerNorm:
  """LayerNorm with float32 parameters and float32 statistics, output in ``dtype``."""
  return nn.LayerNorm(epsilon=eps, dtype=dtype, param_dtype=jnp.float32, name=name)


def padding_mask(attention_mask: jax.Array | None) -> jax.Array | None:
  """``[B, S]`` (1 = real token) -> boolean ``[B, 1, 1, S]`` key mask for :func:`jax.nn.dot_product_attention`."""
  if attention_mask is None:
    return None
  return attention_mask.astype(bool)[:, None, None, :]


def attention(
  q: jax.Array,
  k: jax.Array,
  v: jax.Array,
  *,
  mask: jax.Array | None,
  is_causal: bool,
  dropout_rate: float = 0.0,
  dropout_rng: jax.Array | None = None,
  implementation: str | None = None,
) -> jax.Array:
  """Scaled dot-product attention on ``[B, T, N, H]`` inputs, softmax in float32.

  With an ``implementation`` (``"cudnn"``) and no dropout this is :func:`jax.nn.dot_product_attention`, which has
  no attention dropout. Otherwise it is the same computation written out (XLA): heads moved ahead of positions
  once (``[B, N, T, H]``), scores, masked float32 softmax and, with dropout (``dropout_rate > 0`` and a
  ``dropout_rng``), inverted dropout on the probabilities, as in BERT's ``attention_probs_dropout_prob`` (Devlin
  et al., 2019). jax's own XLA path is this math wrapped in a ``vmap`` over key/value groups; on XLA:CPU that
  wrapping costs layout copies and slower softmax reductions (measured at GPT-2 4 x 256, 8 x 256 tokens: the
  step's HLO accesses 4.5% fewer bytes written out like this, and the attention ops' traced time falls by a
  quarter). ``tests/models/test_gpt2.py`` checks both are equal.
  """
  dropout = dropout_rate > 0.0 and dropout_rng is not None
  if implementation is not None and not dropout:
    return jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=is_causal, implementation=implementation)
  scale = q.shape[-1] ** -0.5
  q, k, v = (jnp.swapaxes(a, 1, 2) for a in (q, k, v))  # [B, N, T, H]
  logits = jnp.einsum("bnth,bnsh->bnts", q, k, preferred_element_type=jnp.float32) * scale
  keep = jnp.ones(logits.shape[-2:], bool) if mask is None else mask
  if is_causal:
    keep = jnp.logical_and(keep, jnp.tril(jnp.ones(logits.shape[-2:], bool)))
  logits = jnp.where(keep, logits, jnp.finfo(jnp.float32).min)
  probs = jax.nn.softmax(logits, axis=-1)
  if dropout:
    survive = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, probs.shape)
    probs = jnp.where(survive, probs / (1.0 - dropout_rate), 0.0)
  return jnp.swapaxes(jnp.einsum("bnts,bnsh->bnth", probs.astype(v.dtype), v), 1, 2)


class MultiHeadAttention(nn.Module):
  """Self-attention with one fused ``qkv`` kernel ``[d, 3d]`` (columns ordered query|key|value, then heads).

  Attributes:
    num_heads: number of heads; the head size is ``d // num_heads``.
    use_bias: biases on ``qkv`` and ``out``.
    is_causal: causal (decoder) mask.
    dropout_rate: dropout on the attention probabilities (only when ``deterministic=False``).
    dtype: compute dtype.
    kernel_init, out_kernel_init: initializers of the ``qkv`` and ``out`` kernels.
    implementation: passed to :func:`jax.nn.dot_product_attention` (None = XLA, "cudnn" = flash attention).
  """

  num_heads: int
  use_bias: bool = True
  is_causal: bool = False
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32
  kernel_init: Initializer = nn.initializers.normal(0.02)
  out_kernel_init: Initializer = nn.initializers.normal(0.02)
  implementation: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None = None, *, deterministic: bool = True) -> jax.Array:
    """``x``: ``[B, T, d]``; ``mask``: boolean, broadcastable to ``[B, N, T, T]`` (True = attend)."""
    b, t, d = x.shape
    if d % self.num_heads:
      raise ValueError(f"width {d} is not divisible by num_heads={self.num_heads}")
    dense = lambda n, init, name: nn.Dense(
      n, use_bias=self.use_bias, dtype=self.dtype, param_dtype=jnp.float32, kernel_init=init, name=name
    )
    qkv = dense(3 * d, self.kernel_init, "qkv")(x).reshape(b, t, 3, self.num_heads, d // self.num_heads)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    use_dropout = self.dropout_rate > 0.0 and not deterministic
    out = attention(
      q,
      k,
      v,
      mask=mask,
      is_causal=self.is_causal,
      dropout_rate=self.dropout_rate if use_dropout else 0.0,
      dropout_rng=self.make_rng("dropout") if use_dropout else None,
      implementation=self.implementation,
    )
    return dense(d, self.out_kernel_init, "out")(out.reshape(b, t, d))


class Mlp(nn.Module):
  """Position-wise feed-forward ``wo(act(wi(x)))``, GELU or gated GELU.

  With ``glu=True``, ``wi`` projects to ``2 * ffn_dim``, split into ``(x, gate)`` and ``gelu(gate) * x`` enters
  ``wo`` (the order of cramming's ``GLU``; Shazeer 2020). ``ffn_dim`` is always the width that enters ``wo``.
  """

  ffn_dim: int
  glu: bool = False
  approximate_gelu: bool = False
  use_bias: bool = True
  dtype: Any = jnp.float32
  kernel_init: Initializer = nn.initializers.normal(0.02)
  out_kernel_init: Initializer = nn.initializers.normal(0.02)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    dense = lambda n, init, name: nn.Dense(
      n, use_bias=self.use_bias, dtype=self.dtype, param_dtype=jnp.float32, kernel_init=init, name=name
    )
    h = dense(2 * self.ffn_dim if self.glu else self.ffn_dim, self.kernel_init, "wi")(x)
    if self.glu:
      h, gate = jnp.split(h, 2, axis=-1)
      h = jax.nn.gelu(gate, approximate=self.approximate_gelu) * h
    else:
      h = jax.nn.gelu(h, approximate=self.approximate_gelu)
    return dense(x.shape[-1], self.out_kernel_init, "wo")(h)


class TransformerBlock(nn.Module):
  """Attention + MLP with residuals, pre-LN or post-LN.

  Pre-LN (GPT-2, crammed BERT): ``x + drop(attn(LN(x)))``, then ``x + drop(mlp(LN(x)))``.
  Post-LN (original BERT): ``LN(x + drop(attn(x)))``, then ``LN(x + drop(mlp(x)))``.
  Parameters: ``attention/{qkv,out}``, ``attention_norm``, ``mlp/{wi,wo}``, ``mlp_norm``.
  """

  num_heads: int
  ffn_dim: int
  pre_ln: bool = True
  use_bias: bool = True
  glu: bool = False
  approximate_gelu: bool = False
  is_causal: bool = False
  dropout_rate: float = 0.0
  layer_norm_eps: float = 1e-12
  init_std: float = 0.02
  out_init_std: float | None = None  # std of the residual-branch output kernels; None = init_std
  dtype: Any = jnp.float32
  attention_impl: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None = None, *, deterministic: bool = True) -> jax.Array:
    init = nn.initializers.normal(self.init_std)
    out_init = nn.initializers.normal(self.init_std if self.out_init_std is None else self.out_init_std)
    attn = MultiHeadAttention(
      self.num_heads,
      use_bias=self.use_bias,
      is_causal=self.is_causal,
      dropout_rate=self.dropout_rate,
      dtype=self.dtype,
      kernel_init=init,
      out_kernel_init=out_init,
      implementation=self.attention_impl,
      name="attention",
    )
    mlp = Mlp(
      self.ffn_dim,
      glu=self.glu,
      approximate_gelu=self.approximate_gelu,
      use_bias=self.use_bias,
      dtype=self.dtype,
      kernel_init=init,
      out_kernel_init=out_init,
      name="mlp",
    )
    attn_norm = layer_norm(self.layer_norm_eps, self.dtype, "attention_norm")
    mlp_norm = layer_norm(self.layer_norm_eps, self.dtype, "mlp_norm")
    drop = nn.Dropout(self.dropout_rate, deterministic=deterministic)
    if self.pre_ln:
      x = x + drop(attn(attn_norm(x), mask, deterministic=deterministic))
      return x + drop(mlp(mlp_norm(x)))
    x = attn_norm(x + drop(attn(x, mask, deterministic=deterministic)))
    return mlp_norm(x + drop(mlp(x)))


def tied_logits(x: jax.Array, embedding: jax.Array, dtype: Any) -> jax.Array:
  """Output projection with the (tied) input embedding ``[V, d]``: ``x @ embedding.T`` in ``dtype``, float32 out.

  Accumulating into float32 (``preferred_element_type``) keeps bf16 logits from being rounded to bf16. The matmul
  is :func:`_project`, whose gradient is written out so that the embedding's comes as ``x.T @ g`` (``[d, V]``),
  transposed after; ``tests/models/test_gpt2.py`` checks value and gradients against the plain einsum.
  """
  lead = x.shape[:-1]
  logits = _project(x.reshape(-1, x.shape[-1]).astype(dtype), embedding.astype(dtype))
  return logits.reshape(*lead, embedding.shape[0])


@jax.custom_vjp
def _project(x: jax.Array, embedding: jax.Array) -> jax.Array:
  """``[N, d] x [V, d] -> [N, V]`` float32: ``jnp.einsum("nd,vd->nv", ...)`` with the gradient below.

  Autodiff of the einsum asks for the embedding's gradient as ``g.T @ x``; XLA:CPU then first copies the logits'
  gradient ``g`` ``[N, V]`` into ``[V, N]`` (64 MiB at 2048 tokens x 8192 ids, each step) and multiplies the
  transposed operand more slowly. ``(x.T @ g).T`` is the same sum with a ``[d, V]`` result: its transpose copies
  ``V * d`` values, not ``N * V``. (Measured at GPT-2 4 x 256, vocab 8192, 8 x 256 tokens: the step's HLO
  accesses 3.3% fewer bytes.)
  """
  return jnp.einsum("nd,vd->nv", x, embedding, preferred_element_type=jnp.float32)


def _project_fwd(x, embedding):
  return _project(x, embedding), (x, embedding)


def _project_bwd(residuals, g):
  x, embedding = residuals
  g = g.astype(x.dtype)
  dx = jnp.einsum("nv,vd->nd", g, embedding, preferred_element_type=jnp.float32).astype(x.dtype)
  d_embedding = jnp.einsum("nd,nv->dv", x, g, preferred_element_type=jnp.float32).T.astype(embedding.dtype)
  return dx, d_embedding


_project.defvjp(_project_fwd, _project_bwd)


def weighted_cross_entropy(
  logits: jax.Array, labels: jax.Array, weights: jax.Array
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Mean token cross-entropy over weighted targets, in float32.

  Args:
    logits: ``[..., V]``.
    labels: integer ``[...]``; labels of weight-0 slots are ignored (they may hold anything, e.g. -100).
    weights: ``[...]``, 0 for padding / unused slots.

  Returns:
    ``(loss, metrics)``: ``loss = sum(w * ce) / sum(w)`` (0 when ``sum(w) == 0``); metrics holds float32 scalars
    ``loss``, ``accuracy`` (weighted argmax accuracy) and ``num_tokens`` (``sum(w)``).
  """
  weights = weights.astype(jnp.float32)
  labels = jnp.where(weights > 0, labels, 0)
  logits = logits.astype(jnp.float32)
  ce = softmax_cross_entropy(logits, labels)
  num_tokens = weights.sum()
  denom = jnp.maximum(num_tokens, jnp.finfo(jnp.float32).tiny)
  loss = (ce * weights).sum() / denom
  accuracy = (is_argmax(logits, labels) * weights).sum() / denom
  return loss, {"loss": loss, "accuracy": accuracy, "num_tokens": num_tokens}


@jax.custom_vjp
def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """``optax.softmax_cross_entropy_with_integer_labels``: ``logsumexp(logits) - logits[label]`` per row, float32.

  Its gradient is written out as ``(softmax(logits) - onehot(label)) * g``, one elementwise pass over the logits
  that XLA fuses with the exponential. Autodiff of optax's keeps ``exp(logits - max)`` from the forward pass (a
  second logits-sized array), scatters the label's ``-g`` into a zero array and adds the two (measured at GPT-2
  4 x 256, vocab 8192, 8 x 256 tokens: the step's HLO accesses 7% fewer bytes this way). ``tests/models/
  test_gpt2.py`` checks value and gradient against optax's.
  """
  return _softmax_cross_entropy_fwd(logits, labels)[0]


def _softmax_cross_entropy_fwd(logits, labels):
  top = jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True))
  lse = jnp.log(jnp.sum(jnp.exp(logits - top), axis=-1, keepdims=True)) + top
  label_logit = jnp.take_along_axis(logits, labels[..., None], axis=-1)
  return (lse - label_logit)[..., 0], (logits, labels, lse)


def _softmax_cross_entropy_bwd(residuals, g):
  logits, labels, lse = residuals
  index = jax.lax.broadcasted_iota(labels.dtype, logits.shape, logits.ndim - 1)
  one_hot = (index == labels[..., None]).astype(logits.dtype)
  return (jnp.exp(logits - lse) - one_hot) * g[..., None], None


softmax_cross_entropy.defvjp(_softmax_cross_entropy_fwd, _softmax_cross_entropy_bwd)


def is_argmax(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """``jnp.argmax(logits, axis=-1) == labels``: the label's logit is the maximum and no earlier one equals it.

  XLA:CPU runs jnp.argmax's variadic (value, index) reduction one element at a time; this costs a max (which the
  softmax also takes), a gather and one boolean reduction. Measured with the cross-entropy of [1024, 32768] logits
  on CPU: 36 ms alone, +316 ms with jnp.argmax, +70 ms with this (8% of a GPT-2 training step on CPU before).
  """
  top = jnp.max(logits, axis=-1, keepdims=True)
  label_logit = jnp.take_along_axis(logits, labels[..., None], axis=-1)
  index = jax.lax.broadcasted_iota(jnp.int32, logits.shape, logits.ndim - 1)
  tie_before = jnp.any((logits == top) & (index < labels[..., None]), axis=-1)
  return (label_logit[..., 0] == top[..., 0]) & ~tie_before


def assert_same_shapes(params: Any, reference: Any) -> None:
  """Raise ValueError unless ``params`` has the tree structure and leaf shapes of ``reference``.

  ``reference`` is typically ``jax.eval_shape(functools.partial(init_params, cfg), key)``; used to validate
  checkpoint conversions.
  """
  if jax.tree.structure(params) != jax.tree.structure(reference):
    raise ValueError(f"parameter trees differ:\n{jax.tree.structure(params)}\nvs\n{jax.tree.structure(reference)}")
  bad = [
    f"{jax.tree_util.keystr(path)}: {p.shape} != {r.shape}"
    for (path, p), r in zip(jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(reference))
    if p.shape != r.shape
  ]
  if bad:
    raise ValueError("parameter shapes differ from the config's:\n" + "\n".join(bad))
