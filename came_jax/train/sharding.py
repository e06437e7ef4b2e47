"""Where the trainer's arrays live: the device mesh, data-parallel and fully-sharded (FSDP) placement, processes.

The mesh has two axes, `("data", "fsdp")`, of sizes `config.mesh.data` x `config.mesh.fsdp` (-1: every device
the other axis leaves); the default 1 x 1 is one device. Rules (`train_state_shardings` for the whole train state):

* params (`param_specs`): replicated over `data`; over `fsdp`, a param of at least `config.mesh.fsdp_min_size`
  elements is split along its largest axis divisible by the fsdp size (norm scales, biases and other small leaves
  are replicated);
* optimizer state: as the optimizer's own `init` lays it out for those params, read by
  `came_jax.optim.partition.state_specs` (no field names): an axis of a state leaf that is its param's sharded
  axis is sharded like it, every other axis is replicated. So a momentum is sharded like its param, a factored
  statistic (CAME's and Adafactor's `v_row`/`v_col`) keeps the spec of the axis it keeps, 8-bit block scales
  replicate the blocked axis, and counts, hyperparameters and placeholders are replicated;
* the train state's other fields (step, rng, counters): replicated;
* batches: the batch axis over `("data", "fsdp")`, so each device computes on its own rows.

The jitted step is given these shardings as `in_shardings`/`out_shardings`; XLA's SPMD partitioner inserts the
collectives (weight all-gathers, gradient reduce-scatters and all-reduces). None is written by hand.

Several processes (multi-host): `initialize_distributed(config.distributed)` calls `jax.distributed.initialize`
before anything touches a device. Every process runs the same program on global arrays; each loads only its rows
of each global batch (the data iterator's `process_index`/`process_count`), and `global_batch` assembles them with
`jax.make_array_from_process_local_data`.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any, Callable, Optional, Sequence

import jax
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from came_jax.optim import partition

log = logging.getLogger(__name__)

AXES = ("data", "fsdp")
BATCH_AXES = ("data", "fsdp")  # a batch's rows are split over every device


def mesh_config() -> ml_collections.ConfigDict:
  """The `mesh` section of a pretraining config: axis sizes (-1 = the remaining devices) and the FSDP threshold."""
  return ml_collections.ConfigDict(dict(data=1, fsdp=1, fsdp_min_size=2**14))


def distributed_config() -> ml_collections.ConfigDict:
  """The `distributed` section: '' / 0 / -1 take `$JAX_COORDINATOR_ADDRESS`, `$JAX_NUM_PROCESSES`,
  `$JAX_PROCESS_ID`; with none of them set (and one process) `jax.distributed` is not initialised."""
  return ml_collections.ConfigDict(dict(coordinator_address="", num_processes=0, process_id=-1))


# --------------------------------------------------------------------------------------------------- processes
def distributed_args(cfg: ml_collections.ConfigDict, environ=None) -> Optional[dict[str, Any]]:
  """Arguments for `jax.distributed.initialize` from `cfg` and the environment, or None for one process.

  Raises:
    ValueError: naming `distributed.*` for an inconsistent setting.
  """
  env = os.environ if environ is None else environ
  address = cfg.coordinator_address or env.get("JAX_COORDINATOR_ADDRESS", "")
  num = cfg.num_processes or int(env.get("JAX_NUM_PROCESSES", "0") or 0)
  pid = cfg.process_id if cfg.process_id >= 0 else int(env.get("JAX_PROCESS_ID", "-1") or -1)
  if num < 0:
    raise ValueError(f"config.distributed.num_processes={num}: must be >= 0 (0: from $JAX_NUM_PROCESSES)")
  if not address and num <= 1:
    return None
  if num == 1:
    return None
  if pid >= 0 and num and pid >= num:
    raise ValueError(f"config.distributed.process_id={pid}: must be < num_processes={num}")
  # Unknowns (None) are left to jax's cluster detection (SLURM, Open MPI, TPU, ...).
  return dict(coordinator_address=address or None, num_processes=num or None, process_id=pid if pid >= 0 else None)


def initialize_distributed(cfg: ml_collections.ConfigDict) -> bool:
  """`jax.distributed.initialize` as `cfg` and the environment say; a no-op for one process or when done already.

  Returns:
    Whether several processes are (now) running.
  """
  args = distributed_args(cfg)
  if args is None:
    return jax.distributed.is_initialized() and jax.process_count() > 1
  if not jax.distributed.is_initialized():
    log.info("jax.distributed.initialize(%s)", ", ".join(f"{k}={v!r}" for k, v in args.items()))
    jax.distributed.initialize(**args)
  return jax.process_count() > 1


def sync(name: str) -> None:
  """A barrier across processes (nothing with one process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

    multihost_utils.sync_global_devices(name)


def process_zero_first(name: str, fn: Callable[[], Any]) -> Any:
  """Runs `fn` on process 0, then on the others (which then find, e.g., the tokenizer process 0 saved)."""
  if jax.process_index() == 0:
    result = fn()
    sync(name)
    return result
  sync(name)
  return fn()


# -------------------------------------------------------------------------------------------------------- mesh
def mesh_shape(cfg: ml_collections.ConfigDict, device_count: int, process_count: int = 1) -> tuple[int, int]:
  """`(data, fsdp)` from `config.mesh` for `device_count` devices.

  Raises:
    ValueError: naming `mesh.data`/`mesh.fsdp` when they do not fit the devices.
  """
  data, fsdp = cfg.data, cfg.fsdp
  for key, value in (("mesh.data", data), ("mesh.fsdp", fsdp)):
    if not isinstance(value, int) or isinstance(value, bool) or not (value == -1 or value >= 1):
      raise ValueError(f"config.{key}={value!r}: must be a positive integer or -1 (the remaining devices)")
  if data == -1 and fsdp == -1:
    raise ValueError("config.mesh.data=-1 and config.mesh.fsdp=-1: at most one axis may take the remaining devices")
  if data == -1 or fsdp == -1:
    other, key = (fsdp, "mesh.data") if data == -1 else (data, "mesh.fsdp")
    if device_count % other:
      raise ValueError(f"config.{key}={other}: does not divide the {device_count} devices")
    data, fsdp = (device_count // other, other) if data == -1 else (other, device_count // other)
  if data * fsdp > device_count:
    raise ValueError(
      f"config.mesh.data x config.mesh.fsdp = {data} x {fsdp} = {data * fsdp} devices, but only "
      f"{device_count} are present"
    )
  if process_count > 1 and data * fsdp != device_count:
    raise ValueError(
      f"config.mesh.data x config.mesh.fsdp = {data * fsdp}: with {process_count} processes the "
      f"mesh must span all {device_count} devices (use -1)"
    )
  if cfg.fsdp_min_size < 0:
    raise ValueError(f"config.mesh.fsdp_min_size={cfg.fsdp_min_size}: must be >= 0")
  return data, fsdp


def make_mesh(data: int, fsdp: int, devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """A `("data", "fsdp")` mesh over the first `data * fsdp` devices (fsdp the minor axis: neighbours in
  `jax.devices()` order, i.e. within a host, share a model copy)."""
  devices = list(jax.devices() if devices is None else devices)[: data * fsdp]
  return Mesh(np.asarray(devices, dtype=object).reshape(data, fsdp), AXES)


def batch_split(mesh: Mesh) -> int:
  """How many pieces a batch's rows are split into (the devices of the mesh)."""
  return math.prod(mesh.shape[a] for a in BATCH_AXES)


# ------------------------------------------------------------------------------------------------ param specs
def fsdp_spec(shape: Sequence[int], fsdp_size: int, min_size: int) -> P:
  """The spec of one param: its largest axis divisible by `fsdp_size` over "fsdp" (the first of equals), or
  replicated when it is small, or no axis divides."""
  if fsdp_size <= 1 or math.prod(shape) < max(min_size, 1):
    return P()
  axes = [i for i, n in enumerate(shape) if n % fsdp_size == 0 and n >= fsdp_size]
  if not axes:
    return P()
  axis = max(axes, key=lambda i: (shape[i], -i))
  return P(*([None] * axis), "fsdp")


def param_specs(params: Any, mesh: Mesh, min_size: int) -> Any:
  """A tree of `PartitionSpec` like `params` (arrays or `ShapeDtypeStruct`s)."""
  return jax.tree.map(lambda p: fsdp_spec(p.shape, mesh.shape["fsdp"], min_size), params)


def named(mesh: Mesh, specs: Any) -> Any:
  return jax.tree.map(lambda s: NamedSharding(mesh, s), specs, is_leaf=lambda x: isinstance(x, P))


def train_state_shardings(state: Any, tx: optax.GradientTransformation, mesh: Mesh, min_size: int) -> Any:
  """`NamedSharding`s for a whole train state on `mesh` (see the module docstring).

  Args:
    state: the train state or its shape (`jax.eval_shape` of `step.TrainState.create`): a `flax.struct` dataclass
      with `params` and `opt_state`, whose `opt_state` is `tx.init(params)`.
    tx: the optimizer that built `opt_state`; its `init` is traced (never run) to lay out the state.
    mesh: a `("data", "fsdp")` mesh.
    min_size: params with fewer elements are replicated (`config.mesh.fsdp_min_size`).

  Returns:
    A tree like `state` of `NamedSharding`s: params by `param_specs`, the optimizer state by
    `partition.state_specs(tx.init, params, specs)`, every other field replicated.
  """
  specs = param_specs(state.params, mesh, min_size)
  replicated_specs = jax.tree.map(lambda _: P(), state)
  return named(
    mesh, replicated_specs.replace(params=specs, opt_state=partition.state_specs(tx.init, state.params, specs))
  )


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


# ------------------------------------------------------------------------------------------------------ batches
def batch_sharding(mesh: Mesh, ndim: int, batch_axis: int) -> NamedSharding:
  """Rows (axis `batch_axis`) split over every device; the other axes whole."""
  return NamedSharding(mesh, P(*([None] * batch_axis), BATCH_AXES))


def batch_shardings(mesh: Mesh, shapes: dict[str, tuple], batch_axis: int) -> dict[str, NamedSharding]:
  """`{name: NamedSharding}` for a batch of `{name: (shape, dtype)}`."""
  return {k: batch_sharding(mesh, len(shape), batch_axis) for k, (shape, _) in shapes.items()}


def process_rows(sharding: NamedSharding, global_shape: Sequence[int], batch_axis: int) -> tuple[int, int]:
  """`[lo, hi)`: the rows of `batch_axis` held by this process's devices.

  Raises:
    ValueError: when they are not one contiguous block (a mesh whose device order interleaves processes).
  """
  idx = sharding.addressable_devices_indices_map(tuple(global_shape))
  spans = sorted({(s[batch_axis].start or 0, s[batch_axis].stop or global_shape[batch_axis]) for s in idx.values()})
  lo, hi = spans[0][0], spans[-1][1]
  covered = sum(b - a for a, b in spans)
  if covered != hi - lo:
    raise ValueError(
      f"this process's devices hold rows {spans} of the batch, not one contiguous block: build the "
      "mesh from jax.devices() in process order"
    )
  return lo, hi


def global_batch(
  local: dict[str, np.ndarray], shardings: dict[str, NamedSharding], batch_axis: int, process_count: int = 1
) -> dict[str, jax.Array]:
  """This process's rows of a batch -> global `jax.Array`s (`process_count` times as many rows)."""
  out = {}
  for k, x in local.items():
    shape = list(np.shape(x))
    shape[batch_axis] *= process_count
    out[k] = jax.make_array_from_process_local_data(shardings[k], x, tuple(shape))
  return out
