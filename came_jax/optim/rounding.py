"""Stochastic rounding of float32 to bfloat16, with a counter-based hash for its random bits; and
:func:`stochastic_rounding`, an optax transformation that applies updates to bf16 parameters with it.

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

import zlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


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


class StochasticRoundingState(NamedTuple):
  """State of :func:`stochastic_rounding`.

  Attributes:
    count: int32 number of updates rounded so far: the step the random bits are drawn for.
  """

  count: jax.Array


def stochastic_rounding(seed: int = 0) -> optax.GradientTransformation:
  r"""Makes ``optax.apply_updates`` round the sum of each bf16 parameter and its update stochastically.

  With round-to-nearest, ``p + u`` in bf16 loses every update smaller than half a bf16 step of the parameter
  (``|u| < 2⁻⁹ |p|`` roughly): a weight of 0.02 ignores updates below 6e-5, a layer-norm scale of 1.0 those below
  4e-3, so a small learning rate stalls. Placed *last* in a chain, this transformation replaces the update ``u``
  of every bfloat16 parameter ``p`` by

  .. math::

    u' = \mathrm{SR}(p + u) - p \quad (\text{float32 arithmetic, } u' \text{ float32}),

  where ``SR`` rounds the float32 sum to bf16, up with probability equal to the discarded fraction
  (:func:`to_bfloat16`), so that ``E[SR(p + u)] = p + u``. ``optax.apply_updates(params, updates)`` computes
  ``p + u'`` in float32 (bf16 + float32 promotes) and casts it to bf16, which gives exactly ``q = SR(p + u)``:

  * If ``|q| > 2⁻¹³ |p|``: each of the two float32 roundings (of ``q − p``, then of ``p + u'``) errs by at most
    ``2⁻²⁴`` of a number below ``2 max(|p|, |q|)``, so ``p + u'`` lies within ``2⁻²² max(|p|, |q|)`` of ``q``,
    less than half a bf16 step of ``q`` (at least ``2⁻⁹ |q|``): the cast returns ``q``. (Mostly there is no
    error to begin with: ``q − p`` is exact whenever it fits 24 bits, as when ``q/2 <= p <= 2q``, Sterbenz.)
  * Otherwise the sum cancels: ``s = p + u`` is within ``2⁻⁸ |p|`` of zero, so ``u`` and ``−p`` agree within a
    factor of 2 and ``s`` is exact (Sterbenz), a multiple of ``g``, the smaller float32 ulp of ``p`` and ``u``.
    Either ``s`` has at most 8 significant bits, and ``q = s``, ``q − p = u``; or its bf16 step is at least ``g``,
    so ``q`` is a multiple of ``g`` too; and ``q − p``, a multiple of ``g`` no larger than ``|p| + |q|``, below
    the power of two above ``|p|`` (below ``|p|`` itself where ``g`` is finer than ``p``'s ulp: then ``p`` is a
    power of two and ``s`` has its sign), fits 24 bits. Again ``p + u' = q`` exactly.

  So the applied value is exactly the stochastically rounded float32 sum for all finite normal numbers
  (``tests/optim/test_rounding.py`` checks it over 40 binades, landings near zero included). Its 16 random bits
  resolve one float32 ulp, so updates below ``2⁻²⁴ |p|``, already lost in the float32 sum, are still lost.

  Parameters of every other dtype (float32 included) keep their updates, untouched (the same arrays). Updates of
  bf16 parameters come back as float32: the difference of two bf16 numbers is often not a bf16 number.

  The random bits are a hash of the element's index, the step count, the parameter's path and ``seed``
  (:func:`random_bits`): deterministic, the same on every device and process (replicas round alike), and
  independent of CAME's bf16 momentum rounding of the same tensor. Under ``optax.MultiSteps`` the count advances
  once per real update.

  Args:
    seed: a Python int distinguishing the random bits of independent runs.

  Returns:
    An ``optax.GradientTransformation`` that needs ``params``; its state is a
    :class:`StochasticRoundingState`.

  Example: CAME at a learning rate of 1e-4 on bf16 weights at 1.0, whose bf16 neighbours are 2⁻⁸ below and 2⁻⁷
  above. Rounded to nearest, the first step (about 1.1e-4, ``bias_correction=True``) leaves every weight at 1.0;
  rounded stochastically, about 1.1e-4 / 2⁻⁸ = 2.8 % of them step down to 1 - 2⁻⁸, and the mean moves by the
  update:

    >>> import jax, jax.numpy as jnp, optax
    >>> import came_jax
    >>> params = {"w": jnp.ones((256, 64), jnp.bfloat16)}
    >>> grads = {"w": jnp.ones((256, 64), jnp.bfloat16)}
    >>> adam_scale = came_jax.came(learning_rate=1e-4, bias_correction=True)
    >>> tx = optax.chain(adam_scale, came_jax.stochastic_rounding(seed=0))
    >>> nearest, _ = adam_scale.update(grads, adam_scale.init(params), params)
    >>> float(optax.apply_updates(params, nearest)["w"].astype(jnp.float32).min())
    1.0
    >>> updates, state = jax.jit(tx.update)(grads, tx.init(params), params)
    >>> new = optax.apply_updates(params, updates)
    >>> updates["w"].dtype, new["w"].dtype
    (dtype('float32'), dtype(bfloat16))
    >>> sorted(set(new["w"].astype(jnp.float32).ravel().tolist()))
    [0.99609375, 1.0]
    >>> round(float(jnp.mean(new["w"] != 1.0)), 3), round(1e4 * float(1.0 - jnp.mean(new["w"].astype(jnp.float32))), 2)
    (0.028, 1.1)

  References:
    Gupta et al, `Deep Learning with Limited Numerical Precision <https://arxiv.org/abs/1502.02551>`_, 2015.
    Zamirai et al, `Revisiting BFloat16 Training <https://arxiv.org/abs/2010.06192>`_, 2020.
  """
  if not isinstance(seed, int) or isinstance(seed, bool):
    raise TypeError(f"stochastic_rounding: `seed` must be a Python int, got {seed!r}")

  def init_fn(params):
    del params
    return StochasticRoundingState(count=jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("stochastic_rounding needs the current params: call `update(updates, state, params)`")

    def update_leaf(path, u, p):
      if jnp.asarray(p).dtype != jnp.bfloat16:
        return u
      p32 = jnp.asarray(p).astype(jnp.float32)
      bits = random_bits(p32.shape, 0, state.count, _params_salt(seed, path))
      q = to_bfloat16(p32 + u.astype(jnp.float32), bits).astype(jnp.float32)
      return jnp.where(q == p32, 0.0, q - p32)  # an infinite param stays put instead of becoming inf - inf

    new_updates = jax.tree_util.tree_map_with_path(update_leaf, updates, params)
    return new_updates, StochasticRoundingState(count=optax.safe_increment(state.count))

  return optax.GradientTransformation(init_fn, update_fn)


def _params_salt(seed: int, path) -> int:
  """The salt of :func:`stochastic_rounding`'s bits for the parameter at `path`: apart from CAME's momentum
  rounding, which hashes the same path at the same count."""
  return zlib.crc32(f"stochastic_rounding/{seed}/{jax.tree_util.keystr(path)}".encode())
