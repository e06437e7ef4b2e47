"""Block-wise 8-bit storage for optimizer moments.

Momentum is kept as int8 codes of the same shape as its parameter plus one fp32 scale (the block's absolute
maximum) per block of ``block_size`` consecutive elements along the last axis. Codes are *companded*: an element
``x`` in a block with maximum ``s`` is stored as ``round(127 * sign(x) * sqrt(|x| / s))``, so small momenta keep
resolution that a linear code would round to zero (the same purpose as the non-linear "dynamic" code of
bitsandbytes' 8-bit optimizers, at the price of one square root instead of a 256-entry table search).

Keeping the codes in the parameter's shape, and blocking only along the last axis, means a code array is sharded
exactly like its parameter, and a scale array like the parameter with its last axis replicated.

Example (blocks of 4 along the last axis: one full block, one padded):

  >>> import jax.numpy as jnp, numpy as np
  >>> from came_jax.optim import quantization
  >>> x = jnp.array([[0.5, -0.02, 0.0, 0.001, 2.0, -1.0]])
  >>> q = quantization.quantize(x, block_size=4)
  >>> q.codes.dtype, q.codes.tolist(), q.scales.tolist()
  (dtype('int8'), [[127, -25, 0, 6, 127, -90]], [[0.5, 2.0]])
  >>> np.round(np.asarray(quantization.dequantize(q, block_size=4), np.float64), 3).tolist()
  [[0.5, -0.019, 0.0, 0.001, 2.0, -1.004]]

References:
  Dettmers et al, `8-bit Optimizers via Block-wise Quantization <https://arxiv.org/abs/2110.02861>`_, 2022.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

_LEVELS = 127.0


class QuantizedArray(NamedTuple):
  """An fp32 array stored as int8 companded codes plus per-block fp32 absolute maxima.

  Attributes:
    codes: int8 array, same shape as the stored array.
    scales: fp32 array of shape ``shape[:-1] + (ceil(shape[-1] / block_size),)``.
  """

  codes: jax.Array
  scales: jax.Array


def _num_blocks(n: int, block_size: int) -> int:
  return -(-n // block_size)


def _blocked(x: jax.Array, block_size: int) -> jax.Array:
  """Reshapes ``[..., n]`` to ``[..., n_blocks, block_size]``, zero-padding the tail block."""
  n = x.shape[-1]
  pad = _num_blocks(n, block_size) * block_size - n
  if pad:
    x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, pad)])
  return x.reshape(x.shape[:-1] + (-1, block_size))


def _unblocked(x: jax.Array, n: int) -> jax.Array:
  return x.reshape(x.shape[:-2] + (-1,))[..., :n]


def zeros(shape: tuple[int, ...], block_size: int) -> QuantizedArray:
  """The quantized representation of ``jnp.zeros(shape)``."""
  return QuantizedArray(
    codes=jnp.zeros(shape, jnp.int8),
    scales=jnp.zeros(shape[:-1] + (_num_blocks(shape[-1], block_size),), jnp.float32),
  )


def quantize(x: jax.Array, block_size: int) -> QuantizedArray:
  """Quantizes an array of rank >= 1 block-wise along its last axis."""
  n = x.shape[-1]
  xb = _blocked(x.astype(jnp.float32), block_size)
  scales = jnp.max(jnp.abs(xb), axis=-1)
  safe = jnp.where(scales > 0, scales, 1.0)[..., None]
  codes = jnp.round(_LEVELS * jnp.sign(xb) * jnp.sqrt(jnp.abs(xb) / safe))
  return QuantizedArray(codes=_unblocked(codes.astype(jnp.int8), n), scales=scales)


def dequantize(q: QuantizedArray, block_size: int) -> jax.Array:
  """Inverse of :func:`quantize` (up to the rounding of the codes), in fp32."""
  n = q.codes.shape[-1]
  c = _blocked(q.codes.astype(jnp.float32), block_size) * (1.0 / _LEVELS)
  x = jnp.sign(c) * jnp.square(c) * q.scales[..., None]
  return _unblocked(x, n)
