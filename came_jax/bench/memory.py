"""Training memory from first principles: params + grads + optimizer state, per model and optimizer.

Nothing is allocated: every optimizer's state is sized with `jax.eval_shape(tx.init, params)` on the real Flax
parameter trees (the CAME paper's memory comparison, its Table 5, recomputed for our models). Activations are not
counted: they depend on batch size, sequence length and rematerialisation, not on the optimizer.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import optax

from came_jax.bench import shapes
from came_jax.optim import came as came_lib

OPTIMIZERS = {
  "SGD-momentum": lambda: optax.sgd(1e-3, momentum=0.9),
  "Adam": lambda: optax.adamw(1e-3),
  "Adafactor": lambda: optax.adafactor(1e-3),  # optax's default: no momentum
  "Adafactor+m": lambda: optax.adafactor(1e-3, momentum=0.9),  # fp32 momentum, as CAME keeps
  "CAME": lambda: came_lib.came(1e-3),
  "CAME bf16-m": lambda: came_lib.came(1e-3, momentum_dtype="bfloat16"),
  "CAME 8-bit-m": lambda: came_lib.came(1e-3, momentum_dtype="int8"),
}
GIB = 2**30


def state_bytes(params: Any) -> dict[str, int]:
  """Optimizer-state bytes of every optimizer of :data:`OPTIMIZERS` for `params` (arrays or shapes).

  >>> import numpy as np
  >>> sizes = state_bytes({"w": jax.ShapeDtypeStruct((64, 32), np.float32)})
  >>> sizes["Adam"] >= 2 * 64 * 32 * 4 > sizes["CAME"]  # two moments; one momentum + factored statistics
  True
  """
  return {name: shapes.num_bytes(jax.eval_shape(make().init, params)) for name, make in OPTIMIZERS.items()}


def tables(labels: Sequence[str]) -> str:
  """Two markdown tables for the models `labels` of `shapes.MODELS`: the optimizer state in multiples of the
  fp32 parameter bytes, and params + grads + state in GiB."""
  rows = []
  for label in labels:
    params = shapes.param_shapes(label)
    rows.append((label, shapes.num_params(params), shapes.num_bytes(params), state_bytes(params)))
  names = list(OPTIMIZERS)
  lines = [
    "### Optimizer state, in multiples of the fp32 parameter bytes",
    "",
    "| model | params | " + " | ".join(names) + " |",
    "|---|---:|" + "---:|" * len(names),
  ]
  for model, count, pbytes, states in rows:
    lines.append(f"| {model} | {count / 1e6:.1f}M | " + " | ".join(f"{states[n] / pbytes:.3f}×" for n in names) + " |")
  lines += [
    "",
    "### Params + grads + optimizer state (GiB, fp32 params and grads)",
    "",
    "| model | " + " | ".join(names) + " | CAME / Adam |",
    "|---|" + "---:|" * (len(names) + 1),
  ]
  for model, _, pbytes, states in rows:
    totals = {n: 2 * pbytes + states[n] for n in names}
    lines.append(
      f"| {model} | "
      + " | ".join(f"{totals[n] / GIB:.2f}" for n in names)
      + f" | {totals['CAME'] / totals['Adam']:.3f} |"
    )
  return "\n".join(lines)
