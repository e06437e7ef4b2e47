"""experiments/compare_optimizers.py end to end at a tiny setting (the launcher, as a user runs it).

The run is configs/compare_bert.py shrunk to seconds: CAME and AdamW (each optimizer and batch size costs a
compilation; Adafactor goes through the same registry path), a two-rate sweep for CAME (one rate for AdamW: no
sweep), two seeds, a few steps of a tiny BERT at sequence 32. The large-batch outputs (two batch sizes) are
checked on synthetic records in test_report.py.
"""

import csv
import json
import math
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_comparison(shared_data, tmp_path_factory):
  """Runs the launcher once; returns (out folder, summary, runs.csv rows, curves.csv rows, its log)."""
  tmp = tmp_path_factory.mktemp("compare")
  out, workdir = tmp / "out", tmp / "work"
  overrides = {
    "optimizers": "('came','adamw')",
    "steps": 4,
    "seeds": "(0,1)",
    "batch_sizes": "(4,)",
    "sweep.steps": 2,
    "sweep.seed": 7,
    "sweep.extend": 1,
    "learning_rates.came": "(1e-4,1e-3)",
    "learning_rates.adamw": "(1e-2,)",
    "pretrain.data.path": shared_data / "corpus" / "state_union",
    "pretrain.data.eval_path": shared_data / "heldout" / "wikitext-103" / "wiki.valid.tokens",
    "pretrain.data.cache_dir": tmp / "cache",
    "pretrain.data.seq_len": 32,
    "pretrain.data.batch_size": 4,
    "pretrain.data.eval_batches": 1,
    "pretrain.data.tokenizer_sentences": 3000,
    "pretrain.data.prefetch": 0,
    "pretrain.log_every_steps": 1,
    "pretrain.eval.every_steps": 2,
  }
  cmd = [
    sys.executable,
    "-m",
    "experiments.compare_optimizers",
    "--config",
    "configs/compare_bert.py",
    "--workdir",
    str(workdir),
    "--out",
    str(out),
    *(f"--config.{k}={v}" for k, v in overrides.items()),
  ]
  proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-4000:]
  summary = json.loads((out / "summary.json").read_text())
  with open(out / "runs.csv") as f:
    runs = list(csv.DictReader(f))
  with open(out / "curves.csv") as f:
    curves = list(csv.DictReader(f))
  return out, summary, runs, curves, proc.stderr


def test_writes_every_output(tiny_comparison):
  out, summary, _, _, log = tiny_comparison
  for name in (
    "runs.csv",
    "curves.csv",
    "summary.json",
    "results.md",
    "curves_step.png",
    "curves_time.png",
    "curves_log_step.png",
    "memory.png",
    "sweep.png",
  ):
    assert (out / name).stat().st_size > 0, name
  assert (out / "curves_step.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert "Done in" in log
  results = (out / "results.md").read_text()
  for opt in ("came", "adamw"):
    assert f"| 4 | {opt} |" in results
  assert "Learning-rate sweep" in results and "Optimizer state" in results
  assert summary["command"].startswith("python -m experiments.compare_optimizers --config configs/compare_bert.py")


def test_runs_are_equal_in_steps_and_tokens(tiny_comparison):
  _, summary, runs, _, _ = tiny_comparison
  full = [r for r in runs if r["phase"] == "full"]
  assert len(full) == 2 * 2  # optimizers x seeds
  assert {int(r["steps"]) for r in full} == {4}
  assert {int(r["tokens_seen"]) for r in full} == {4 * 4 * 32}  # steps x sequences x sequence length
  assert summary["results"]["4/came"]["tokens_seen"] == summary["results"]["4/adamw"]["tokens_seen"]


def test_sweep_keeps_the_rate_with_the_lowest_heldout_loss(tiny_comparison):
  _, summary, runs, _, _ = tiny_comparison
  sweep = [r for r in runs if r["phase"] == "sweep"]
  assert {int(r["seed"]) for r in sweep} == {7} and {int(r["steps"]) for r in sweep} == {2}
  # Only CAME has two rates; the best of two is at an end, so the grid went on one step (x10) past it.
  rates = sorted(float(r["learning_rate"]) for r in sweep)
  assert rates in ([1e-5, 1e-4, 1e-3], [1e-4, 1e-3, 1e-2]), rates
  best = min(sweep, key=lambda r: float(r["heldout_loss"]))
  chosen = summary["results"]["4/came"]
  assert chosen["learning_rate"] == float(best["learning_rate"])
  assert sorted(chosen["grid"]) == rates
  assert chosen["at_grid_edge"] in (None, "lowest", "highest")
  full = [r for r in runs if r["phase"] == "full" and r["optimizer"] == "came"]
  assert {float(r["learning_rate"]) for r in full} == {chosen["learning_rate"]}
  assert summary["results"]["4/adamw"]["learning_rate"] == 1e-2  # one rate: kept without a sweep


def test_curves_cover_every_run_and_seed_spread(tiny_comparison):
  _, summary, runs, curves, _ = tiny_comparison
  for r in runs:
    mine = [
      c
      for c in curves
      if (c["phase"], c["batch_size"], c["optimizer"], c["learning_rate"], c["seed"])
      == (r["phase"], r["batch_size"], r["optimizer"], r["learning_rate"], r["seed"])
    ]
    train = [int(c["step"]) for c in mine if c["split"] == "train"]
    assert train == list(range(1, int(r["steps"]) + 1))
    assert any(c["split"] == "heldout" for c in mine)
    assert all(float(c["elapsed_s"]) >= 0 for c in mine)
  agg = summary["results"]["4/adamw"]["heldout_loss"]
  assert agg["n"] == 2 and agg["min"] <= agg["mean"] <= agg["max"]
  mem = summary["memory"]
  assert mem["state_bytes"]["adamw"] == pytest.approx(2 * mem["param_bytes"], abs=256)  # + a few scalars
  assert mem["state_bytes"]["came"] < 1.1 * mem["param_bytes"]  # factored second moment + momentum
  assert set(mem["reference_state_bytes"]) >= {"Adam", "Adafactor", "CAME"}


def test_context_free_reference(tiny_comparison):
  out, summary, _, _, _ = tiny_comparison
  ref = summary["reference_loss"]
  assert 0 < ref < 1.2 * math.log(2048)  # the tiny BERT's 2048-piece vocabulary
  assert f"Context-free reference: held-out loss {ref:.4f}" in (out / "results.md").read_text()


def test_runs_are_recorded_and_their_checkpoints_removed(tiny_comparison):
  out, summary, runs, _, _ = tiny_comparison
  workdir = out.parent / "work"
  records = sorted(p.name for p in (workdir / "runs").iterdir())
  assert len(records) == len(runs) and all((workdir / "runs" / n / "record.json").is_file() for n in records)
  assert not any((workdir / "runs" / n / "checkpoints").exists() for n in records)  # deleted once recorded
