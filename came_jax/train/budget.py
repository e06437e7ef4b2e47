"""The training budget: parse "90s|10m|24h" and a Chrono-like clock that excludes pauses.

Cramming (Geiping & Goldstein, 2022) measures a fixed wall-clock budget that starts once data and model are
set up and includes compilation; evaluation and checkpointing are paused out. `BudgetClock` does that, and its
`elapsed` is saved in checkpoints so a resumed run continues its budget (and every time-driven schedule).
"""

from __future__ import annotations

import contextlib
import re
import time
from typing import Callable, Iterator, Optional

_UNITS = {"": 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_BUDGET_RE = re.compile(r"^\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+))\s*([a-z]*)\s*$")


def parse_budget(budget: str | float | int) -> float:
  """Returns a budget in seconds: `90`, `"90s"`, `"10m"`, `"1.5h"`, `"24h"`, `"1d"`.

  >>> parse_budget("90s"), parse_budget("1.5h"), parse_budget(600)
  (90.0, 5400.0, 600.0)

  Raises:
    ValueError: naming `budget`, for an unparsable or non-positive value.
  """
  if isinstance(budget, (int, float)) and not isinstance(budget, bool):
    seconds = float(budget)
  else:
    match = _BUDGET_RE.match(str(budget).lower())
    if not match or match.group(2) not in _UNITS:
      raise ValueError(f"config.budget={budget!r} is not a duration; use e.g. '90s', '10m' or '24h'.")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
  if not seconds > 0:
    raise ValueError(f"config.budget={budget!r} must be positive.")
  return seconds


def format_seconds(seconds: float) -> str:
  """`3725.2` -> `'1h02m05s'`; short forms under a minute (`'42.3s'`).

  >>> format_seconds(3725.2), format_seconds(125), format_seconds(42.26)
  ('1h02m05s', '2m05s', '42.3s')
  """
  seconds = max(0.0, float(seconds))
  if seconds < 60:
    return f"{seconds:.1f}s"
  s = int(round(seconds))
  h, rem = divmod(s, 3600)
  m, sec = divmod(rem, 60)
  return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s"


class BudgetClock:
  """Counts training seconds against a budget; `paused()` blocks exclude evaluation and checkpoint time.

  Args:
    budget_s: the budget in seconds.
    elapsed_s: seconds already spent (when resuming from a checkpoint).
    time_fn: a monotonic clock in seconds; tests inject a fake one.

  With a hand-driven clock in place of `time.monotonic`:

  >>> now = [0.0]
  >>> clock = BudgetClock(100.0, time_fn=lambda: now[0]).start()
  >>> now[0] = 30.0
  >>> with clock.paused():  # evaluation: 20 s that do not count
  ...   now[0] = 50.0
  >>> now[0] = 60.0
  >>> clock.elapsed, clock.remaining, clock.fraction, clock.paused_s, clock.exhausted()
  (40.0, 60.0, 0.4, 20.0, False)
  """

  def __init__(self, budget_s: float, elapsed_s: float = 0.0, time_fn: Optional[Callable[[], float]] = None):
    self.budget_s = float(budget_s)
    self._time = time_fn or time.monotonic
    self._spent = float(elapsed_s)  # seconds accumulated before the current running segment
    self._since: Optional[float] = None  # start of the current running segment, None while stopped
    self.paused_s = 0.0  # total time spent inside `paused()`, for reporting

  def start(self) -> "BudgetClock":
    if self._since is None:
      self._since = self._time()
    return self

  def stop(self) -> float:
    if self._since is not None:
      self._spent += self._time() - self._since
      self._since = None
    return self._spent

  @property
  def running(self) -> bool:
    return self._since is not None

  @property
  def elapsed(self) -> float:
    """Training seconds spent so far, pauses excluded."""
    return self._spent + (self._time() - self._since if self._since is not None else 0.0)

  @property
  def remaining(self) -> float:
    return max(0.0, self.budget_s - self.elapsed)

  @property
  def fraction(self) -> float:
    """Elapsed fraction of the budget, clipped to [0, 1]."""
    return min(1.0, max(0.0, self.elapsed / self.budget_s))

  def exhausted(self) -> bool:
    return self.elapsed >= self.budget_s

  @contextlib.contextmanager
  def paused(self) -> Iterator[None]:
    """Excludes the enclosed block (evaluation, checkpointing) from the budget."""
    was_running = self.running
    self.stop()
    t0 = self._time()
    try:
      yield
    finally:
      self.paused_s += self._time() - t0
      if was_running:
        self.start()
