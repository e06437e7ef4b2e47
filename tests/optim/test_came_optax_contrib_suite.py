"""optax's own contributed-optimizer suite (`optax/contrib/_common_test.py` of the installed optax) run on CAME.

optax runs that suite on every optimizer it accepts into `optax.contrib`. The test bodies are read from the
installed module (never copied here) and parametrized with CAME's variants instead of optax's optimizers: the
reference, with weight decay, with bf16 momentum and bias-corrected. The suite looks optimizers up by name through
its `_get_opt_factory`, which is taught the name "came".
"""

import jax.numpy as jnp
from absl.testing import parameterized
from optax.contrib import _common_test as suite

import came_jax

_optax_factory = suite._get_opt_factory  # pylint: disable=protected-access


def _get_opt_factory(opt_name):
  return came_jax.came if opt_name == "came" else _optax_factory(opt_name)


suite._get_opt_factory = _get_opt_factory  # pylint: disable=protected-access

VARIANTS = tuple(
  dict(opt_name="came", opt_kwargs=kwargs, wrapper_name=None, wrapper_kwargs=None)
  for kwargs in (
    dict(learning_rate=1e-2),
    dict(learning_rate=1e-2, weight_decay=1e-4),
    dict(learning_rate=1e-2, momentum_dtype="bfloat16"),
    dict(learning_rate=1e-2, bias_correction=True),
  )
)


def _body(name: str):
  """The undecorated test function `name` of optax's suite (absl's parameterized keeps it as `__wrapped__`)."""
  return getattr(suite.ContribTest, f"{name}0").__wrapped__


class CameContribTest(parameterized.TestCase):
  """Every test of optax's `ContribTest`, on the variants above, with the suite's own other parameters."""

  test_optimizers_accept_extra_args = parameterized.product(VARIANTS, wrap=[True, False])(
    _body("test_optimizers_accept_extra_args")
  )
  # pylint: disable=protected-access
  test_optimizers = parameterized.product(
    VARIANTS,
    target=(
      suite._setup_parabola,
      suite._setup_rosenbrock,
      suite._setup_matrix_parabola,
      suite._setup_mixed_tensor_target,
    ),
    dtype=("float32",),
  )(_body("test_optimizers"))
  # pylint: enable=protected-access
  test_optimizers_can_be_wrapped_in_inject_hyperparams = parameterized.product(VARIANTS)(
    _body("test_optimizers_can_be_wrapped_in_inject_hyperparams")
  )
  test_preserve_dtype = parameterized.product(VARIANTS, dtype=("bfloat16", "float32"))(_body("test_preserve_dtype"))
  test_gradient_accumulation = parameterized.product(VARIANTS, dtype=("bfloat16", "float32"))(
    _body("test_gradient_accumulation")
  )
  test_state_shape_dtype_shard_stability = parameterized.product(
    VARIANTS, dtype=(jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64)
  )(_body("test_state_shape_dtype_shard_stability"))
  test_optimizers_accept_learning_rate_schedule_if_type_annotated_as_such = parameterized.product(VARIANTS)(
    _body("test_optimizers_accept_learning_rate_schedule_if_type_annotated_as_such")
  )


def test_every_test_of_the_suite_is_run():
  """A test optax adds to its suite must be added here too (or this fails)."""
  theirs = {name.rstrip("0123456789") for name in dir(suite.ContribTest) if name.startswith("test_")}
  ours = {name for name in vars(CameContribTest) if name.startswith("test_")}
  ours |= {name.rstrip("0123456789") for name in dir(CameContribTest) if name.startswith("test_")}
  assert theirs <= ours, f"tests of optax's suite not run on CAME: {sorted(theirs - ours)}"
