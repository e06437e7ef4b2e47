"""came_jax.compare.report: the tables and files of a comparison with two batch sizes, from synthetic records."""

import csv
import math
import pathlib

import pytest

from came_jax import config_files
from came_jax.compare import pretraining, report, runs

REPO = pathlib.Path(__file__).resolve().parents[2]


def _fake_record(phase, b, opt, lr, seed, heldout, steps=100):
  curves = [
    {
      "split": "train",
      "step": s,
      "loss": heldout + 1 - s / steps,
      "accuracy": 0.1,
      "elapsed_s": s / 10,
      "tokens_seen": s * b * 128,
    }
    for s in range(10, steps + 1, 10)
  ]
  curves += [
    {
      "split": "heldout",
      "step": s,
      "loss": heldout + (steps - s) / steps,
      "accuracy": 0.1,
      "perplexity": math.exp(heldout),
      "elapsed_s": s / 10,
    }
    for s in (50, steps)
  ]
  return {
    "phase": phase,
    "batch_size": b,
    "optimizer": opt,
    "learning_rate": lr,
    "seed": seed,
    "steps": steps,
    "tokens_seen": steps * b * 128,
    "diverged": False,
    "heldout_loss": heldout,
    "heldout_accuracy": 0.1,
    "heldout_perplexity": math.exp(heldout),
    "final_train_loss": heldout - 0.2,
    "final_train_accuracy": 0.1,
    "train_s": 10.0,
    "wall_s": 12.0,
    "tokens_per_sec": 1000.0,
    "curves": curves,
  }


def test_large_batch_outputs_from_records(tmp_path):
  """Two batch sizes: the per-batch tables, the change from the small batch, the batch-size figure."""
  config = config_files.load(REPO / "configs" / "compare_bert.py", "large_batch")
  assert tuple(config.batch_sizes) == (16, 64) and config.steps == 200
  loss = {
    ("came", 16): 6.0,
    ("adamw", 16): 6.1,
    ("adafactor", 16): 6.2,
    ("came", 64): 5.5,
    ("adamw", 64): 5.9,
    ("adafactor", 64): 5.8,
  }
  records, chosen = [], {}
  for b in (16, 64):
    for opt in config.optimizers:
      grid = tuple(config.learning_rates[opt])
      sweep = [
        _fake_record("sweep", b, opt, lr, 0, loss[opt, b] + abs(i - 1) * 0.1, steps=40) for i, lr in enumerate(grid)
      ]
      records += sweep
      chosen[f"{b}/{opt}"] = runs.choose_rate(sweep, grid)
      records += [_fake_record("full", b, opt, grid[1], s, loss[opt, b] + 0.01 * s) for s in config.seeds]
  mem = pretraining.memory(config, vocab_size=2048)
  summary = pretraining.summarize(config, records, chosen, mem, wall_s=60.0)
  report.write_outputs(summary, records, tmp_path)
  for name in ("batch_sizes.png", "curves_step.png", "curves_time.png", "sweep.png", "memory.png"):
    assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG", name
  results = (tmp_path / "results.md").read_text()
  came_lr = f"{config.learning_rates.came[1]:g}"  # the fake sweeps favour each grid's second rate
  assert f"| 16 | came | {came_lr} | 0.20M | 6.0050 ± 0.0071 [6.0000, 6.0100]" in results
  assert f"| 64 | came | {came_lr} | 0.82M |" in results
  assert "6.1050 ± 0.0071 [6.1000, 6.1100] | +0.1000 [+0.1000, +0.1000] |" in results  # AdamW minus CAME, per seed
  assert summary["results"]["64/adafactor"]["paired_delta"]["mean"] == pytest.approx(0.3)
  assert "| came | 6.0050 | 5.5050 | -0.5000 |" in results  # the change from batch 16 to 64
  assert "| adamw | 6.1050 | 5.9050 | -0.2000 |" in results
  assert summary["results"]["64/adafactor"]["at_grid_edge"] is None
  runs_csv = list(csv.DictReader((tmp_path / "runs.csv").read_text().splitlines()))
  grids = sum(len(config.learning_rates[o]) for o in config.optimizers)
  assert len(runs_csv) == len(records) == 2 * (grids + 3 * 2)  # batch sizes x (sweep runs + optimizers x seeds)
  curves = list(csv.DictReader((tmp_path / "curves.csv").read_text().splitlines()))
  assert len(curves) == sum(len(r["curves"]) for r in records)
  assert set(curves[0]) == set(report.CURVE_FIELDS) and curves[0]["phase"] == "sweep"


def test_objective_decides_the_metric_columns():
  """MLM reports accuracies, causal LM perplexity, span corruption the train loss alone."""
  base = {
    "batch_size": 8,
    "optimizer": "came",
    "learning_rate": 1e-3,
    "at_grid_edge": "lowest",
    "tokens_seen": 1e6,
    "diverged": 1,
    **runs.aggregate([{"heldout_loss": 3.0, "heldout_perplexity": 20.0, "final_train_loss": 2.9, "diverged": True}]),
  }
  summary = {
    "model": "t5:tiny",
    "seq_len": 128,
    "steps": 10,
    "seeds": [0],
    "device": "cpu",
    "sweep_steps": 10,
    "batch_sizes": [8],
    "results": {"8/came": base},
    "config": {"optimizers": ["came"]},
    "memory": {
      "model": "t5:tiny",
      "param_bytes": 4e6,
      "state_bytes": {"came": 4e6},
      "reference_model": "T5-base (v1.1)",
      "reference_param_bytes": 4e8,
      "reference_state_bytes": {"CAME": 4e8},
    },
    "wall_s": 60.0,
    "run_wall_s": 60.0,
  }
  columns = {"mlm": "held-out MLM acc.", "causal": "held-out perplexity", "span": "train span loss"}
  for objective, column in columns.items():
    md = report.results_markdown({**summary, "objective": objective}, [])
    assert column in md and all(c not in md for c in columns.values() if c != column), objective
  md = report.results_markdown({**summary, "objective": "causal"}, [])
  assert "| 8 | came | 0.001 (grid lowest) | 1.00M | 3.0000 (1 diverged) | – | 20.0 | 2.9000 | – |" in md
  assert "Context-free reference" not in md and "Learning-rate sweep" not in md and "Batch size at" not in md
