"""The optimizer registry: every optimizer by name, masked weight decay, the learning rate as a runtime value."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from came_jax.optim import registry


def _params():
  return {"dense": {"kernel": jnp.ones((4, 3)), "bias": jnp.ones((3,))}, "norm": {"scale": jnp.ones((3,))}}


def _step(tx):
  @jax.jit
  def step(grads, state, params, lr):
    state = registry.set_learning_rate(state, lr)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  return step


@pytest.mark.parametrize("name", registry.OPTIMIZERS)
def test_decay_skips_norms_and_biases(name):
  cfg = registry.default_config()
  cfg.name = name
  cfg[name].weight_decay = 0.5
  tx = registry.make(cfg)
  params = _params()
  zeros = jax.tree.map(jnp.zeros_like, params)
  new, _ = _step(tx)(zeros, tx.init(params), params, 0.1)  # zero gradients: only weight decay moves params
  assert float(jnp.max(jnp.abs(new["dense"]["kernel"] - 1.0))) > 0
  np.testing.assert_array_equal(new["dense"]["bias"], params["dense"]["bias"])
  np.testing.assert_array_equal(new["norm"]["scale"], params["norm"]["scale"])


@pytest.mark.parametrize("name", registry.OPTIMIZERS)
def test_learning_rate_is_runtime_value(name):
  cfg = registry.default_config()
  cfg.name = name
  tx = registry.make(cfg)
  params = _params()
  grads = jax.tree.map(lambda p: 0.1 * jnp.ones_like(p), params)
  step = _step(tx)
  state = tx.init(params)
  moved = []
  for lr in (1e-3, 2e-3, 0.0):
    new, state = step(grads, state, params, lr)
    moved.append(float(jnp.abs(new["dense"]["kernel"] - params["dense"]["kernel"]).max()))
    assert float(registry.get_learning_rate(state)) == pytest.approx(lr)
  assert step._cache_size() == 1  # pylint: disable=protected-access
  assert moved[1] > moved[0] > 0
  if name != "adafactor":  # optax's adafactor applies its momentum after the learning rate
    assert moved[2] == 0.0


def test_global_norm_clipping_is_in_the_chain():
  cfg = registry.default_config()
  cfg.name, cfg.grad_clip_norm = "adamw", 1.0
  tx = registry.make(cfg)
  assert set(tx.init(_params()).hyperparams) >= {"learning_rate", "grad_clip_norm", "b1", "b2", "weight_decay"}
  cfg.grad_clip_norm = -1.0
  with pytest.raises(ValueError, match="grad_clip_norm"):
    registry.make(cfg)


def test_unknown_names_fail():
  cfg = registry.default_config()
  cfg.name = "sgd"
  with pytest.raises(ValueError, match="config.optimizer.name"):
    registry.make(cfg)
  cfg.name, cfg.decay_mask = "adamw", "odd"
  with pytest.raises(ValueError, match="config.optimizer.decay_mask"):
    registry.make(cfg)


@pytest.mark.parametrize("offset", [0, -5000])
def test_adafactor_decay_offset_is_optax(offset):
  """`decay_offset` reaches optax: a negative one holds the second-moment decay near 1 from the first step."""
  cfg = registry.default_config()
  cfg.name, cfg.grad_clip_norm = "adafactor", 0.0
  cfg.adafactor.update(dict(learning_rate=1e-2, decay_offset=offset, min_dim_size_to_factor=2))
  ours = registry.make(cfg)
  ref = optax.adafactor(
    1e-2,
    min_dim_size_to_factor=2,
    decay_rate=0.8,
    decay_offset=offset,
    multiply_by_parameter_scale=False,
    clipping_threshold=1.0,
    momentum=0.9,
    eps=1e-30,
  )
  params = _params()
  s_ours, s_ref = ours.init(params), ref.init(params)
  for k in range(3):
    grads = jax.tree.map(lambda p, k=k: jnp.cos(jnp.arange(p.size, dtype=jnp.float32) + k).reshape(p.shape), params)
    u_ours, s_ours = ours.update(grads, s_ours, params)
    u_ref, s_ref = ref.update(grads, s_ref, params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9), u_ours, u_ref)
  v_row = [s for s in jax.tree.leaves(s_ref, is_leaf=lambda x: hasattr(x, "v_row")) if hasattr(s, "v_row")][0].v_row[
    "dense"
  ]["kernel"]
  grads_sq_mean = np.mean(np.cos(np.arange(12, dtype=np.float32) + 2).reshape(4, 3) ** 2, axis=1)
  # After 3 steps the row statistic holds a fraction 1 - beta2_3 of the last step's mean g^2 plus older ones:
  # near all of it with offset 0 (beta2_3 = 1 - 3^-0.8 = 0.58), a small part with offset -5000 (beta2 ~ 0.999).
  assert (v_row.max() > 0.3 * grads_sq_mean.max()) == (offset == 0)
