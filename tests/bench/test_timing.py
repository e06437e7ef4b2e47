"""came_jax.bench.timing: warm-up calls are left out, contestants take turns, a call ends when its result is ready."""

import time

import jax.numpy as jnp
import pytest

from came_jax.bench import timing


def test_interleaved_takes_turns_and_leaves_out_the_warmup():
  calls = []

  def contestant(name, seconds):
    def call():
      calls.append(name)
      return seconds

    return call

  times = timing.interleaved_times({"a": contestant("a", 1.0), "b": contestant("b", 2.0)}, steps=3, warmup=2)
  assert calls == ["a", "b"] * 5  # one call of each per round, warm-up rounds included
  assert times == {"a": [1.0] * 3, "b": [2.0] * 3}
  seconds = iter([9.0, 3.0, 1.0, 2.0])  # the first is the warm-up
  assert timing.interleaved({"a": lambda: next(seconds)}, steps=3, warmup=1) == {"a": 2.0}


def test_repeat_runs_the_warmup_untimed_and_times_each_step():
  calls = []

  def fn():
    calls.append(len(calls))
    time.sleep(0.01)
    return jnp.ones(2) * 2

  times = timing.repeat(fn, steps=3, warmup=2)
  assert len(calls) == 5 and len(times) == 3
  assert all(t >= 0.01 for t in times)


def test_timed_waits_for_the_result():
  x = jnp.ones((256, 256))
  assert timing.timed(lambda: x @ x) > 0.0
  assert timing.block({"y": x + 1})["y"][0, 0] == 2.0
  assert timing.timed(lambda: time.sleep(0.02)) == pytest.approx(0.02, abs=0.02)
