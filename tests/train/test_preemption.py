"""`StopSignals`: the first SIGTERM/SIGINT is recorded, a second one gets the default action (in a subprocess,
with real signals), and the previous handlers come back."""

import signal
import subprocess
import sys
import textwrap

import pytest

from came_jax.train import preemption
from tests.train.tiny_configs import REPO


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_first_signal_is_recorded_and_handlers_restored(sig):
  before = signal.getsignal(sig)
  with preemption.StopSignals() as stop:
    assert stop.signum is None
    signal.raise_signal(sig)
    assert stop.signum == sig and stop.name == signal.Signals(sig).name
    assert signal.getsignal(sig) is signal.SIG_DFL  # armed for the second signal
  assert signal.getsignal(sig) is before


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_second_signal_ends_the_process_at_once(sig):
  code = textwrap.dedent(
    f"""
    import os, signal, time
    from came_jax.train.preemption import StopSignals
    with StopSignals() as stop:
      os.kill(os.getpid(), {int(sig)})
      print("first:", stop.name, flush=True)
      os.kill(os.getpid(), {int(sig)})
      time.sleep(30)
      print("still alive", flush=True)
    """
  )
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
  assert result.returncode == -sig, result.stderr
  assert result.stdout.splitlines() == [f"first: {signal.Signals(sig).name}"]


def test_interrupted_exit_code():
  assert preemption.Interrupted("x", signal.SIGTERM).exit_code == 143
  assert preemption.Interrupted("x", signal.SIGINT).exit_code == 130
