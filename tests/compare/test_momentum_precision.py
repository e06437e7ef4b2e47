"""came_jax.compare.momentum_precision: the final train loss of a run's log, and the table against float32."""

import ml_collections

from came_jax.compare import momentum_precision
from came_jax.train import metrics


def test_final_train_loss_averages_the_last_training_rows(tmp_path):
  writer = metrics.MetricWriter(str(tmp_path), tensorboard=False)
  for step, loss in enumerate((5.0, 4.0, 3.0, 2.0), start=1):
    writer.write(step, {"loss": loss, "tokens_per_sec": 1.0})
  writer.write(4, {"loss": 9.0}, prefix="heldout")
  writer.close()
  assert momentum_precision.final_train_loss(str(tmp_path), last=2) == 2.5
  assert momentum_precision.final_train_loss(str(tmp_path), last=10) == 3.5


def test_table_compares_each_dtype_with_float32():
  base = ml_collections.ConfigDict(dict(model=dict(name="bert", preset="tiny"), max_steps=400))
  results = {
    (0, "float32"): (3.0, 4.0),
    (0, "bfloat16"): (3.1, 4.0),
    (0, "int8"): (3.0, 4.2),
    (1, "float32"): (2.0, 3.0),
    (1, "bfloat16"): (2.1, 3.0),
    (1, "int8"): (2.0, 3.0),
  }
  sizes = {"float32": 2_000_000, "bfloat16": 1_000_000, "int8": 500_000}
  lines = momentum_precision.table(base, [0, 1], results, sizes).splitlines()
  assert lines[0] == "### CAME momentum precision: bert:tiny, 400 steps, seeds 0,1"
  assert "| 0 | int8 | 3.0000 | +0.0000 | 4.2000 | +0.2000 | 0.50 |" in lines
  assert "| mean | bfloat16 | 2.6000 | +0.1000 | 3.5000 | +0.0000 | 1.00 |" in lines
  assert len(lines) == 4 + 3 * 3  # heading, blank, header, rule; seeds 0, 1 and the mean, three dtypes each
