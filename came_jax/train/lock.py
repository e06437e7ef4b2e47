"""One writer per workdir: `WorkdirLock` holds `WORKDIR/.lock` for a run's lifetime.

The lock is an exclusive `fcntl.flock` on the open file, which the kernel releases when the holding process exits in
any way (an exception, SIGTERM, SIGKILL, a crash): a lock left by a dead process is never in the way, and there is
no stale-lock cleanup to get wrong. The file itself stays, holding the last holder's pid, host and start time, which
a refused second run names. On network filesystems `flock` is as reliable as the filesystem's locking (NFSv4 and
Lustre with `flock` mounts support it).

>>> import tempfile
>>> workdir = tempfile.mkdtemp()
>>> with WorkdirLock(workdir):
...   try:
...     WorkdirLock(workdir).acquire()
...   except WorkdirBusyError as e:
...     print("refused:", "is in use by another run" in str(e))
refused: True
>>> WorkdirLock(workdir).acquire().release()  # free again once the holder let go
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from typing import Optional

LOCK_FILE = ".lock"


class WorkdirBusyError(RuntimeError):
  """Another live process holds the workdir; nothing in it was touched."""


class WorkdirLock:
  """An exclusive, non-blocking lock on `WORKDIR/.lock`, released by `release()`, on leaving a `with` block, or by
  the process's exit."""

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.path = os.path.join(workdir, LOCK_FILE)
    self._fd: Optional[int] = None

  def acquire(self) -> "WorkdirLock":
    """Takes the lock or raises `WorkdirBusyError` naming the holder (pid, host, start time)."""
    os.makedirs(self.workdir, exist_ok=True)
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = _read_holder(fd)
      os.close(fd)
      raise WorkdirBusyError(
        f"workdir {self.workdir!r} is in use by another run ({holder}); one run writes a workdir at a time: wait "
        "for it to end, stop it, or use another --workdir."
      ) from None
    except OSError:
      os.close(fd)
      raise
    record = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)
    self._fd = fd
    return self

  def release(self) -> None:
    if self._fd is not None:
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None

  def __enter__(self) -> "WorkdirLock":
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()


def _read_holder(fd: int) -> str:
  try:
    record = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    return f"pid {record['pid']} on {record['host']}, since {record['since']}"
  except (OSError, ValueError, KeyError):
    return "holder unknown"
