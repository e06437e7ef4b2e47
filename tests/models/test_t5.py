"""T5 v1.1 port: relative position buckets, masking, training, mixed precision, sizes.

Numerical equivalence with Hugging Face is tested with the conversion, in tests/hf/test_t5.py."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import transformers

from came_jax import models
from came_jax.models import t5

# Small but exercising everything: unequal encoder/decoder depth, log-spaced position buckets (sequences longer
# than max_distance), d_model != num_heads * d_kv.
CFG = t5.Config(
  vocab_size=96,
  d_model=32,
  d_kv=12,
  d_ff=48,
  num_layers=2,
  num_decoder_layers=3,
  num_heads=4,
  relative_attention_num_buckets=8,
  relative_attention_max_distance=20,
)
B, TI, TO = 3, 26, 11
SHALLOW = dataclasses.replace(CFG, num_layers=1, num_decoder_layers=1)  # quicker to compile


def _batch(cfg=CFG, seed=0):
  """Span-corruption-shaped batch with encoder padding (rows 1, 2) and target padding (rows 0, 2)."""
  rng = np.random.default_rng(seed)
  input_ids = rng.integers(2, cfg.vocab_size, (B, TI))
  input_ids[1, -6:] = cfg.pad_id
  input_ids[2, -15:] = cfg.pad_id
  labels = rng.integers(2, cfg.vocab_size, (B, TO))
  weights = np.ones((B, TO), np.float32)
  for row, n in ((0, 3), (2, 5)):
    labels[row, -n:] = cfg.pad_id
    weights[row, -n:] = 0.0
  return {"input_ids": input_ids.astype(np.int32), "labels": labels.astype(np.int32), "weights": weights}


def _rel_err(a, b):
  return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(b))))


@pytest.fixture(scope="module")
def params():
  return t5.init_params(CFG, jax.random.key(1))


@pytest.fixture(scope="module")
def shallow_params():
  return t5.init_params(SHALLOW, jax.random.key(2))


def test_relative_position_bucket_matches_hf():
  relative = np.arange(-300, 301)[None, :]
  for bidirectional in (True, False):
    for num_buckets, max_distance in ((32, 128), (8, 20)):
      ours = t5.relative_position_bucket(
        jnp.asarray(relative), bidirectional=bidirectional, num_buckets=num_buckets, max_distance=max_distance
      )
      theirs = transformers.models.t5.modeling_t5.T5Attention._relative_position_bucket(
        torch.from_numpy(relative),
        bidirectional=bidirectional,
        num_buckets=num_buckets,
        max_distance=max_distance,
      )
      np.testing.assert_array_equal(np.asarray(ours), theirs.numpy())


def _logits(params, input_ids, attention_mask, decoder_input_ids, *, cfg):
  batch = {"input_ids": input_ids, "attention_mask": attention_mask, "decoder_input_ids": decoder_input_ids}
  return t5.logits_fn(params, batch, cfg=cfg)


def test_masking_decoder_causality_and_encoder_padding(params):
  batch = _batch()
  mask = batch["input_ids"] != CFG.pad_id
  dec = t5.shift_right(jnp.asarray(batch["labels"]), CFG.decoder_start_id)
  f = jax.jit(lambda ids, dec: _logits(params, ids, mask, dec, cfg=CFG))
  base = f(batch["input_ids"], dec)

  t = 6  # change the decoder input at position t: earlier positions must not move, position t must
  changed = f(batch["input_ids"], dec.at[:, t].set((dec[:, t] + 1) % CFG.vocab_size))
  np.testing.assert_array_equal(np.asarray(changed[:, :t]), np.asarray(base[:, :t]))
  assert np.all(np.abs(np.asarray(changed[:, t:] - base[:, t:])).max(axis=(1, 2)) > 1e-4)

  # Tokens under the encoder padding mask are invisible.
  logits = f(np.where(mask, batch["input_ids"], 7), dec)
  np.testing.assert_array_equal(np.asarray(logits), np.asarray(base))


def test_loss_falls_with_adam(shallow_params):
  params = shallow_params
  batch = _batch(seed=1)
  opt = optax.adam(3e-3)

  @jax.jit
  def step(params, state):
    loss, grads = jax.value_and_grad(lambda p: t5.loss_fn(p, batch, None, cfg=SHALLOW, train=True)[0])(params)
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state, loss

  state = opt.init(params)
  losses = []
  for _ in range(25):
    params, state, loss = step(params, state)
    losses.append(float(loss))
  assert np.isfinite(losses).all()
  assert losses[0] < np.log(CFG.vocab_size) + 1.5  # O(1) initial logits (untied head std d_model**-0.5)
  assert losses[-1] < 0.5 * losses[0], losses


def test_bfloat16_compute_close_to_float32_with_fp32_params(shallow_params):
  params = shallow_params
  batch = _batch()
  mask = batch["input_ids"] != SHALLOW.pad_id
  dec = t5.shift_right(jnp.asarray(batch["labels"]), SHALLOW.decoder_start_id)

  def run(cfg):
    loss_and_grad = jax.value_and_grad(lambda p: t5.loss_fn(p, batch, None, cfg=cfg, train=True)[0])
    return jax.jit(lambda p: (*loss_and_grad(p), _logits(p, batch["input_ids"], mask, dec, cfg=cfg)))(params)

  loss32, g32, logits32 = run(SHALLOW)
  loss16, g16, logits16 = run(dataclasses.replace(SHALLOW, dtype="bfloat16"))
  assert loss16.dtype == jnp.float32 and logits16.dtype == jnp.float32
  assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(g16))
  assert abs(float(loss16) - float(loss32)) < 0.02 * float(loss32)
  assert _rel_err(logits16, logits32) < 0.05
  flat32, flat16 = (jnp.concatenate([x.ravel() for x in jax.tree.leaves(g)]) for g in (g32, g16))
  assert float(jnp.vdot(flat32, flat16) / (jnp.linalg.norm(flat32) * jnp.linalg.norm(flat16))) > 0.99


def test_dropout(shallow_params):
  cfg = dataclasses.replace(SHALLOW, dropout_rate=0.1)
  batch = _batch()
  loss = lambda cfg, rng, train: t5.loss_fn(shallow_params, batch, rng, cfg=cfg, train=train)[0]
  train_loss = jax.jit(lambda rng: loss(cfg, rng, True))
  # A cheap-to-compile PRNG (threefry for ~15 dropout sites takes seconds to compile on CPU); same code path.
  a, b = (float(train_loss(jax.random.key(seed, impl="unsafe_rbg"))) for seed in (0, 1))
  eval_loss, no_dropout = jax.jit(lambda: (loss(cfg, None, False), loss(SHALLOW, None, True)))()
  assert a != b  # different dropout masks
  assert abs((a + b) / 2 - float(eval_loss)) < 0.1 * float(eval_loss)
  np.testing.assert_allclose(eval_loss, no_dropout, rtol=1e-6)
  # The explicit attention used under dropout equals jax.nn.dot_product_attention(scale=1) without it.
  q, k, v = jax.random.normal(jax.random.key(5), (3, 2, 5, 4, 8))
  bias = jax.random.normal(jax.random.key(6), (1, 4, 5, 5))
  mask = jnp.tril(jnp.ones((5, 5), bool))[None, None]
  ours = t5._attention_with_dropout(q, k, v, bias=bias, mask=mask, dropout_rate=0.0, dropout_rng=None)
  ref = jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask, scale=1.0)
  np.testing.assert_allclose(np.asarray(ours), np.asarray(ref), rtol=1e-5, atol=1e-6)


def test_presets_match_released_t5_v1_1_sizes():
  released = {"small": 76_961_152, "base": 247_577_856, "large": 783_150_080}  # google/t5-v1_1-*
  for name, n in released.items():
    shapes = jax.eval_shape(functools.partial(t5.init_params, models.make_config("t5", name)), jax.random.key(0))
    assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes)) == n, name
  assert models.make_config("t5", "tiny", vocab_size=100).vocab_size == 100
  with pytest.raises(ValueError, match="'xxl' is not a preset of t5"):
    models.make_config("t5", "xxl")


def test_flops_per_token_counts_every_kernel():
  """With equal encoder and decoder lengths, 6 * (all kernel parameters) + the attention term."""
  cfg = models.make_config("t5", "small")
  shapes = jax.eval_shape(lambda: t5.init_params(cfg, jax.random.key(0)))
  leaves = jax.tree_util.tree_leaves_with_path(shapes)
  kernels = sum(int(np.prod(x.shape)) for path, x in leaves if path[-1].key == "kernel")
  t, inner = 512, cfg.num_heads * cfg.d_kv
  attention = 12 * inner * t * (cfg.num_layers + 2 * cfg.n_decoder_layers)
  assert t5.flops_per_token(cfg, {"input_ids": (B, t)}) == pytest.approx(6 * kernels + attention)
  assert t5.flops_per_token(cfg, {"input_ids": (B, t), "labels": (B, 114)}) < t5.flops_per_token(
    cfg, {"input_ids": (B, t)}
  )
