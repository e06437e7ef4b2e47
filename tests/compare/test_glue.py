"""came_jax.compare.glue on configs/compare_glue.py, shrunk to seconds (real GLUE rows, a 2-step backbone)."""

import json
import pathlib

import numpy as np
import pytest

from came_jax import config_files
from came_jax.compare import glue

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def comparison(pretrained_run, shared_data, tmp_path_factory):
  config = config_files.load(REPO / "configs" / "compare_glue.py")
  config.glue.update(
    dict(
      pretrained=str(pretrained_run),
      tasks=("RTE", "STS-B"),
      data_dir=str(shared_data / "glue"),
      max_train_examples=32,
      max_eval_examples=60,
      max_steps=4,
      seeds=(0, 1),
    )
  )
  config.learning_rates.update(dict(came=(1e-4, 1e-2), came_bc=(1e-3,), adamw=(1e-3,)))
  tmp = tmp_path_factory.mktemp("compare_glue")
  summary = glue.run_comparison(config, str(tmp / "work"), str(tmp / "out"), command="test")
  return tmp, summary


def test_every_optimizer_rate_task_and_seed_runs(comparison):
  tmp, summary = comparison
  assert summary["optimizers"] == ["came", "came_bc", "adamw"] and summary["tasks"] == ["RTE", "STS-B"]
  assert set(summary["sweep"]["came"]["RTE"]) == {"0.0001", "0.01"}
  for opt in summary["optimizers"]:
    for task, metric in (("RTE", "accuracy"), ("STS-B", "spearman")):
      for scores in summary["sweep"][opt][task].values():
        assert scores["metric"] == metric and len(scores["per_seed"]) == 2
        assert scores["median"] == pytest.approx(np.median(scores["per_seed"]))
        assert np.isfinite(scores["train_loss"]) and scores["num_train"] == 32
  # The variant is CAME with bias_correction=True, at its own rate.
  used = json.loads((tmp / "work" / "came_bc" / "lr0.001" / "results.json").read_text())["config"]["optimizer"]
  assert used["name"] == "came" and used["came"]["bias_correction"] and used["came"]["learning_rate"] == 1e-3
  plain = json.loads((tmp / "work" / "came" / "lr0.01" / "results.json").read_text())["config"]["optimizer"]
  assert not plain["came"]["bias_correction"]


def test_keeps_the_rate_with_the_best_median_and_writes_the_tables(comparison):
  tmp, summary = comparison
  for task in ("RTE", "STS-B"):
    rates = summary["sweep"]["came"][task]
    best = max(rates, key=lambda lr: (rates[lr]["median"], -float(lr)))
    chosen = summary["chosen"]["came"][task]
    assert chosen["learning_rate"] == float(best) and chosen["at_grid_edge"] in ("lowest", "highest")
    assert summary["chosen"]["adamw"][task]["at_grid_edge"] is None  # a one-rate grid has no edge
  md = (tmp / "out" / "results.md").read_text()
  assert "| optimizer | RTE (32 train) | STS-B (32 train) | Avg |" in md
  assert md.count("| came_bc |") == 2 and "| came | 0.01 |" in md and ", loss " in md
  assert json.loads((tmp / "out" / "summary.json").read_text())["chosen"] == json.loads(json.dumps(summary["chosen"]))


def test_unknown_optimizer_is_refused_before_any_run(tmp_path):
  config = config_files.load(REPO / "configs" / "compare_glue.py")
  config.optimizers = ("sgd",)
  with pytest.raises(ValueError, match="config.optimizers: 'sgd'"):
    glue.run_comparison(config, str(tmp_path / "work"), str(tmp_path / "out"))
  assert not (tmp_path / "work").exists()


def test_choose_skips_failed_and_non_finite_rates():
  assert glue.choose({1e-3: None, 1e-2: {"median": float("nan")}}) == {"learning_rate": None, "at_grid_edge": None}
  chosen = glue.choose({1e-4: {"median": 0.5}, 1e-3: {"median": 0.5}, 1e-2: None})
  assert chosen["learning_rate"] == 1e-4 and chosen["at_grid_edge"] == "lowest"  # ties: the smaller rate
