"""Helpers for the trainer tests: load `configs/*.py` as the launcher would, set dotted keys."""

import pathlib

from came_jax import config_files

REPO = pathlib.Path(__file__).resolve().parents[2]


def load_config(name: str, variant: str = "tiny"):
  """`configs/<name>.py:<variant>` as the launcher would load it (unlocked, so tests can shrink it)."""
  return config_files.load(REPO / "configs" / f"{name}.py", variant)


def set_dotted(config, key: str, value) -> None:
  *parents, leaf = key.split(".")
  node = config
  for p in parents:
    node = node[p]
  node[leaf] = value
