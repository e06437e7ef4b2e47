"""The whole trainer (data, host loop, step) on a config, step-bounded, without evaluation or checkpoints inside
the run: its tokens/s on the budget clock, compilation included and separated."""

from __future__ import annotations

import os
import pathlib
import statistics
import tempfile
from typing import Iterator

from came_jax.bench import train_step
from came_jax.train import metrics as metrics_lib
from came_jax.train import trainer


def loop(config_arg: str, steps: int, repeats: int) -> Iterator[str]:
  """Runs `configs/<name>.py:<variant>` (`config_arg`, e.g. `configs/bert_cramming.py:tiny`) `repeats` times for
  `steps` steps in a temporary workdir; yields one line per run as it ends.

  The configs' data paths are relative to the repository: the working directory becomes its root.
  """
  path, _, variant = config_arg.partition(":")
  name = pathlib.Path(path).stem
  for r in range(repeats):
    config = train_step.load_config(name, variant)
    config.max_steps = steps
    config.budget = "24h"
    config.eval.every_s = config.eval.every_steps = 0
    config.checkpoint.every_s = config.checkpoint.every_steps = 0
    config.tensorboard = False
    config.log_every_steps = max(1, steps // 5)
    os.chdir(train_step.REPO)
    with tempfile.TemporaryDirectory() as workdir:
      summary = trainer.train_and_evaluate(config, workdir)
      rows = metrics_lib.read_rows(workdir)
    steady = [row for row in rows if row["split"] == "train"][1:]  # the first row's interval holds the compilation
    tps = statistics.median(row["tokens_per_sec"] for row in steady) if steady else float("nan")
    yield (
      f"{config_arg} run {r + 1}: {summary['steps']} steps, {summary['tokens_seen']:,} tokens in "
      f"{summary['elapsed_s']:.1f} s = {summary['tokens_seen'] / summary['elapsed_s']:,.0f} tokens/s overall; "
      f"steady {tps:,.0f} tokens/s (median of {len(steady)} log intervals); compilations "
      f"{summary['train_step_compilations']}"
    )
