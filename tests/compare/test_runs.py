"""came_jax.compare.runs: rate sweeps, the kept rate, seed statistics, and the run configs of every comparison."""

import math
import pathlib

import numpy as np
import pytest

from came_jax import config_files
from came_jax.compare import pretraining, runs

REPO = pathlib.Path(__file__).resolve().parents[2]


def _load_config(name, variant):
  return config_files.load(REPO / "configs" / f"{name}.py", variant)


def test_sweep_extends_past_an_end_while_the_best_rate_sits_there():
  loss = lambda lr: (math.log10(lr) + 4.2) ** 2  # best at 10**-4.2 ~ 6e-5, below the grid
  ran = []

  def run_rate(lr):
    ran.append(lr)
    return {"learning_rate": lr, "heldout_loss": loss(lr), "diverged": False}

  chosen = runs.sweep_rates(run_rate, (1e-4, 3e-4, 1e-3), extend=2)
  assert ran == [1e-4, 3e-4, 1e-3, 3.33e-5]  # one step (the ratio of the two lowest rates) below: bracketed
  assert chosen["learning_rate"] == 1e-4 and chosen["at_grid_edge"] is None
  assert chosen["grid"] == [3.33e-5, 1e-4, 3e-4, 1e-3]

  ran.clear()
  diverges = lambda lr: {"learning_rate": lr, "heldout_loss": None if lr > 0.05 else -lr, "diverged": lr > 0.05}
  run_rate = lambda lr: ran.append(lr) or diverges(lr)
  chosen = runs.sweep_rates(run_rate, (1e-3, 1e-2), extend=3)
  assert ran == [1e-3, 1e-2, 0.1]  # the step up diverged: 1e-2 is bracketed
  assert chosen["learning_rate"] == 1e-2 and chosen["at_grid_edge"] is None

  ran.clear()
  chosen = runs.sweep_rates(lambda lr: ran.append(lr) or diverges(lr), (1e-4, 1e-3), extend=1)
  assert ran == [1e-4, 1e-3, 1e-2] and chosen["at_grid_edge"] == "highest"  # out of extensions: said


def test_choose_rate_and_aggregate():
  rec = lambda lr, loss, diverged=False: {"learning_rate": lr, "heldout_loss": loss, "diverged": diverged}
  grid = (1e-3, 3e-3, 1e-2)
  chosen = runs.choose_rate([rec(1e-3, 5.0), rec(3e-3, 4.0), rec(1e-2, None, True)], grid)
  assert chosen["learning_rate"] == 3e-3 and chosen["at_grid_edge"] is None
  chosen = runs.choose_rate([rec(1e-3, 5.0), rec(3e-3, 4.5), rec(1e-2, 4.0)], grid)
  assert chosen["at_grid_edge"] == "highest"
  chosen = runs.choose_rate([rec(1e-3, 4.0), rec(3e-3, 4.0), rec(1e-2, 4.0)], grid)
  assert chosen["learning_rate"] == 1e-3  # ties: the smaller rate

  records = [{m: None for m in runs.METRICS} | {"diverged": False} for _ in range(3)]
  for r, v in zip(records, (1.0, 2.0, 4.0)):
    r["heldout_loss"] = v
  agg = runs.aggregate(records)
  assert agg["heldout_loss"]["mean"] == pytest.approx(7 / 3) and agg["heldout_loss"]["min"] == 1.0
  assert agg["heldout_loss"]["std"] == pytest.approx(np.std([1, 2, 4], ddof=1)) and agg["diverged"] == 0
  assert "final_train_loss" not in agg  # no values, no entry


def test_curve_rows_read_what_the_trainer_writes(tmp_path):
  """Training and held-out rows of metrics.jsonl as curve rows (learning rate as `lr_now`), older rows too."""
  from came_jax.train import metrics  # pylint: disable=g-import-not-at-top

  writer = metrics.MetricWriter(str(tmp_path), tensorboard=False)
  writer.write(1, {"loss": 5.0, "learning_rate": 1e-3, "tokens_per_sec": 100.0, "elapsed_s": 0.5})
  writer.write(1, {"loss": 5.5, "accuracy": 0.1, "perplexity": 245.0, "elapsed_s": 0.5}, prefix="heldout")
  writer.close()
  with open(tmp_path / "metrics.jsonl", "a") as f:  # a row of a run from before `split` was written
    f.write('{"step": 2, "loss": 4.0, "tokens_per_sec": 120.0}\n')
  rows = runs.curve_rows(tmp_path)
  assert [(r["split"], r["step"], r["loss"]) for r in rows] == [
    ("train", 1, 5.0),
    ("heldout", 1, 5.5),
    ("train", 2, 4.0),
  ]
  assert rows[0]["lr_now"] == 1e-3 and rows[1]["perplexity"] == 245.0 and rows[2]["grad_norm"] is None


@pytest.mark.parametrize(
  "name,variant",
  [("compare_bert", v) for v in ("", "large_batch", "long", "gpu", "gpu_large_batch")]
  + [("compare_gpt2", v) for v in ("", "long", "gpu")]
  + [("compare_t5", v) for v in ("", "gpu")],
)
def test_every_comparison_run_is_a_valid_training_config(name, variant):
  """Every run a comparison would start (GPU sizes included, which CI cannot run) passes the trainer's checks."""
  from came_jax.train import validation  # pylint: disable=g-import-not-at-top

  config = _load_config(name, variant)
  assert config.sweep.steps == config.steps and config.sweep.seed not in config.seeds
  for b in config.batch_sizes:
    for opt in config.optimizers:
      for lr in config.learning_rates[opt]:
        run = runs.run_config(
          config,
          phase="sweep",
          optimizer=opt,
          learning_rate=lr,
          batch_size=b,
          seed=config.sweep.seed,
          steps=config.steps,
          tokenizer_path="",
        )
        validation.check(run)
        base = config.variants[opt].optimizer if opt in config.variants else opt
        assert (run.optimizer.name, run.batch_size, run.max_steps) == (base, b, config.steps)
        assert run.optimizer[base].learning_rate == lr
  if not variant.startswith("gpu"):  # the docstring gives the CPU command (the GPU sizes are named there)
    suffix = f":{variant}" if variant else ""
    command = f"python -m experiments.compare_optimizers --config configs/{name}.py{suffix}"
    assert command in (REPO / "configs" / f"{name}.py").read_text()


def test_variants_are_registry_optimizers_with_fields_changed(tmp_path):
  config = _load_config("compare_gpt2", "long")
  assert config.optimizers == ("came", "came_bc", "adamw", "adafactor")
  came = runs.run_config(
    config, phase="full", optimizer="came", learning_rate=1e-4, batch_size=16, seed=0, steps=3000, tokenizer_path=""
  )
  came_bc = runs.run_config(
    config, phase="full", optimizer="came_bc", learning_rate=1e-3, batch_size=16, seed=0, steps=3000, tokenizer_path=""
  )
  assert came.optimizer.name == came_bc.optimizer.name == "came"
  assert not came.optimizer.came.bias_correction and came_bc.optimizer.came.bias_correction
  assert (came.optimizer.came.learning_rate, came_bc.optimizer.came.learning_rate) == (1e-4, 1e-3)
  with pytest.raises(ValueError, match="config.variants"):
    config = _load_config("compare_gpt2", "")
    config.optimizers = ("came_xyz",)
    pretraining.run_comparison(config, str(tmp_path / "work"), str(tmp_path / "out"))
  assert not (tmp_path / "work").exists()  # refused before anything is written
