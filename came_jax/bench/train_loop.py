"""The whole trainer (data, host loop, step) on a config, step-bounded, without evaluation or checkpoints inside
the run: its tokens/s on the budget clock, compilation included and separated."""

from __future__ import annotations

import statistics
import tempfile
from typing import Any, Iterator

from came_jax.train import metrics as metrics_lib
from came_jax.train import trainer


def loop(config: Any, label: str, steps: int, repeats: int) -> Iterator[str]:
  """Runs the pretraining `config` (`label` names it in the lines) `repeats` times for `steps` steps in a temporary
  workdir; yields one line per run as it ends. Its data paths are read relative to the working directory."""
  for r in range(repeats):
    config = config.copy_and_resolve_references()
    config.max_steps = steps
    config.budget = "24h"
    config.eval.every_s = config.eval.every_steps = 0
    config.checkpoint.every_s = config.checkpoint.every_steps = 0
    config.tensorboard = False
    config.log_every_steps = max(1, steps // 5)
    with tempfile.TemporaryDirectory() as workdir:
      summary = trainer.train_and_evaluate(config, workdir)
      rows = metrics_lib.read_rows(workdir)
    steady = [row for row in rows if row["split"] == "train"][1:]  # the first row's interval holds the compilation
    tps = statistics.median(row["tokens_per_sec"] for row in steady) if steady else float("nan")
    yield (
      f"{label} run {r + 1}: {summary['steps']} steps, {summary['tokens_seen']:,} tokens in "
      f"{summary['elapsed_s']:.1f} s = {summary['tokens_seen'] / summary['elapsed_s']:,.0f} tokens/s overall; "
      f"steady {tps:,.0f} tokens/s (median of {len(steady)} log intervals); compilations "
      f"{summary['train_step_compilations']}"
    )
