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
  python -m experiments.bench_optimizer --optimizers optax.adamw came_jax.came --l2-bytes 262144 2097152

``--l2-bytes`` adds `came_jax.came` as it runs on a core with that much L2 cache (the row-block size it derives
from it; ``$CAME_JAX_L2_BYTES`` sets the cache size the default row assumes).

Rows are interleaved (one timed step of each optimizer in turn) so that background load hits them alike
(`came_jax.bench.optimizer_step`).
"""

import argparse

from came_jax.bench import optimizer_step, shapes


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--models", nargs="*", default=["BERT-base (crammed)"], choices=list(shapes.MODELS))
  parser.add_argument("--optimizers", nargs="*", default=None, help="labels to include (default: all)")
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument(
    "--chunk-bytes",
    nargs="*",
    type=int,
    default=[],
    help="also time came_jax.came with these row-block sizes (`chunk_bytes`; 0: unblocked)",
  )
  parser.add_argument(
    "--l2-bytes",
    nargs="*",
    type=int,
    default=[],
    help="also time came_jax.came with the row blocks it picks for a core with this much L2 cache",
  )
  args = parser.parse_args()
  if args.steps < 1 or args.warmup < 0:
    parser.error("--steps must be >= 1 and --warmup >= 0")
  if any(size < 1 for size in args.l2_bytes):
    parser.error("--l2-bytes must be positive")
  include = args.optimizers
  if include is not None:  # the blocked CAMEs asked for are timed too
    include = [*include, *(optimizer_step.chunk_label(size) for size in args.chunk_bytes)]
    include += [optimizer_step.l2_label(size) for size in args.l2_bytes]
  jax_optimizers = optimizer_step.with_chunk_sizes(args.chunk_bytes, args.l2_bytes)
  for name in args.models:
    print("\n" + optimizer_step.bench_model(name, args.steps, args.warmup, include, jax_optimizers))


if __name__ == "__main__":
  main()
