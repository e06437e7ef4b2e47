r"""CAME: Confidence-guided Adaptive Memory Efficient optimization, as an optax transformation.

CAME is Adafactor's factored second moment plus a *confidence* correction. For a gradient ``g`` of a matrix
parameter (rank >= 2 tensors are factored over two axes; leading axes are batch axes), with ``β1, β2, β3``:

.. math::

  G_t &= g_t^2 + ε_1,\quad r_t = β_2 r_{t-1} + (1-β_2)\,\mathrm{mean}_{cols}(G_t),\quad
  c_t = β_2 c_{t-1} + (1-β_2)\,\mathrm{mean}_{rows}(G_t)\\
  u_t &= g_t \,/\, \sqrt{(r_t / \mathrm{mean}(r_t)) \otimes c_t},\qquad
  \hat u_t = u_t / \max(1, \mathrm{RMS}(u_t) / d)\\
  m_t &= β_1 m_{t-1} + (1-β_1) \hat u_t\\
  U_t &= (\hat u_t - m_t)^2 + ε_2,\quad R_t = β_3 R_{t-1} + (1-β_3)\,\mathrm{mean}_{cols}(U_t),\quad
  C_t = β_3 C_{t-1} + (1-β_3)\,\mathrm{mean}_{rows}(U_t)\\
  s_t &= m_t \,/\, \sqrt{(R_t / \mathrm{mean}(R_t)) \otimes C_t}

Tensors of rank 0 and 1 (and, under the ``"largest_two"`` policy, tensors too small to factor) keep a full second
moment ``v_t = β_2 v_{t-1} + (1-β_2) G_t`` and take the momentum itself as their step: they get no confidence
correction. :func:`came` then applies decoupled weight decay and the learning rate: ``p ← p − lr·wd·p − lr·s``.
This is Algorithm 2 of the paper, and the defaults reproduce the official PyTorch implementation (``came-pytorch``
0.1.3) to float32 rounding.

**The reference's start-up spike.** Every average above starts at zero and none is bias-corrected. The clipping
hides this for ``û`` (its RMS is at most ``d``), but not for the step: at step 1, ``m_1 = (1-β1) û``,
``C_1 = (1-β3)·0.81·mean(û²)``, so ``s_1 ≈ 0.1 û / √(1e-4 · 0.81 · û²) ≈ 11 · sign(û)``: a matrix's step is ~11×
an unbiased one, and the inflation, ``≈ √(1/(1-β3ᵗ))``, decays only over ~1/(1-β3) = 10,000 steps (still 5.8× at
step 300). A vector's step is ``m_t`` itself: ``(1-β1)`` = 0.1× at step 1. So the reference wants a smaller
learning rate than AdamW, and a different one at every horizon (experiments/README.md: 30× smaller at 300 steps,
3-10× at 3000).

**Bias correction** (``bias_correction=True``, not in the paper or the reference) divides each average that
sets the step's scale by ``1 - βᵗ``, as Adam does, with ``t`` the number of updates including this one:

.. math::

  \hat c_t = c_t / (1-β_2^t),\quad \hat v_t = v_t / (1-β_2^t),\quad \hat m_t = m_t / (1-β_1^t),\quad
  \hat C_t = C_t / (1-β_3^t)\\
  u_t = g_t / \sqrt{(r_t / \mathrm{mean}(r_t)) \otimes \hat c_t},\qquad
  s_t = \hat m_t / \sqrt{(R_t / \mathrm{mean}(R_t)) \otimes \hat C_t}\quad(\text{vectors: } u_t = g_t /
  \sqrt{\hat v_t},\ s_t = \hat m_t)

The row statistics need no correction (only their ratio to their mean is used). The instability stays measured
against the *uncorrected* momentum, ``U_t = (û_t - m_t)² + ε_2``: against ``\hat m_1 = û_1`` it would be zero at
step 1, and the step would divide by ``√ε_2``. At step 1 this gives ``s_1 = û_1 / (0.9 |û_1|)``, an RMS of ~1.1,
and from there an update on Adam's scale (``tests/optim/test_came.py`` checks it within 3× of Adam's at steps 1,
10, 100 and 300 on noisy gradients, where the reference is 11× at step 1 and 23× at step 10). The corrections are
scalars per step, so they compose with every other option (momentum storage, blocking, sharding).

**Hyperparameter arithmetic.** The betas are taken as float32 values and their complements ``1 - β`` computed in
float32, so that a hyperparameter means the same number whether it arrives as a Python float or, under
``optax.inject_hyperparams`` (and this project's trainer), as a float32 array. ``came-pytorch`` computes ``1 - β``
in float64 before rounding it; the two agree exactly when ``β`` is a float32 number, and differ by the rounding of
``β`` otherwise (``1 - fp32(0.9999)`` is 1.7e-4 above 1e-4; the step, 8e-5 relative, at β3 = 0.9999). Without a
bias correction nothing cancels that rounding, so a path that matched both the reference at decimal betas and
its own injected form at rtol 1e-5 cannot exist; the injected form is what the trainer runs.

Statistics are always fp32 (gradients are upcast); the updates come back in each gradient's dtype. The momentum may
be stored in bf16 or as block-wise 8-bit codes (:mod:`came_jax.optim.quantization`) to halve or quarter the state.

**What runs where.** :func:`reference_update` is the math above in plain ``jnp``, one leaf at a time, as
``came-pytorch`` computes it. It runs everywhere but on the one case it is slow: on a single-device CPU backend
(``chunk_bytes="auto"``), a matrix larger than a block of rows sized from the core's L2 cache goes through the
blocked kernel of :mod:`came_jax.optim.came_cpu` instead: the same numbers in 7 passes over memory, AdamW's count.
GPUs, TPUs and sharded meshes always take the reference, which their compilers fuse (blocking a sharded row axis
would gather it); so do vectors, tensors of rank 3 and more, and matrices that fit in one block.

References:
  Luo et al, `CAME: Confidence-guided Adaptive Memory Efficient Optimization
  <https://arxiv.org/abs/2307.02047>`_, ACL 2023.
  Shazeer & Stern, `Adafactor: Adaptive Learning Rates with Sublinear Memory Cost
  <https://arxiv.org/abs/1804.04235>`_, 2018.
"""

