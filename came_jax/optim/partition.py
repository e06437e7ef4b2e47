"""Where an optimizer's state lives: a ``PartitionSpec`` for every state leaf, read from the optimizer's ``init``.

Given the params' specs (e.g. FSDP's), :func:`state_specs` says how to shard the state that any optax
``init`` builds for them -- CAME with any momentum storage and factoring policy, optax's Adam(W), Adafactor,
SGD, and chains, ``optax.MultiSteps``, ``optax.inject_hyperparams`` or masked wrappers of them -- without knowing
the optimizer or the names of its fields. It asks ``init`` itself, through ``jax.eval_shape`` (nothing is
allocated):

1. **Owner.** A state leaf belongs to the param whose whole key path it contains, possibly followed by attribute
   names: ``opt_state[0].mu['encoder']['kernel'].codes`` belongs to ``params['encoder']['kernel']``. Leaves of no
   param (step counts, hyperparameters, placeholders of other trees) are replicated.
2. **Axes.** ``init`` is evaluated on the params' shapes, and again with every *sharded* axis ``k`` of each param
   (spec entry not None) multiplied by a factor ``f_k`` distinct within the param (2, 3, 5, ...). An axis of a
   state leaf that has the param's size ``n_k`` in the first evaluation and ``n_k * f_k`` in the second *is* the
   param's axis ``k``, and takes its spec entry; every other axis is replicated. So CAME's ``v_row`` of a square
   matrix keeps the row axis and ``v_col`` the column axis, 8-bit momentum codes take the param's spec, and their
   block scales (a blocked last axis) replicate that axis.
3. **Ties.** Where a sharded axis has the size of another axis of its param, an optimizer that compares axis sizes
   (optax's Adafactor factors a matrix's "largest" axis, the last of equals) would see the scaling break the tie
   its own way. A third evaluation breaks such ties the other way (the other sharded axes first, the equal-sized
   unsharded ones scaled too); an axis is identified only when both agree, otherwise it is replicated.

A leaf whose rank, or whose presence, differs between the evaluations (``init`` chose another layout for the
larger shapes, e.g. crossed a size threshold) is replicated. Every answer is therefore a valid spec that keeps
what ``init`` does: where the layout cannot be read off, the state is replicated (more memory, same values).
Specs come with trailing ``None`` entries trimmed (``P('fsdp')``, not ``P('fsdp', None)``).
"""

import dataclasses
import itertools
from typing import Any, Callable, Iterator, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

KeyPath = tuple[Any, ...]


@dataclasses.dataclass(frozen=True)
class _Param:
  """One param leaf: its shape and dtype, its spec entries (one per axis), and the factors of each evaluation."""

  shape: tuple[int, ...]
  dtype: Any
  entries: tuple[Any, ...]
  factors: tuple[tuple[int, ...], tuple[int, ...]]


def _primes() -> Iterator[int]:
  for n in itertools.count(2):
    if all(n % d for d in range(2, int(n**0.5) + 1)):
      yield n


def _describe(shape: tuple[int, ...], dtype: Any, spec: Any, path: KeyPath) -> _Param:
  entries = tuple(() if spec is None else spec)
  if len(entries) > len(shape):
    raise ValueError(
      f"state_specs: the spec {spec} of param {jax.tree_util.keystr(path) or '<root>'} has more "
      f"entries than its shape {shape} has axes"
    )
  entries += (None,) * (len(shape) - len(entries))
  sharded = [k for k, e in enumerate(entries) if e is not None]
  first = [1] * len(shape)
  for k, f in zip(sharded, _primes()):
    first[k] = f
  second = list(first)
  sharded_sizes = [shape[k] for k in sharded]
  twins = [k for k in range(len(shape)) if k not in sharded and shape[k] in sharded_sizes]
  if twins or len(set(sharded_sizes)) < len(sharded):
    # Break the ties the other way: the later sharded axes first, then the equal-sized unsharded axes.
    primes = _primes()
    for k in [*reversed(sharded), *twins]:
      second[k] = next(primes)
  return _Param(shape, dtype, entries, (tuple(first), tuple(second)))


def _owner(path: KeyPath, index: dict[KeyPath, int]) -> Optional[int]:
  """The param a state leaf at `path` belongs to: the earliest, longest contiguous run of `path` that is a
  param's whole path, followed only by attribute names (a chain's `[0]` is a tuple index, not a param's)."""
  if () in index:  # the params are one array: every leaf may belong to it
    return index[()]
  for start in range(len(path)):
    for end in range(len(path), start, -1):
      found = index.get(path[start:end])
      if found is not None and all(isinstance(k, jax.tree_util.GetAttrKey) for k in path[end:]):
        return found
  return None


