r"""CAME's update of one large matrix on a CPU: whole rows at a time, each block's work done while it is in cache.

The plain update (:func:`came_jax.optim.came.reference_update`) is written as the math reads. On a GPU or TPU
the compiler fuses it; XLA:CPU does not: every expression that two reductions share (``g²``, the instability) is
written out to a fresh full-size temporary, page-faulted in on every step. This kernel computes the same numbers in
blocks of whole rows, with ``lax.scan``, in the fewest passes over memory that CAME's dependencies allow.

**Passes over a [rows, cols] matrix** (a pass reads or writes one full-size array from memory; AdamW takes
7: it reads g, m, v, p and writes m, v, p):

1. *Second-moment statistics* (reads g: 1 pass). Per block: ``g²``, its row means, hence the block's new row
   statistic ``v_row`` (it needs only the block's own rows), and two column sums, ``Σ_i g²_ij`` and
   ``Σ_i g²_ij / v_row_i``. After the loop: ``v_col``, and the RMS of the preconditioned update without
   forming it: with the row factor ``r_i² = mean(v_row) / v_row_i`` and the column factor ``c_j² = 1 / v_col_j``,
   ``Σ_ij (g_ij r_i c_j)² = mean(v_row) · Σ_j c_j² Σ_i g²_ij / v_row_i``. So the clipping needs no pass of its
   own (the previous kernel, and the reading of the algorithm, spend a second read of g on it).
2. *Momentum and instability* (reads g and m, writes m: 3 passes). Per block: ``û = g·r'·c`` (the clipping
   folded into the row factor ``r'``), ``m ← β1 m + (1-β1) û`` written in place, and the row means and column
   sums of ``(û - m)² + ε2``.
3. *The step* ``m · rsqrt(R / mean(R)) ⊗ rsqrt(C)`` (reads m: 1 pass), left as an elementwise expression: XLA
   fuses it with the weight decay and the learning rate into the caller's parameter update (reads and writes
   p: 2 passes).

That is 7 full-size passes, AdamW's count, in 3 dependent phases (each needs a statistic of the whole matrix from
the one before, so none can merge with its neighbour). The rest is work on a block already in cache: row sums
(contiguous), and column sums added elementwise into block-shaped accumulators carried through the loop, summed
over rows once at the end. Two things measured slower: column sums as vector-matrix products (each a library
call, which XLA:CPU spreads over threads once a block passes ~128 KiB: under load that wait cost more than the
sum), and a strided reduction over the row axis per block.

**Block size.** A block of phase 1 holds g and two accumulators, of phase 2 g, m and one accumulator: three
blocks, plus what the hardware prefetches ahead, stay in the core's L2 cache when a block is about an eighth of
it. And no fusion in the loop may pass ~512 KiB of traffic (four blocks at most): from there XLA:CPU's cost model
splits it across threads, and a thread hand-off on every iteration of a loop costs more than it saves (measured:
blocks of 256 KiB took the BERT-base step to 2.3x AdamW, from 1.3x). So blocks are ``min(L2 / 8, 96 KiB)``
(:func:`default_block_bytes`), with the L2 size read from the machine (:func:`l2_cache_bytes`;
``CAME_JAX_L2_BYTES`` overrides it). On a 1 MiB-L2 AMD EPYC shared with another job, BERT-base's step took
1.18x, 1.17x and 1.25x AdamW's at blocks of 64, 96 and 128 KiB in one run; quiet, 1.34x at 96 KiB.

**Threads.** Each loop runs on one thread, and XLA:CPU runs independent loops one after another, so the kernel
uses one core while AdamW's single fused update uses all of them: on 2 cores that is most of the gap to AdamW
(``experiments/README.md`` measures it).

Numerics are the reference's up to the order of float32 sums (``tests/optim/test_came_cpu.py``).
"""

from __future__ import annotations

import glob
import os
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

L2_ENV = "CAME_JAX_L2_BYTES"
FALLBACK_L2_BYTES = 1 << 20  # when the machine does not say: the smallest L2 of a current server core


def _parse_size(text: str) -> Optional[int]:
  """Bytes of a cache size as sysfs writes it ("1024K", "2M", "524288").

  >>> _parse_size("1024K"), _parse_size("2M"), _parse_size("512"), _parse_size("big")
  (1048576, 2097152, 512, None)
  """
  text = text.strip().upper()
  scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
  digits = text[:-1] if scale > 1 else text
  return int(digits) * scale if digits.isdigit() else None