import dataclasses
import functools
import zlib
from typing import Any, Callable, Literal, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import optax

from came_jax.optim import came_cpu, partition, quantization, rounding

FactoringPolicy = Literal["last_two", "largest_two"]
MomentumDtype = Literal["float32", "bfloat16", "int8"]


class ScaleByCameState(NamedTuple):
  """State of :func:`scale_by_came`. Each field but ``count`` is a tree shaped like the params.

  Unused statistics (the factored ones of an unfactored leaf and vice versa) are ``(1,)``-shaped placeholders.

  Attributes:
    count: int32 number of updates taken.
    mu: first moment (fp32, bf16, or :class:`~came_jax.optim.quantization.QuantizedArray`).
    v_row: factored second moment, mean over the column axis; shape without the column axis.
    v_col: factored second moment, mean over the row axis; shape without the row axis.
    v: full second moment of unfactored leaves.
    r_row: factored instability ("residual"), mean over the column axis.
    r_col: factored instability, mean over the row axis.
  """

  count: jax.Array
  mu: optax.Updates
  v_row: optax.Updates
  v_col: optax.Updates
  v: optax.Updates
  r_row: optax.Updates
  r_col: optax.Updates


@dataclasses.dataclass(frozen=True)
class _Layout:
  """How one leaf is treated: its factored axes (row, col) or None, and whether its momentum is 8-bit."""

  axes: Optional[tuple[int, int]]
  quantized: bool


class _Coefficients(NamedTuple):
  """One step's scalars: the betas, their complements (float32, see the module docstring), the epsilons and the
  clipping threshold, and the factors the bias correction puts on the rsqrt of the (column or full) second
  moment, on the momentum, and on the rsqrt of the column instability: sqrt(1 - β2ᵗ), 1 / (1 - β1ᵗ),
  sqrt(1 - β3ᵗ); ones without it."""

  b1: jax.Array
  b2: jax.Array
  b3: jax.Array
  c1: jax.Array
  c2: jax.Array
  c3: jax.Array
  eps1: Any
  eps2: Any
  clip_threshold: Any
  v_scale: jax.Array
  mu_scale: jax.Array
  r_scale: jax.Array


@dataclasses.dataclass(frozen=True)
class _LeafUpdate:
  """Several outputs of the per-leaf update; jax.tree.map does not descend into it."""

  step: jax.Array
  mu: Any
  v_row: jax.Array
  v_col: jax.Array
  v: jax.Array
  r_row: jax.Array
  r_col: jax.Array


