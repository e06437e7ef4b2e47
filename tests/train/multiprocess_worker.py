"""`python tests/train/multiprocess_worker.py <experiments.pretrain flags>`: the launcher as one of several processes
on this machine, each with 4 simulated CPU devices and gloo collectives, and the stand-in model registered. The
processes find each other through `--config.distributed.*` or `$JAX_COORDINATOR_ADDRESS`/`$JAX_NUM_PROCESSES`/
`$JAX_PROCESS_ID`, as on a cluster."""

import os
import pathlib
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"  # before jax is imported
os.environ["JAX_PLATFORMS"] = "cpu"
HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

import jax  # noqa: E402  pylint: disable=g-import-not-at-top
from absl import app  # noqa: E402

from experiments import pretrain  # noqa: E402
from tests.train import standin  # noqa: E402

jax.config.update("jax_cpu_collectives_implementation", "gloo")
sys.modules["came_jax.models.standin"] = standin

if __name__ == "__main__":
  app.run(pretrain.main)
