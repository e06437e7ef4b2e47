"""CAME on a `jax.sharding.Mesh` of 8 simulated CPU devices (see tests/conftest.py for the XLA flag)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import came_jax
from came_jax.optim import quantization

SPECS = {
  "w": ((16, 32), P("data", "model")),
  "emb": ((64, 8), P("model", None)),
  "rank3": ((4, 8, 512), P(None, "data", "model")),
  "bias": ((32,), P("model")),
  "scalar": ((), P()),
}


@pytest.fixture(scope="module")
def mesh():
  assert jax.device_count() >= 8, "tests/conftest.py must set --xla_force_host_platform_device_count=8"
  return Mesh(np.array(jax.devices()[:8]).reshape(2, 4), ("data", "model"))


def _spec(x):
  spec = tuple(x.sharding.spec)
  return spec + (None,) * (x.ndim - len(spec))


@pytest.mark.parametrize("momentum_dtype,bias_correction", [("float32", False), ("int8", False), ("float32", True)])
def test_sharded_equals_unsharded_and_state_is_sharded(mesh, momentum_dtype, bias_correction):
  rng = np.random.default_rng(0)
  host = {k: rng.normal(size=shape).astype(np.float32) for k, (shape, _) in SPECS.items()}
  grads = [{k: rng.normal(size=shape).astype(np.float32) for k, (shape, _) in SPECS.items()} for _ in range(4)]
  shardings = {k: NamedSharding(mesh, spec) for k, (_, spec) in SPECS.items()}
  tx = came_jax.came(
    1e-2, weight_decay=0.1, momentum_dtype=momentum_dtype, min_quantized_size=256, bias_correction=bias_correction
  )

  def step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  # Unsharded reference, on one device.
  params = jax.tree.map(jnp.asarray, host)
  state = tx.init(params)
  for g in grads:
    params, state = jax.jit(step)(params, state, g)

  sharded = jax.device_put(host, shardings)
  sharded_state = tx.init(sharded)
  sharded_step = jax.jit(step, donate_argnums=(0, 1))
  for g in grads:
    sharded, sharded_state = sharded_step(sharded, sharded_state, jax.device_put(g, shardings))

  # Sharded reductions sum in another order, so compare the total change of each param relative to its size.
  # With 8-bit momentum, a value that the reordered sums move across a code boundary rounds to the next code:
  # up to ~2/127 of its block's largest momentum (companded codes), rare but possible anywhere. So for int8: all
  # but 0.1% of the elements within 1e-5, the rest within a code step's worth (3%) of the total change.
  for k in SPECS:
    ours, ref = np.asarray(sharded[k]) - host[k], np.asarray(params[k]) - host[k]
    err = np.abs(ours - ref) / np.max(np.abs(ref))
    if momentum_dtype == "float32":
      assert np.max(err) <= 1e-5, k
    else:
      assert np.mean(err > 1e-5) <= 1e-3 and np.max(err) <= 3e-2, (k, np.mean(err > 1e-5), np.max(err))
    assert sharded[k].sharding.is_equivalent_to(shardings[k], len(SPECS[k][0]))

  came_state = sharded_state[0]
  expected = {
    # leaf: (v_row spec, v_col spec), each statistic keeps the axes it shares with its param.
    "w": (("data",), ("model",)),
    "emb": (("model",), (None,)),
    "rank3": ((None, "data"), (None, "model")),
  }
  for k, (row_spec, col_spec) in expected.items():
    for field in ("v_row", "r_row"):
      assert _spec(getattr(came_state, field)[k]) == row_spec, (k, field)
    for field in ("v_col", "r_col"):
      assert _spec(getattr(came_state, field)[k]) == col_spec, (k, field)
  assert _spec(came_state.v["bias"]) == ("model",)
  for k in ("w", "emb", "rank3", "bias"):
    shape, spec = SPECS[k]
    param_spec = tuple(spec) + (None,) * (len(shape) - len(spec))
    mu = came_state.mu[k]
    if isinstance(mu, quantization.QuantizedArray):
      assert mu.codes.dtype == jnp.int8 and _spec(mu.codes) == param_spec, k
      assert _spec(mu.scales) == param_spec[:-1] + (None,), k
    else:
      assert _spec(mu) == param_spec, k
  if momentum_dtype == "int8":
    assert isinstance(came_state.mu["rank3"], quantization.QuantizedArray)
  # Sharded, not replicated: each device holds a fraction of the big state leaves.
  v_row = came_state.v_row["rank3"]
  assert v_row.addressable_shards[0].data.size == v_row.size // 2
