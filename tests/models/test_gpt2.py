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
from came_jax.models import gpt2

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
def test_attention_dropout_path_matches_fused_attention(is_causal):
  """The explicit softmax used under attention dropout equals jax.nn.dot_product_attention when nothing drops."""
  from came_jax.models import layers

  q, k, v = jax.random.normal(jax.random.key(0), (3, B, T, 4, 8))
  mask = layers.padding_mask(jnp.ones((B, T), jnp.int32).at[0, -3:].set(0))
  fused = layers.attention(q, k, v, mask=mask, is_causal=is_causal)
  explicit = layers.attention(q, k, v, mask=mask, is_causal=is_causal, dropout_rate=1e-9, dropout_rng=jax.random.key(1))
  np.testing.assert_allclose(explicit, fused, rtol=1e-5, atol=1e-6)
