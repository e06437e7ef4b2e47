"""CAME's update scale against Adam's over the first steps: the reference's start-up spike, and the bias correction.

A 64 x 48 matrix and a 48-vector get the same small Gaussian gradients (std 1e-3, fresh each step) in CAME
(reference), CAME with `bias_correction=True` and `optax.adam(b1=0.9, b2=0.999)`, all at learning rate 1. Pure
noise is the case where the instability average matters most: every step's update disagrees with the momentum.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from came_jax.optim import came as came_lib

LABELS = {"came": "CAME (reference)", "came_bc": "CAME, bias_correction=True"}
LEAVES = ("matrix", "vector")


def ratios(steps: Sequence[int], seed: int = 0, **came_kwargs: Any) -> dict[str, dict[int, dict[str, float]]]:
  """Each CAME's update RMS over Adam's, per leaf, at `steps`.

  Args:
    steps: the steps (from 1) to report.
    seed: of the gradients.
    **came_kwargs: given to both CAMEs.

  Returns:
    `{optimizer: {step: {leaf: update RMS / Adam's update RMS}}}`, optimizer `came` and `came_bc`.

  Example:
    >>> r = ratios([1, 2])
    >>> sorted(r), sorted(r["came"]), sorted(r["came"][1])
    (['came', 'came_bc'], [1, 2], ['matrix', 'vector'])
  """
  rng = np.random.default_rng(seed)
  params = {"matrix": jnp.zeros((64, 48)), "vector": jnp.zeros(48)}
  txs = {
    "came": came_lib.came(1.0, **came_kwargs),
    "came_bc": came_lib.came(1.0, bias_correction=True, **came_kwargs),
    "adam": optax.adam(1.0, b1=0.9, b2=0.999),
  }
  states = {k: tx.init(params) for k, tx in txs.items()}
  updates = {k: jax.jit(tx.update) for k, tx in txs.items()}
  rms = lambda x: float(jnp.sqrt(jnp.mean(jnp.square(x))))  # noqa: E731
  out: dict[str, dict[int, dict[str, float]]] = {"came": {}, "came_bc": {}}
  for t in range(1, max(steps) + 1):
    grads = jax.tree.map(lambda p: jnp.asarray(1e-3 * rng.normal(size=p.shape), jnp.float32), params)
    u = {}
    for k in txs:
      u[k], states[k] = updates[k](grads, states[k], params)
    if t in steps:
      for k in out:
        out[k][t] = {leaf: rms(u[k][leaf]) / rms(u["adam"][leaf]) for leaf in params}
  return out


def table(r: dict[str, dict[int, dict[str, float]]], steps: Sequence[int] | None = None) -> str:
  """The markdown table of `ratios`: one row per CAME and leaf, one column per step of `steps` (default: all).

  >>> print(table({"came": {1: {"matrix": 2.0, "vector": 1.5}}, "came_bc": {1: {"matrix": 1.0, "vector": 1.0}}}))
  | optimizer | leaf | step 1 |
  |---|---|---:|
  | CAME (reference) | matrix | 2.00× |
  | CAME (reference) | vector | 1.50× |
  | CAME, bias_correction=True | matrix | 1.00× |
  | CAME, bias_correction=True | vector | 1.00× |
  """
  steps = sorted(r["came"]) if steps is None else steps
  lines = ["| optimizer | leaf | " + " | ".join(f"step {t}" for t in steps) + " |", "|---|---|" + "---:|" * len(steps)]
  for name, label in LABELS.items():
    for leaf in LEAVES:
      lines.append(f"| {label} | {leaf} | " + " | ".join(f"{r[name][t][leaf]:.2f}×" for t in steps) + " |")
  return "\n".join(lines)