def _check_hyperparameter(name: str, value: Any, ok: Callable[[float], bool], requirement: str) -> None:
  # Only concrete Python numbers are checked: under `optax.inject_hyperparams` the values are arrays or tracers.
  if isinstance(value, (int, float)) and not isinstance(value, bool) and not ok(float(value)):
    raise ValueError(f"CAME: `{name}` must be {requirement}, got {value!r}")


def _factored_axes(
  shape: tuple[int, ...], policy: FactoringPolicy, min_dim_size_to_factor: int
) -> Optional[tuple[int, int]]:
  """The (row, col) axes a leaf's second moment is factored over, or None to keep it full."""
  if len(shape) < 2:
    return None
  if policy == "last_two":
    return len(shape) - 2, len(shape) - 1
  # optax/t5x style: the two largest axes, if the smaller of them is large enough.
  second, first = sorted(range(len(shape)), key=lambda i: (shape[i], i))[-2:]
  if shape[second] < min_dim_size_to_factor:
    return None
  return min(first, second), max(first, second)


def _mean_preserving_rsqrt(row: jax.Array, row_axis: int) -> jax.Array:
  """rsqrt of the row statistic normalised by its mean over rows (the factored approximation's row factor)."""
  return jax.lax.rsqrt(row / jnp.mean(row, axis=row_axis, keepdims=True))


def _factored_rsqrt(row: jax.Array, col: jax.Array, axes: tuple[int, int]) -> jax.Array:
  """rsqrt((row / mean(row)) ⊗ col), broadcast to the full shape."""
  a, b = axes
  return jnp.expand_dims(_mean_preserving_rsqrt(row, a), b) * jnp.expand_dims(jax.lax.rsqrt(col), a)


def _rms(x: jax.Array) -> jax.Array:
  return jnp.sqrt(jnp.mean(jnp.square(x)))


def reference_update(
  k: _Coefficients,
  g: jax.Array,
  mu: Any,
  v_row: jax.Array,
  v_col: jax.Array,
  v: jax.Array,
  r_row: jax.Array,
  r_col: jax.Array,
  *,
  axes: Optional[tuple[int, int]],
  load_mu: Callable[[Any], jax.Array],
  store_mu: Callable[[jax.Array, Any], Any],
) -> _LeafUpdate:
  """One leaf's CAME update, the math of the module docstring in plain ``jnp`` (what ``came-pytorch`` computes).

  Args:
    k: the step's coefficients.
    g: the gradient, any float dtype and rank.
    mu: the momentum as stored (fp32, bf16 or 8-bit codes).
    v_row, v_col, v, r_row, r_col: the leaf's statistics (placeholders for those its layout does not use).
    axes: the (row, col) axes the second moment is factored over, or None for a full second moment.
    load_mu: the stored momentum -> fp32.
    store_mu: (fp32 momentum, flat index of its first element) -> the momentum as stored (rounding included).

  Returns:
    The step in g's dtype and the leaf's new state.
  """
  grad = g.astype(jnp.float32)
  if axes is None:
    v = k.b2 * v + k.c2 * (jnp.square(grad) + k.eps1)
    u = grad * (jax.lax.rsqrt(v) * k.v_scale)
    u = u / jnp.maximum(1.0, _rms(u) / k.clip_threshold)
    mu = store_mu(k.b1 * load_mu(mu) + k.c1 * u, 0)
    step = load_mu(mu) * k.mu_scale
  else:
    a, b = axes
    grad_sq = jnp.square(grad)
    v_row = k.b2 * v_row + k.c2 * (jnp.mean(grad_sq, axis=b) + k.eps1)
    v_col = k.b2 * v_col + k.c2 * (jnp.mean(grad_sq, axis=a) + k.eps1)
    row_factor = _mean_preserving_rsqrt(v_row, a)
    col_factor = jax.lax.rsqrt(v_col) * k.v_scale
    u = grad * jnp.expand_dims(row_factor, b) * jnp.expand_dims(col_factor, a)
    u = u / jnp.maximum(1.0, _rms(u) / k.clip_threshold)
    # The momentum as stored (bf16 or 8-bit rounding included) is what the rest of the step uses.
    mu = store_mu(k.b1 * load_mu(mu) + k.c1 * u, 0)
    res = jnp.square(u - load_mu(mu)) + k.eps2
    r_row = k.b3 * r_row + k.c3 * jnp.mean(res, axis=b)
    r_col = k.b3 * r_col + k.c3 * jnp.mean(res, axis=a)
    step = load_mu(mu) * _factored_rsqrt(r_row, r_col, axes) * (k.mu_scale * k.r_scale)
  return _LeafUpdate(step=step.astype(g.dtype), mu=mu, v_row=v_row, v_col=v_col, v=v, r_row=r_row, r_col=r_col)


