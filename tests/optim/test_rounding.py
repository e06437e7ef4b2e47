"""Stochastic rounding of float32 to bfloat16: unbiased, reproducible from its counter, exact on specials."""

import jax.numpy as jnp
import numpy as np

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
