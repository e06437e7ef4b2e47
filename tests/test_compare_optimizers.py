"""experiments/compare_optimizers.py end to end at a tiny setting (the launcher, as a user runs it), and its parts.

The end-to-end run is configs/compare_bert.py shrunk to seconds: CAME and AdamW (each optimizer and batch size
costs a compilation; Adafactor goes through the same registry path), a two-rate sweep for CAME (one rate for
AdamW: no sweep), two seeds, a few steps of a tiny BERT at sequence 32. The large-batch outputs (two batch sizes)
are checked on synthetic records, written by the same functions.
"""

import csv
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from came_jax import config_files
from experiments import compare_optimizers
from experiments import compare_plots

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def tiny_comparison(shared_data, tmp_path_factory):
  """Runs the launcher once; returns (out folder, summary, runs.csv rows, curves.csv rows)."""
  tmp = tmp_path_factory.mktemp("compare")
  out, workdir = tmp / "out", tmp / "work"
  overrides = {
      "optimizers": "('came','adamw')", "steps": 4, "seeds": "(0,1)", "batch_sizes": "(4,)", "sweep.steps": 2,
      "sweep.seed": 7, "sweep.extend": 1,
      "learning_rates.came": "(1e-4,1e-3)", "learning_rates.adamw": "(1e-2,)",
      "pretrain.data.path": shared_data / "corpus" / "state_union",
      "pretrain.data.eval_path": shared_data / "heldout" / "wikitext-103" / "wiki.valid.tokens",
      "pretrain.data.cache_dir": tmp / "cache", "pretrain.data.seq_len": 32, "pretrain.data.batch_size": 4,
      "pretrain.data.eval_batches": 1, "pretrain.data.tokenizer_sentences": 3000, "pretrain.data.prefetch": 0,
      "pretrain.log_every_steps": 1, "pretrain.eval.every_steps": 2,
  }
  cmd = [sys.executable, "-m", "experiments.compare_optimizers", "--config", "configs/compare_bert.py",
         "--workdir", str(workdir), "--out", str(out), *(f"--config.{k}={v}" for k, v in overrides.items())]
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
  for name in ("runs.csv", "curves.csv", "summary.json", "results.md", "curves_step.png", "curves_time.png",
               "curves_log_step.png", "memory.png", "sweep.png"):
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
    mine = [c for c in curves if (c["phase"], c["batch_size"], c["optimizer"], c["learning_rate"], c["seed"])
            == (r["phase"], r["batch_size"], r["optimizer"], r["learning_rate"], r["seed"])]
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


def test_sweep_extends_past_an_end_while_the_best_rate_sits_there():
  loss = lambda lr: (math.log10(lr) + 4.2) ** 2  # best at 10**-4.2 ~ 6e-5, below the grid
  ran = []

  def run_rate(lr):
    ran.append(lr)
    return {"learning_rate": lr, "heldout_loss": loss(lr), "diverged": False}

  chosen = compare_optimizers.sweep_rates(run_rate, (1e-4, 3e-4, 1e-3), extend=2)
  assert ran == [1e-4, 3e-4, 1e-3, 3.33e-5]  # one step (the ratio of the two lowest rates) below: bracketed
  assert chosen["learning_rate"] == 1e-4 and chosen["at_grid_edge"] is None
  assert chosen["grid"] == [3.33e-5, 1e-4, 3e-4, 1e-3]

  ran.clear()
  diverges = lambda lr: {"learning_rate": lr, "heldout_loss": None if lr > 0.05 else -lr, "diverged": lr > 0.05}
  run_rate = lambda lr: ran.append(lr) or diverges(lr)
  chosen = compare_optimizers.sweep_rates(run_rate, (1e-3, 1e-2), extend=3)
  assert ran == [1e-3, 1e-2, 0.1]  # the step up diverged: 1e-2 is bracketed
  assert chosen["learning_rate"] == 1e-2 and chosen["at_grid_edge"] is None

  ran.clear()
  chosen = compare_optimizers.sweep_rates(lambda lr: ran.append(lr) or diverges(lr), (1e-4, 1e-3), extend=1)
  assert ran == [1e-4, 1e-3, 1e-2] and chosen["at_grid_edge"] == "highest"  # out of extensions: said


