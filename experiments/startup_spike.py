r"""CAME's update scale against Adam's over the first steps: the reference's start-up spike, and the bias correction.

  python -m experiments.startup_spike [--steps 1 10 100 300 1000 3000] [--seed 0]

A 64 x 48 matrix and a 48-vector get the same small Gaussian gradients (std 1e-3, fresh each step) in CAME
(reference), CAME with `bias_correction=True` and `optax.adam(b1=0.9, b2=0.999)`, all at learning rate 1. Printed:
each CAME's update RMS over Adam's, per leaf, at the listed steps (a markdown table; `came_jax.bench.startup_spike`).
Pure noise is the case where the instability average matters most: every step's update disagrees with the momentum.
"""

from __future__ import annotations

import argparse

from came_jax.bench import startup_spike


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--steps", type=int, nargs="+", default=[1, 10, 100, 300, 1000, 3000])
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  steps = sorted(args.steps)
  print(startup_spike.table(startup_spike.ratios(steps, args.seed), steps))


if __name__ == "__main__":
  main()
