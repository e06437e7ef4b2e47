"""How fast the input pipeline builds batches, to set beside the training step's tokens/s.

The pipeline should deliver several times the tokens/s of the step it feeds; the trainer logs both numbers at its
first timed interval (`came_jax.train.trainer`), and `experiments/bench_input_pipeline.py` measures an experiment
config's pipeline on its own.
"""

from __future__ import annotations

import time


def measure_throughput(iterator, num_batches: int = 50, warmup: int = 2) -> float:
  """Tokens per second delivered by ``next(iterator)`` (prefetched), counting every ``input_ids`` position.

  ``warmup`` batches are drawn first and not timed (thread start, first permutation). Advances the iterator.
  """
  for _ in range(warmup):
    next(iterator)
  tokens = 0
  start = time.perf_counter()
  for _ in range(num_batches):
    tokens += next(iterator)["input_ids"].size
  return tokens / (time.perf_counter() - start)


def build_rate(iterator, num_batches: int = 8) -> float:
  """Tokens per second of building the iterator's next ``num_batches`` batches in this thread, counting every
  ``input_ids`` position; the iterator's position is left as it was (``batch_at`` is a pure function of the step).

  This is the rate of the one prefetch thread that feeds training.
  """
  step = iterator.get_state()["step"]
  iterator.batch_at(step)  # the first call may build the epoch's permutation
  tokens = 0
  start = time.perf_counter()
  for i in range(num_batches):
    tokens += iterator.batch_at(step + i)["input_ids"].size
  return tokens / (time.perf_counter() - start)
