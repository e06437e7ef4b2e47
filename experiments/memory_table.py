"""Training memory from first principles: params + grads + optimizer state, per model and optimizer.

Nothing is allocated: every optimizer's state is sized with ``jax.eval_shape(tx.init, params)`` on the real
Flax parameter trees. This is the CAME paper's memory comparison (its Table 5), recomputed for our models.

  python -m experiments.memory_table            # prints two markdown tables (a few seconds on a CPU)

Activations are not counted: they depend on batch size, sequence length and rematerialisation, not on the
optimizer.
"""

import argparse

import jax
import optax

import came_jax
from experiments import model_shapes

OPTIMIZERS = {
    "SGD-momentum": lambda: optax.sgd(1e-3, momentum=0.9),
    "Adam": lambda: optax.adamw(1e-3),
    "Adafactor": lambda: optax.adafactor(1e-3),  # optax's default: no momentum
    "Adafactor+m": lambda: optax.adafactor(1e-3, momentum=0.9),  # fp32 momentum, as CAME keeps
    "CAME": lambda: came_jax.came(1e-3),
    "CAME bf16-m": lambda: came_jax.came(1e-3, momentum_dtype="bfloat16"),
    "CAME 8-bit-m": lambda: came_jax.came(1e-3, momentum_dtype="int8"),
}
GIB = 2**30


def state_bytes(params) -> dict[str, int]:
  return {name: model_shapes.num_bytes(jax.eval_shape(make().init, params)) for name, make in OPTIMIZERS.items()}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--models", nargs="*", default=list(model_shapes.MODELS))
  args = parser.parse_args()

  rows = []
  for name in args.models:
    params = model_shapes.param_shapes(name)
    rows.append((name, sum(x.size for x in jax.tree.leaves(params)), model_shapes.num_bytes(params),
                 state_bytes(params)))

  names = list(OPTIMIZERS)
  print("### Optimizer state, in multiples of the fp32 parameter bytes\n")
  print("| model | params | " + " | ".join(names) + " |")
  print("|---|---:|" + "---:|" * len(names))
  for model, count, pbytes, states in rows:
    print(f"| {model} | {count / 1e6:.1f}M | " + " | ".join(f"{states[n] / pbytes:.3f}×" for n in names) + " |")

  print("\n### Params + grads + optimizer state (GiB, fp32 params and grads)\n")
  print("| model | " + " | ".join(names) + " | CAME / Adam |")
  print("|---|" + "---:|" * (len(names) + 1))
  for model, _, pbytes, states in rows:
    totals = {n: 2 * pbytes + states[n] for n in names}
    print(f"| {model} | " + " | ".join(f"{totals[n] / GIB:.2f}" for n in names)
          + f" | {totals['CAME'] / totals['Adam']:.3f} |")


if __name__ == "__main__":
  main()
