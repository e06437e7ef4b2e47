"""Checkpoints (orbax `CheckpointManager`) and the workdir's run identity.

A checkpoint holds two items: `state` (the `TrainState` pytree: params, optimizer state, step, base RNG,
non-finite counters) and `meta` (JSON: elapsed budget seconds, the data iterator's position, tokens seen).
Saves are synchronous: they happen inside the budget clock's pauses, and a checkpoint on disk is complete
once `save` returns, so a run killed at any moment after it resumes from it exactly.

`WORKDIR/run_config.json` records the config of the run that owns the workdir, written once setup has succeeded
(so a run that failed on, say, a wrong data path can be fixed and restarted in the same workdir). A later start
whose model, optimizer, schedule, data or batch settings differ is refused (`IncompatibleWorkdirError`); the
budget, `max_steps`, intervals and evaluation settings may change between a run and its resumption.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
from typing import Any, Optional

import jax
import ml_collections
import orbax.checkpoint as ocp

# Config keys that define a run: a workdir holding a run that differs in any of them is refused.
COMPAT_KEYS = ("model", "optimizer", "schedule", "data", "batch_size", "batch_ramp", "seed")
# ... except these, which only say where caches are or how evaluation and prefetching run.
NOT_COMPAT = ("data.eval_path", "data.eval_batches", "data.prefetch", "data.cache_dir")
RUN_CONFIG = "run_config.json"


class IncompatibleWorkdirError(ValueError):
  """The workdir belongs to a different run; nothing in it was touched."""


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


class Checkpointer:
  """Saves and restores `(TrainState, meta)` under `WORKDIR/checkpoints/<step>`."""

  def __init__(self, workdir: str, max_to_keep: int = 2):
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self.manager = ocp.CheckpointManager(
      self.directory,
      item_names=("state", "meta"),
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False),
    )

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def save(self, step: int, state: Any, *, elapsed_s: float, data_state: Any, extra: dict | None = None) -> None:
    meta = {"step": int(step), "elapsed_s": float(elapsed_s), "data_state": _encode(data_state), **(extra or {})}
    self.manager.save(
      int(step), args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True
    )
    self.manager.wait_until_finished()

  def restore(self, abstract_state: Any, step: Optional[int] = None) -> tuple[Any, dict]:
    """Restores the latest (or given) checkpoint into the structure of `abstract_state`.

    Returns:
      `(state, meta)` with `meta["data_state"]` decoded.
    """
    step = self.latest_step() if step is None else step
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
    try:
      restored = self.manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore())
      )
    except (ValueError, KeyError, TypeError) as e:
      raise IncompatibleWorkdirError(
        f"checkpoint {step} in {self.directory} does not fit this run's model/optimizer state: {e}"
      ) from e
    meta = dict(restored["meta"])
    meta["data_state"] = _decode(meta["data_state"])
    return restored["state"], meta

  def close(self) -> None:
    self.manager.close()
