"""came_jax.bench.optimizer_step: each optimizer's donating step on its own copy of the params."""

import jax
import jax.numpy as jnp
import numpy as np

from came_jax.bench import optimizer_step


def test_jax_runner_steps_its_own_params():
  params = {"w": jnp.ones((32, 16)), "b": jnp.zeros(16)}
  grads = jax.tree.map(lambda p: jnp.full(p.shape, 0.1), params)
  runner = optimizer_step.JaxRunner(optimizer_step.JAX_OPTIMIZERS["optax.adamw"](), params, grads)
  assert runner.state_bytes >= 2 * (32 * 16 + 16) * 4
  assert runner() > 0 and runner() > 0
  assert float(runner.params["w"][0, 0]) < 1.0  # it moved against the gradient...
  np.testing.assert_array_equal(params["w"], 1.0)  # ...on its own copy


def test_chunk_sizes_add_blocked_cames():
  found = optimizer_step.with_chunk_sizes([0, 2048])
  assert set(found) == set(optimizer_step.JAX_OPTIMIZERS) | {
    "came_jax.came (unblocked)",
    "came_jax.came (blocks of 2 KiB)",
  }
  assert "came_jax.came (unblocked)" not in optimizer_step.JAX_OPTIMIZERS  # the table itself is left as it is
  params = {"w": jnp.ones((64, 64))}
  grads = {"w": jnp.full((64, 64), 0.1)}
  for label in ("came_jax.came (unblocked)", "came_jax.came (blocks of 2 KiB)"):
    runner = optimizer_step.JaxRunner(found[label](), params, grads)
    assert runner() > 0


def test_l2_sizes_add_cames_with_the_blocks_they_pick():
  found = optimizer_step.with_chunk_sizes([], [262144])
  label = "came_jax.came (L2 taken as 256 KiB: blocks of 32 KiB)"
  assert set(found) == set(optimizer_step.JAX_OPTIMIZERS) | {label}
  params = {"w": jnp.ones((256, 64))}  # 64 KiB: two blocks of 32 KiB
  runner = optimizer_step.JaxRunner(found[label](), params, {"w": jnp.full((256, 64), 0.1)})
  assert runner() > 0
  assert float(runner.params["w"][0, 0]) < 1.0


def test_machine_line_names_the_cpu_and_its_cache():
  line = optimizer_step.machine_line()
  assert line.startswith("CPU: ") and "L2" in line and "KiB" in line
  assert optimizer_step.cpu_name()