def test_runs_are_recorded_and_their_checkpoints_removed(tiny_comparison):
  out, summary, runs, _, _ = tiny_comparison
  workdir = out.parent / "work"
  records = sorted(p.name for p in (workdir / "runs").iterdir())
  assert len(records) == len(runs) and all((workdir / "runs" / n / "record.json").is_file() for n in records)
  assert not any((workdir / "runs" / n / "checkpoints").exists() for n in records)  # deleted once recorded


def _load_config(name, variant):
  return config_files.load(os.path.join(REPO, "configs", f"{name}.py"), variant)


def _fake_record(phase, b, opt, lr, seed, heldout, steps=100):
  curves = [{"split": "train", "step": s, "loss": heldout + 1 - s / steps, "accuracy": 0.1, "elapsed_s": s / 10,
             "tokens_seen": s * b * 128} for s in range(10, steps + 1, 10)]
  curves += [{"split": "heldout", "step": s, "loss": heldout + (steps - s) / steps, "accuracy": 0.1,
              "perplexity": math.exp(heldout), "elapsed_s": s / 10} for s in (50, steps)]
  return {"phase": phase, "batch_size": b, "optimizer": opt, "learning_rate": lr, "seed": seed, "steps": steps,
          "tokens_seen": steps * b * 128, "diverged": False, "heldout_loss": heldout, "heldout_accuracy": 0.1,
          "heldout_perplexity": math.exp(heldout), "final_train_loss": heldout - 0.2, "final_train_accuracy": 0.1,
          "train_s": 10.0, "wall_s": 12.0, "tokens_per_sec": 1000.0, "curves": curves}


def test_large_batch_outputs_from_records(tmp_path):
  """Two batch sizes: the per-batch tables, the change from the small batch, the batch-size figure."""
  config = _load_config("compare_bert", "large_batch")
  assert tuple(config.batch_sizes) == (16, 64) and config.steps == 200
  loss = {("came", 16): 6.0, ("adamw", 16): 6.1, ("adafactor", 16): 6.2,
          ("came", 64): 5.5, ("adamw", 64): 5.9, ("adafactor", 64): 5.8}
  records, chosen = [], {}
  for b in (16, 64):
    for opt in config.optimizers:
      grid = tuple(config.learning_rates[opt])
      sweep = [_fake_record("sweep", b, opt, lr, 0, loss[opt, b] + abs(i - 1) * 0.1, steps=40)
               for i, lr in enumerate(grid)]
      records += sweep
      chosen[f"{b}/{opt}"] = compare_optimizers.choose_rate(sweep, grid)
      records += [_fake_record("full", b, opt, grid[1], s, loss[opt, b] + 0.01 * s) for s in config.seeds]
  mem = compare_optimizers.memory(config, vocab_size=2048)
  summary = compare_optimizers.summarize(config, records, chosen, mem, wall_s=60.0)
  compare_optimizers.write_outputs(summary, records, tmp_path)
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
  runs = list(csv.DictReader((tmp_path / "runs.csv").read_text().splitlines()))
  grids = sum(len(config.learning_rates[o]) for o in config.optimizers)
  assert len(runs) == len(records) == 2 * (grids + 3 * 2)  # batch sizes x (sweep runs + optimizers x seeds)


def test_choose_rate_and_aggregate():
  rec = lambda lr, loss, diverged=False: {"learning_rate": lr, "heldout_loss": loss, "diverged": diverged}
  grid = (1e-3, 3e-3, 1e-2)
  chosen = compare_optimizers.choose_rate([rec(1e-3, 5.0), rec(3e-3, 4.0), rec(1e-2, None, True)], grid)
  assert chosen["learning_rate"] == 3e-3 and chosen["at_grid_edge"] is None
  chosen = compare_optimizers.choose_rate([rec(1e-3, 5.0), rec(3e-3, 4.5), rec(1e-2, 4.0)], grid)
  assert chosen["at_grid_edge"] == "highest"
  chosen = compare_optimizers.choose_rate([rec(1e-3, 4.0), rec(3e-3, 4.0), rec(1e-2, 4.0)], grid)
  assert chosen["learning_rate"] == 1e-3  # ties: the smaller rate

  records = [{m: None for m in compare_optimizers.METRICS} | {"diverged": False} for _ in range(3)]
  for r, v in zip(records, (1.0, 2.0, 4.0)):
    r["heldout_loss"] = v
  agg = compare_optimizers.aggregate(records)
  assert agg["heldout_loss"]["mean"] == pytest.approx(7 / 3) and agg["heldout_loss"]["min"] == 1.0
  assert agg["heldout_loss"]["std"] == pytest.approx(np.std([1, 2, 4], ddof=1)) and agg["diverged"] == 0
  assert "final_train_loss" not in agg  # no values, no entry


