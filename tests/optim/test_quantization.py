"""8-bit block-wise companded storage of the momentum: the round trip's error bound and the zero state."""

import jax.numpy as jnp
import numpy as np

from came_jax.optim import quantization


def test_quantization_round_trip():
  x = jnp.asarray(np.random.default_rng(0).normal(size=(5, 1000)) * np.logspace(-6, 0, 1000), jnp.float32)
  q = quantization.quantize(x, 256)
  assert q.codes.dtype == jnp.int8 and q.codes.shape == x.shape and q.scales.shape == (5, 4)
  y = quantization.dequantize(q, 256)
  scales = np.repeat(np.asarray(q.scales), 256, axis=-1)[:, :1000]
  # Companded codes: the error is at most half a code step in sqrt space.
  assert np.all(
    np.abs(np.asarray(y) - np.asarray(x)) <= scales * (np.sqrt(np.abs(x) / scales) / 127 + 1 / 254**2) + 1e-12
  )
  np.testing.assert_array_equal(quantization.dequantize(quantization.zeros((3, 300), 256), 256), 0.0)
