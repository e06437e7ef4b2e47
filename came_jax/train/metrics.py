"""Training metrics: MFU from a peak-FLOPs table, a JSONL + TensorBoard writer and its reader, the progress line.

TensorBoard goes through `tensorboardX`: a small, maintained, pure-Python writer of standard event files that
needs neither TensorFlow (which `flax.metrics.tensorboard` imports) nor clu (which is not installed here and
pulls TensorFlow too). `WORKDIR/metrics.jsonl` carries the same rows, one JSON object per log step; `read_rows`
reads them back.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pathlib
import re
import threading
from typing import Any, Optional

import jax

from came_jax.train.budget import format_seconds

# Dense (no sparsity) peak bf16/fp16 tensor FLOP/s per device. Matched as substrings of the lower-cased
# `jax.Device.device_kind`, first match wins (so the PCIe H100 comes before the SXM one).
PEAK_FLOPS = (
  ("h100 pcie", 756e12),
  ("h100", 989e12),
  ("h200", 989e12),
  ("a100", 312e12),
  ("a6000", 154.8e12),
  ("v100", 125e12),
  ("t4", 65e12),
  ("l4", 121e12),
  ("4090", 165.2e12),
  ("tpu v4", 275e12),
  ("tpu v5 lite", 197e12),
  ("tpu v5e", 197e12),
)


def peak_flops(device_kind: str) -> Optional[float]:
  """Peak FLOP/s of one device of this kind, or None (CPU and unknown devices: MFU is 'n/a').

  Names match as whole words, so an "L40S" is not taken for an "L4".
  """
  kind = device_kind.lower()
  if "cpu" in kind:
    return None
  for name, flops in PEAK_FLOPS:
    if re.search(rf"(?<![a-z0-9]){re.escape(name)}(?![a-z0-9])", kind):
      return flops
  return None


def mfu(tokens_per_sec: float, flops_per_token: float, devices: Optional[list] = None) -> Optional[float]:
  """Model FLOPs utilisation in [0, 1] of `devices` (default: the first device, which the trainer uses), or
  None where a peak is unknown."""
  devices = devices if devices is not None else jax.devices()[:1]
  peaks = [peak_flops(d.device_kind) for d in devices]
  if not peaks or any(p is None for p in peaks):
    return None
  return tokens_per_sec * flops_per_token / sum(peaks)


_compiles = 0
_listener_lock = threading.Lock()
_listening = False


def _on_event(event: str, duration: float, **kwargs) -> None:
  global _compiles
  if event == "/jax/core/compile/backend_compile_duration":
    _compiles += 1


def compile_count() -> int:
  """XLA backend compilations in this process since the first call (a `jax.monitoring` listener)."""
  global _listening
  with _listener_lock:
    if not _listening:
      jax.monitoring.register_event_duration_secs_listener(_on_event)
      _listening = True
  return _compiles


class MetricWriter:
  """Writes scalar rows to `WORKDIR/metrics.jsonl` and TensorBoard (`WORKDIR/tensorboard`)."""

  def __init__(self, workdir: str, tensorboard: bool = True, resume_step: Optional[int] = None):
    """`resume_step`: the step a run resumes from (0 for a fresh start). Rows logged past it by an earlier,
    interrupted process belong to a timeline that no longer exists: they are dropped from `metrics.jsonl` (and
    TensorBoard purges its events past it), so every step appears once and the file reads as one timeline."""
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "metrics.jsonl")
    if resume_step is not None:
      truncate_rows(path, resume_step)
    self._jsonl = open(path, "a", buffering=1)
    self._tb = None
    if tensorboard:
      try:
        from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      except ImportError:
        logging.getLogger(__name__).warning(
          "tensorboardX is not installed: no TensorBoard events (pip install tensorboardX); "
          "metrics.jsonl still has every row."
        )
      else:
        purge = None if resume_step is None else resume_step + 1
        self._tb = SummaryWriter(logdir=os.path.join(workdir, "tensorboard"), purge_step=purge)

  def write(self, step: int, row: dict[str, Any], prefix: str = "train") -> None:
    row = {"step": int(step), "split": prefix, **row}
    self._jsonl.write(json.dumps(row, default=_json_default) + "\n")
    if self._tb is not None:
      for k, v in row.items():
        if k not in ("step", "split") and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
          self._tb.add_scalar(f"{prefix}/{k}", v, int(step))

  def flush(self) -> None:
    self._jsonl.flush()
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    self._jsonl.close()
    if self._tb is not None:
      self._tb.close()


def read_rows(workdir: str | os.PathLike) -> list[dict[str, Any]]:
  """The rows a `MetricWriter` wrote to `WORKDIR/metrics.jsonl`, in order, each with its `split`.

  Rows of runs from before the writer recorded `split` get one back: a row with `tokens_per_sec` is a training
  row (`"train"`), any other a held-out one (`"heldout"`).

  Args:
    workdir: the run directory (`train_and_evaluate`'s `workdir`).

  Returns:
    One dict per line: `step`, `split` and the logged scalars (`loss`, `learning_rate`, `elapsed_s`, ...).

  Raises:
    FileNotFoundError: when the run has not logged anything yet.

  Example:
    >>> import tempfile
    >>> workdir = tempfile.mkdtemp()
    >>> writer = MetricWriter(workdir, tensorboard=False)
    >>> writer.write(10, {"loss": 2.5, "tokens_per_sec": 1e4})
    >>> writer.write(10, {"loss": 2.75}, prefix="heldout")
    >>> writer.close()
    >>> [(r["step"], r["split"], r["loss"]) for r in read_rows(workdir)]
    [(10, 'train', 2.5), (10, 'heldout', 2.75)]
  """
  rows = []
  for line in pathlib.Path(workdir, "metrics.jsonl").read_text().splitlines():
    row = json.loads(line)
    row.setdefault("split", "train" if "tokens_per_sec" in row else "heldout")
    rows.append(row)
  return rows


def truncate_rows(path: str | os.PathLike, last_step: int) -> int:
  """Drops the rows of `path` (a `metrics.jsonl`) whose step is past `last_step`, atomically; returns how many.

  A line that does not parse (a process killed mid-write) is dropped too.

  >>> import tempfile
  >>> path = os.path.join(tempfile.mkdtemp(), "metrics.jsonl")
  >>> _ = pathlib.Path(path).write_text('{"step": 10}\\n{"step": 20}\\n{"step": 30}\\n{"ste')
  >>> truncate_rows(path, 20), [json.loads(line)["step"] for line in open(path)]
  (2, [10, 20])
  """
  if not os.path.exists(path):
    return 0
  kept, dropped = [], 0
  for line in pathlib.Path(path).read_text().splitlines():
    try:
      keep = int(json.loads(line)["step"]) <= last_step
    except (ValueError, KeyError, TypeError):
      keep = False
    if keep:
      kept.append(line + "\n")
    else:
      dropped += 1
  if dropped:
    with open(f"{path}.tmp", "w") as f:
      f.writelines(kept)
    os.replace(f"{path}.tmp", path)
  return dropped


class NullWriter:
  """A `MetricWriter` that writes nothing (processes other than the first)."""

  def write(self, step: int, row: dict[str, Any], prefix: str = "train") -> None:
    del step, row, prefix

  def flush(self) -> None:
    pass

  def close(self) -> None:
    pass


def _json_default(x):
  try:
    return float(x)
  except (TypeError, ValueError):
    return str(x)


def progress_line(row: dict[str, Any], budget_s: float, max_steps: int) -> str:
  """`step 120/400 | loss 5.231 | acc 0.118 | lr 9.4e-04 | 12.3k tok/s | MFU n/a | 45.0s (45.0s left) [####----]`."""
  parts = [f"step {row['step']}" + (f"/{max_steps}" if max_steps else "")]
  parts.append(f"loss {row['loss']:.4f}")
  if "accuracy" in row:
    parts.append(f"acc {row['accuracy']:.3f}")
  parts.append(f"lr {row['learning_rate']:.2e}")
  parts.append(f"bs {row['batch_size']}")
  tps = row["tokens_per_sec"]
  parts.append(f"{tps / 1e3:.1f}k tok/s" if tps >= 1e3 else f"{tps:.0f} tok/s")
  m = row.get("mfu")
  parts.append(f"MFU {m * 100:.1f}%" if isinstance(m, float) else "MFU n/a")
  if row.get("nonfinite_total"):
    parts.append(f"skipped {row['nonfinite_total']}")
  frac = row["elapsed_s"] / budget_s
  if max_steps:
    frac = max(frac, row["step"] / max_steps)
  frac = min(1.0, frac)
  bar = "#" * int(round(frac * 20))
  parts.append(
    f"{format_seconds(row['elapsed_s'])} ({format_seconds(row['remaining_s'])} left) [{bar:<20}] {frac * 100:3.0f}%"
  )
  return " | ".join(parts)
