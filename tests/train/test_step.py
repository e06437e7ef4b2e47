"""The jitted train step on the stand-in model: accumulation, the runtime micro-batch count and learning rate
(no recompilation), and skipping of non-finite gradients."""

import dataclasses
import functools

import jax
import numpy as np
import pytest

from came_jax.optim import registry
from came_jax.train import step as step_lib
from tests.train import standin

CFG = dataclasses.replace(standin.CONFIGS["tiny"], vocab_size=64, hidden_dim=8)


def _poisoned_loss(params, batch, rng, *, train):
  """The stand-in loss times `batch['poison']` (1.0, or NaN/inf to poison the gradient)."""
  loss, metrics = standin.loss_fn(params, batch, rng, cfg=CFG, train=train)
  return loss * batch["poison"][0], metrics


def _micro_batch(seed, poison=1.0, batch=4, length=8):
  rng = np.random.default_rng(seed)
  ids = rng.integers(0, CFG.vocab_size, (batch, length + 1)).astype(np.int32)
  return {
    "input_ids": ids[:, :-1],
    "labels": ids[:, 1:],
    "weights": np.ones((batch, length), np.float32),
    "poison": np.full((batch,), poison, np.float32),
  }


def _stack(*mbs):
  return jax.tree.map(lambda *x: np.stack(x), *mbs)


def _setup(optimizer="adamw"):
  cfg = registry.default_config()
  cfg.name = optimizer
  tx = registry.make(cfg)
  state = step_lib.TrainState.create(standin.init_params(CFG, jax.random.PRNGKey(0)), tx, jax.random.PRNGKey(1))
  fn = jax.jit(functools.partial(step_lib.train_step, loss_fn=_poisoned_loss, tx=tx), donate_argnums=0)
  return state, fn


def _host(tree):
  return jax.tree.map(np.asarray, jax.device_get(tree))


def test_accumulated_micro_batches_equal_one_big_batch():
  a, b = _micro_batch(0), _micro_batch(1)
  big = jax.tree.map(lambda x, y: np.concatenate([x, y])[None], a, b)
  state, fn = _setup()
  s1, m1 = fn(state, _stack(a, b), np.int32(2), np.float32(1e-2))
  state, fn = _setup()
  s2, m2 = fn(state, big, np.int32(1), np.float32(1e-2))
  np.testing.assert_allclose(float(m1["loss"]), float(m2["loss"]), rtol=1e-6)
  assert float(m1["num_tokens"]) == float(m2["num_tokens"]) == 64
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=2e-5, atol=1e-7), _host(s1.params), _host(s2.params))


def test_unused_micro_batch_slots_are_ignored():
  a = _micro_batch(0)
  garbage = _micro_batch(7, poison=float("nan"))  # would poison the step if it were computed
  state, fn = _setup()
  s1, m1 = fn(state, _stack(a, garbage), np.int32(1), np.float32(1e-2))
  state, fn = _setup()
  s2, m2 = fn(state, _stack(a), np.int32(1), np.float32(1e-2))
  assert int(m1["skipped"]) == 0 and float(m1["num_tokens"]) == 32
  jax.tree.map(np.testing.assert_array_equal, _host(s1.params), _host(s2.params))


def test_runtime_count_and_learning_rate_never_recompile():
  state, fn = _setup("came")
  batch = _stack(_micro_batch(0), _micro_batch(1), _micro_batch(2))
  for n, lr in [(1, 1e-3), (2, 5e-4), (3, 0.0), (1, 2e-3)]:
    state, metrics = fn(state, batch, np.int32(n), np.float32(lr))
    assert float(metrics["learning_rate"]) == pytest.approx(lr)
    assert float(metrics["num_tokens"]) == 32 * n
  assert fn._cache_size() == 1  # pylint: disable=protected-access
  assert int(state.step) == 4


@pytest.mark.parametrize("poison", [float("nan"), float("inf")])
def test_nonfinite_gradient_is_skipped_and_counted(poison):
  state, fn = _setup("came")
  state, _ = fn(state, _stack(_micro_batch(0)), np.int32(1), np.float32(1e-2))
  before = _host((state.params, state.opt_state))
  for i in range(2):
    state, m = fn(state, _stack(_micro_batch(1, poison=poison)), np.int32(1), np.float32(1e-2))
    assert int(m["skipped"]) == 1 and int(m["nonfinite_consecutive"]) == i + 1 and int(m["nonfinite_total"]) == i + 1
    assert float(m["update_norm"]) == 0.0
  after = _host((state.params, state.opt_state))
  before_params, before_opt = before
  after_params, after_opt = after
  jax.tree.map(np.testing.assert_array_equal, before_params, after_params)
  # The optimizer state is untouched too (its count included); only the injected learning rate is rewritten.
  jax.tree.map(np.testing.assert_array_equal, before_opt.inner_state, after_opt.inner_state)
  assert int(state.step) == 3
  state, m = fn(state, _stack(_micro_batch(2)), np.int32(1), np.float32(1e-2))
  assert int(m["skipped"]) == 0 and int(m["nonfinite_consecutive"]) == 0 and int(m["nonfinite_total"]) == 2
  assert not np.array_equal(_host(state.params)["out"], after_params["out"])


def test_eval_step_sums_over_tokens():
  params = standin.init_params(CFG, jax.random.PRNGKey(0))
  mb = _micro_batch(0)
  loss_fn = functools.partial(standin.loss_fn, cfg=CFG)
  out = jax.jit(functools.partial(step_lib.eval_step, loss_fn=loss_fn))(params, mb)
  loss, _ = loss_fn(params, mb, None, train=False)
  assert float(out["num_tokens"]) == 32
  np.testing.assert_allclose(float(out["loss_sum"]) / 32, float(loss), rtol=1e-6)
  assert "accuracy_sum" in out
