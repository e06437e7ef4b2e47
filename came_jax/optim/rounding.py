"""Stochastic rounding of float32 to bfloat16, with a counter-based hash for its random bits.

Rounding a moving average to the nearest bf16 loses every increment smaller than half a bf16 step (2⁻⁹ of the
value): with β = 0.9 the average stops following its input once they differ by less than about 2 %. Rounding up
with probability equal to the discarded fraction keeps the average unbiased. The random bits are a hash of the
element's index, the step count and a per-tensor salt: deterministic (a resumed run rounds the same way), free of
RNG state, and a handful of integer operations that fuse into the surrounding elementwise code.

Example: 1 + 2⁻⁹ lies a quarter of a bf16 step above 1.0. Nearest rounding always gives 1.0; stochastic rounding
gives the next bf16 value, 1 + 2⁻⁷, about a quarter of the time, so the mean stays at the input:

  >>> import jax, jax.numpy as jnp
  >>> from came_jax.optim import rounding
  >>> x = jnp.full((10000,), 1.0 + 2.0**-9, jnp.float32)
  >>> float(x.astype(jnp.bfloat16)[0])
  1.0
  >>> @jax.jit
  ... def round_at_step(x, count):
  ...   return rounding.to_bfloat16(x, rounding.random_bits(x.shape, first_index=0, count=count, salt=1))
  >>> y = round_at_step(x, 0)
  >>> y.dtype, sorted(set(y.astype(jnp.float32).tolist()))
  (dtype(bfloat16), [1.0, 1.0078125])
  >>> round(float(jnp.mean(y == 1.0078125)), 2), round(float(jnp.mean(y.astype(jnp.float32))), 4)
  (0.25, 1.0019)
  >>> bool(jnp.all(round_at_step(x, 0) == y)), bool(jnp.all(round_at_step(x, 1) == y))  # same step, same bits
  (True, False)

References:
  Zamirai et al, `Revisiting BFloat16 Training <https://arxiv.org/abs/2010.06192>`_, 2020.
"""

import jax
import jax.numpy as jnp


def _mix(h: jax.Array) -> jax.Array:
  """The murmur3 32-bit finaliser: a bijection that spreads every input bit over the output."""
  h = h ^ (h >> 16)
  h = h * jnp.uint32(0x85EBCA6B)
  h = h ^ (h >> 13)
  h = h * jnp.uint32(0xC2B2AE35)
  return h ^ (h >> 16)


def random_bits(shape: tuple[int, ...], first_index: jax.Array, count: jax.Array, salt: int) -> jax.Array:
  """16 pseudo-random bits (uint32 < 2¹⁶) per element of a row-major block whose first element has flat index
  `first_index` in its tensor, at step `count`, for the tensor identified by `salt`."""
  index = jnp.zeros(shape, jnp.uint32)
  stride = 1
  for axis in reversed(range(len(shape))):
    index = index + jax.lax.broadcasted_iota(jnp.uint32, shape, axis) * jnp.uint32(stride)
    stride *= shape[axis]
  seed = _mix(jnp.asarray(count, jnp.uint32) * jnp.uint32(0x9E3779B9) + jnp.uint32(salt & 0xFFFFFFFF))
  return _mix(index + jnp.asarray(first_index, jnp.uint32) + seed) >> 16


def to_bfloat16(x: jax.Array, bits: jax.Array) -> jax.Array:
  """Rounds float32 `x` to bfloat16, up with probability equal to the discarded fraction, given 16 random
  `bits` per element. Infinities and NaNs pass through."""
  raw = jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.uint32)
  finite = jnp.isfinite(x)
  dithered = jnp.where(finite, raw + bits, raw) & jnp.uint32(0xFFFF0000)
  # The low 16 bits are now zero, so the conversion below is exact (no second rounding).
  return jax.lax.bitcast_convert_type(dithered, jnp.float32).astype(jnp.bfloat16)
