"""`python tests/train/kill_after_checkpoint.py <experiments.pretrain flags>`: the launcher, except that the
process SIGKILLs itself when it begins its second checkpoint save, i.e. after the first one is on disk and some
training past it is lost, as a preempted or crashed run would."""

import os
import pathlib
import signal
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from absl import app  # pylint: disable=g-import-not-at-top

from came_jax.train import checkpoint
from experiments import pretrain

_save = checkpoint.Checkpointer.save
_calls = []


def _save_then_die(self, *args, **kwargs):
  _calls.append(args)
  if len(_calls) == 2:
    os.kill(os.getpid(), signal.SIGKILL)
  return _save(self, *args, **kwargs)


checkpoint.Checkpointer.save = _save_then_die

if __name__ == "__main__":
  app.run(pretrain.main)
