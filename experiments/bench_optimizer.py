"""Optimizer step time and state memory: came_jax.came vs optax AdamW/Adafactor and the PyTorch references.

For each model's real parameter shapes (from the Flax modules, fp32), every optimizer takes a jitted,
buffer-donating step ``(params, state) <- apply(update(grads, state, params))`` on fixed random gradients. We
report the median of ``--steps`` timed steps after ``--warmup`` untimed ones, the optimizer-state bytes, and the
ratio of each to ``optax.adamw`` *measured in the same run* (the machine is noisy; compare ratios, not times).
When ``torch`` and ``came_pytorch`` are installed, ``torch.optim.AdamW`` and ``came_pytorch.CAME`` are timed on
the same shapes (``optimizer.step()`` on CPU, float32, with as many threads as JAX uses).

  python -m experiments.bench_optimizer                       # BERT-base shapes, all optimizers
  python -m experiments.bench_optimizer --models "GPT-2 small (124M)" "T5-base (v1.1)" --steps 10
  python -m experiments.bench_optimizer --optimizers optax.adamw --chunk-bytes 0 1048576 2097152 4194304

Rows are interleaved (one timed step of each optimizer in turn) so that background load hits them alike.
"""

import argparse
import functools
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import came_jax
from experiments import model_shapes

JAX_OPTIMIZERS = {
    "optax.adamw": lambda: optax.adamw(1e-3, weight_decay=0.01),
    "came_jax.came": lambda: came_jax.came(1e-3, weight_decay=0.01),
    "came_jax.came (bf16 m)": lambda: came_jax.came(1e-3, weight_decay=0.01, momentum_dtype="bfloat16"),
    "came_jax.came (8-bit m)": lambda: came_jax.came(1e-3, weight_decay=0.01, momentum_dtype="int8"),
    "optax.adafactor": lambda: optax.adafactor(1e-3),
}


class _JaxRunner:
  """One optimizer's compiled, donating step over its own params and state."""

  def __init__(self, tx, params, grads):
    self.params = jax.tree.map(jnp.copy, params)
    self.grads = grads
    self.state = tx.init(self.params)
    self.state_bytes = model_shapes.num_bytes(self.state)

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(params, state, grads):
      updates, state = tx.update(grads, state, params)
      return optax.apply_updates(params, updates), state

    self._step = step

  def __call__(self) -> float:
    start = time.perf_counter()
    self.params, self.state = self._step(self.params, self.state, self.grads)
    jax.block_until_ready((self.params, self.state))
    return time.perf_counter() - start


class _TorchRunner:

  def __init__(self, make, params, grads):
    import torch  # pylint: disable=g-import-not-at-top

    self._torch = torch
    self.tensors = [torch.nn.Parameter(torch.from_numpy(np.array(p))) for p in jax.tree.leaves(params)]
    for t, g in zip(self.tensors, jax.tree.leaves(grads)):
      t.grad = torch.from_numpy(np.array(g))
    self.opt = make(self.tensors)
    self() # creates the state
    self.state_bytes = sum(v.numel() * v.element_size() for s in self.opt.state.values() for v in s.values()
                           if torch.is_tensor(v) and v.dim() > 0)

  def __call__(self) -> float:
    start = time.perf_counter()
    with self._torch.no_grad():
      self.opt.step()
    return time.perf_counter() - start


def _torch_optimizers() -> dict:
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return {}
  torch.set_num_threads(os.cpu_count() or 1)
  found = {"torch.optim.AdamW": lambda ps: torch.optim.AdamW(ps, lr=1e-3, weight_decay=0.01)}
  try:
    from came_pytorch import CAME  # pylint: disable=g-import-not-at-top
  except ImportError:
    return found
  found["came_pytorch.CAME"] = lambda ps: CAME(ps, lr=1e-3, weight_decay=0.01)
  return found


def bench_model(name: str, steps: int, warmup: int, include: list[str] | None) -> None:
  shapes = model_shapes.param_shapes(name)
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda s: jnp.asarray(rng.normal(0, 0.02, s.shape), jnp.float32), shapes)
  grads = jax.tree.map(lambda s: jnp.asarray(rng.normal(0, 1e-3, s.shape), jnp.float32), shapes)
  param_bytes = model_shapes.num_bytes(shapes)

  runners = {}
  for label, make in JAX_OPTIMIZERS.items():
    if include is None or label in include:
      runners[label] = _JaxRunner(make(), params, grads)
  for label, make in _torch_optimizers().items():
    if include is None or label in include:
      runners[label] = _TorchRunner(make, params, grads)

  times = {label: [] for label in runners}
  for i in range(warmup + steps):
    for label, run in runners.items():
      t = run()
      if i >= warmup:
        times[label].append(t)

  median = {label: statistics.median(ts) for label, ts in times.items()}
  base = median.get("optax.adamw")
  print(f"\n### {name}: {sum(x.size for x in jax.tree.leaves(shapes)) / 1e6:.1f}M params, "
        f"{len(jax.tree.leaves(shapes))} tensors, {jax.devices()[0].device_kind}, "
        f"median of {steps} steps after {warmup} warm-up\n")
  print("| optimizer | step (ms) | min (ms) | vs optax.adamw | state bytes / param bytes |")
  print("|---|---:|---:|---:|---:|")
  for label, run in runners.items():
    ratio = f"{median[label] / base:.2f}×" if base else "n/a"
    print(f"| {label} | {median[label] * 1e3:.1f} | {min(times[label]) * 1e3:.1f} | {ratio} | "
          f"{run.state_bytes / param_bytes:.3f} |")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--models", nargs="*", default=["BERT-base (crammed)"], choices=list(model_shapes.MODELS))
  parser.add_argument("--optimizers", nargs="*", default=None, help="labels to include (default: all)")
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--chunk-bytes", nargs="*", type=int, default=[],
                      help="also time came_jax.came with these row-block sizes (`chunk_bytes`; 0: unblocked)")
  args = parser.parse_args()
  if args.steps < 1 or args.warmup < 0:
    parser.error("--steps must be >= 1 and --warmup >= 0")
  include = args.optimizers
  for size in args.chunk_bytes:
    label = f"came_jax.came (blocks of {size // 1024} KiB)" if size else "came_jax.came (unblocked)"
    JAX_OPTIMIZERS[label] = functools.partial(came_jax.came, 1e-3, weight_decay=0.01, chunk_bytes=size or None)
    include = None if include is None else [*include, label]
  for name in args.models:
    bench_model(name, args.steps, args.warmup, include)


if __name__ == "__main__":
  main()
