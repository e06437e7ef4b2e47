"""The budget parser and clock."""

import pytest

from came_jax.train import budget


@pytest.mark.parametrize(
  "text,seconds",
  [
    ("90s", 90.0),
    ("10m", 600.0),
    ("24h", 86400.0),
    ("1.5h", 5400.0),
    ("2d", 172800.0),
    ("45", 45.0),
    (30, 30.0),
    (0.5, 0.5),
    (" 7 min ", 420.0),
  ],
)
def test_parse_budget(text, seconds):
  assert budget.parse_budget(text) == seconds


@pytest.mark.parametrize("bad", ["-5m", "0s", "ten minutes", "5 parsecs", "", "h", 0, -1.0])
def test_parse_budget_rejects(bad):
  with pytest.raises(ValueError, match="config.budget"):
    budget.parse_budget(bad)


def test_format_seconds():
  assert budget.format_seconds(42.25) == "42.2s"
  assert budget.format_seconds(125) == "2m05s"
  assert budget.format_seconds(3725) == "1h02m05s"


class FakeTime:
  def __init__(self):
    self.now = 100.0

  def __call__(self):
    return self.now


def test_clock_excludes_pauses_and_resumes_elapsed():
  t = FakeTime()
  clock = budget.BudgetClock(60.0, time_fn=t)
  assert clock.elapsed == 0 and not clock.running
  t.now += 5  # setup before start: not counted
  clock.start()
  t.now += 10
  assert clock.elapsed == 10 and clock.fraction == pytest.approx(10 / 60)
  with clock.paused():
    t.now += 1000  # evaluation / checkpoint
  assert clock.elapsed == 10 and clock.paused_s == 1000 and clock.running
  t.now += 50
  assert clock.exhausted() and clock.remaining == 0 and clock.fraction == 1.0
  assert clock.stop() == 60
  resumed = budget.BudgetClock(90.0, elapsed_s=60.0, time_fn=t).start()
  t.now += 3
  assert resumed.elapsed == 63 and resumed.remaining == 27
