"""Fixtures for the GLUE tests: the real GLUE files in ../shared/data/glue and their row counts."""

import pytest

# (train rows, dev rows per eval set, test rows) per task, from ../shared/data/README.md.
COUNTS = {
  "CoLA": (8551, 1043, 1063),
  "SST-2": (67349, 872, 1821),
  "MRPC": (3668, 408, 1725),
  "STS-B": (5749, 1500, 1379),
  "RTE": (2490, 277, 3000),
  "WNLI": (635, 71, 146),
}


@pytest.fixture(scope="session")
def glue_dir(shared_data):
  """The six small GLUE tasks in the official layout, QNLI without its train split, no MNLI or QQP."""
  return shared_data / "glue"


@pytest.fixture(scope="session")
def glue_counts():
  """`{task: (train, dev, test)}` row counts of the tasks in `glue_dir`."""
  return COUNTS