def test_seed_band_aligns_runs_on_common_steps():
  run = lambda losses, times: {"curves": [
      {"split": "train", "step": s, "loss": l, "elapsed_s": t} for s, l, t in zip((10, 20, 30), losses, times)]}
  xs, mean, lo, hi = compare_plots.seed_band([run((3.0, 2.0, 1.0), (1, 2, 3)), run((5.0, 4.0, 3.0), (3, 4, 5))],
                                             "train", "loss", x="elapsed_s")
  np.testing.assert_allclose(xs, [2, 3, 4])
  np.testing.assert_allclose(mean, [4, 3, 2])
  np.testing.assert_allclose(lo, [3, 2, 1])
  np.testing.assert_allclose(hi, [5, 4, 3])
  xs, *_ = compare_plots.seed_band([run((1.0, 1.0, 1.0), (0, 0, 0))], "train", "loss")
  np.testing.assert_allclose(xs, [10, 20, 30])
  assert compare_plots.seed_band([], "train", "loss") is None
  assert math.isclose(compare_plots._smooth(np.array([1.0, 3.0, 5.0]), 2)[-1], 4.0)


@pytest.mark.parametrize("name,variant", [("compare_bert", v)
                                          for v in ("", "large_batch", "long", "gpu", "gpu_large_batch")]
                         + [("compare_gpt2", v) for v in ("", "long", "gpu")]
                         + [("compare_t5", v) for v in ("", "gpu")])
def test_every_comparison_run_is_a_valid_training_config(name, variant):
  """Every run a comparison would start (GPU sizes included, which CI cannot run) passes the trainer's checks."""
  from came_jax.train import validation  # pylint: disable=g-import-not-at-top
  config = _load_config(name, variant)
  assert config.sweep.steps == config.steps and config.sweep.seed not in config.seeds
  for b in config.batch_sizes:
    for opt in config.optimizers:
      for lr in config.learning_rates[opt]:
        run = compare_optimizers.run_config(config, phase="sweep", optimizer=opt, learning_rate=lr, batch_size=b,
                                            seed=config.sweep.seed, steps=config.steps, tokenizer_path="")
        validation.check(run)
        base = config.variants[opt].optimizer if opt in config.variants else opt
        assert (run.optimizer.name, run.batch_size, run.max_steps) == (base, b, config.steps)
        assert run.optimizer[base].learning_rate == lr
  if not variant.startswith("gpu"):  # the docstring gives the CPU command (the GPU sizes are named there)
    suffix = f":{variant}" if variant else ""
    command = f"python -m experiments.compare_optimizers --config configs/{name}.py{suffix}"
    assert command in open(os.path.join(REPO, "configs", f"{name}.py")).read()


def test_variants_are_registry_optimizers_with_fields_changed(tmp_path):
  config = _load_config("compare_gpt2", "long")
  assert config.optimizers == ("came", "came_bc", "adamw", "adafactor")
  came = compare_optimizers.run_config(config, phase="full", optimizer="came", learning_rate=1e-4, batch_size=16,
                                       seed=0, steps=3000, tokenizer_path="")
  came_bc = compare_optimizers.run_config(config, phase="full", optimizer="came_bc", learning_rate=1e-3,
                                          batch_size=16, seed=0, steps=3000, tokenizer_path="")
  assert came.optimizer.name == came_bc.optimizer.name == "came"
  assert not came.optimizer.came.bias_correction and came_bc.optimizer.came.bias_correction
  assert (came.optimizer.came.learning_rate, came_bc.optimizer.came.learning_rate) == (1e-4, 1e-3)
  with pytest.raises(ValueError, match="config.variants"):
    config = _load_config("compare_gpt2", "")
    config.optimizers = ("came_xyz",)
    compare_optimizers.run_comparison(config, str(tmp_path / "work"), str(tmp_path / "out"))
  assert not (tmp_path / "work").exists()  # refused before anything is written
