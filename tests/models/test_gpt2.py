"""GPT-2: causality, training on a fixed batch, bf16 compute, presets and FLOPs.

Equivalence with Hugging Face GPT2LMHeadModel is tested with the conversion, in tests/hf/test_gpt2.py."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from came_jax import models
from came_jax.models import gpt2, layers

V, T, B = 97, 16, 2

logits_fn = jax.jit(gpt2.logits_fn, static_argnames=("cfg", "train"))
init_params = jax.jit(gpt2.init_params, static_argnums=0)


def _ids(seed=0):
  return jnp.asarray(np.random.default_rng(seed).integers(0, V, (B, T)), jnp.int32)


def _logits(params, ids, **kwargs):
  return logits_fn(params, {"input_ids": ids}, **kwargs)


@pytest.fixture(scope="module")
def tiny():
  cfg = models.make_config("gpt2", "tiny", vocab_size=V, max_len=T)
  return cfg, init_params(cfg, jax.random.key(0))


def test_causal(tiny):
  cfg, params = tiny
  ids = _ids()
  changed = ids.at[:, 9].set((ids[:, 9] + 1) % V)
  a, b = _logits(params, ids, cfg=cfg), _logits(params, changed, cfg=cfg)
  np.testing.assert_array_equal(a[:, :9], b[:, :9])
  assert not np.allclose(a[:, 9:], b[:, 9:])


def test_loss_falls_with_adam(tiny):
  cfg, params = tiny
  ids = _ids(1)
  weights = jnp.ones((B, T), jnp.float32).at[1, -4:].set(0.0)
  batch = {"input_ids": ids, "labels": jnp.roll(ids, -1, axis=1), "weights": weights}
  opt = optax.adam(3e-3)

  @jax.jit
  def step(params, state):
    (_, metrics), grads = jax.value_and_grad(gpt2.loss_fn, has_aux=True)(params, batch, None, cfg=cfg, train=True)
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state, metrics

  state, losses = opt.init(params), []
  for _ in range(8):
    params, state, metrics = step(params, state)
    losses.append(float(metrics["loss"]))
  assert abs(losses[0] - np.log(V)) < 0.5 and losses[-1] < losses[0] - 0.5, losses
  assert metrics["num_tokens"] == B * T - 4 and set(metrics) >= {"loss", "accuracy", "num_tokens"}


def test_bfloat16_compute_and_dropout(tiny):
  cfg, params = tiny
  ids = _ids()
  ref = _logits(params, ids, cfg=cfg)
  cfg16 = dataclasses.replace(cfg, dtype="bfloat16")
  low = _logits(params, ids, cfg=cfg16)
  assert low.dtype == jnp.float32 and np.abs(low - ref).max() / np.abs(ref).max() < 5e-2
  shapes = jax.eval_shape(functools.partial(gpt2.init_params, cfg16), jax.random.key(0))
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(shapes))
  cfg_drop = dataclasses.replace(cfg, dropout_rate=0.1)
  np.testing.assert_array_equal(ref, _logits(params, ids, cfg=cfg_drop))
  assert not np.allclose(ref, _logits(params, ids, cfg=cfg_drop, train=True, rng=jax.random.key(3)))


def test_presets_and_flops():
  cfg = gpt2.CONFIGS["small"]
  assert (cfg.num_layers, cfg.hidden_dim, cfg.num_heads, cfg.max_len) == (12, 768, 12, 1024)
  n = jax.eval_shape(functools.partial(gpt2.init_params, cfg), jax.random.key(0))
  total = sum(x.size for x in jax.tree.leaves(n))
  assert total == 124_439_808  # GPT-2 small, as counted by Hugging Face (tied lm_head)
  assert gpt2.flops_per_token(cfg, {"input_ids": (8, 1024)}) == 6 * (total - 1024 * 768) + 12 * 12 * 768 * 1024


@pytest.mark.parametrize("is_causal", [False, True])
def test_attention_written_out_matches_jax_dot_product_attention(is_causal):
  """Our attention (XLA path, and the same with dropout that drops nothing) equals jax.nn.dot_product_attention,
  values and gradients."""
  q, k, v = jax.random.normal(jax.random.key(0), (3, B, T, 4, 8))
  mask = layers.padding_mask(jnp.ones((B, T), jnp.int32).at[0, -3:].set(0))
  reference = functools.partial(jax.nn.dot_product_attention, mask=mask, is_causal=is_causal)
  ours = functools.partial(layers.attention, mask=mask, is_causal=is_causal)
  with_dropout = functools.partial(ours, dropout_rate=1e-9, dropout_rng=jax.random.key(1))
  for fn in (ours, with_dropout):
    np.testing.assert_allclose(fn(q, k, v), reference(q, k, v), rtol=1e-5, atol=1e-6)
  cotangent = jax.random.normal(jax.random.key(2), q.shape)
  grads = lambda fn: jax.grad(lambda *a: (fn(*a) * cotangent).sum(), argnums=(0, 1, 2))(q, k, v)  # noqa: E731
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-5), grads(ours), grads(reference))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_tied_logits_matches_the_plain_einsum(dtype):
  """The tied projection's written-out gradient equals autodiff of ``einsum("...d,vd->...v")`` (bf16: both round
  alike; compared with the float32 gradient)."""
  x = jax.random.normal(jax.random.key(0), (B, T, 8))
  embedding = jax.random.normal(jax.random.key(1), (V, 8))
  cotangent = jax.random.normal(jax.random.key(2), (B, T, V))

  def plain(dtype):
    return lambda x, e: jnp.einsum(
      "...d,vd->...v", x.astype(dtype), e.astype(dtype), preferred_element_type=jnp.float32
    )

  ours = functools.partial(layers.tied_logits, dtype=dtype)
  assert ours(x, embedding).dtype == jnp.float32
  np.testing.assert_array_equal(ours(x, embedding), plain(dtype)(x, embedding))
  grads = lambda fn: jax.grad(lambda *a: (fn(*a) * cotangent).sum(), argnums=(0, 1))(x, embedding)  # noqa: E731
  exact = grads(plain(jnp.float32))
  for g, ref, f32 in zip(grads(ours), grads(plain(dtype)), exact):
    assert g.dtype == ref.dtype == jnp.float32
    if dtype == jnp.float32:
      np.testing.assert_allclose(g, ref, rtol=1e-5, atol=1e-5)
    else:
      err, ref_err = (float(jnp.abs(a - f32).max() / jnp.abs(f32).max()) for a in (g, ref))
      assert err < 1e-2 and err <= 1.5 * ref_err, (err, ref_err)


def test_softmax_cross_entropy_matches_optax_values_and_gradients():
  logits = 5 * jax.random.normal(jax.random.key(0), (B, T, V))
  labels = jax.random.randint(jax.random.key(1), (B, T), 0, V)
  weights = jax.random.uniform(jax.random.key(2), (B, T))
  np.testing.assert_allclose(
    layers.softmax_cross_entropy(logits, labels),
    optax.softmax_cross_entropy_with_integer_labels(logits, labels),
    rtol=1e-6,
    atol=1e-5,
  )
  loss = lambda ce: lambda x: (ce(x, labels) * weights).sum()  # noqa: E731
  ours = jax.grad(loss(layers.softmax_cross_entropy))(logits)
  np.testing.assert_allclose(ours, jax.grad(loss(optax.softmax_cross_entropy_with_integer_labels))(logits), atol=1e-6)
  # and inside weighted_cross_entropy: labels of weight-0 slots (here -100) are ignored, their gradient is 0
  masked = labels.at[0, :3].set(-100)
  w = weights.at[0, :3].set(0.0)
  g = jax.grad(lambda x: layers.weighted_cross_entropy(x, masked, w)[0])(logits)
  assert np.isfinite(g).all() and (g[0, :3] == 0).all()
