r"""CAME's update scale against Adam's over the first steps: the reference's start-up spike, and the bias correction.

  python -m experiments.startup_spike [--steps 1 10 100 300 1000 3000] [--seed 0]

A 64 x 48 matrix and a 48-vector get the same small Gaussian gradients (std 1e-3, fresh each step) in CAME
(reference), CAME with `bias_correction=True` and `optax.adam(b1=0.9, b2=0.999)`, all at learning rate 1. Printed:
each CAME's update RMS over Adam's, per leaf, at the listed steps (a markdown table). Pure noise is the case where
the instability average matters most: every step's update disagrees with the momentum.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax

import came_jax


def ratios(steps: list[int], seed: int = 0, **came_kwargs) -> dict[str, dict[int, dict[str, float]]]:
  """{optimizer: {step: {leaf: update RMS / Adam's update RMS}}}; `came_kwargs` go to both CAMEs."""
  rng = np.random.default_rng(seed)
  params = {"matrix": jnp.zeros((64, 48)), "vector": jnp.zeros(48)}
  txs = {"came": came_jax.came(1.0, **came_kwargs), "came_bc": came_jax.came(1.0, bias_correction=True, **came_kwargs),
         "adam": optax.adam(1.0, b1=0.9, b2=0.999)}
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


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--steps", type=int, nargs="+", default=[1, 10, 100, 300, 1000, 3000])
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  r = ratios(sorted(args.steps), args.seed)
  print("| optimizer | leaf | " + " | ".join(f"step {t}" for t in sorted(args.steps)) + " |")
  print("|---|---|" + "---:|" * len(args.steps))
  for name, label in (("came", "CAME (reference)"), ("came_bc", "CAME, bias_correction=True")):
    for leaf in ("matrix", "vector"):
      print(f"| {label} | {leaf} | " + " | ".join(f"{r[name][t][leaf]:.2f}×" for t in sorted(args.steps)) + " |")


if __name__ == "__main__":
  main()
