"""CAME under the optax common battery (cf. optax/contrib/_common_test.py), plus its own options and errors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import came_jax
from came_jax.bench import startup_spike
from came_jax.optim import quantization


def assert_trees_all_close(a, b, rtol=1e-6, atol=0.0):
  jax.tree.map(
    lambda x, y: np.testing.assert_allclose(np.asarray(x, np.float32), np.asarray(y, np.float32), rtol=rtol, atol=atol),
    a,
    b,
  )


def _run(tx, params, loss, steps):
  def body(carry, _):
    params, state = carry
    updates, state = tx.update(jax.grad(loss)(params), state, params)
    return (optax.apply_updates(params, updates), state), None

  run = jax.jit(lambda params, state: jax.lax.scan(body, (params, state), None, length=steps)[0])
  return run(params, tx.init(params))


# --- Convergence on the optax problems ---------------------------------------------------------------------------


def _parabola():
  return jnp.array([1.0, 2.0]), lambda p: jnp.sum((p - jnp.array([-1.0, 0.5])) ** 2), jnp.array([-1.0, 0.5])


def _rosenbrock():
  return (jnp.array([-1.0, 1.5]), lambda p: (1.0 - p[0]) ** 2 + 100.0 * (p[1] - p[0] ** 2) ** 2, jnp.array([1.0, 1.0]))


def _matrix():
  target = jnp.asarray(np.random.default_rng(1).normal(size=(8, 6)), jnp.float32)
  return jnp.zeros((8, 6)), lambda p: jnp.mean((p - target) ** 2), target


def _mixed():
  rng = np.random.default_rng(2)
  target = {"w": jnp.asarray(rng.normal(size=(5, 4)), jnp.float32), "b": jnp.asarray(rng.normal(size=4), jnp.float32)}
  params = jax.tree.map(jnp.zeros_like, target)
  loss = lambda p: sum(jnp.sum((p[k] - target[k]) ** 2) for k in p)  # noqa: E731
  return params, loss, target


@pytest.mark.parametrize(
  "problem,lr,steps,atol",
  [
    (_parabola, 1e-2, 2000, 1e-2),
    (_rosenbrock, 3e-2, 6000, 1e-2),
    (_matrix, 1e-2, 2000, 2e-2),
    (_mixed, 1e-2, 2000, 2e-2),
  ],
)
@pytest.mark.parametrize("momentum_dtype", ["float32", "bfloat16"])
def test_converges(problem, lr, steps, atol, momentum_dtype):
  params, loss, target = problem()
  # A decaying learning rate lets the sign-like CAME steps settle on the optimum.
  schedule = optax.cosine_decay_schedule(lr, steps, alpha=0.01)
  final, _ = _run(came_jax.came(schedule, momentum_dtype=momentum_dtype), params, loss, steps)
  assert_trees_all_close(final, target, rtol=0.0, atol=atol)


@pytest.mark.parametrize("chunk_bytes", [None, 8192])  # 8192: blocks of 16 rows
def test_int8_momentum_converges_on_a_large_matrix(chunk_bytes):
  target = jnp.asarray(np.random.default_rng(3).normal(size=(64, 128)), jnp.float32)
  loss = lambda p: jnp.mean((p - target) ** 2)  # noqa: E731
  tx = came_jax.came(
    optax.cosine_decay_schedule(1e-2, 1500, alpha=0.01), momentum_dtype="int8", chunk_bytes=chunk_bytes
  )
  final, state = _run(tx, jnp.zeros_like(target), loss, 1500)
  assert isinstance(state[0].mu, quantization.QuantizedArray)
  np.testing.assert_allclose(final, target, atol=3e-2)


# --- Composition with optax ---------------------------------------------------------------------------------------


def _params():
  rng = np.random.default_rng(0)
  return {
    "w": jnp.asarray(rng.normal(size=(6, 5)), jnp.float32),
    "b": jnp.asarray(rng.normal(size=5), jnp.float32),
    "s": jnp.float32(0.5),
    "t": jnp.asarray(rng.normal(size=(2, 3, 4)), jnp.float32),
  }


def _grads(params, t):
  return jax.tree.map(lambda p: jnp.sin(p * (t + 1)) + 0.1 * t, params)


def test_no_recompilation_on_second_call():
  tx = came_jax.came(optax.linear_schedule(1e-2, 0.0, 100), weight_decay=0.1)
  params = _params()
  state = tx.init(params)
  traces = []

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def step(params, state, grads):
    traces.append(1)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  for t in range(3):
    params, state = step(params, state, _grads(params, t))
  assert len(traces) == 1
  assert step._cache_size() == 1


def test_ignores_extra_update_arguments():
  tx = came_jax.came(1e-2)
  params = _params()
  state = tx.init(params)
  a, _ = tx.update(_grads(params, 0), state, params)
  b, _ = tx.update(_grads(params, 0), state, params, value=jnp.float32(3.0))
  assert_trees_all_close(a, b, rtol=0.0)


@pytest.mark.parametrize("bias_correction", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
@pytest.mark.parametrize("momentum_dtype", ["float32", "int8"])
def test_inject_hyperparams_gives_identical_results(momentum_dtype, weight_decay, bias_correction):
  # The paper's betas: 0.999 and 0.9999 are not float32 numbers, and their complements are taken in float32 on
  # both paths (see came_jax/optim/came.py), so the two agree to rounding.
  kwargs = dict(learning_rate=3e-3, b1=0.9, b2=0.999, b3=0.9999, weight_decay=weight_decay)
  plain = came_jax.came(**kwargs, momentum_dtype=momentum_dtype, min_quantized_size=8, bias_correction=bias_correction)
  injected = optax.inject_hyperparams(came_jax.came, static_args=("min_quantized_size",))(
    **kwargs, momentum_dtype=momentum_dtype, min_quantized_size=8, bias_correction=bias_correction
  )
  assert jax.tree.structure(plain.init(_params())) == jax.tree.structure(injected.init(_params()).inner_state)
  params = _params()
  p1, s1 = params, plain.init(params)
  p2, s2 = params, injected.init(params)
  for t in range(5):
    u1, s1 = jax.jit(plain.update)(_grads(p1, t), s1, p1)
    u2, s2 = jax.jit(injected.update)(_grads(p2, t), s2, p2)
    p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)
  assert_trees_all_close(p1, p2, rtol=1e-6)


def test_injected_learning_rate_can_change_without_recompiling():
  tx = optax.inject_hyperparams(came_jax.came)(learning_rate=1e-2, b1=0.9)
  params = _params()
  state = tx.init(params)
  step = jax.jit(lambda p, s: tx.update(_grads(p, 0), s, p))
  for lr in (1e-2, 5e-3, 1e-3):
    state.hyperparams["learning_rate"] = jnp.asarray(lr)
    state.hyperparams["b1"] = jnp.asarray(0.8)
    _, state = step(params, state)
  assert step._cache_size() == 1


def test_constant_schedule_equals_constant_learning_rate():
  params = _params()
  loss = lambda p: sum(jnp.sum(jnp.cos(x)) for x in jax.tree.leaves(p))  # noqa: E731
  a, _ = _run(came_jax.came(1e-2), params, loss, 10)
  b, _ = _run(came_jax.came(optax.constant_schedule(1e-2)), params, loss, 10)
  assert_trees_all_close(a, b, rtol=0.0)


@pytest.mark.parametrize("bias_correction", [False, True])
def test_multi_steps_accumulates(bias_correction):
  k = 3
  params = _params()
  tx = optax.MultiSteps(came_jax.came(1e-2, bias_correction=bias_correction), every_k_schedule=k)
  state = tx.init(params)
  grads = [_grads(params, t) for t in range(k)]
  for g in grads:
    updates, state = jax.jit(tx.update)(g, state, params)
  mean_grad = jax.tree.map(lambda *g: sum(g) / k, *grads)
  ref = came_jax.came(1e-2, bias_correction=bias_correction)
  expected, _ = ref.update(mean_grad, ref.init(params), params)
  assert_trees_all_close(updates, expected, rtol=1e-5)


def test_apply_if_finite_skips_nonfinite_gradients():
  params = _params()
  tx = optax.apply_if_finite(came_jax.came(1e-2), max_consecutive_errors=5)
  state = tx.init(params)
  bad = jax.tree.map(lambda g: g.at[...].set(jnp.nan) if g.ndim == 0 else g.at[0].set(jnp.inf), _grads(params, 0))
  updates, new_state = jax.jit(tx.update)(bad, state, params)
  assert all(bool(jnp.all(u == 0)) for u in jax.tree.leaves(updates))
  assert int(new_state.notfinite_count) == 1
  assert_trees_all_close(new_state.inner_state, state.inner_state, rtol=0.0)


def test_inside_lax_scan():
  params = _params()
  tx = came_jax.came(1e-2, weight_decay=0.01)

  def body(carry, t):
    p, s = carry
    u, s = tx.update(_grads(p, t), s, p)
    return (optax.apply_updates(p, u), s), None

  (scanned, _), _ = jax.lax.scan(body, (params, tx.init(params)), jnp.arange(4))
  looped, state = params, tx.init(params)
  for t in range(4):
    u, state = tx.update(_grads(looped, t), state, looped)
    looped = optax.apply_updates(looped, u)
  # Same math; only XLA's fusion (rounding order) differs between the scanned and the eager loop.
  assert_trees_all_close(scanned, looped, rtol=1e-5, atol=1e-7)


def test_state_dtypes_stable_under_lax_cond():
  params = _params()
  tx = came_jax.came(1e-2, momentum_dtype="bfloat16")
  state = tx.init(params)
  grads = _grads(params, 0)
  # Both branches must agree on every state dtype for lax.cond to accept them.
  new_state = jax.lax.cond(True, lambda s: tx.update(grads, s, params)[1], lambda s: s, state)
  assert jax.tree.map(lambda x: x.dtype, new_state) == jax.tree.map(lambda x: x.dtype, state)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_updates_keep_param_dtype_and_statistics_stay_fp32(dtype):
  params = jax.tree.map(lambda p: p.astype(dtype), _params())
  tx = came_jax.came(1e-2, weight_decay=0.1)
  state = tx.init(params)
  updates, state = tx.update(_grads(params, 0), state, params)
  for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params)):
    assert u.dtype == p.dtype
  came_state = state[0]
  for field in ("mu", "v_row", "v_col", "v", "r_row", "r_col"):
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(getattr(came_state, field)))


def test_none_and_masked_leaves():
  params = {"w": jnp.ones((4, 3)), "frozen": None, "b": jnp.ones(3)}
  grads = {"w": jnp.full((4, 3), 0.5), "frozen": None, "b": jnp.full(3, 0.5)}
  tx = came_jax.came(1e-2)
  updates, _ = tx.update(grads, tx.init(params), params)
  assert updates["frozen"] is None and updates["w"].shape == (4, 3)

  # Only "w" is optimised; "b" passes through untouched.
  masked = optax.masked(came_jax.came(1e-2), {"w": True, "frozen": False, "b": False})
  updates, _ = masked.update(grads, masked.init(params), params)
  np.testing.assert_array_equal(updates["b"], grads["b"])


def test_weight_decay_mask():
  params = {"w": jnp.ones((4, 3)), "b": jnp.ones(3)}
  zero = jax.tree.map(jnp.zeros_like, params)
  tx = came_jax.came(0.1, weight_decay=0.5, mask={"w": True, "b": False})
  updates, _ = tx.update(zero, tx.init(params), params)
  np.testing.assert_allclose(updates["w"], -0.05 * np.ones((4, 3)), rtol=1e-6)
  np.testing.assert_allclose(updates["b"], np.zeros(3), atol=1e-12)


# --- Bias correction ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_bytes", [None, 2048])  # 2048: 6 blocks of 10 rows and a tail of 4
def test_bias_corrected_update_is_on_adams_scale_from_the_first_step(chunk_bytes):
  """Fed the same small noisy gradients as optax.adam(b1=0.9, b2=0.999) (came_jax/bench/startup_spike.py)."""
  ratios = startup_spike.ratios([1, 10, 100, 300], chunk_bytes=chunk_bytes)["came_bc"]
  for t, r in ratios.items():
    for leaf, ratio in r.items():
      assert 1 / 3 <= ratio <= 3, f"{leaf} at step {t}: {ratio:.2f}x Adam's update RMS"
  assert abs(ratios[1]["matrix"] - 1 / 0.9) < 0.02  # s_1 = û / (0.9 |û|): see the module docstring
  assert abs(ratios[1]["vector"] - 1.0) < 1e-3


def test_reference_start_up_spike_is_as_documented():
  """The reference (no bias correction) is not on Adam's scale early: the spike the docstring describes."""
  ratios = startup_spike.ratios([1, 10, 100, 300])["came"]
  assert 10.5 < ratios[1]["matrix"] < 11.5 and ratios[10]["matrix"] > 15 and ratios[300]["matrix"] > 4
  assert abs(ratios[1]["vector"] - 0.1) < 1e-3


