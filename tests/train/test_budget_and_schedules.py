"""The budget parser and clock, and the progress-driven schedules."""

import math

import ml_collections
import pytest

from came_jax.train import budget, schedules


@pytest.mark.parametrize("text,seconds", [
    ("90s", 90.0), ("10m", 600.0), ("24h", 86400.0), ("1.5h", 5400.0), ("2d", 172800.0), ("45", 45.0),
    (30, 30.0), (0.5, 0.5), (" 7 min ", 420.0)])
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


def test_budget_triangle_is_crammings():
  f = schedules.budget_triangle
  assert f(0.0) == 0.25
  assert f(0.375) == pytest.approx(0.625)
  assert f(0.75) == pytest.approx(1.0)
  assert f(0.875) == pytest.approx(0.5)
  assert f(1.0) == 0.0
  assert f(2.0) == 0.0 and f(-1.0) == 0.25  # progress is clipped


def test_linear_cosine_constant_with_warmup():
  assert schedules.budget_linear(0.05, warmup=0.1) == pytest.approx(0.5)
  assert schedules.budget_linear(0.1, warmup=0.1) == pytest.approx(1.0)
  assert schedules.budget_linear(0.55, warmup=0.1) == pytest.approx(0.5)
  assert schedules.budget_linear(1.0, warmup=0.1, end_factor=0.1) == pytest.approx(0.1)
  assert schedules.budget_cosine(0.1, warmup=0.1) == pytest.approx(1.0)
  assert schedules.budget_cosine(0.55, warmup=0.1) == pytest.approx(0.5)
  assert schedules.budget_cosine(1.0, warmup=0.1, end_factor=0.2) == pytest.approx(0.2)
  assert schedules.constant(0.02, warmup=0.04) == pytest.approx(0.5)
  assert schedules.constant(0.5, warmup=0.04) == 1.0


def test_make_lr_schedule_scales_the_peak():
  cfg = ml_collections.ConfigDict(dict(name="budget-triangle", start_factor=0.25, peak_at=0.75, warmup=0.0,
                                       end_factor=0.0, progress="auto"))
  lr = schedules.make_lr_schedule(cfg, 1e-3)
  assert lr(0.0) == pytest.approx(2.5e-4) and lr(0.75) == pytest.approx(1e-3) and lr(1.0) == 0.0
  cfg.name = "nope"
  with pytest.raises(ValueError, match="config.schedule.name"):
    schedules.make_lr_schedule(cfg, 1e-3)


def test_batch_ramp_grows_one_micro_batch_at_a_time():
  counts = [schedules.num_micro_batches(p / 100, 64, 0.6) for p in range(101)]
  assert counts[0] == 1 and counts[-1] == 64 and counts[60] == 64
  assert all(b >= a for a, b in zip(counts, counts[1:]))
  assert schedules.num_micro_batches(0.3, 64, 0.6) == 1 + math.floor(0.5 * 64)
  assert schedules.num_micro_batches(0.0, 8, 0.0) == 8  # no ramp


def test_peak_flops_table_and_mfu():
  from came_jax.train import metrics  # pylint: disable=g-import-not-at-top
  assert metrics.peak_flops("NVIDIA H100 80GB HBM3") == 989e12
  assert metrics.peak_flops("NVIDIA H100 PCIe") == 756e12
  assert metrics.peak_flops("NVIDIA A100-SXM4-40GB") == 312e12
  assert metrics.peak_flops("NVIDIA L4") == 121e12 and metrics.peak_flops("NVIDIA L40S") is None
  assert metrics.peak_flops("Tesla T4") == 65e12 and metrics.peak_flops("NVIDIA GeForce RTX 4090") == 165.2e12
  assert metrics.peak_flops("NVIDIA RTX A6000") == 154.8e12 and metrics.peak_flops("TPU v5 lite") == 197e12
  assert metrics.peak_flops("cpu") is None
  assert metrics.mfu(1000.0, 1e9) is None  # on this CPU: 'n/a'

  class Gpu:
    device_kind = "NVIDIA A100-SXM4-80GB"

  assert metrics.mfu(156e3, 1e9, devices=[Gpu()]) == pytest.approx(0.5)


def test_progress_line_shows_remaining_budget():
  from came_jax.train import metrics  # pylint: disable=g-import-not-at-top
  row = {"step": 120, "loss": 5.2312, "accuracy": 0.118, "learning_rate": 9.4e-4, "batch_size": 64,
         "tokens_per_sec": 12345.0, "mfu": "n/a", "elapsed_s": 45.0, "remaining_s": 45.0}
  line = metrics.progress_line(row, budget_s=90.0, max_steps=0)
  assert line.startswith("step 120 | loss 5.2312 | acc 0.118 | lr 9.40e-04 | bs 64 | 12.3k tok/s | MFU n/a")
  assert "45.0s (45.0s left)" in line and "50%" in line
