"""Timing of (jitted) calls: blocked on their results, repeated after a warm-up, or interleaved.

Every benchmark times with these: a call's time ends when its outputs are ready (`jax.block_until_ready`), the
first calls (compilation, caches) are left out, and the calls of several contestants are interleaved, one of each
per round, so that background load on a shared machine hits them alike.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Mapping

import jax


def block(tree: Any) -> Any:
  """`tree` once every array in it is computed (`jax.block_until_ready`)."""
  return jax.block_until_ready(tree)


def timed(fn: Callable[[], Any]) -> float:
  """Seconds one call of `fn` takes, until its outputs are ready.

  >>> import jax.numpy as jnp
  >>> timed(lambda: jnp.ones(3) + 1) >= 0.0
  True
  """
  start = time.perf_counter()
  block(fn())
  return time.perf_counter() - start


def repeat(fn: Callable[[], Any], steps: int, warmup: int) -> list[float]:
  """Seconds of each of `steps` calls of `fn` (each blocked on its outputs) after `warmup` untimed calls.

  >>> import jax.numpy as jnp
  >>> len(repeat(lambda: jnp.ones(3) + 1, steps=4, warmup=1))
  4
  """
  for _ in range(warmup):
    block(fn())
  return [timed(fn) for _ in range(steps)]


def interleaved_times(fns: Mapping[str, Callable[[], float]], steps: int, warmup: int) -> dict[str, list[float]]:
  """The seconds each callable reports over `steps` rounds after `warmup` rounds, one call of each per round.

  Each callable times itself and returns its seconds (so it can leave out its own set-up); see `timed`.

  >>> interleaved_times({"a": lambda: 1.0, "b": lambda: 2.0}, steps=2, warmup=1)
  {'a': [1.0, 1.0], 'b': [2.0, 2.0]}
  """
  times: dict[str, list[float]] = {k: [] for k in fns}
  for i in range(warmup + steps):
    for k, fn in fns.items():
      t = fn()
      if i >= warmup:
        times[k].append(t)
  return times


def interleaved(fns: Mapping[str, Callable[[], float]], steps: int, warmup: int) -> dict[str, float]:
  """The median seconds of each callable, timed in turn as `interleaved_times` does.

  >>> calls = iter([3.0, 1.0, 2.0])
  >>> interleaved({"a": lambda: next(calls)}, steps=3, warmup=0)
  {'a': 2.0}
  """
  return {k: statistics.median(v) for k, v in interleaved_times(fns, steps, warmup).items()}
