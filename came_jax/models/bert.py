"""BERT in Flax Linen: the crammed recipe (pre-LN, no biases, gated GELU, sparse MLM) and the original layout.

Two layouts, chosen by :class:`Config` fields, share one parameter tree:

* **Crammed BERT** (Geiping & Goldstein 2022; presets ``tiny``, ``base``, ``large``): embedding LayerNorm,
  pre-LN blocks and a final LayerNorm, no biases in linear layers, gated GELU feed-forward, tied input/output
  embeddings without decoder bias, no token-type embeddings, dropout off (set ``dropout_rate=0.1`` to fine-tune),
  and *sparse* MLM prediction: the head runs only on the ``K`` masked positions given by the batch.
* **Original BERT** (Devlin et al. 2019; presets ``bert-base-original``, ``bert-large-original``): post-LN, biases,
  GELU feed-forward, token types, learned positions, decoder bias; numerically equal to Hugging Face
  ``BertForMaskedLM`` / ``BertForSequenceClassification`` (conversion: :mod:`came_jax.hf.bert`).

Choices where the brief left room, and where we differ from the cramming code
(github.com/JonasGeiping/cramming, ``crammed-bert.yaml``):

* Positions: learned absolute (``position_embedding="learned"``, max 512) by default; cramming's final model uses
  scaled sinusoidal positions (``position_embedding="scaled_sinusoidal"``: fixed sinusoids times one learned scalar
  initialised to ``d**-0.5``), which is available.
* ``ffn_dim`` is the gated width: ``wi`` is ``[d, 2*ffn_dim]``. Cramming's ``intermed_size=3072`` with GLU is our
  ``ffn_dim=1536``. ``base`` follows cramming's 16 layers at width 768.
* MLM head: dense + GELU + LayerNorm transform, then the tied decoder (cramming's final config skips the transform;
  ``head_transform=False`` does too).
* Classification pools the first token (dense + tanh, as BERT's pooler); cramming averages over tokens.

Parameter tree: ``encoder/{embeddings, layers_{i}, final_norm}`` is common to :class:`BertForMaskedLM`
(plus ``mlm_head``, ``decoder_bias``) and :class:`BertForSequenceClassification` (plus ``pooler``,
``classifier``), so a pretrained ``params["encoder"]`` drops into the classifier (:func:`init_classifier_params`).

References:
  Devlin et al., `BERT: Pre-training of deep bidirectional transformers for language understanding
  <https://arxiv.org/abs/1810.04805>`_, 2019.
  Geiping & Goldstein, `Cramming: Training a language model on a single GPU in one day
  <https://arxiv.org/abs/2212.14034>`_, 2022.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from came_jax.models import layers


@dataclasses.dataclass(frozen=True)
class Config:
  """BERT sizes and layout. Defaults are crammed BERT ``base``.

  Attributes:
    vocab_size, hidden_dim, num_layers, num_heads: sizes.
    ffn_dim: width entering the feed-forward output projection (with ``glu`` the input projection is twice this).
    max_len: number of positions.
    type_vocab_size: token-type vocabulary; 0 = no token-type embedding (``token_type_ids`` are ignored).
    pre_ln: pre-LN blocks plus a final LayerNorm (crammed); False = post-LN (original).
    use_bias: biases in the attention and feed-forward linear layers and in the MLM head's dense layer (the
      classification pooler and classifier always have biases).
    glu: gated GELU feed-forward.
    position_embedding: "learned" or "scaled_sinusoidal".
    decoder_bias: a bias on the tied MLM decoder.
    head_transform: dense + GELU + LayerNorm before the MLM decoder.
    num_labels: classifier outputs; 1 = regression (MSE).
    dropout_rate: dropout on embeddings, residual branches, attention probabilities and the pooled output.
    layer_norm_eps, init_std: LayerNorm epsilon; std of the normal initialisation of kernels and embeddings.
    dtype: compute dtype, "float32" or "bfloat16" (parameters are always float32).
    attention_impl: ``implementation`` for :func:`jax.nn.dot_product_attention` (None = XLA, "cudnn").
  """

  vocab_size: int = 32768
  hidden_dim: int = 768
  num_layers: int = 16
  num_heads: int = 12
  ffn_dim: int = 1536
  max_len: int = 512
  type_vocab_size: int = 0
  pre_ln: bool = True
  use_bias: bool = False
  glu: bool = True
  position_embedding: str = "learned"
  decoder_bias: bool = False
  head_transform: bool = True
  num_labels: int = 2
  dropout_rate: float = 0.0
  layer_norm_eps: float = 1e-12
  init_std: float = 0.02
  dtype: str = "float32"
  attention_impl: str | None = None

  def __post_init__(self):
    if self.hidden_dim % self.num_heads:
      raise ValueError(f"hidden_dim={self.hidden_dim} not divisible by num_heads={self.num_heads}")
    if self.position_embedding not in ("learned", "scaled_sinusoidal"):
      raise ValueError(f"position_embedding must be 'learned' or 'scaled_sinusoidal': {self.position_embedding}")
    layers.compute_dtype(self.dtype)


_ORIGINAL = {  # Devlin et al. (2019): post-LN, biases, GELU, token types, decoder bias, dropout 0.1
  "vocab_size": 30522,
  "type_vocab_size": 2,
  "pre_ln": False,
  "use_bias": True,
  "glu": False,
  "decoder_bias": True,
  "dropout_rate": 0.1,
}

CONFIGS: dict[str, Config] = {
  "tiny": Config(hidden_dim=64, num_layers=2, num_heads=2, ffn_dim=128, max_len=128),
  "base": Config(),
  "large": Config(hidden_dim=1024, num_layers=24, num_heads=16, ffn_dim=2048),
  "bert-base-original": Config(hidden_dim=768, num_layers=12, num_heads=12, ffn_dim=3072, **_ORIGINAL),
  "bert-large-original": Config(hidden_dim=1024, num_layers=24, num_heads=16, ffn_dim=4096, **_ORIGINAL),
}


# ----------------------------------------------------------------------------------------------------------------
# Modules


def _sinusoids(length: int, dim: int) -> np.ndarray:
  """Vaswani et al. (2017) sinusoids, sin on even and cos on odd channels (cramming's layout)."""
  pos = np.arange(length, dtype=np.float64)[:, None]
  inv = np.exp(np.arange(0, dim, 2, dtype=np.float64) * (-math.log(10000.0) / dim))
  table = np.zeros((length, dim), np.float32)
  table[:, 0::2] = np.sin(pos * inv)
  table[:, 1::2] = np.cos(pos * inv)
  return table


class BertEmbeddings(nn.Module):
  """Word (+ position) (+ token type) embeddings, LayerNorm, dropout."""

  cfg: Config

  def setup(self):
    cfg, dtype = self.cfg, layers.compute_dtype(self.cfg.dtype)
    embed = functools.partial(
      nn.Embed, dtype=dtype, param_dtype=jnp.float32, embedding_init=nn.initializers.normal(cfg.init_std)
    )
    self.word_embeddings = embed(cfg.vocab_size, cfg.hidden_dim)
    if cfg.position_embedding == "learned":
      self.position_embeddings = embed(cfg.max_len, cfg.hidden_dim)
    else:
      self.position_scale = self.param("position_scale", nn.initializers.constant(cfg.hidden_dim**-0.5), (1,))
    if cfg.type_vocab_size:
      self.token_type_embeddings = embed(cfg.type_vocab_size, cfg.hidden_dim)
    self.norm = layers.layer_norm(cfg.layer_norm_eps, dtype)
    self.dropout = nn.Dropout(cfg.dropout_rate)

  def __call__(self, input_ids, token_type_ids=None, *, deterministic: bool = True):
    cfg = self.cfg
    t = input_ids.shape[1]
    if t > cfg.max_len:
      raise ValueError(f"sequence length {t} exceeds max_len={cfg.max_len}")
    x = self.word_embeddings(input_ids)
    if cfg.position_embedding == "learned":
      x = x + self.position_embeddings(jnp.arange(t))[None]
    else:
      x = x + (self.position_scale * _sinusoids(t, cfg.hidden_dim)).astype(x.dtype)[None]
    if cfg.type_vocab_size:
      types = jnp.zeros_like(input_ids) if token_type_ids is None else token_type_ids
      x = x + self.token_type_embeddings(types)
    return self.dropout(self.norm(x), deterministic=deterministic)

  def attend(self, x: jax.Array) -> jax.Array:
    """Tied output projection onto the vocabulary, float32 logits."""
    return layers.tied_logits(x, self.word_embeddings.embedding, layers.compute_dtype(self.cfg.dtype))


class BertEncoder(nn.Module):
  """Embeddings, ``num_layers`` transformer blocks, and (pre-LN only) a final LayerNorm. Returns ``[B, T, d]``."""

  cfg: Config

  def setup(self):
    cfg, dtype = self.cfg, layers.compute_dtype(self.cfg.dtype)
    self.embeddings = BertEmbeddings(cfg)
    self.layers = [
      layers.TransformerBlock(
        num_heads=cfg.num_heads,
        ffn_dim=cfg.ffn_dim,
        pre_ln=cfg.pre_ln,
        use_bias=cfg.use_bias,
        glu=cfg.glu,
        approximate_gelu=False,
        is_causal=False,
        dropout_rate=cfg.dropout_rate,
        layer_norm_eps=cfg.layer_norm_eps,
        init_std=cfg.init_std,
        dtype=dtype,
        attention_impl=cfg.attention_impl,
      )
      for _ in range(cfg.num_layers)
    ]
    if cfg.pre_ln:
      self.final_norm = layers.layer_norm(cfg.layer_norm_eps, dtype)

  def __call__(self, input_ids, attention_mask=None, token_type_ids=None, *, train: bool = False):
    x = self.embeddings(input_ids, token_type_ids, deterministic=not train)
    mask = layers.padding_mask(attention_mask)
    for block in self.layers:
      x = block(x, mask, deterministic=not train)
    return self.final_norm(x) if self.cfg.pre_ln else x

  def attend(self, x: jax.Array) -> jax.Array:
    return self.embeddings.attend(x)


class MlmHead(nn.Module):
  """The MLM transform: dense, GELU, LayerNorm (identity when ``cfg.head_transform`` is False)."""

  cfg: Config

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    cfg, dtype = self.cfg, layers.compute_dtype(self.cfg.dtype)
    if not cfg.head_transform:
      return x
    x = nn.Dense(
      cfg.hidden_dim,
      use_bias=cfg.use_bias,
      dtype=dtype,
      param_dtype=jnp.float32,
      kernel_init=nn.initializers.normal(cfg.init_std),
      name="dense",
    )(x)
    return layers.layer_norm(cfg.layer_norm_eps, dtype, "norm")(jax.nn.gelu(x, approximate=False))


class BertForMaskedLM(nn.Module):
  """Encoder + MLM head + tied decoder. Float32 logits ``[B, K, V]`` at ``mlm_positions``, else ``[B, T, V]``."""

  cfg: Config

  def setup(self):
    self.encoder = BertEncoder(self.cfg)
    self.mlm_head = MlmHead(self.cfg)
    if self.cfg.decoder_bias:
      self.decoder_bias = self.param("decoder_bias", nn.initializers.zeros, (self.cfg.vocab_size,), jnp.float32)

  def __call__(self, input_ids, attention_mask=None, token_type_ids=None, mlm_positions=None, *, train=False):
    h = self.encoder(input_ids, attention_mask, token_type_ids, train=train)
    if mlm_positions is not None:  # sparse prediction: gather K positions before the (large) vocabulary matmul
      h = jnp.take_along_axis(h, mlm_positions[..., None], axis=1, mode="clip")
    logits = self.encoder.attend(self.mlm_head(h))
    return logits + self.decoder_bias if self.cfg.decoder_bias else logits


class BertForSequenceClassification(nn.Module):
  """Encoder + pooler (dense + tanh on the first token) + dropout + linear classifier. Float32 ``[B, num_labels]``."""

  cfg: Config

  @nn.compact
  def __call__(self, input_ids, attention_mask=None, token_type_ids=None, *, train=False):
    cfg, dtype = self.cfg, layers.compute_dtype(self.cfg.dtype)
    h = BertEncoder(cfg, name="encoder")(input_ids, attention_mask, token_type_ids, train=train)
    dense = functools.partial(
      nn.Dense, dtype=dtype, param_dtype=jnp.float32, kernel_init=nn.initializers.normal(cfg.init_std)
    )
    pooled = jnp.tanh(dense(cfg.hidden_dim, name="pooler")(h[:, 0]))
    pooled = nn.Dropout(cfg.dropout_rate)(pooled, deterministic=not train)
    return dense(cfg.num_labels, name="classifier")(pooled).astype(jnp.float32)


# ----------------------------------------------------------------------------------------------------------------
# Functional interface used by the trainer


def _rngs(rng, train):
  return {"dropout": rng} if train and rng is not None else None


def max_len(cfg: Config) -> int | None:
  """Longest input in tokens (its learned positions)."""
  return cfg.max_len


def init_params(cfg: Config, rng: jax.Array) -> dict:
  """Float32 parameters of :class:`BertForMaskedLM` (the Linen ``params`` collection)."""
  ids = jnp.zeros((1, min(8, cfg.max_len)), jnp.int32)
  return BertForMaskedLM(cfg).init({"params": rng}, ids, mlm_positions=jnp.zeros((1, 1), jnp.int32))["params"]


def init_classifier_params(cfg: Config, rng: jax.Array, pretrained: Mapping | None = None) -> dict:
  """Parameters of :class:`BertForSequenceClassification`; the encoder of ``pretrained`` (parameters of
  :func:`init_params`' tree, e.g. a pretraining checkpoint's) replaces the fresh one, leaving only ``pooler`` and
  ``classifier`` newly initialised."""
  ids = jnp.zeros((1, min(8, cfg.max_len)), jnp.int32)
  params = BertForSequenceClassification(cfg).init({"params": rng}, ids)["params"]
  if pretrained is not None:
    layers.assert_same_shapes(pretrained["encoder"], params["encoder"])
    params = {**params, "encoder": pretrained["encoder"]}
  return params


def logits_fn(params, batch, *, cfg: Config, train: bool = False, rng: jax.Array | None = None) -> jax.Array:
  """MLM logits (float32): ``[B, K, V]`` at ``batch["mlm_positions"]`` ``[B, K]``, or ``[B, T, V]`` without them.

  ``batch``: ``input_ids`` [B, T], optional ``attention_mask``, ``token_type_ids`` and ``mlm_positions``.
  """
  return BertForMaskedLM(cfg).apply(
    {"params": params},
    batch["input_ids"],
    batch.get("attention_mask"),
    batch.get("token_type_ids"),
    batch.get("mlm_positions"),
    train=train,
    rngs=_rngs(rng, train),
  )


def classifier_logits_fn(params, batch, *, cfg: Config, train: bool = False, rng: jax.Array | None = None) -> jax.Array:
  """Classifier outputs ``[B, num_labels]`` (float32); for regression (``num_labels == 1``) the prediction.

  ``batch``: ``input_ids`` [B, T], optional ``attention_mask`` and ``token_type_ids``.
  """
  return BertForSequenceClassification(cfg).apply(
    {"params": params},
    batch["input_ids"],
    batch.get("attention_mask"),
    batch.get("token_type_ids"),
    train=train,
    rngs=_rngs(rng, train),
  )


def loss_fn(params, batch, rng, *, cfg: Config, train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Sparse masked-LM loss: mean cross-entropy over the ``mlm_weights``-weighted slots of ``mlm_positions``.

  ``batch``: ``input_ids``, ``attention_mask`` [B, T], ``mlm_positions``, ``mlm_labels``, ``mlm_weights`` [B, K],
  optional ``token_type_ids``. ``rng`` feeds dropout when ``train`` (may be None otherwise).
  Returns ``(loss, {"loss", "accuracy", "num_tokens"})``, all float32 scalars.
  """
  logits = logits_fn(params, batch, cfg=cfg, train=train, rng=rng)
  return layers.weighted_cross_entropy(logits, batch["mlm_labels"], batch["mlm_weights"])


def classification_loss_fn(params, batch, rng, *, cfg: Config, train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
  """GLUE loss: cross-entropy (``num_labels > 1``, with ``accuracy``) or mean squared error (``num_labels == 1``).

  ``batch``: ``input_ids``, ``attention_mask``, ``token_type_ids`` [B, T], ``labels`` [B], optional ``weights``
  [B] (0 for padding examples). ``num_tokens`` in the metrics is the weighted number of examples.
  """
  logits = classifier_logits_fn(params, batch, cfg=cfg, train=train, rng=rng)
  weights = batch.get("weights")
  weights = jnp.ones(logits.shape[0], jnp.float32) if weights is None else weights.astype(jnp.float32)
  if cfg.num_labels > 1:
    return layers.weighted_cross_entropy(logits, batch["labels"], weights)
  num = weights.sum()
  loss = (weights * (logits[:, 0] - batch["labels"].astype(jnp.float32)) ** 2).sum() / jnp.maximum(num, 1e-30)
  return loss, {"loss": loss, "num_tokens": num}


@functools.cache
def _param_counts(cfg: Config) -> tuple[int, int]:
  """(parameters applied at every token, parameters of the MLM head incl. the tied decoder)."""
  shapes = jax.eval_shape(functools.partial(init_params, cfg), jax.random.key(0))
  size = lambda tree: sum(math.prod(x.shape) for x in jax.tree.leaves(tree))
  enc = shapes["encoder"]
  emb = enc["embeddings"]
  lookups = sum(size(emb.get(k, {})) for k in ("word_embeddings", "position_embeddings", "token_type_embeddings"))
  per_token = size(enc) - lookups
  head = size(shapes.get("mlm_head", {})) + size(emb["word_embeddings"]) + size(shapes.get("decoder_bias", []))
  return per_token, head


def flops_per_token(cfg: Config, batch_shapes: Mapping[str, tuple[int, ...]]) -> float:
  """Training FLOPs per input token of batches shaped ``batch_shapes``, nanoGPT's ``estimate_mfu`` for sparse MLM.

  ``6 * N_body + 12 * L * d * T + 6 * (K / T) * N_head``: the encoder's non-embedding parameters ``N_body`` act on
  every one of the ``T`` tokens (``input_ids`` [B, T]; embedding lookups are not matmuls and are not counted),
  attention scores and values cost ``12 * L * d * T``, and the MLM head (transform + tied ``d x V`` decoder) acts
  on the ``K`` predicted positions (``mlm_positions`` [B, K]; without them, on every token: a dense head).
  """
  per_token, head = _param_counts(cfg)
  seq_len = batch_shapes["input_ids"][-1]
  predicted = batch_shapes["mlm_positions"][-1] if "mlm_positions" in batch_shapes else seq_len
  return 6.0 * per_token + 12.0 * cfg.num_layers * cfg.hidden_dim * seq_len + 6.0 * predicted / seq_len * head