@pytest.mark.parametrize("momentum_dtype", ["bfloat16", "int8"])
def test_bias_correction_composes_with_momentum_storage(momentum_dtype):
  rng = np.random.default_rng(6)
  params = {"w": jnp.asarray(rng.normal(size=(64, 96)), jnp.float32), "b": jnp.zeros(96)}
  fp32 = came_jax.came(1e-2, bias_correction=True)
  low = came_jax.came(1e-2, bias_correction=True, momentum_dtype=momentum_dtype, min_quantized_size=64)
  s1, s2 = fp32.init(params), low.init(params)
  for _ in range(3):
    grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
    (u1, s1), (u2, s2) = fp32.update(grads, s1, params), low.update(grads, s2, params)
    # Rounding the stored momentum changes the update by a few percent at most, never its scale.
    rel = float(jnp.linalg.norm(u2["w"] - u1["w"]) / jnp.linalg.norm(u1["w"]))
    assert rel < 0.05


def test_bias_correction_leaves_the_state_as_the_reference():
  """The correction only rescales the step: the averages in the state are the reference's."""
  params = _params()
  ref, bc = came_jax.scale_by_came(), came_jax.scale_by_came(bias_correction=True)
  s1, s2 = ref.init(params), bc.init(params)
  for t in range(3):
    (_, s1), (_, s2) = ref.update(_grads(params, t), s1), bc.update(_grads(params, t), s2)
  # Except the momentum, which depends on the (corrected) update û: compare the second moments only.
  assert_trees_all_close((s1.v_row, s1.v_col, s1.v), (s2.v_row, s2.v_col, s2.v), rtol=1e-6)


