"""Stochastic rounding of float32 to bfloat16: unbiased, reproducible from its counter, exact on specials."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import came_jax
from came_jax.optim import rounding


def test_stochastic_bf16_rounding_is_unbiased_and_deterministic():
  # Values between two bf16 neighbours: 1 + k/4 of a bf16 step above 1.0.
  step = 2.0**-7
  x = jnp.float32(1.0) + jnp.asarray([0.0, 0.25, 0.5, 0.9], jnp.float32) * step
  samples = jnp.stack(
    [rounding.to_bfloat16(x, rounding.random_bits(x.shape, 0, count, salt=7)) for count in range(2000)]
  ).astype(jnp.float32)
  np.testing.assert_allclose(jnp.mean(samples, axis=0), x, atol=0.03 * step)
  assert bool(jnp.all(samples[:, 0] == 1.0))  # representable values are kept exactly
  again = rounding.to_bfloat16(x, rounding.random_bits(x.shape, 0, 3, salt=7))
  np.testing.assert_array_equal(again, rounding.to_bfloat16(x, rounding.random_bits(x.shape, 0, 3, salt=7)))
  special = jnp.asarray([jnp.inf, -jnp.inf, jnp.nan, -2.5], jnp.float32)
  out = rounding.to_bfloat16(special, rounding.random_bits(special.shape, 0, 1, salt=0)).astype(jnp.float32)
  assert out[0] == jnp.inf and out[1] == -jnp.inf and bool(jnp.isnan(out[2])) and out[3] == -2.5


# ------------------------------------------------------------------------------------- stochastic_rounding


def _bf16_ulp(p: np.ndarray) -> np.ndarray:
  """The bf16 step above |p| (normal numbers): 2^(exponent - 7)."""
  return np.exp2(np.floor(np.log2(np.abs(p))) - 7)


def _rounded(tx, updates, params, count: int):
  """`tx`'s updates for the step `count` (the transformation's state is only its count)."""
  return tx.update(updates, came_jax.StochasticRoundingState(jnp.asarray(count, jnp.int32)), params)[0]


def test_rounded_sums_are_unbiased():
  # bf16 params over several binades, updates up to a quarter of the bf16 step above |p|, both signs (below a
  # power of two the step is half as large: a quarter of the upper step is then half the lower one).
  rng = np.random.default_rng(0)
  p = (rng.choice([-1.0, 1.0], 64) * np.exp2(rng.uniform(-8, 4, 64))).astype(jnp.bfloat16)
  p32 = np.asarray(p, np.float32)
  u = (rng.uniform(-0.24, 0.24, 64) * _bf16_ulp(p32)).astype(np.float32)
  tx = came_jax.stochastic_rounding(seed=3)
  n = 4000
  sums = jax.jit(jax.vmap(lambda c: optax.apply_updates({"p": p}, _rounded(tx, {"p": u}, {"p": p}, c))["p"]))(
    jnp.arange(n)
  )
  assert sums.dtype == jnp.bfloat16
  mean = np.asarray(sums, np.float64).mean(axis=0)
  # Each rounded sum is one of two neighbours a step apart: standard deviation at most half a step.
  bound = 5 * 0.5 * _bf16_ulp(p32) / np.sqrt(n)
  np.testing.assert_array_less(np.abs(mean - (p32.astype(np.float64) + u)), bound)
  # Round-to-nearest of the same sums is biased by the whole update wherever |u| < half a step.
  nearest = np.asarray(optax.apply_updates({"p": p}, {"p": u})["p"], np.float64)
  assert np.all(nearest == p32)


def _bits(x: np.ndarray) -> np.ndarray:
  return np.asarray(x, np.float32).view(np.uint32)


def test_applied_sum_is_exactly_the_rounded_float32_sum():
  # Params over 40 binades; updates from 1e-6 of a param to 1e6 times it, and updates landing within 2^-1 to
  # 2^-30 of a param from zero (where p + u cancels: the docstring's second case).
  rng = np.random.default_rng(1)
  n = 40000
  p = (rng.choice([-1.0, 1.0], n) * np.exp2(rng.uniform(-20, 20, n))).astype(jnp.bfloat16)
  p32 = np.asarray(p, np.float32)
  ratio = rng.choice([-1.0, 1.0], n) * np.exp2(rng.uniform(-20, 20, n))
  near_zero = rng.random(n) < 0.5
  ratio[near_zero] = -1.0 + rng.choice([-1.0, 1.0], near_zero.sum()) * np.exp2(rng.uniform(-30, -1, near_zero.sum()))
  u = (p32 * ratio).astype(np.float32)
  tx = came_jax.stochastic_rounding(seed=0)
  new_u = jax.jit(lambda u, p: _rounded(tx, u, p, 5))({"p": u}, {"p": p})["p"]
  assert new_u.dtype == jnp.float32
  applied = np.asarray(optax.apply_updates({"p": p}, {"p": new_u})["p"], np.float32)
  # The float32 sum rounded stochastically with the same bits, directly.
  bits = rounding.random_bits((n,), 0, 5, rounding._params_salt(0, (jax.tree_util.DictKey("p"),)))
  direct = np.asarray(rounding.to_bfloat16(jnp.asarray(p32 + u), bits), np.float32)
  np.testing.assert_array_equal(applied, direct)
  assert np.mean(applied != p32) > 0.5  # most sums moved
  tiny = np.abs(direct) <= 2.0**-13 * np.abs(p32)
  assert tiny.sum() > 0.2 * n and np.sum(tiny & (direct != 0)) > 0.1 * n  # the cancelling case is exercised
  # p + u' in float32 (before the cast) is already exact, except where q - p needs more than 24 bits, which the
  # docstring's first case allows (|q| > 2^-13 |p|: the cast back to bf16 absorbs the float32 rounding).
  inexact = p32 + np.asarray(new_u) != direct
  assert not np.any(inexact & tiny) and inexact.sum() < 0.01 * n


def test_round_to_nearest_stalls_where_stochastic_rounding_keeps_the_updates():
  # 100 steps of +2^-10 on weights at 1.0, a quarter of the half step (2^-8) that round-to-nearest needs.
  params = {"w": jnp.ones((4096,), jnp.bfloat16)}
  tx = optax.chain(optax.sgd(learning_rate=2.0**-10), came_jax.stochastic_rounding(seed=0))
  grads = {"w": -jnp.ones((4096,), jnp.bfloat16)}

  @jax.jit
  def steps(params, state):
    def body(carry, _):
      params, state = carry
      updates, state = tx.update(grads, state, params)
      return (optax.apply_updates(params, updates), state), None

    return jax.lax.scan(body, (params, state), None, length=100)[0]

  sr, state = steps(params, tx.init(params))
  sgd = optax.sgd(learning_rate=2.0**-10)
  nearest, sgd_state = params, sgd.init(params)
  for _ in range(100):
    updates, sgd_state = sgd.update(grads, sgd_state, nearest)
    nearest = optax.apply_updates(nearest, updates)
  assert bool(jnp.all(nearest["w"] == 1.0))
  assert int(state[1].count) == 100
  # Each weight's sum of 100 rounded steps has a standard deviation below 10 * 2^-7 / 2: the mean's is 6e-4.
  np.testing.assert_allclose(float(jnp.mean(sr["w"].astype(jnp.float32))), 1.0 + 100 * 2.0**-10, atol=4e-3)


def test_deterministic_given_seed_and_step():
  p = {"w": jnp.linspace(0.5, 1.5, 512).astype(jnp.bfloat16)}
  u = {"w": jnp.full((512,), 1e-3, jnp.float32)}
  tx = came_jax.stochastic_rounding(seed=11)
  first = _rounded(tx, u, p, 7)["w"]
  np.testing.assert_array_equal(first, _rounded(came_jax.stochastic_rounding(seed=11), u, p, 7)["w"])
  assert bool(jnp.any(first != _rounded(came_jax.stochastic_rounding(seed=12), u, p, 7)["w"]))
  assert bool(jnp.any(first != _rounded(tx, u, p, 8)["w"]))
  # Two leaves with equal values round independently (the path salts the bits).
  both = _rounded(tx, {"a": u["w"], "b": u["w"]}, {"a": p["w"], "b": p["w"]}, 7)
  assert bool(jnp.any(both["a"] != both["b"]))


def test_jit_matches_eager_and_compiles_once():
  traces = []
  tx = came_jax.stochastic_rounding(seed=0)

  @jax.jit
  def step(params, state, updates):
    traces.append(None)
    new, state = tx.update(updates, state, params)
    return optax.apply_updates(params, new), state

  params = {"w": jnp.linspace(-1, 1, 300).astype(jnp.bfloat16).reshape(20, 15), "b": jnp.zeros(15)}
  updates = {"w": jnp.full((20, 15), 3e-4, jnp.bfloat16), "b": jnp.full((15,), 3e-4)}
  state = tx.init(params)
  eager_updates, _ = tx.update(updates, state, params)
  jitted, state1 = step(params, state, updates)
  np.testing.assert_array_equal(jitted["w"], optax.apply_updates(params, eager_updates)["w"])
  step(jitted, state1, updates)
  assert len(traces) == 1 and int(state1.count) == 1


def test_other_dtypes_pass_through_untouched():
  params = {
    "f32": jnp.linspace(-1, 1, 64, dtype=jnp.float32),
    "f16": jnp.linspace(-1, 1, 64, dtype=jnp.float16),
    "bf16": jnp.linspace(-1, 1, 64).astype(jnp.bfloat16),
  }
  updates = {"f32": jnp.full((64,), 1e-5), "f16": jnp.full((64,), 1e-3, jnp.float16), "bf16": jnp.full((64,), 1e-5)}
  new, _ = jax.jit(came_jax.stochastic_rounding(seed=0).update)(
    updates, came_jax.stochastic_rounding().init(params), params
  )
  for name in ("f32", "f16"):
    assert new[name].dtype == updates[name].dtype
    np.testing.assert_array_equal(np.asarray(new[name]).view(np.uint8), np.asarray(updates[name]).view(np.uint8))
  assert new["bf16"].dtype == jnp.float32
  eager, _ = came_jax.stochastic_rounding(seed=0).update(updates, came_jax.stochastic_rounding().init(params), params)
  assert eager["f32"] is updates["f32"]  # not even copied


def test_infinite_param_stays_and_params_are_required():
  tx = came_jax.stochastic_rounding()
  p = {"w": jnp.asarray([jnp.inf, -jnp.inf, 1.0], jnp.bfloat16)}
  new, _ = tx.update({"w": jnp.asarray([1.0, 1.0, jnp.nan])}, tx.init(p), p)
  out = np.asarray(optax.apply_updates(p, new)["w"], np.float32)
  assert out[0] == np.inf and out[1] == -np.inf and np.isnan(out[2])
  with pytest.raises(ValueError, match="params"):
    tx.update({"w": jnp.zeros(3)}, tx.init(p))
  with pytest.raises(TypeError, match="seed"):
    came_jax.stochastic_rounding(seed=1.5)


def _bf16_problem():
  """A bf16 matrix and vector fit to targets: (params, loss)."""
  target = {"w": jnp.linspace(-0.5, 0.5, 64 * 32).reshape(64, 32), "b": jnp.linspace(0.2, 1.0, 32)}
  params = {"w": jnp.zeros((64, 32), jnp.bfloat16), "b": jnp.ones((32,), jnp.bfloat16)}

  def loss(p):
    return sum(jnp.mean((p[k].astype(jnp.float32) - target[k]) ** 2) for k in p)

  return params, loss


def _train(tx, params, loss, steps):
  @jax.jit
  def step(params, state):
    updates, state = tx.update(jax.grad(loss)(params), state, params)
    return optax.apply_updates(params, updates), state

  state = tx.init(params)
  for _ in range(steps):
    params, state = step(params, state)
  return params, state


def test_came_chain_trains_bf16_params_and_keeps_dtypes():
  params, loss = _bf16_problem()
  tx = optax.chain(came_jax.came(learning_rate=0.02, bias_correction=True), came_jax.stochastic_rounding(seed=0))
  trained, state = _train(tx, params, loss, 60)
  assert jax.tree.map(lambda x: x.dtype, trained) == jax.tree.map(lambda x: x.dtype, params)
  assert float(loss(trained)) < 0.05 * float(loss(params))
  assert int(state[1].count) == 60


def test_came_chain_under_inject_hyperparams_and_multisteps():
  params, loss = _bf16_problem()

  def make(learning_rate):
    return optax.chain(came_jax.came(learning_rate, bias_correction=True), came_jax.stochastic_rounding(seed=0))

  plain, _ = _train(make(1e-3), params, loss, 5)
  injected_tx = optax.inject_hyperparams(make)(learning_rate=1e-3)
  injected, _ = _train(injected_tx, params, loss, 5)
  # The injected rate is a float32 array, so the scaled update is float32 rather than bf16: a rounding decision
  # may differ where the two sums straddle a threshold, by one bf16 step.
  for k in params:
    a, b = np.asarray(plain[k], np.float32), np.asarray(injected[k], np.float32)
    assert np.mean(a == b) > 0.99
    np.testing.assert_array_less(np.abs(a - b), 1.01 * _bf16_ulp(np.maximum(np.abs(a), 2.0**-30)) + 1e-30)
  # A zero rate changes nothing, bitwise: SR(p + 0) = p.
  state = injected_tx.init(params)
  state.hyperparams["learning_rate"] = jnp.zeros([], jnp.float32)
  zero_updates, _ = injected_tx.update(jax.grad(loss)(params), state, params)
  for k in params:
    np.testing.assert_array_equal(optax.apply_updates(params, zero_updates)[k], params[k])

  multi = optax.MultiSteps(make(1e-3), every_k_schedule=2)
  state = multi.init(params)
  once, state = jax.jit(multi.update)(jax.grad(loss)(params), state, params)
  after_one = optax.apply_updates(params, once)
  for k in params:
    np.testing.assert_array_equal(after_one[k], params[k])
  twice, state = jax.jit(multi.update)(jax.grad(loss)(after_one), state, after_one)
  after_two = optax.apply_updates(after_one, twice)
  assert after_two["w"].dtype == jnp.bfloat16 and bool(jnp.any(after_two["w"] != params["w"]))
  assert int(state.inner_opt_state[1].count) == 1