def l2_cache_bytes() -> int:
  """The L2 cache of one core, in bytes: ``$CAME_JAX_L2_BYTES`` if set, else what Linux reports
  (``/sys/devices/system/cpu/cpu0/cache/index*/``, then ``os.sysconf``), else 1 MiB."""
  if os.environ.get(L2_ENV):
    size = _parse_size(os.environ[L2_ENV])
    if not size:
      raise ValueError(f"${L2_ENV} must be a size in bytes (e.g. 262144 or 256K), got {os.environ[L2_ENV]!r}")
    return size
  for index in sorted(glob.glob("/sys/devices/system/cpu/cpu0/cache/index*")):
    try:
      with open(os.path.join(index, "level")) as f:
        level = f.read().strip()
      with open(os.path.join(index, "type")) as f:
        kind = f.read().strip()
      with open(os.path.join(index, "size")) as f:
        size = _parse_size(f.read())
    except OSError:
      continue
    if level == "2" and kind in ("Unified", "Data") and size:
      return size
  try:
    size = os.sysconf("SC_LEVEL2_CACHE_SIZE")
  except (ValueError, OSError, AttributeError):
    size = 0
  return size if size and size > 0 else FALLBACK_L2_BYTES


MAX_BLOCK_BYTES = 96 << 10  # four blocks stay under the ~512 KiB from which XLA:CPU splits a fusion over threads


