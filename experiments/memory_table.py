"""Training memory from first principles: params + grads + optimizer state, per model and optimizer.

Nothing is allocated: every optimizer's state is sized with ``jax.eval_shape(tx.init, params)`` on the real
Flax parameter trees. This is the CAME paper's memory comparison (its Table 5), recomputed for our models
(`came_jax.bench.memory`).

  python -m experiments.memory_table            # prints two markdown tables (a few seconds on a CPU)

Activations are not counted: they depend on batch size, sequence length and rematerialisation, not on the
optimizer.
"""

import argparse

from came_jax.bench import memory, shapes


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--models", nargs="*", default=list(shapes.MODELS))
  args = parser.parse_args()
  print(memory.tables(args.models))


if __name__ == "__main__":
  main()
