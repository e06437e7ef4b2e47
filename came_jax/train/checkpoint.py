"""Checkpoints (orbax `CheckpointManager`) and the workdir's run identity.

A checkpoint holds two items: `state` (the `TrainState` pytree: params, optimizer state, step, base RNG,
non-finite counters) and `meta` (JSON: elapsed budget seconds, the data iterator's position, tokens seen).
Saves are synchronous: they happen inside the budget clock's pauses, and a checkpoint on disk is complete
once `save` returns, so a run killed at any moment after it resumes from it exactly.

Each checkpoint also holds `checksums.json` (written once orbax has finished it: every file's size and SHA-256), so
damage on disk (a lost, truncated or overwritten file, a flipped bit) is found at restore instead of restoring
garbage. `Checkpointer.restore_latest` takes the newest checkpoint that is intact (checksums, orbax's own reading,
finite values); damaged newer ones are moved to `WORKDIR/checkpoints_damaged/<step>` (never deleted), each with a
one-line warning. A run whose every checkpoint is damaged stops (`DamagedCheckpointError`) rather than start over.

`WORKDIR/run_config.json` records the config of the run that owns the workdir, written once setup has succeeded
(so a run that failed on, say, a wrong data path can be fixed and restarted in the same workdir). A later start
whose model, optimizer, schedule, data or batch settings differ is refused (`IncompatibleWorkdirError`); the
budget, `max_steps`, intervals and evaluation settings may change between a run and its resumption.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import errno
import gc
import hashlib
import json
import logging
import os
import pickle
import re
import shutil
import sys
import time
import types
from typing import Any, Iterator, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from came_jax.train import sharding

log = logging.getLogger(__name__)

# Config keys that define a run: a workdir holding a run that differs in any of them is refused.
COMPAT_KEYS = ("model", "optimizer", "schedule", "data", "batch_size", "batch_ramp", "seed")
# ... except these, which only say where caches are or how evaluation and prefetching run.
NOT_COMPAT = ("data.eval_path", "data.eval_batches", "data.prefetch", "data.cache_dir")
RUN_CONFIG = "run_config.json"
CHECKSUMS = "checksums.json"  # in each step directory, beside orbax's items (orbax ignores files it did not write)
DAMAGED = "checkpoints_damaged"  # WORKDIR/checkpoints_damaged/<step>: damaged checkpoints, moved out of orbax's sight
# SHA-256 (OpenSSL, SHA-NI): 1.6 GB/s on one core of the dev machine, against 1.15 GB/s for BLAKE2b (a 500 MB file
# in the page cache, 1-8 MiB reads); files are hashed on a few threads (hashlib releases the GIL).
_HASH, _CHUNK = "sha256", 4 << 20


class IncompatibleWorkdirError(ValueError):
  """The workdir belongs to a different run; nothing in it was touched."""


class DamagedCheckpointError(RuntimeError):
  """The checkpoint asked for, or every checkpoint of the workdir, is damaged on disk; nothing was moved."""


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(d, dict):
    out = {}
    for k, v in d.items():
      out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out
  return {prefix: d}


def run_identity(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The part of `config` that must match to resume (JSON-normalised)."""
  full = json.loads(config.to_json_best_effort())
  keys = COMPAT_KEYS + (("init_from",) if full.get("init_from") else ())  # (absent from runs before it existed)
  flat = _flatten({k: full.get(k) for k in keys})
  return {k: v for k, v in flat.items() if k not in NOT_COMPAT}


