"""The throughput probes (`build_rate`, `measure_throughput`) and their launcher,
`experiments/bench_input_pipeline.py`."""

import math
import pathlib
import subprocess
import sys

from came_jax.data import pipeline
from came_jax.data.throughput import build_rate, measure_throughput


def test_throughput_probes(inaugural, tokenizer, tmp_path):
  """`build_rate` leaves the position alone; `measure_throughput` consumes warm-up + timed batches."""
  it = pipeline.pretrain_iterator(
    inaugural, tokenizer, seq_len=128, batch_size=32, objective="mlm", seed=0, cache_dir=tmp_path / "cache", prefetch=2
  )
  built = build_rate(it, num_batches=4)
  assert it.get_state()["step"] == 0 and math.isfinite(built) and built > 0
  fetched = measure_throughput(it, num_batches=20, warmup=2)
  assert it.get_state()["step"] == 22 and math.isfinite(fetched) and fetched > 0
  it.close()
  print(f"pipeline (MLM, B=32, T=128): {built:,.0f} tokens/s in one thread, {fetched:,.0f} prefetched")


def test_bench_input_pipeline_launcher(shared_data, tmp_path):
  """`experiments/bench_input_pipeline.py` on a config, as a user runs it: a table of both rates."""
  repo = pathlib.Path(__file__).resolve().parents[2]
  cmd = [
    sys.executable,
    "-m",
    "experiments.bench_input_pipeline",
    "--config",
    "configs/bert_cramming.py:tiny",
    f"--config.data.path={shared_data / 'corpus' / 'state_union'}",
    "--config.data.tokenizer_sentences=3000",
    f"--config.data.cache_dir={tmp_path / 'cache'}",
    "--workdir",
    str(tmp_path / "work"),
    "--batches",
    "3",
  ]
  proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "| one thread building batches (`build_rate`) |" in proc.stdout
  assert "mlm, 16 x 128 tokens per batch, 3 batches" in proc.stdout
