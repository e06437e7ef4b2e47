"""`came_jax.cli`: errors a user can act on end the launcher with one line, cause first; bugs keep their
traceback."""

import errno
import signal

import pytest

from came_jax import cli
from came_jax.train import checkpoint, preemption


def _exit(main, capsys):
  with pytest.raises(SystemExit) as e:
    cli.guarded(main)(["launcher"])
  return e.value.code, capsys.readouterr().err


def _raise(error):
  def main(argv):
    del argv
    raise error

  return main


@pytest.mark.parametrize(
  "error,status,line",
  [
    (
      ValueError("config.budget='-5m' must be positive."),
      1,
      "error: ValueError: config.budget='-5m' must be positive.",
    ),
    (
      checkpoint.IncompatibleWorkdirError("workdir 'w' holds a different run"),
      1,
      "error: IncompatibleWorkdirError: workdir 'w' holds a different run",
    ),
    (
      preemption.Interrupted("stopped by SIGTERM at step 4", signal.SIGTERM),
      143,
      "error: Interrupted: stopped by SIGTERM at step 4",
    ),
    (KeyboardInterrupt(), 130, "error: interrupted (SIGINT)"),
    (OSError(errno.ENOSPC, "No space left on device"), 1, "error: disk full: OSError: [Errno 28] No space left"),
  ],
)
def test_user_errors_are_one_line(capsys, monkeypatch, error, status, line):
  monkeypatch.delenv(cli.TRACEBACK_ENV, raising=False)
  code, err = _exit(_raise(error), capsys)
  assert code == status
  assert err.count("\n") == 1 and err.startswith(line) and f"{cli.TRACEBACK_ENV}=1" in err
  assert "Traceback" not in err


def test_a_full_disk_is_named_under_wrappers(capsys, monkeypatch):
  """orbax and TensorStore wrap the OSError; the chain is searched, and TensorStore's text is recognised."""
  monkeypatch.delenv(cli.TRACEBACK_ENV, raising=False)
  try:
    try:
      raise OSError(errno.ENOSPC, "No space left on device")
    except OSError as inner:
      raise ValueError("Error writing checkpoint") from inner
  except ValueError as outer:
    wrapped = outer
  assert cli.one_line(wrapped).startswith("disk full: ValueError: Error writing checkpoint")
  tensorstore = ValueError('OUT_OF_RANGE: Failed writing: "/w/checkpoints/2/d/f2": No space left on device')
  assert cli.one_line(tensorstore).startswith("disk full: ")


def test_traceback_on_request(capsys, monkeypatch):
  monkeypatch.setenv(cli.TRACEBACK_ENV, "1")
  code, err = _exit(_raise(ValueError("bad value")), capsys)
  assert code == 1 and "Traceback" in err and err.rstrip().endswith("error: ValueError: bad value")


def test_bugs_keep_their_traceback():
  with pytest.raises(ZeroDivisionError):
    cli.guarded(_raise(ZeroDivisionError("a bug")))(["launcher"])