def check_workdir(workdir: str, config: ml_collections.ConfigDict) -> bool:
  """Checks that `workdir` is fresh or holds this very run; writes nothing.

  Returns:
    True if the workdir holds this run (resume), False if it is fresh.
  Raises:
    IncompatibleWorkdirError: the workdir holds another run (or checkpoints of an unknown one).
  """
  path = os.path.join(workdir, RUN_CONFIG)
  if os.path.exists(path):
    with open(path) as f:
      old = json.load(f).get("identity", {})
    new = run_identity(config)
    diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if diff:
      shown = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff[:8])
      more = f" (and {len(diff) - 8} more)" if len(diff) > 8 else ""
      raise IncompatibleWorkdirError(
        f"workdir {workdir!r} holds a different run; refusing to overwrite it. Differences in "
        f"config {shown}{more}. Use a new --workdir, or the original config to resume."
      )
    return True
  ckpts = os.path.join(workdir, "checkpoints")
  if os.path.isdir(ckpts) and os.listdir(ckpts):
    raise IncompatibleWorkdirError(
      f"workdir {workdir!r} holds checkpoints but no {RUN_CONFIG}; refusing to overwrite them. Use a new --workdir."
    )
  return False


def record_run(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Marks `workdir` as this run's (once setup has succeeded, before the first step)."""
  path = os.path.join(workdir, RUN_CONFIG)
  if os.path.exists(path):
    return
  os.makedirs(workdir, exist_ok=True)
  with open(path + ".tmp", "w") as f:
    json.dump({"identity": run_identity(config), "config": json.loads(config.to_json_best_effort())}, f, indent=2)
  os.replace(path + ".tmp", path)


def _encode(obj: Any) -> Any:
  """JSON if the data iterator state is plain JSON, else a tagged base64 pickle (numpy RNG states etc.)."""
  try:
    text = json.dumps(obj)
    return {"json": json.loads(text)}
  except (TypeError, ValueError):
    return {"pickle_b64": base64.b64encode(pickle.dumps(obj)).decode("ascii")}


def _decode(obj: dict) -> Any:
  if "json" in obj:
    return obj["json"]
  return pickle.loads(base64.b64decode(obj["pickle_b64"]))


# ------------------------------------------------------------------------------------------------ checksums
def _files(step_dir: str) -> list[str]:
  """Every file under `step_dir` but the checksums, as sorted '/'-separated relative paths."""
  out = []
  for root, _, names in os.walk(step_dir):
    for name in names:
      rel = os.path.relpath(os.path.join(root, name), step_dir).replace(os.sep, "/")
      if rel != CHECKSUMS and not rel.startswith(CHECKSUMS + "."):
        out.append(rel)
  return sorted(out)


def _digest(path: str, algorithm: str = _HASH) -> str:
  h = hashlib.new(algorithm)
  buf = bytearray(_CHUNK)
  view = memoryview(buf)
  with open(path, "rb", buffering=0) as f:
    while n := f.readinto(buf):
      h.update(view[:n])
  return h.hexdigest()


def _digests(step_dir: str, rel_paths: list[str], algorithm: str = _HASH) -> dict[str, str]:
  workers = max(1, min(8, os.cpu_count() or 1, len(rel_paths)))
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    hexes = pool.map(lambda rel: _digest(os.path.join(step_dir, rel), algorithm), rel_paths)
    return dict(zip(rel_paths, hexes))


def _fsync_dir(path: str) -> None:
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def write_checksums(step_dir: str) -> None:
  """Records the size and hash of every file under the finished checkpoint `step_dir` in `step_dir/checksums.json`.

  Written atomically (a temporary file, fsync, rename): a checkpoint has complete checksums or none.
  """
  rel_paths = _files(step_dir)
  hexes = _digests(step_dir, rel_paths)
  files = {rel: {"size": os.path.getsize(os.path.join(step_dir, rel)), _HASH: hexes[rel]} for rel in rel_paths}
  path = os.path.join(step_dir, CHECKSUMS)
  with open(path + ".tmp", "w") as f:
    json.dump({"algorithm": _HASH, "files": files}, f, indent=1)
    f.flush()
    os.fsync(f.fileno())
  os.replace(path + ".tmp", path)
  _fsync_dir(step_dir)


def has_checksums(step_dir: str) -> bool:
  return os.path.exists(os.path.join(step_dir, CHECKSUMS))


def verify(step_dir: str) -> Optional[str]:
  """Checks the checkpoint `step_dir` against its `checksums.json`.

  Returns:
    None if every file listed is there with its size and hash (or if there are no checksums: see `has_checksums`),
    else one line naming the first file that is not (e.g. "state/ocdbt.process_0/d/ab12: checksum mismatch",
    "meta/metadata: missing", "state/_METADATA: size 600, expected 693"), and how many more are not.
  """
  path = os.path.join(step_dir, CHECKSUMS)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      manifest = json.load(f)
    algorithm, files = manifest["algorithm"], manifest["files"]
    expected = {rel: (int(e["size"]), e[algorithm]) for rel, e in files.items()}
    hashlib.new(algorithm)
  except Exception as e:  # pylint: disable=broad-except
    return f"{CHECKSUMS}: unreadable ({_one_line(e)})"
  problems, same_size = {}, []
  for rel, (size, _) in expected.items():
    try:
      actual = os.path.getsize(os.path.join(step_dir, rel))
    except FileNotFoundError:
      problems[rel] = "missing"
      continue
    if actual != size:
      problems[rel] = f"size {actual}, expected {size}"
    else:
      same_size.append(rel)
  try:
    hexes = _digests(step_dir, same_size, algorithm)
  except OSError as e:
    return f"{os.path.relpath(e.filename or step_dir, step_dir)}: unreadable ({_one_line(e)})"
  problems.update({rel: "checksum mismatch" for rel, h in hexes.items() if h != expected[rel][1]})
  if not problems:
    return None
  first = min(problems)
  more = f" (and {len(problems) - 1} more file{'s' if len(problems) > 2 else ''})" if len(problems) > 1 else ""
  return f"{first}: {problems[first]}{more}"


# ------------------------------------------------------------------------------------------------ restoring
@jax.jit
def _all_finite(leaves: list[jax.Array]) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def all_finite(tree: Any) -> bool:
  """Whether every float (or complex) leaf of `tree` is finite: one jitted reduction and one host transfer.

  >>> all_finite({"w": jnp.ones(3), "step": 4}), all_finite({"w": jnp.array([1.0, jnp.nan])})
  (True, False)
  """
  leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
  return not leaves or bool(jax.device_get(_all_finite(leaves)))


def _one_line(e: BaseException) -> str:
  """`e` in one line: its innermost cause (TensorStore wraps the actual error in one that prints its whole spec)."""
  while e.__cause__ is not None:
    e = e.__cause__
  lines = [line.strip() for line in str(e).splitlines() if line.strip()]
  text = lines[0] if lines else ""
  text = text if len(text) <= 300 else text[:297] + "..."
  return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _key_name(entry: Any) -> str:
  """A jax key path entry as orbax names it on disk: a dict key, an attribute or a sequence index, as a string."""
  for attr in ("key", "name", "idx"):  # DictKey / FlattenedIndexKey, GetAttrKey, SequenceKey
    if hasattr(entry, attr):
      return str(getattr(entry, attr))
  return str(entry)


def _structure_mismatch(saved: Any, target: Any) -> Optional[str]:
  """How the saved tree (orbax's metadata of the `state` item) differs from `target` in paths or shapes, else None.

  Dtypes may differ: orbax casts on restore.
  """
  saved = {tuple(map(str, k)): v for k, v in ocp.tree.to_flat_dict(saved).items()}
  wanted = {tuple(map(_key_name, path)): x for path, x in jax.tree_util.tree_flatten_with_path(target)[0]}
  name = lambda key: ".".join(key)
  diffs = [f"{name(k)}: not in the checkpoint" for k in wanted if k not in saved]
  diffs += [f"{name(k)}: in the checkpoint, not in this run's state" for k in saved if k not in wanted]
  for k in wanted.keys() & saved.keys():
    shape, saved_shape = getattr(wanted[k], "shape", None), getattr(saved[k], "shape", None)
    if shape is not None and saved_shape is not None and tuple(shape) != tuple(saved_shape):
      diffs.append(f"{name(k)}: shape {tuple(shape)}, the checkpoint's {tuple(saved_shape)}")
  if not diffs:
    return None
  diffs.sort()
  more = f" (and {len(diffs) - 3} more)" if len(diffs) > 3 else ""
  return "; ".join(diffs[:3]) + more


def _abandoned_read(unraisable: Any) -> bool:
  """Whether `unraisable` is what TensorStore's other reads leave behind once one read of a restore failed: orbax's
  coroutines, never awaited, raise when collected; reads still in flight complete into the closed event loop."""
  if isinstance(unraisable.object, types.CoroutineType):
    return True
  return (
    unraisable.object is None
    and isinstance(unraisable.exc_value, RuntimeError)
    and (str(unraisable.exc_value) == "Event loop is closed")
  )


@contextlib.contextmanager
def _quiet_failed_reads() -> Iterator[None]:
  """Keeps what a failed restore leaves on stderr ("Exception ignored in ..." and a traceback, per abandoned read)
  off it: the failure is reported in one line instead."""
  hook = sys.unraisablehook
  sys.unraisablehook = lambda unraisable: None if _abandoned_read(unraisable) else hook(unraisable)
  try:
    yield
  finally:
    gc.collect()
    sys.unraisablehook = hook


def _os_error(e: BaseException) -> tuple[Optional[int], str]:
  """The operating system's error under TensorStore's text, `(errno, "File too large")`, else `(None, one line)`.

  >>> _os_error(ValueError('OUT_OF_RANGE: Error writing "p/0": Failed to write 6 bytes to file 24: No space left on '
  ...                      "device [os_error_code='28']"))
  (28, 'No space left on device')
  """
  text = " ".join(str(x) for x in (e, e.__cause__, e.__context__) if x is not None)
  match = re.search(r":\s*([^:\[]+?)\s*\[os_error_code='?(\d+)'?\]", text)
  return (int(match.group(2)), match.group(1)) if match else (None, _one_line(e))


@contextlib.contextmanager
def _orbax_errors_logged_at_debug() -> Iterator[None]:
  """Orbax logs a failed write at ERROR with its traceback, once per thread that saw it (through absl's logger);
  the failure is raised, in one line, by the caller instead."""
  absl_log = logging.getLogger("absl")
  level = absl_log.level
  absl_log.setLevel(logging.CRITICAL)
  try:
    yield
  finally:
    absl_log.setLevel(level)


def _any_process(flag: bool) -> bool:
  """Whether `flag` is set on any process (all processes call it: a collective with several)."""
  if jax.process_count() == 1:
    return flag
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

  return bool(np.asarray(multihost_utils.process_allgather(np.array(flag, np.int32))).any())


class Checkpointer:
  """Saves and restores `(TrainState, meta)` under `WORKDIR/checkpoints/<step>`, with checksums.

  All processes call every method (orbax's saves and restores are collective); process 0 writes the checksums and
  moves damaged checkpoints aside.
  """

  def __init__(self, workdir: str, max_to_keep: int = 2):
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self.damaged_directory = os.path.abspath(os.path.join(workdir, DAMAGED))
    self.manager = ocp.CheckpointManager(
      self.directory,
      # (Handlers named up front, so that `item_metadata` reads a checkpoint before any save or restore.)
      item_handlers={"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()},
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False),
    )

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def step_directory(self, step: int) -> str:
    return os.path.join(self.directory, str(int(step)))

  def save(self, step: int, state: Any, *, elapsed_s: float, data_state: Any, extra: dict | None = None) -> None:
    """Writes checkpoint `step` and its checksums; older ones beyond `max_to_keep` are then deleted.

    Raises:
      OSError (ENOSPC): the disk has not room for it, found before anything is written. (Orbax, failing halfway
        through a write, would leave a partial checkpoint and a thousand lines of TensorStore and asyncio errors.)
    """
    self._check_free_space(step, state)
    meta = {"step": int(step), "elapsed_s": float(elapsed_s), "data_state": _encode(data_state), **(extra or {})}
    args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
    with _quiet_failed_reads(), _orbax_errors_logged_at_debug():
      try:
        self.manager.save(int(step), args=args, force=True)
        self.manager.wait_until_finished()  # (all processes have written their part; process 0 has finalized it)
      except Exception as e:  # pylint: disable=broad-except  (TensorStore raises plain Exceptions)
        log.debug("saving checkpoint %d failed", step, exc_info=True)
        time.sleep(0.2)  # (as in `_attempt`: the writes still in flight land while their complaints are dropped)
        code, why = _os_error(e)
        raise OSError(
          code,
          f"writing checkpoint {step} in {self.directory} failed: {why} (orbax left its partial copy in a "
          "*.orbax-checkpoint-tmp directory, which it ignores; the run resumes from its last checkpoint)",
        ) from e
    if jax.process_index() == 0:
      write_checksums(self.step_directory(step))

  def _check_free_space(self, step: int, state: Any) -> None:
    need = sum(x.nbytes for x in jax.tree.leaves(state) if hasattr(x, "nbytes")) // jax.process_count()
    need = int(need * 1.05) + (1 << 20)  # (the format's own bytes: metadata, indexes, checksums)
    free = shutil.disk_usage(self.directory).free
    if free < need:
      raise OSError(
        errno.ENOSPC,
        f"No space left on device for checkpoint {step} in {self.directory}: it needs about {need / 2**20:,.0f} MiB, "
        f"{free / 2**20:,.0f} MiB are free. Free some space (or lower config.checkpoint.max_to_keep) and rerun: the "
        "run resumes from its last checkpoint",
      )

  def restore(self, abstract_state: Any, step: Optional[int] = None) -> tuple[Any, dict]:
    """Restores the latest (or given) checkpoint into the structure of `abstract_state`, without falling back.

    Returns:
      `(state, meta)` with `meta["data_state"]` decoded.
    Raises:
      FileNotFoundError: there is no checkpoint (or none of that step).
      IncompatibleWorkdirError: the checkpoint's state does not fit `abstract_state`.
      DamagedCheckpointError: the checkpoint is damaged (it is left where it is).
    """
    step = self.latest_step() if step is None else int(step)
    if step is None or step not in self.manager.all_steps():
      raise FileNotFoundError(f"no checkpoint{'' if step is None else f' {step}'} in {self.directory}")
    restored, reason = self._attempt(step, abstract_state, check_finite=False)
    if reason is not None:
      raise DamagedCheckpointError(f"checkpoint {step} in {self.directory} is damaged ({reason})")
    return restored

  def restore_latest(self, abstract_state: Any) -> Optional[tuple[Any, dict, int]]:
    """Restores the newest intact checkpoint into the structure of `abstract_state`.

    Newer damaged checkpoints (see `verify`; or orbax fails to read them, or their state holds non-finite values)
    are moved to `WORKDIR/checkpoints_damaged/<step>` once an intact one has been restored, with one warning each.

    Returns:
      `(state, meta, step)` (`meta["data_state"]` decoded), or None if there is no checkpoint.
    Raises:
      IncompatibleWorkdirError: a checkpoint's state does not fit `abstract_state` (nothing is moved).
      DamagedCheckpointError: every checkpoint is damaged (nothing is moved, so the run does not start over).
    """
    steps = sorted(self.manager.all_steps(), reverse=True)
    if not steps:
      return None
    damaged = []
    for step in steps:
      restored, reason = self._attempt(step, abstract_state, check_finite=True)
      if reason is None:
        for bad, why in damaged if jax.process_index() == 0 else ():
          dest = self._move_aside(bad)
          log.warning(
            "checkpoint %d in %s is damaged (%s); fell back to checkpoint %d and moved it to %s",
            bad,
            self.directory,
            why,
            step,
            dest,
          )
        if damaged:
          sharding.sync("checkpoint_moved_aside")
          self.manager.reload()
        return (*restored, step)
      damaged.append((step, reason))
    raise DamagedCheckpointError(
      f"every checkpoint in {self.directory} is damaged: "
      + "; ".join(f"{step} ({reason})" for step, reason in damaged)
      + f". Nothing was moved; move them out of {self.directory} to start the run over."
    )

  def _attempt(self, step: int, abstract_state: Any, check_finite: bool) -> tuple[Any, Optional[str]]:
    """`((state, meta), None)`, or `(None, why)` if checkpoint `step` is damaged (the same on every process)."""
    step_dir = self.step_directory(step)
    verified = has_checksums(step_dir)
    reason = verify(step_dir)
    if reason is None and not verified:
      log.warning("checkpoint %d in %s has no %s; restoring it unverified", step, self.directory, CHECKSUMS)
    if _any_process(reason is not None):  # (files that differ between processes' views of a shared file system)
      return None, reason or "damaged, as found by another process"
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
    try:  # (None without orbax's _METADATA, which its restore can do without)
      saved = self.manager.item_metadata(step)["state"]
    except Exception as e:  # pylint: disable=broad-except
      if not verified:  # (else the files are as saved: orbax's restore below says what is wrong)
        return None, f"state metadata: {_one_line(e)}"
      saved = None
    mismatch = None if saved is None else _structure_mismatch(saved.tree, target)
    if mismatch is not None:  # (the same files on every process: all raise)
      raise IncompatibleWorkdirError(
        f"checkpoint {step} in {self.directory} does not fit this run's model/optimizer state: {mismatch}"
      )
    with _quiet_failed_reads():
      try:
        restored = self.manager.restore(
          step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore())
        )
        meta = dict(restored["meta"])
        meta["data_state"] = _decode(meta["data_state"])
        restored = (restored["state"], meta)
      except Exception as e:  # pylint: disable=broad-except  (TensorStore raises plain Exceptions)
        log.debug("restoring checkpoint %d failed", step, exc_info=True)
        time.sleep(0.2)  # (lets the reads still in flight land while their complaints are dropped; damage is rare)
        reason = _one_line(e)
        if verified:  # its files are as saved: not damage, but a state that does not fit or trouble elsewhere
          if isinstance(e, (ValueError, KeyError, TypeError)):
            raise IncompatibleWorkdirError(
              f"checkpoint {step} in {self.directory} does not fit this run's model/optimizer state: {reason}"
            ) from e
          raise RuntimeError(
            f"restoring checkpoint {step} in {self.directory} failed though its files match their checksums: {reason}"
          ) from e
        if jax.process_count() > 1:
          # Each process reads its own part: the others may be waiting in orbax's barrier, which ends when this
          # process exits. (Checkpoints with checksums are judged before reading, the same on every process.)
          raise DamagedCheckpointError(
            f"checkpoint {step} in {self.directory} is damaged ({reason}, found by process {jax.process_index()}); "
            f"it has no {CHECKSUMS}, so the processes cannot fall back together: move it out of {self.directory}"
          ) from None
        return None, reason
    if check_finite and not all_finite(restored[0]):  # (one reduction over the global arrays: the same everywhere)
      return None, "non-finite values in the state"
    return restored, None

  def _move_aside(self, step: int) -> str:
    """Moves checkpoint `step` to `WORKDIR/checkpoints_damaged/<step>` (`<step>.1`, ... if taken); process 0 only."""
    os.makedirs(self.damaged_directory, exist_ok=True)
    dest, n = os.path.join(self.damaged_directory, str(step)), 0
    while os.path.exists(dest):
      n += 1
      dest = os.path.join(self.damaged_directory, f"{step}.{n}")
    os.replace(self.step_directory(step), dest)
    return dest

  def close(self) -> None:
    self.manager.close()
