"""The progress-driven schedules: learning-rate shapes and the batch ramp."""

import math

import ml_collections
import pytest

from came_jax.train import schedules


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
  cfg = ml_collections.ConfigDict(
    dict(name="budget-triangle", start_factor=0.25, peak_at=0.75, warmup=0.0, end_factor=0.0, progress="auto")
  )
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