def scale_by_came(
  b1: Union[float, jax.Array] = 0.9,
  b2: Union[float, jax.Array] = 0.999,
  b3: Union[float, jax.Array] = 0.9999,
  eps1: float = 1e-30,
  eps2: float = 1e-16,
  clip_threshold: float = 1.0,
  *,
  factoring: FactoringPolicy = "last_two",
  min_dim_size_to_factor: Optional[int] = None,
  momentum_dtype: MomentumDtype = "float32",
  quantization_block_size: Optional[int] = None,
  min_quantized_size: Optional[int] = None,
  chunk_bytes: Union[int, None, Literal["auto"]] = "auto",
  bias_correction: bool = False,
) -> optax.GradientTransformation:
  """Rescales updates with CAME's factored second moment and confidence correction (no learning rate).

  Args:
    b1: decay of the momentum (first moment of the clipped update).
    b2: decay of the factored second moment of the gradient.
    b3: decay of the factored instability ``(û − m)²``.
    eps1: added to the squared gradient.
    eps2: added to the instability.
    clip_threshold: the RMS of the preconditioned update is clipped to this value.
    factoring: ``"last_two"`` (reference: every rank >= 2 tensor, over its last two axes, leading axes are batch
      axes) or ``"largest_two"`` (optax/t5x Adafactor: the two largest axes, when the smaller of them is at least
      ``min_dim_size_to_factor``; other tensors keep a full second moment and take no confidence step).
    min_dim_size_to_factor: see ``factoring``; ignored by ``"last_two"``; default 128.
    momentum_dtype: ``"float32"`` (reference), ``"bfloat16"`` (stochastically rounded: with round-to-nearest the
      average stalls within ~2 % of its input, which misleads CAME's instability estimate; see
      experiments/README.md), or ``"int8"`` (block-wise companded 8-bit codes with one fp32 scale per
      ``quantization_block_size`` elements along the last axis). All arithmetic is fp32.
    quantization_block_size: block length for ``"int8"`` momentum; default 256.
    min_quantized_size: leaves with fewer elements (and scalars) keep fp32 momentum under ``"int8"``; default
      4096.
    chunk_bytes: 2-D factored matrices larger than this many fp32 bytes go through the CPU kernel
      (:mod:`came_jax.optim.came_cpu`) in blocks of whole rows of about this size, each block's work done while
      it is in cache, in 7 passes over memory and no full-size temporaries; every other leaf takes
      :func:`reference_update`. ``None`` never blocks; ``"auto"`` blocks on a single-device CPU backend, at
      an eighth of the core's L2 cache, at most 96 KiB (the L2 size is read from the machine,
      ``$CAME_JAX_L2_BYTES`` overrides it: :func:`came_jax.optim.came_cpu.default_block_bytes`), and never
      elsewhere (GPU/TPU compilers fuse the reference themselves, and blocking a sharded row axis would gather
      it). Numerics are the same either way, up to the order of float32 sums.
    bias_correction: divide the momentum, the column (and full) second moment and the column instability by
      ``1 - βᵗ`` (see the module docstring); ``False`` is the reference.

  The three structural integers default to ``None`` (meaning the defaults above) so that
  ``optax.inject_hyperparams``, which turns every numeric argument into a traced array, leaves them static.

  Returns:
    An ``optax.GradientTransformation`` whose updates have each gradient's dtype.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import came_jax
    >>> tx = came_jax.scale_by_came()
    >>> params = {"w": jnp.ones((4, 3)), "b": jnp.zeros(3)}
    >>> state = tx.init(params)
    >>> updates, state = jax.jit(tx.update)(params, state)  # the params as gradients
    >>> updates["w"].shape, state.v_row["w"].shape, state.v_col["w"].shape
    ((4, 3), (4,), (3,))
  """
  for name, value in (("b1", b1), ("b2", b2), ("b3", b3)):
    _check_hyperparameter(name, value, lambda x: 0.0 <= x < 1.0, "in [0, 1)")
  for name, value in (("eps1", eps1), ("eps2", eps2), ("clip_threshold", clip_threshold)):
    _check_hyperparameter(name, value, lambda x: x > 0.0, "positive")
  if factoring not in ("last_two", "largest_two"):
    raise ValueError(f"CAME: `factoring` must be 'last_two' or 'largest_two', got {factoring!r}")
  if momentum_dtype not in ("float32", "bfloat16", "int8"):
    raise ValueError(f"CAME: `momentum_dtype` must be 'float32', 'bfloat16' or 'int8', got {momentum_dtype!r}")
  min_dim_size_to_factor = 128 if min_dim_size_to_factor is None else min_dim_size_to_factor
  quantization_block_size = 256 if quantization_block_size is None else quantization_block_size
  min_quantized_size = 4096 if min_quantized_size is None else min_quantized_size
  for name, value in (
    ("min_dim_size_to_factor", min_dim_size_to_factor),
    ("quantization_block_size", quantization_block_size),
    ("min_quantized_size", min_quantized_size),
  ):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
      raise ValueError(f"CAME: `{name}` must be a positive integer, got {value!r}")
  if not isinstance(bias_correction, bool):
    raise ValueError(f"CAME: `bias_correction` must be True or False, got {bias_correction!r}")

  if chunk_bytes == "auto":
    single_cpu = jax.default_backend() == "cpu" and jax.device_count() == 1
    chunk_bytes = came_cpu.default_block_bytes() if single_cpu else None
  if chunk_bytes is not None and (not isinstance(chunk_bytes, int) or isinstance(chunk_bytes, bool) or chunk_bytes < 1):
    raise ValueError(f"CAME: `chunk_bytes` must be a positive integer, None or 'auto', got {chunk_bytes!r}")

  def block_rows(lay: _Layout, shape: tuple[int, ...]) -> Optional[int]:
    """Rows per block of the CPU kernel for this leaf, or None: the reference update."""
    if chunk_bytes is None or lay.axes != (0, 1) or len(shape) != 2:
      return None
    return came_cpu.block_rows(shape, chunk_bytes)

  def layout(shape: tuple[int, ...]) -> _Layout:
    size = 1
    for d in shape:
      size *= d
    quantized = momentum_dtype == "int8" and len(shape) >= 1 and size >= min_quantized_size
    return _Layout(_factored_axes(shape, factoring, min_dim_size_to_factor), quantized)

  def store_mu(mu: jax.Array, first_index, lay: _Layout, dither: Callable[[tuple[int, ...], Any], jax.Array]):
    """The momentum (or a block of whole rows of it, whose first element has flat index `first_index`) in its
    storage format. `dither(shape, first_index)` gives the random bits for bf16 rounding."""
    if lay.quantized:
      return quantization.quantize(mu, quantization_block_size)
    if momentum_dtype == "bfloat16":
      return rounding.to_bfloat16(mu, dither(mu.shape, first_index))
    return mu

  def load_mu(mu, lay: _Layout) -> jax.Array:
    if lay.quantized:
      return quantization.dequantize(mu, quantization_block_size)
    return mu.astype(jnp.float32)

  def init_leaf(path, p) -> _LeafUpdate:
    dtype = jnp.asarray(p).dtype if not hasattr(p, "dtype") else p.dtype
    if not jnp.issubdtype(dtype, jnp.floating):
      raise TypeError(
        f"CAME: parameter {jax.tree_util.keystr(path) or '<root>'} has dtype {dtype}; CAME needs real "
        "floating-point parameters (integer and complex ones are not supported)."
      )
    shape = tuple(p.shape)
    lay = layout(shape)
    # Every state array is a distinct buffer, so that a jitted step can donate the whole state.
    placeholder = lambda: jnp.zeros((1,), jnp.float32)  # noqa: E731
    if lay.quantized:
      mu = quantization.zeros(shape, quantization_block_size)
    else:
      mu = jnp.zeros(shape, jnp.bfloat16 if momentum_dtype == "bfloat16" else jnp.float32)
    if lay.axes is None:
      stats = dict(
        v_row=placeholder(),
        v_col=placeholder(),
        v=jnp.zeros(shape, jnp.float32),
        r_row=placeholder(),
        r_col=placeholder(),
      )
    else:
      a, b = lay.axes
      row = lambda: jnp.zeros(shape[:b] + shape[b + 1 :], jnp.float32)  # noqa: E731
      col = lambda: jnp.zeros(shape[:a] + shape[a + 1 :], jnp.float32)  # noqa: E731
      stats = dict(v_row=row(), v_col=col(), v=placeholder(), r_row=row(), r_col=col())
    return _LeafUpdate(step=None, mu=mu, **stats)

  def zeros_state(params):
    leaves = jax.tree_util.tree_map_with_path(init_leaf, params)
    field = _fields_getter(leaves)
    return ScaleByCameState(
      count=jnp.zeros([], jnp.int32),
      mu=field("mu"),
      v_row=field("v_row"),
      v_col=field("v_col"),
      v=field("v"),
      r_row=field("r_row"),
      r_col=field("r_col"),
    )

  def init_fn(params):
    mesh = _placed_mesh(params)
    if mesh is None:
      return zeros_state(params)
    # Concrete params placed on a mesh: the state is created where it lives, each array sharded along the axes
    # it shares with its param (`partition.state_specs`), never whole on one device.
    named = lambda p: isinstance(getattr(p, "sharding", None), jax.sharding.NamedSharding)  # noqa: E731
    param_specs = jax.tree.map(lambda p: p.sharding.spec if named(p) else None, params)
    specs = partition.state_specs(zeros_state, params, param_specs)
    shardings = jax.tree.map(
      lambda s: jax.sharding.NamedSharding(mesh, s), specs, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec)
    )
    return jax.jit(zeros_state, out_shardings=shardings)(params)

  def coefficients(count: jax.Array) -> _Coefficients:
    """This step's betas, their complements and the bias corrections (ones without it), all float32."""
    b = [jnp.asarray(x, jnp.float32) for x in (b1, b2, b3)]
    one = jnp.ones([], jnp.float32)
    if bias_correction:
      t = optax.safe_increment(count).astype(jnp.float32)  # updates taken, this one included
      c1, c2, c3 = (1.0 - x**t for x in b)
      corrections = dict(v_scale=jnp.sqrt(c2), mu_scale=1.0 / c1, r_scale=jnp.sqrt(c3))
    else:
      corrections = dict(v_scale=one, mu_scale=one, r_scale=one)
    return _Coefficients(*b, *(1.0 - x for x in b), eps1=eps1, eps2=eps2, clip_threshold=clip_threshold, **corrections)

  def update_leaf(k, count, path, g, mu, v_row, v_col, v, r_row, r_col) -> _LeafUpdate:
    lay = layout(tuple(g.shape))
    salt = zlib.crc32(jax.tree_util.keystr(path).encode())
    dither = lambda shape, first: rounding.random_bits(shape, first, count, salt)  # noqa: E731
    load = lambda x: load_mu(x, lay)  # noqa: E731
    store = lambda x, first: store_mu(x, first, lay, dither)  # noqa: E731
    rows = block_rows(lay, tuple(g.shape))
    if rows is None:
      return reference_update(k, g, mu, v_row, v_col, v, r_row, r_col, axes=lay.axes, load_mu=load, store_mu=store)
    step, mu, v_row, v_col, r_row, r_col = came_cpu.blocked_update(
      k, g, mu, v_row, v_col, r_row, r_col, rows=rows, load_mu=load, store_mu=store
    )
    return _LeafUpdate(step=step, mu=mu, v_row=v_row, v_col=v_col, v=v, r_row=r_row, r_col=r_col)

  def update_fn(updates, state, params=None):
    del params
    leaves = jax.tree_util.tree_map_with_path(
      functools.partial(update_leaf, coefficients(state.count), state.count),
      updates,
      state.mu,
      state.v_row,
      state.v_col,
      state.v,
      state.r_row,
      state.r_col,
    )
    field = _fields_getter(leaves)
    new_state = ScaleByCameState(
      count=optax.safe_increment(state.count),
      mu=field("mu"),
      v_row=field("v_row"),
      v_col=field("v_col"),
      v=field("v"),
      r_row=field("r_row"),
      r_col=field("r_col"),
    )
    return field("step"), new_state

  return optax.GradientTransformation(init_fn, update_fn)


