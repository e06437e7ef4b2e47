"""Stopping on SIGTERM and SIGINT at a step boundary, so that a preempted run checkpoints before it goes.

Slurm, Kubernetes and cloud preemption send SIGTERM and wait a grace period before SIGKILL; Ctrl-C sends SIGINT.
Inside `StopSignals`, the first of either only records itself (`signum`); the training loop reads it between steps,
lets the step in flight finish, checkpoints and exits. The handler also restores the default action at once, so a
second signal ends the process immediately, even while the main thread is blocked in a compilation or a device
wait (where Python handlers cannot run).

>>> import os, signal
>>> before = signal.getsignal(signal.SIGTERM)
>>> with StopSignals() as stop:
...   os.kill(os.getpid(), signal.SIGTERM)
...   stop.name
'SIGTERM'
>>> signal.getsignal(signal.SIGTERM) is before  # the handler in place before is back
True
"""

from __future__ import annotations

import signal
import threading
from typing import Optional

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(RuntimeError):
  """The run stopped on a signal after checkpointing; the same command resumes it."""

  def __init__(self, message: str, signum: int):
    super().__init__(message)
    self.signum = signum
    self.exit_code = 128 + signum  # the shell's convention for death by a signal: 143 for SIGTERM, 130 for SIGINT


class StopSignals:
  """Records the first SIGTERM/SIGINT while active (`signum`, `name`); restores the previous handlers on exit.

  Outside the main thread (where Python cannot install handlers) it records nothing and changes nothing.
  """

  def __init__(self, signals=SIGNALS):
    self.signals = tuple(signals)
    self.signum: Optional[int] = None
    self._previous: dict[int, object] = {}

  @property
  def name(self) -> Optional[str]:
    return None if self.signum is None else signal.Signals(self.signum).name

  def _handle(self, signum, frame) -> None:
    del frame
    if self.signum is None:
      self.signum = signum
    for s in self.signals:  # a second signal: the default action, at once
      signal.signal(s, signal.SIG_DFL)

  def __enter__(self) -> "StopSignals":
    if threading.current_thread() is threading.main_thread():
      for s in self.signals:
        self._previous[s] = signal.signal(s, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    self._previous.clear()
