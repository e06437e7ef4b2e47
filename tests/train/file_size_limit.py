"""`python tests/train/file_size_limit.py BYTES <experiments.pretrain flags>`: the launcher with no file allowed to
grow past BYTES (`RLIMIT_FSIZE`, with SIGXFSZ ignored: a write past it fails with EFBIG, "File too large"), as a
full disk or a quota would stop a checkpoint halfway through its write."""

import pathlib
import resource
import signal
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from came_jax import cli  # pylint: disable=g-import-not-at-top
from experiments import pretrain

LIMIT = int(sys.argv.pop(1))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))

if __name__ == "__main__":
  cli.run(pretrain.main)
