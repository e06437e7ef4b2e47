"""`WorkdirLock`: one holder at a time, the holder named in the refusal, and no stale lock after a killed holder."""

import os
import signal
import subprocess
import sys

import pytest

from came_jax.train import lock
from tests.train.tiny_configs import REPO


def test_second_holder_is_refused_naming_the_first(tmp_path):
  with lock.WorkdirLock(str(tmp_path)):
    with pytest.raises(lock.WorkdirBusyError, match=rf"in use by another run \(pid {os.getpid()} on "):
      lock.WorkdirLock(str(tmp_path)).acquire()
  lock.WorkdirLock(str(tmp_path)).acquire().release()  # released on leaving the block


@pytest.mark.parametrize("death", ["SIGKILL", "exception"])
def test_a_dead_holder_leaves_no_stale_lock(tmp_path, death):
  """The holder dies without releasing (SIGKILL, or an exception that never reaches `release`): the kernel
  dropped its lock, so the next run takes it though the file, with the dead pid in it, is still there."""
  end = "os.kill(os.getpid(), signal.SIGKILL)" if death == "SIGKILL" else "raise SystemExit(3)"
  code = (
    "import os, signal, sys; from came_jax.train.lock import WorkdirLock; "
    f"held = WorkdirLock(sys.argv[1]).acquire(); {end}"
  )
  result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, capture_output=True, timeout=60)
  assert result.returncode == (-signal.SIGKILL if death == "SIGKILL" else 3), result.stderr
  assert (tmp_path / lock.LOCK_FILE).exists()
  with lock.WorkdirLock(str(tmp_path)) as held:
    assert str(os.getpid()) in (tmp_path / lock.LOCK_FILE).read_text()
    assert held.path == str(tmp_path / lock.LOCK_FILE)


def test_held_by_a_live_process_is_refused(tmp_path):
  """Across processes, as two launches in one workdir: the second is refused while the first lives."""
  code = (
    "import sys, time; from came_jax.train.lock import WorkdirLock; "
    "held = WorkdirLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(60)"
  )
  holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(lock.WorkdirBusyError, match=rf"pid {holder.pid} on "):
      lock.WorkdirLock(str(tmp_path)).acquire()
  finally:
    holder.kill()
    holder.wait()
  lock.WorkdirLock(str(tmp_path)).acquire().release()