def _fields_getter(leaves):
  is_leaf = lambda x: isinstance(x, _LeafUpdate)  # noqa: E731
  return lambda name: jax.tree.map(lambda leaf: getattr(leaf, name), leaves, is_leaf=is_leaf)


def _placed_mesh(params) -> Optional[jax.sharding.Mesh]:
  """The mesh of concrete params placed with ``NamedSharding``s, or None (traced params, e.g. a jitted init, or
  params on no mesh, or on several), whose state is created unplaced: pass ``out_shardings`` to ``jax.jit`` there.

  A param of such a tree that is not on the mesh gets its state replicated over it.
  """
  leaves = jax.tree.leaves(params)
  if any(isinstance(p, jax.core.Tracer) for p in leaves):
    return None
  meshes = {p.sharding.mesh for p in leaves if isinstance(getattr(p, "sharding", None), jax.sharding.NamedSharding)}
  return meshes.pop() if len(meshes) == 1 else None


def came(
  learning_rate: optax.ScalarOrSchedule,
  b1: Union[float, jax.Array] = 0.9,
  b2: Union[float, jax.Array] = 0.999,
  b3: Union[float, jax.Array] = 0.9999,
  eps1: float = 1e-30,
  eps2: float = 1e-16,
  clip_threshold: float = 1.0,
  weight_decay: float = 0.0,
  mask: Optional[Union[Any, Callable[[optax.Params], Any]]] = None,
  *,
  factoring: FactoringPolicy = "last_two",
  min_dim_size_to_factor: Optional[int] = None,
  momentum_dtype: MomentumDtype = "float32",
  quantization_block_size: Optional[int] = None,
  min_quantized_size: Optional[int] = None,
  chunk_bytes: Union[int, None, Literal["auto"]] = "auto",
  bias_correction: bool = False,
) -> optax.GradientTransformation:
  """The CAME optimizer: :func:`scale_by_came`, decoupled weight decay, then the learning rate.

  Args:
    learning_rate: a float or an optax schedule (a function of the step count).
    b1, b2, b3, eps1, eps2, clip_threshold: see :func:`scale_by_came`; the defaults are the paper's.
    weight_decay: decoupled weight decay, scaled by the learning rate (``p ← p − lr·wd·p − lr·step``).
    mask: a tree of booleans (or a function of the params returning one) saying which leaves are decayed; by
      default every leaf is.
    factoring, min_dim_size_to_factor, momentum_dtype, quantization_block_size, min_quantized_size,
      chunk_bytes, bias_correction: see :func:`scale_by_came`. ``bias_correction=True`` puts the update on
      Adam's scale from the first step, so rates near AdamW's work (see experiments/README.md).

  Returns:
    An ``optax.GradientTransformation``.

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> import came_jax
    >>> params = {"w": jnp.ones((8, 4))}
    >>> tx = came_jax.came(learning_rate=1e-2, weight_decay=1e-2)
    >>> state = tx.init(params)
    >>> grads = jax.grad(lambda p: jnp.sum(p["w"] ** 2))(params)
    >>> updates, state = jax.jit(tx.update)(grads, state, params)
    >>> params = optax.apply_updates(params, updates)
    >>> bool(jnp.all(params["w"] < 1.0))
    True

  References:
    Luo et al, `CAME: Confidence-guided Adaptive Memory Efficient Optimization
    <https://arxiv.org/abs/2307.02047>`_, ACL 2023.
  """
  _check_hyperparameter("weight_decay", weight_decay, lambda x: x >= 0.0, "non-negative")
  if not callable(learning_rate):
    _check_hyperparameter("learning_rate", learning_rate, lambda x: x >= 0.0, "non-negative")
  transforms = [
    scale_by_came(
      b1,
      b2,
      b3,
      eps1,
      eps2,
      clip_threshold,
      factoring=factoring,
      min_dim_size_to_factor=min_dim_size_to_factor,
      momentum_dtype=momentum_dtype,
      quantization_block_size=quantization_block_size,
      min_quantized_size=min_quantized_size,
      chunk_bytes=chunk_bytes,
      bias_correction=bias_correction,
    ),
    _decayed_weights(weight_decay, mask),
    optax.scale_by_learning_rate(learning_rate),
  ]
  return optax.chain(*transforms)


def _decayed_weights(weight_decay, mask) -> optax.GradientTransformation:
  """``optax.add_decayed_weights``, which passes updates through untouched (params not needed) when the decay is
  a concrete zero. The state is the same either way, so ``came(weight_decay=0.0)`` and its
  ``inject_hyperparams`` form (where the zero is an array) have the same state tree."""
  inner = optax.add_decayed_weights(weight_decay, mask)
  if isinstance(weight_decay, (int, float)) and weight_decay == 0.0:
    return optax.GradientTransformation(inner.init, lambda updates, state, params=None: (updates, state))
  return inner