# --- Options ------------------------------------------------------------------------------------------------------


def test_largest_two_factoring_policy():
  params = {"conv": jnp.ones((3, 3, 256, 512)), "small": jnp.ones((4, 300)), "bias": jnp.ones(512)}
  state = came_jax.scale_by_came(factoring="largest_two", min_dim_size_to_factor=128).init(params)
  assert state.v_row["conv"].shape == (3, 3, 256) and state.v_col["conv"].shape == (3, 3, 512)
  assert state.v["small"].shape == (4, 300) and state.v_row["small"].shape == (1,)  # 4 < 128: not factored
  last_two = came_jax.scale_by_came().init(params)
  assert last_two.v_row["small"].shape == (4,) and last_two.v_col["small"].shape == (300,)


def test_largest_two_factoring_with_non_trailing_axes_matches_transposed_problem():
  # Factoring (axis 0, axis 2) of a [m, k, n] tensor equals factoring the last two axes of its [k, m, n]
  # transpose: checks the general-axes code against the reference rule.
  rng = np.random.default_rng(5)
  g = jnp.asarray(rng.normal(size=(256, 3, 200)), jnp.float32)
  tx = came_jax.scale_by_came(factoring="largest_two")
  ref = came_jax.scale_by_came(factoring="last_two")
  u, s = tx.update(g, tx.init(g))
  v, _ = ref.update(jnp.transpose(g, (1, 0, 2)), ref.init(jnp.transpose(g, (1, 0, 2))))
  np.testing.assert_allclose(jnp.transpose(u, (1, 0, 2)), v, rtol=1e-5)
  assert s.v_row.shape == (256, 3) and s.v_col.shape == (3, 200)


