"""Experiment config files (`configs/*.py`, each with `get_config(arg)`), loaded by path.

Config files are not a package: the launchers read them with `--config configs/x.py:variant`
(`ml_collections.config_flags`). Code that needs one otherwise (a config building on another, a benchmark, a
test, a notebook) loads it here, the same way, unlocked.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
from types import ModuleType

import ml_collections


def load_module(path: str | os.PathLike) -> ModuleType:
  """The Python file at `path`, executed as a module of its own."""
  path = pathlib.Path(path)
  spec = importlib.util.spec_from_file_location(f"_came_jax_config_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load(path: str | os.PathLike, variant: str = "") -> ml_collections.ConfigDict:
  """`get_config(variant)` of the config file at `path` (as `--config PATH:VARIANT` would give it)."""
  return load_module(path).get_config(variant)
