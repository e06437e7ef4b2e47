"""Helpers for the trainer tests: load `configs/*.py` as the launcher would, set dotted keys."""

import importlib.util
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[2]


def load_config(name: str, variant: str = "tiny"):
  """`configs/<name>.py:<variant>` as the launcher would load it (unlocked, so tests can shrink it)."""
  spec = importlib.util.spec_from_file_location(f"_config_{name}", REPO / "configs" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(variant)


def set_dotted(config, key: str, value) -> None:
  *parents, leaf = key.split(".")
  node = config
  for p in parents:
    node = node[p]
  node[leaf] = value
