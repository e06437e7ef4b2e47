"""BERT: crammed-BERT behaviour (sparse MLM, dropout, training), classifier, presets and FLOPs.

Equivalence with Hugging Face (original layout) is tested with the conversion, in tests/hf/test_bert.py."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from came_jax import models
from came_jax.models import bert

V, T, K, B = 97, 16, 4, 3  # vocab chosen unlike any other dimension, so a [B, T, V] tensor is recognisable

# Jitted once per config (configs are frozen dataclasses, hence static); eager Linen would dominate the runtime.
logits_fn = jax.jit(bert.logits_fn, static_argnames=("cfg", "train"))
classifier_logits_fn = jax.jit(bert.classifier_logits_fn, static_argnames=("cfg", "train"))
init_params = jax.jit(bert.init_params, static_argnums=0)
init_classifier_params = jax.jit(bert.init_classifier_params, static_argnums=0)


def _mlm_batch(cfg, seed=0):
  rng = np.random.default_rng(seed)
  ids = rng.integers(1, cfg.vocab_size, (B, T))
  mask = np.ones((B, T), np.int32)
  mask[1, T - 5 :] = 0  # padding
  positions = np.stack([rng.choice(T - 5, K, replace=False) for _ in range(B)])
  weights = np.ones((B, K), np.float32)
  weights[2, -1] = 0.0  # an unused slot, with a label that must be ignored
  labels = rng.integers(0, cfg.vocab_size, (B, K))
  labels[2, -1] = -100
  return {
    "input_ids": jnp.asarray(ids, jnp.int32),
    "attention_mask": jnp.asarray(mask),
    "mlm_positions": jnp.asarray(positions, jnp.int32),
    "mlm_labels": jnp.asarray(labels, jnp.int32),
    "mlm_weights": jnp.asarray(weights),
  }


def _inputs(batch):
  """The model inputs of an MLM batch (what ``logits_fn`` reads)."""
  return {k: batch[k] for k in ("input_ids", "attention_mask", "mlm_positions")}


@pytest.fixture(scope="module")
def tiny():
  cfg = models.make_config("bert", "tiny", vocab_size=V, max_len=T)
  return cfg, init_params(cfg, jax.random.key(0))


def test_crammed_layout_and_sparse_head(tiny):
  cfg, params = tiny
  leaves = jax.tree_util.tree_leaves_with_path(params)
  assert not any("bias" in jax.tree_util.keystr(p) and "norm" not in jax.tree_util.keystr(p) for p, _ in leaves)
  assert params["encoder"]["layers_0"]["mlp"]["wi"]["kernel"].shape == (64, 2 * cfg.ffn_dim)
  assert "final_norm" in params["encoder"] and "token_type_embeddings" not in params["encoder"]["embeddings"]

  batch = _mlm_batch(cfg)
  loss_fn = functools.partial(bert.loss_fn, cfg=cfg, train=False)
  jaxpr = jax.make_jaxpr(loss_fn)(params, batch, None)
  shapes = {tuple(v.aval.shape) for eqn in jaxpr.eqns for v in eqn.outvars if hasattr(v.aval, "shape")}
  assert (B, K, V) in shapes and (B, T, V) not in shapes  # the vocabulary projection sees only K positions

  loss, metrics = jax.jit(loss_fn)(params, batch, None)
  assert np.isfinite(loss) and abs(loss - np.log(V)) < 1.0
  assert set(metrics) >= {"loss", "accuracy", "num_tokens"} and metrics["num_tokens"] == B * K - 1
  assert all(v.dtype == jnp.float32 and v.shape == () for v in metrics.values())


def test_loss_falls_with_adam(tiny):
  cfg, params = tiny
  batch = _mlm_batch(cfg, seed=1)
  opt = optax.adam(3e-3)

  @jax.jit
  def step(params, state):
    (loss, _), grads = jax.value_and_grad(bert.loss_fn, has_aux=True)(params, batch, None, cfg=cfg, train=True)
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state, loss

  state, losses = opt.init(params), []
  for _ in range(8):
    params, state, loss = step(params, state)
    losses.append(float(loss))
  assert losses[-1] < losses[0] - 0.5, losses


def test_dropout_only_when_training_and_enabled(tiny):
  cfg, params = tiny
  batch = _mlm_batch(cfg)
  args = (params, _inputs(batch))
  off = logits_fn(*args, cfg=cfg)
  np.testing.assert_array_equal(off, logits_fn(*args, cfg=cfg, train=True, rng=jax.random.key(1)))
  cfg_ft = models.make_config("bert", "tiny", vocab_size=V, max_len=T, dropout_rate=0.1)
  np.testing.assert_array_equal(off, logits_fn(*args, cfg=cfg_ft, train=False))
  a = logits_fn(*args, cfg=cfg_ft, train=True, rng=jax.random.key(1))
  b = logits_fn(*args, cfg=cfg_ft, train=True, rng=jax.random.key(2))
  assert not np.allclose(a, off) and not np.allclose(a, b)


def test_classifier_loads_pretrained_encoder(tiny):
  cfg, params = tiny
  batch = _mlm_batch(cfg)
  for num_labels, labels in ((3, jnp.array([0, 2, 1])), (1, jnp.array([0.5, -1.0, 2.0]))):
    cfg_cls = models.make_config("bert", "tiny", vocab_size=V, max_len=T, num_labels=num_labels)
    cls = init_classifier_params(cfg_cls, jax.random.key(1), params)
    assert set(cls) == {"encoder", "pooler", "classifier"}
    jax.tree.map(np.testing.assert_array_equal, cls["encoder"], params["encoder"])
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    logits = classifier_logits_fn(cls, inputs, cfg=cfg_cls)
    assert logits.shape == (B, num_labels) and logits.dtype == jnp.float32
    cls_batch = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "labels": labels}
    loss, metrics = jax.jit(functools.partial(bert.classification_loss_fn, cfg=cfg_cls, train=False))(
      cls, cls_batch, None
    )
    assert np.isfinite(loss) and metrics["num_tokens"] == B
    assert ("accuracy" in metrics) == (num_labels > 1)


def test_bfloat16_compute_close_to_float32(tiny):
  cfg, params = tiny
  batch = _mlm_batch(cfg)
  cfg16 = models.make_config("bert", "tiny", vocab_size=V, max_len=T, dtype="bfloat16")
  shapes = jax.eval_shape(functools.partial(bert.init_params, cfg16), jax.random.key(0))
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(shapes))
  args = (params, _inputs(batch))
  ref, low = logits_fn(*args, cfg=cfg), logits_fn(*args, cfg=cfg16)
  assert low.dtype == jnp.float32
  assert np.abs(low - ref).max() / np.abs(ref).max() < 5e-2
  grads = jax.jit(jax.grad(lambda p: bert.loss_fn(p, batch, None, cfg=cfg16, train=True)[0]))(params)
  assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))


def _mlm_shapes(seq_len, rate=0.15, batch=B):
  """Batch shapes of MLM batches masking ``rate`` of ``seq_len`` tokens, as the data pipeline rounds it."""
  return {"input_ids": (batch, seq_len), "mlm_positions": (batch, round(rate * seq_len))}


# BERT-base without embedding lookups: 12 layers (weights, 5d + f biases, 2 LayerNorms) + embedding LN; its MLM head.
BASE_DENSE = 6 * (12 * (4 * 768 * 768 + 2 * 768 * 3072 + 9 * 768 + 3072) + 2 * 768)
BASE_HEAD = 6 * (768 * 768 + 768 + 2 * 768 + 768 * 30522 + 30522)


def test_presets_and_flops():
  assert bert.CONFIGS["bert-base-original"].vocab_size == 30522 and bert.CONFIGS["base"].vocab_size == 32768
  cfg = bert.CONFIGS["bert-base-original"]
  # 15% of 128 tokens masked: K = round(19.2) = 19 predicted positions.
  expected = BASE_DENSE + 12 * 12 * 768 * 128 + 19 / 128 * BASE_HEAD
  assert bert.flops_per_token(cfg, _mlm_shapes(128)) == pytest.approx(expected)
  assert models.make_config("bert", "base", dropout_rate=0.1).dropout_rate == 0.1
  # cramming's scaled sinusoidal positions: one learned scalar instead of a position table (traced, not compiled).
  sin = models.make_config("bert", "tiny", vocab_size=V, max_len=T, position_embedding="scaled_sinusoidal")
  shapes = jax.eval_shape(functools.partial(bert.init_params, sin), jax.random.key(0))
  assert shapes["encoder"]["embeddings"]["position_scale"].shape == (1,)
  assert "position_embeddings" not in shapes["encoder"]["embeddings"]
  ids = jnp.zeros((B, T), jnp.int32)
  out = jax.eval_shape(functools.partial(bert.logits_fn, cfg=sin), shapes, {"input_ids": ids})
  assert out.shape == (B, T, V)
  # cramming's final head: no transform, so the head is just the tied decoder; without mlm_positions it is dense.
  bare = models.make_config("bert", "tiny", vocab_size=V, head_transform=False)
  assert bert.flops_per_token(bare, {"input_ids": (B, T)}) == 6 * (82688 + V * 64) + 12 * 2 * 64 * T


def test_flops_mlm_head_scales_with_masking_rate():
  """The head's 6 * N_head FLOPs act on K of T tokens: raising the masking rate adds 6 * dK / T * N_head per
  token, and nothing else changes (the batch size does not enter)."""
  cfg = bert.CONFIGS["bert-base-original"]
  low, high = (bert.flops_per_token(cfg, _mlm_shapes(128, rate)) for rate in (0.15, 0.4))  # K = 19, 51
  assert high - low == pytest.approx((51 - 19) / 128 * BASE_HEAD)
  dense_head = bert.flops_per_token(cfg, {"input_ids": (B, 128)})  # no mlm_positions: every token predicted
  assert dense_head == pytest.approx(bert.flops_per_token(cfg, _mlm_shapes(128, 1.0)))
  assert dense_head - low == pytest.approx((128 - 19) / 128 * BASE_HEAD)
  assert bert.flops_per_token(cfg, _mlm_shapes(128, 0.4, batch=7)) == high
