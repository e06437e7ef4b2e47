"""`python tests/train/signal_at_step.py SIGNAL STEP COUNT <experiments.pretrain flags>`: the launcher, except that
the process sends itself SIGNAL (TERM or INT) COUNT times when it logs training step STEP, as a cluster
preempting it (or a user pressing Ctrl-C, twice) would. Real signals, real handlers."""

import os
import pathlib
import signal
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from came_jax import cli  # pylint: disable=g-import-not-at-top
from came_jax.train import metrics
from experiments import pretrain

SIGNAL, STEP, COUNT = getattr(signal, f"SIG{sys.argv[1]}"), int(sys.argv[2]), int(sys.argv[3])
del sys.argv[1:4]
_write = metrics.MetricWriter.write


def _write_then_signal(self, step, row, prefix="train"):
  _write(self, step, row, prefix)
  if prefix == "train" and step == STEP:
    for _ in range(COUNT):
      os.kill(os.getpid(), SIGNAL)


metrics.MetricWriter.write = _write_then_signal

if __name__ == "__main__":
  cli.run(pretrain.main)
