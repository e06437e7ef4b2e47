"""came_jax.bench.hlo_profile: HLO ops of a compiled program, their categories and parts of the step."""

import jax
import jax.numpy as jnp

from came_jax.bench import hlo_profile


def test_hlo_ops_of_a_compiled_program():
  compiled = jax.jit(lambda x, y: jnp.tanh(x @ y).sum()).lower(jnp.ones((64, 64)), jnp.ones((64, 64))).compile()
  ops = hlo_profile.hlo_ops(compiled.as_text())
  matmuls = [
    name
    for name, (opcode, _) in ops.items()
    if hlo_profile.category(name, opcode, "") == "matmul (dot / XNNPACK fusion)"
  ]
  assert matmuls  # a dot, or the fusion holding it
  assert any(where.endswith("dot_general") for _, where in ops.values())


def test_categories_and_parts_of_the_step():
  assert hlo_profile.category("copy.3", "copy", "") == "copy / transpose"
  assert hlo_profile.category("loop_fusion", "fusion:kLoop", "") == "elementwise fusion"
  assert hlo_profile.category("gather.1", "gather", "") == "gather / scatter / slicing"
  assert hlo_profile.phase("while/body/jvp(gpt2)/dot") == "forward"
  assert hlo_profile.phase("while/body/transpose(jvp(gpt2))/dot") == "backward"
  assert hlo_profile.phase("while/body/add") == "gradient accumulation (loop)"
  assert hlo_profile.phase("cond/branch_1_fun/mul") == "optimizer update (incl. clipping)"
  assert hlo_profile.phase("mul") == "the rest: gradient scaling, norms, metrics"
