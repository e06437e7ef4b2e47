"""Finding the modules of a package that define an interface (the models of `came_jax.models`, the conversions of
`came_jax.hf`): a new file there is found without being listed anywhere."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Iterable, Sequence


def with_interface(package: str, path: Iterable[str], interface: Sequence[str]) -> tuple[str, ...]:
  """Sorted names of the public modules of `package` (at `path`, its `__path__`) that define every name in
  `interface`."""
  found = []
  for info in pkgutil.iter_modules(path):
    if not info.name.startswith("_"):
      module = importlib.import_module(f"{package}.{info.name}")
      if all(hasattr(module, a) for a in interface):
        found.append(info.name)
  return tuple(sorted(found))
