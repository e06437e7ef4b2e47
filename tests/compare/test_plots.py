"""came_jax.compare.plots: seed bands over runs logged at different times."""

import math

import numpy as np

from came_jax.compare import plots


def test_seed_band_aligns_runs_on_common_steps():
  run = lambda losses, times: {
    "curves": [{"split": "train", "step": s, "loss": v, "elapsed_s": t} for s, v, t in zip((10, 20, 30), losses, times)]
  }
  xs, mean, lo, hi = plots.seed_band(
    [run((3.0, 2.0, 1.0), (1, 2, 3)), run((5.0, 4.0, 3.0), (3, 4, 5))], "train", "loss", x="elapsed_s"
  )
  np.testing.assert_allclose(xs, [2, 3, 4])
  np.testing.assert_allclose(mean, [4, 3, 2])
  np.testing.assert_allclose(lo, [3, 2, 1])
  np.testing.assert_allclose(hi, [5, 4, 3])
  xs, *_ = plots.seed_band([run((1.0, 1.0, 1.0), (0, 0, 0))], "train", "loss")
  np.testing.assert_allclose(xs, [10, 20, 30])
  assert plots.seed_band([], "train", "loss") is None
  assert math.isclose(plots._smooth(np.array([1.0, 3.0, 5.0]), 2)[-1], 4.0)


def test_importing_the_package_does_not_import_matplotlib():
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top

  code = (
    "import sys, came_jax, came_jax.compare.plots, came_jax.compare.report, came_jax.compare.pretraining; "
    "print('matplotlib' in sys.modules)"
  )
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
  assert out.strip() == "False"