@pytest.mark.parametrize("momentum_dtype,max_ratio", [("float32", 1.005), ("bfloat16", 0.505), ("int8", 0.26)])
def test_state_bytes(momentum_dtype, max_ratio):
  params = {
    "emb": jax.ShapeDtypeStruct((32768, 768), jnp.float32),
    "ffn": jax.ShapeDtypeStruct((768, 3072), jnp.float32),
    "ln": jax.ShapeDtypeStruct((768,), jnp.float32),
  }
  state = jax.eval_shape(came_jax.came(1e-3, momentum_dtype=momentum_dtype).init, params)
  state_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))
  param_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(params))
  assert state_bytes <= max_ratio * param_bytes


# --- Bad input ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
  "kwargs,name",
  [
    (dict(b1=1.0), "b1"),
    (dict(b2=-0.1), "b2"),
    (dict(b3=1.5), "b3"),
    (dict(eps1=0.0), "eps1"),
    (dict(eps2=-1e-16), "eps2"),
    (dict(clip_threshold=0.0), "clip_threshold"),
    (dict(weight_decay=-0.1), "weight_decay"),
    (dict(learning_rate=-1.0), "learning_rate"),
    (dict(factoring="rows"), "factoring"),
    (dict(momentum_dtype="fp8"), "momentum_dtype"),
    (dict(quantization_block_size=0), "quantization_block_size"),
    (dict(chunk_bytes=0), "chunk_bytes"),
    (dict(chunk_bytes="big"), "chunk_bytes"),
    (dict(bias_correction=1), "bias_correction"),
  ],
)
def test_invalid_hyperparameters_name_the_argument(kwargs, name):
  kwargs = {"learning_rate": 1e-3, **kwargs}
  with pytest.raises(ValueError, match=f"`{name}`"):
    came_jax.came(**kwargs)


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.complex64])
def test_integer_and_complex_params_raise_type_error(dtype):
  with pytest.raises(TypeError, match=r"\['bad'\].*floating"):
    came_jax.came(1e-3).init({"ok": jnp.ones(3), "bad": jnp.ones(3, dtype)})
