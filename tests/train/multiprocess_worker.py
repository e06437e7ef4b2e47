"""`python tests/train/multiprocess_worker.py <experiments.pretrain flags>`: the launcher as one of several processes
on this machine, each with 4 simulated CPU devices and gloo collectives, and the stand-in model registered. The
processes find each other through `--config.distributed.*` or `$JAX_COORDINATOR_ADDRESS`/`$JAX_NUM_PROCESSES`/
`$JAX_PROCESS_ID`, as on a cluster. `$CAME_JAX_TEST_SIGNAL_AT=TERM:3` makes this process send itself SIGTERM when
it logs step 3 (a preemption that reaches one process of a job first); `$CAME_JAX_TEST_CLOCK_SKEW=3` runs its
budget clock 3 s ahead (processes started apart, or slowed by their hosts)."""

import os
import pathlib
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"  # before jax is imported
os.environ["JAX_PLATFORMS"] = "cpu"
HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

import signal  # noqa: E402

import jax  # noqa: E402  pylint: disable=g-import-not-at-top

from came_jax import cli  # noqa: E402
from came_jax.train import trainer  # noqa: E402
from experiments import pretrain  # noqa: E402
from tests.train import standin  # noqa: E402

jax.config.update("jax_cpu_collectives_implementation", "gloo")
sys.modules["came_jax.models.standin"] = standin

if os.environ.get("CAME_JAX_TEST_CLOCK_SKEW"):  # this process's budget clock runs ahead by that many seconds
  from came_jax.train import budget  # noqa: E402  pylint: disable=g-import-not-at-top

  _skew, _elapsed = float(os.environ["CAME_JAX_TEST_CLOCK_SKEW"]), budget.BudgetClock.elapsed
  budget.BudgetClock.elapsed = property(lambda self: _elapsed.fget(self) + _skew)

if os.environ.get("CAME_JAX_TEST_SIGNAL_AT"):
  name, at = os.environ["CAME_JAX_TEST_SIGNAL_AT"].split(":")
  _log = trainer._Run.log  # pylint: disable=protected-access

  def _log_then_signal(self, metrics, n_micro):
    row = _log(self, metrics, n_micro)
    if self.step == int(at):
      os.kill(os.getpid(), getattr(signal, f"SIG{name}"))
    return row

  trainer._Run.log = _log_then_signal  # pylint: disable=protected-access

if __name__ == "__main__":
  cli.run(pretrain.main)