def default_block_bytes(l2_bytes: Optional[int] = None) -> int:
  """The fp32 bytes of one block of rows for a core with `l2_bytes` of L2 (default: this machine's): an eighth
  of it, at most :data:`MAX_BLOCK_BYTES` (the module docstring says why).

  >>> default_block_bytes(256 << 10), default_block_bytes(512 << 10), default_block_bytes(2 << 20)
  (32768, 65536, 98304)
  """
  l2 = l2_cache_bytes() if l2_bytes is None else l2_bytes
  return max(4096, min(l2 // 8, MAX_BLOCK_BYTES))


def block_rows(shape: tuple[int, ...], block_bytes: int) -> Optional[int]:
  """Rows per block of an fp32 [rows, cols] matrix, or None when it fits in one block (the plain update is then
  as fast, and simpler). The last block may be shorter.

  >>> block_rows((32768, 768), 131072), block_rows((64, 64), 131072), block_rows((4, 1 << 20), 131072)
  (42, None, 1)
  """
  rows, cols = shape
  if rows * cols * 4 <= block_bytes or rows < 2:
    return None
  return max(1, min(rows // 2, block_bytes // (cols * 4)))


def blocked_update(
  k: Any,
  g: jax.Array,
  mu: Any,
  v_row: jax.Array,
  v_col: jax.Array,
  r_row: jax.Array,
  r_col: jax.Array,
  *,
  rows: int,
  load_mu: Callable[[Any], jax.Array],
  store_mu: Callable[[jax.Array, Any], Any],
) -> tuple[jax.Array, Any, jax.Array, jax.Array, jax.Array, jax.Array]:
  """CAME's update of a factored [rows, cols] leaf, in blocks of `rows` whole rows (the module docstring).

  Args:
    k: the step's coefficients (``came._Coefficients``: betas, their complements, eps1, eps2, clip_threshold and
      the bias-correction factors).
    g: the gradient, any float dtype.
    mu: the momentum as stored: an fp32 or bf16 array, or a ``QuantizedArray`` whose leaves have the row axis
      first.
    v_row, v_col, r_row, r_col: the factored statistics, shapes [rows] and [cols].
    rows: rows per block (:func:`block_rows`).
    load_mu: stored momentum (a block of it) -> fp32.
    store_mu: (fp32 block, flat index of its first element) -> the block as stored (rounding included).

  Returns:
    ``(step, mu, v_row, v_col, r_row, r_col)``: the step in g's dtype, the rest the new state.
  """
  n_rows, cols = g.shape
  n_full, tail = divmod(n_rows, rows)
  starts = jnp.arange(n_full, dtype=jnp.int32) * rows
  take = lambda x, start, n: jax.tree.map(lambda y: jax.lax.dynamic_slice_in_dim(y, start, n, 0), x)  # noqa: E731

  def over_blocks(body, carry, n_sums):
    """Runs `body(carry, start, n) -> (carry, per-row output [n], terms)` over the blocks: the full ones in a
    `lax.scan`, then the tail block. `terms` are `n_sums` [n, cols] arrays whose column sums are wanted: they are
    added elementwise into block-shaped accumulators, which stay in cache, and summed over rows once at the end.
    Returns the carry, the per-row outputs [n_rows] and the column sums."""

    def scan_body(c, start):
      inner, acc = c
      inner, per_row, terms = body(inner, start, rows)
      return (inner, tuple(a + t for a, t in zip(acc, terms))), per_row

    acc = tuple(jnp.zeros((rows, cols), jnp.float32) for _ in range(n_sums))
    (carry, acc), per_row = jax.lax.scan(scan_body, (carry, acc), starts)
    per_row = per_row.reshape(n_full * rows)
    sums = [jnp.sum(a, axis=0) for a in acc]
    if tail:
      carry, last, terms = body(carry, n_full * rows, tail)
      per_row = jnp.concatenate([per_row, last])
      sums = [s + jnp.sum(t, axis=0) for s, t in zip(sums, terms)]
    return carry, per_row, sums

  # Phase 1: the second-moment statistics, and the column sums the update's RMS needs.
  def second_moment(carry, start, n):
    sq = jnp.square(take(g, start, n).astype(jnp.float32))
    v_row_block = k.b2 * take(v_row, start, n) + k.c2 * (jnp.mean(sq, axis=1) + k.eps1)
    return carry, v_row_block, (sq, sq / v_row_block[:, None])

  _, v_row, (col_sum, weighted) = over_blocks(second_moment, (), 2)
  v_col = k.b2 * v_col + k.c2 * (col_sum / n_rows + k.eps1)
  mean_v_row = jnp.mean(v_row)
  col_factor = jax.lax.rsqrt(v_col) * k.v_scale
  u_sq_sum = mean_v_row * jnp.sum(weighted * jnp.square(col_factor))
  # û = g · (r' ⊗ c), the clipping folded into the row factor r'.
  row_factor = jax.lax.rsqrt(v_row / mean_v_row) / jnp.maximum(1.0, jnp.sqrt(u_sq_sum / g.size) / k.clip_threshold)

  # Phase 2: the momentum, written in place, and the instability's statistics. A bf16 momentum travels through
  # the loop as its uint16 bits: XLA would otherwise rewrite the in-place bf16 write of each block into a float32
  # round trip of the whole matrix on every iteration.
  as_bits = getattr(mu, "dtype", None) == jnp.bfloat16
  to_carry = lambda x: jax.lax.bitcast_convert_type(x, jnp.uint16) if as_bits else x  # noqa: E731
  from_carry = lambda x: jax.lax.bitcast_convert_type(x, jnp.bfloat16) if as_bits else x  # noqa: E731

  def momentum_and_instability(mu_all, start, n):
    u = take(g, start, n).astype(jnp.float32) * take(row_factor, start, n)[:, None] * col_factor
    # The momentum as stored (bf16 or 8-bit rounding included) is what the rest of the step uses.
    stored = store_mu(k.b1 * load_mu(from_carry(take(mu_all, start, n))) + k.c1 * u, start * cols)
    mu_all = jax.tree.map(lambda y, x: jax.lax.dynamic_update_slice_in_dim(y, x, start, 0), mu_all, to_carry(stored))
    # Read back from the updated matrix: nothing reads the old block after the in-place write, which would
    # otherwise make XLA copy the whole matrix on every iteration.
    res = jnp.square(u - load_mu(from_carry(take(mu_all, start, n)))) + k.eps2
    return mu_all, jnp.mean(res, axis=1), (res,)

  mu, res_row_mean, (res_col_sum,) = over_blocks(momentum_and_instability, to_carry(mu), 1)
  mu = from_carry(mu)
  r_row = k.b3 * r_row + k.c3 * res_row_mean
  r_col = k.b3 * r_col + k.c3 * (res_col_sum / n_rows)

  # Phase 3: the step, for XLA to fuse into the parameter update.
  r_row_factor = jax.lax.rsqrt(r_row / jnp.mean(r_row))
  step = load_mu(mu) * r_row_factor[:, None] * (jax.lax.rsqrt(r_col) * (k.mu_scale * k.r_scale))
  return step.astype(g.dtype), mu, v_row, v_col, r_row, r_col
