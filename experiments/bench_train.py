r"""Training-step speed of the three recipes' models: step time, tokens/s, MFU, compile time, peak memory, the
optimizer's share of the step (CAME vs AdamW) and whether cuDNN flash attention is in the compiled step.

The step is the trainer's own (`came_jax.train.step.train_step`, jitted once with the state donated) on one
micro-batch made by the recipe's objective from random tokens; the model and optimizer are the recipe's
(`configs/bert_cramming.py`, `configs/gpt2.py`, `configs/t5.py`). For each model and optimizer we report the
median of `--steps` timed steps after `--warmup` untimed ones, and time the optimizer update alone (update +
apply on a copy of the state, also jitted and donated) to give its share of the step. The optimizers' steps are
timed in turn (one step of each per round) so that background load hits them alike.

  python -m experiments.bench_train                                # GPU: full models, bf16, cuDNN attention
  python -m experiments.bench_train --preset small --batch 4       # CPU: a couple of minutes
  python -m experiments.bench_train --models bert --profile        # where the step's time goes (see README)
  python -m experiments.bench_train --loop configs/bert_cramming.py:tiny --loop-steps 150   # the whole loop
  python -m experiments.bench_train --peers                        # vs PyTorch eager / torch.compile (transformers)
  python -m experiments.bench_train --peers gpt2 --profile         # where our step's time goes at those sizes

`--peers [gpt2] [bert]` (both when none named) times our step against `transformers`' GPT2LMHeadModel /
BertForMaskedLM with the same weights on the same batch, float32, forward + backward + AdamW (optax.adamw in the
trainer's step vs torch.optim.AdamW), at the scaled-down sizes of `came_jax.bench.peers.PEERS`, all contestants in
turn; the PyTorch rows are skipped with a note when torch or transformers are not installed (`--no-compile`: no
torch.compile row).

Presets: `full` = the recipe's model and sequence length (crammed BERT base at 128, GPT-2 124M at 1024, T5-base
(v1.1) at 512 input tokens); `small` = the same widths with 2 layers (T5: 2 + 2) at sequence length 128 (GPT-2:
256); `tiny` = the `:tiny` configs' models at 128. `auto` (default) is `full` on an accelerator, `small` on CPU.
dtype `auto` is bf16 on an accelerator and fp32 on CPU, where bf16 compute is emulated and slower (measured:
see experiments/README.md). MFU divides by the device's peak bf16 FLOP/s (`came_jax.train.metrics`): 'n/a' on CPU.
Peak memory: the device's `peak_bytes_in_use` where it keeps one (GPU, since the process started), else the
compiled step's `memory_analysis()` (arguments + outputs + temporaries - aliased).

The table is `came_jax.bench.train_step`, `--profile` is `came_jax.bench.hlo_profile`, `--loop` is
`came_jax.bench.train_loop` and `--peers` is `came_jax.bench.peers`.
"""

from __future__ import annotations

import argparse

from came_jax import config_files
from came_jax.bench import hlo_profile, peers, train_loop, train_step
from came_jax.optim import registry

# --models: each recipe's config file, its name in the tables, and the `small` preset's sequence length.
RECIPES = {
  "bert": ("configs/bert_cramming.py", "crammed BERT", 128),
  "gpt2": ("configs/gpt2.py", "GPT-2", 256),
  "t5": ("configs/t5.py", "T5 v1.1", 128),
}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--models", nargs="*", default=list(RECIPES), choices=list(RECIPES))
  parser.add_argument("--preset", default="auto", choices=["auto", "full", "small", "tiny"])
  parser.add_argument("--batch", type=int, default=None, help="sequences per micro-batch (default: the recipe's)")
  parser.add_argument("--micro-batches", type=int, default=1, help="micro-batches accumulated per step")
  parser.add_argument(
    "--baseline-step",
    default="",
    help="a file defining another `train_step` (e.g. `git show "
    "REV:came_jax/train/step.py`) to time alongside the current one",
  )
  parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
  parser.add_argument(
    "--attention",
    default="auto",
    choices=["auto", "xla", "cudnn"],
    help="attention implementation (auto: cudnn on GPU with bf16, else xla)",
  )
  parser.add_argument("--optimizers", nargs="*", default=["came", "adamw"], choices=list(registry.OPTIMIZERS))
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--profile", action="store_true", help="profile the first model with the first optimizer")
  parser.add_argument("--top", type=int, default=15, help="HLO ops listed by --profile")
  parser.add_argument(
    "--loop",
    default="",
    help="run the whole trainer on this config (e.g. configs/bert_cramming.py:tiny) and report its tokens/s",
  )
  parser.add_argument("--loop-steps", type=int, default=150)
  parser.add_argument("--repeats", type=int, default=1)
  parser.add_argument(
    "--peers",
    nargs="*",
    default=None,
    choices=list(peers.PEERS),
    help="time our step against transformers' (PyTorch eager and torch.compile) for these models (none named: all)",
  )
  parser.add_argument("--no-compile", action="store_true", help="--peers without the torch.compile rows")
  args = parser.parse_args()
  if args.steps < 1 or args.warmup < 0:
    parser.error("--steps must be >= 1 and --warmup >= 0")
  if args.peers is not None:
    names = args.peers or list(peers.PEERS)
    if args.profile:
      setup = peers.setup(peers.PEERS[names[0]])
      print("\n" + hlo_profile.profile(setup, "optax.adamw", args.steps, args.warmup, args.top, tx=peers.adamw()))
      return
    print("\n" + peers.run(names, args.steps, args.warmup, compile=not args.no_compile))
    return
  if args.loop:
    path, _, variant = args.loop.partition(":")
    for line in train_loop.loop(config_files.load(path, variant), args.loop, args.loop_steps, args.repeats):
      print(line)
    return
  preset, dtype, attention = train_step.resolve(args.preset, args.dtype, args.attention)
  baseline = train_step.load_step_module(args.baseline_step) if args.baseline_step else None
  setups, results = {}, []
  for name in args.models:
    path, title, small_seq_len = RECIPES[name]
    config = config_files.load(path, "tiny" if preset == "tiny" else "")
    setup = train_step.make_setup(
      config,
      title,
      preset,
      args.batch,
      dtype,
      attention,
      args.micro_batches,
      seq_len=small_seq_len if preset == "small" else None,
    )
    setups[setup.label] = setup
    if args.profile:
      print("\n" + hlo_profile.profile(setup, args.optimizers[0], args.steps, args.warmup, args.top))
      return
    for r in train_step.bench(setup, args.optimizers, args.steps, args.warmup, baseline):
      results.append(r)
      print(f"  {r.model} / {r.optimizer}: {1e3 * r.step_s:.1f} ms per step", flush=True)
  print("\n" + train_step.table(results, setups, dtype))


if __name__ == "__main__":
  main()
