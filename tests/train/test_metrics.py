"""Peak FLOP/s per device kind and MFU; the progress line."""

import pytest

from came_jax.train import metrics


def test_peak_flops_table_and_mfu():
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
  row = {
    "step": 120,
    "loss": 5.2312,
    "accuracy": 0.118,
    "learning_rate": 9.4e-4,
    "batch_size": 64,
    "tokens_per_sec": 12345.0,
    "mfu": "n/a",
    "elapsed_s": 45.0,
    "remaining_s": 45.0,
  }
  line = metrics.progress_line(row, budget_s=90.0, max_steps=0)
  assert line.startswith("step 120 | loss 5.2312 | acc 0.118 | lr 9.40e-04 | bs 64 | 12.3k tok/s | MFU n/a")
  assert "45.0s (45.0s left)" in line and "50%" in line