def _axis_of(n: int, scaled: int, param: _Param, run: int) -> Optional[int]:
  """The sharded param axis `k` with size `n` that the evaluation `run` scaled to `scaled`, or None."""
  for k, (size, f) in enumerate(zip(param.shape, param.factors[run])):
    if param.entries[k] is not None and size == n and n > 0 and scaled == n * f:
      return k
  return None


def state_specs(init_fn: Callable[[Any], Any], params: Any, param_specs: Any) -> Any:
  """The ``PartitionSpec`` of every leaf of the state ``init_fn(params)`` builds (see the module docstring).

  Args:
    init_fn: an optimizer's ``init`` (``tx.init`` of any ``optax.GradientTransformation``); it is only traced
      (``jax.eval_shape``), never run, and must build its state from the params' shapes and dtypes alone.
    params: the params, as arrays or ``jax.ShapeDtypeStruct``s.
    param_specs: a tree like ``params`` of ``PartitionSpec`` (or ``None``: replicated), one per param.

  Returns:
    A tree shaped like ``jax.eval_shape(init_fn, params)`` of ``PartitionSpec``s, each with trailing ``None``
    entries trimmed: an axis that is a param's sharded axis takes the param's entry; everything else is
    replicated.

  Raises:
    ValueError: when a spec has more entries than its param has axes.

  Example:
    >>> import jax.numpy as jnp
    >>> from jax.sharding import PartitionSpec as P
    >>> import came_jax
    >>> from came_jax.optim import partition
    >>> params = {"w": jnp.zeros((8, 8)), "b": jnp.zeros(8)}
    >>> tx = came_jax.scale_by_came(momentum_dtype="int8", min_quantized_size=1, quantization_block_size=4)
    >>> specs = partition.state_specs(tx.init, params, {"w": P("fsdp"), "b": P("fsdp")})
    >>> specs.v_row["w"], specs.v_col["w"], specs.v["b"], specs.count
    (P('fsdp',), P(), P('fsdp',), P())
    >>> specs.mu["w"].codes, specs.mu["w"].scales
    (P('fsdp',), P('fsdp',))
    >>> partition.state_specs(tx.init, params, {"w": P(None, "fsdp"), "b": None}).mu["w"].scales
    P()
  """
  leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
  specs = treedef.flatten_up_to(param_specs)
  described = []
  for (path, p), spec in zip(leaves, specs):
    dtype = p.dtype if hasattr(p, "dtype") else jnp.result_type(p)
    described.append(_describe(tuple(np.shape(p)), dtype, spec, tuple(path)))
  index = {tuple(path): i for i, (path, _) in enumerate(leaves)}

  def evaluate(run: Optional[int]):
    structs = [
      jax.ShapeDtypeStruct(p.shape if run is None else tuple(n * f for n, f in zip(p.shape, p.factors[run])), p.dtype)
      for p in described
    ]
    return jax.eval_shape(init_fn, jax.tree_util.tree_unflatten(treedef, structs))

  def shapes_by_path(tree) -> dict[KeyPath, tuple[int, ...]]:
    return {tuple(path): tuple(x.shape) for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]}

  base = evaluate(None)
  state_leaves, state_def = jax.tree_util.tree_flatten_with_path(base)
  if not any(e is not None for p in described for e in p.entries):
    return jax.tree_util.tree_unflatten(state_def, [PartitionSpec()] * len(state_leaves))
  scaled = [shapes_by_path(evaluate(0))]
  tied = any(p.factors[0] != p.factors[1] for p in described)
  scaled.append(shapes_by_path(evaluate(1)) if tied else scaled[0])

  def spec_of(path: KeyPath, shape: tuple[int, ...]) -> PartitionSpec:
    owner = _owner(path, index)
    others = [s.get(path) for s in scaled]
    if owner is None or any(o is None or len(o) != len(shape) for o in others):
      return PartitionSpec()
    param = described[owner]
    entries, used = [], set()
    for j, n in enumerate(shape):
      axes = {_axis_of(n, o[j], param, run) for run, o in enumerate(others)}
      k = axes.pop() if len(axes) == 1 else None
      entries.append(None if k is None or k in used else param.entries[k])
      if k is not None:
        used.add(k)  # a mesh axis shards one axis of a leaf at most
    while entries and entries[-1] is None:
      entries.pop()
    return PartitionSpec(*entries)

  return jax.tree_util.tree_unflatten(state_def, [spec_of(tuple(path), tuple(x.shape)) for path, x in state_leaves])
