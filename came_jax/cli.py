"""What the launchers in `experiments/` share: `run(main)`, absl's `app.run` with errors a user can act on
reported in one line, cause first.

An invalid config value, a workdir held by another run or by a different run, damaged checkpoints, a full disk,
non-finite training and a preemption signal are not bugs: their tracebacks (through orbax, TensorStore and asyncio
they run to a thousand lines) would bury the cause. `run` prints ``error: <Type>: <message>`` instead and exits with
status 1 (a signal: 128 + its number, as a shell reports a process killed by it); ``CAME_JAX_TRACEBACK=1`` prints
the traceback as well. Any other exception propagates with its traceback, as it should.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
import traceback
from typing import Callable

from absl import app

from came_jax.train import checkpoint, lock, preemption, trainer

TRACEBACK_ENV = "CAME_JAX_TRACEBACK"
FULL_DISK_TEXTS = ("No space left on device", "Disk quota exceeded")  # strerror(ENOSPC), strerror(EDQUOT)
# What a user can fix from the message alone. ValueError covers config checks (each names its key) and
# IncompatibleWorkdirError; OSError covers missing files and a full disk.
USER_ERRORS = (
  ValueError,
  OSError,
  lock.WorkdirBusyError,
  checkpoint.DamagedCheckpointError,
  trainer.NonFiniteError,
  preemption.Interrupted,
)


def one_line(e: BaseException) -> str:
  """``Type: message`` on one line; a full disk is named as such whatever layer raised it.

  >>> one_line(OSError(28, "No space left on device"))
  'disk full: OSError: [Errno 28] No space left on device'
  >>> one_line(ValueError("config.budget='ten' is not a duration;\\n use e.g. '90s'"))
  "ValueError: config.budget='ten' is not a duration; use e.g. '90s'"
  """
  text = " ".join(str(e).split())
  line = f"{type(e).__name__}: {text}" if text else type(e).__name__
  seen, cause = set(), e
  while cause is not None and id(cause) not in seen:  # the OSError under an orbax wrapper, or TensorStore's text
    seen.add(id(cause))
    if (isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT)) or any(
      text in str(cause) for text in FULL_DISK_TEXTS
    ):
      return f"disk full: {line}"
    cause = cause.__cause__ or cause.__context__
  return line


def run(main: Callable[[list[str]], None]) -> None:
  """`absl.app.run(main)`, with `USER_ERRORS` and Ctrl-C during start-up reported in one line (`guarded`)."""
  app.run(guarded(main))


def guarded(main: Callable[[list[str]], None]) -> Callable[[list[str]], None]:
  """`main`, exiting with one line on stderr for `USER_ERRORS` (status 1, or 128 + the signal's number for
  `Interrupted`) and for Ctrl-C before the training loop handles it (130)."""

  def wrapped(argv):
    try:
      return main(argv)
    except USER_ERRORS as e:
      _fail(e, e.exit_code if isinstance(e, preemption.Interrupted) else 1)
    except KeyboardInterrupt as e:
      _fail(e, 130, "interrupted (SIGINT)")

  return wrapped


def _fail(e: BaseException, status: int, text: str = "") -> None:
  if os.environ.get(TRACEBACK_ENV):
    traceback.print_exception(e)
  else:  # what asyncio logs at exit of the futures a failed orbax write abandoned ("exception was never retrieved")
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
  hint = "" if os.environ.get(TRACEBACK_ENV) else f" ({TRACEBACK_ENV}=1 shows the traceback)"
  print(f"error: {text or one_line(e)}{hint}", file=sys.stderr, flush=True)
  sys.exit(status)
