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

Presets: `full` = the recipe's model and sequence length (crammed BERT base at 128, GPT-2 124M at 1024, T5-base
(v1.1) at 512 input tokens); `small` = the same widths with 2 layers (T5: 2 + 2) at sequence length 128 (GPT-2:
256); `tiny` = the `:tiny` configs' models at 128. `auto` (default) is `full` on an accelerator, `small` on CPU.
dtype `auto` is bf16 on an accelerator and fp32 on CPU, where bf16 compute is emulated and slower (measured:
see experiments/README.md). MFU divides by the device's peak bf16 FLOP/s (`came_jax.train.metrics`): 'n/a' on CPU.
Peak memory: the device's `peak_bytes_in_use` where it keeps one (GPU, since the process started), else the
compiled step's `memory_analysis()` (arguments + outputs + temporaries - aliased).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import functools
import glob
import json
import os
import re
import statistics
import sys
import tempfile
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from came_jax import config_files
from came_jax.data import objectives
from came_jax.optim import registry
from came_jax.train import metrics as metrics_lib
from came_jax.train import step as step_lib
from came_jax.train import trainer
from came_jax.train import validation

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {"bert": "bert_cramming", "gpt2": "gpt2", "t5": "t5"}
LABELS = {"bert": "crammed BERT", "gpt2": "GPT-2", "t5": "T5 v1.1"}
SMALL_SEQ = {"bert": 128, "gpt2": 256, "t5": 128}


def load_config(name: str, variant: str = ""):
  """`configs/<name>.py:<variant>` (unlocked)."""
  return config_files.load(os.path.join(REPO, "configs", f"{name}.py"), variant)


def on_accelerator() -> bool:
  return jax.default_backend() != "cpu"


@dataclasses.dataclass
class Setup:
  """One model's recipe at a preset: its config, model Config, module, loss and a synthetic batch."""
  name: str
  config: Any
  model_cfg: Any
  module: Any
  batch: dict[str, np.ndarray]  # [micro_batches, micro-batch, ...]
  seq_len: int
  batch_size: int  # sequences per step, over all micro-batches

  @property
  def label(self) -> str:
    c = self.model_cfg
    layers = getattr(c, "num_layers", None)
    return f"{LABELS[self.name]} ({self.config.model.preset}, {layers} layers)"

  @property
  def tokens(self) -> int:
    return self.batch_size * self.seq_len

  def loss_fn(self):
    return functools.partial(self.module.loss_fn, cfg=self.model_cfg)


def make_setup(name: str, preset: str, batch_size: int | None, dtype: str, attention: str,
               micro_batches: int = 1) -> Setup:
  config = load_config(CONFIGS[name], "tiny" if preset == "tiny" else "")
  if preset == "small":
    config.data.seq_len = SMALL_SEQ[name]
    config.model.num_layers = 2
    if name == "t5":
      config.model.num_decoder_layers = 2
  config.model.dtype = dtype
  if attention != "xla" and name in ("bert", "gpt2"):
    config.model.attention_impl = attention
  model_cfg = validation.make_model_config(config, config.data.vocab_size)
  module = validation.model_module(config)
  b = batch_size or config.data.batch_size
  stacked = [synthetic_batch(config.data, b, seed=i) for i in range(micro_batches)]
  batch = jax.tree.map(lambda *x: np.stack(x), *stacked)
  return Setup(name, config, model_cfg, module, batch, config.data.seq_len, b * micro_batches)


def synthetic_batch(data, batch_size: int, seed: int = 0) -> dict[str, np.ndarray]:
  """A micro-batch of the recipe's objective over uniformly random tokens (ids 0-3 and the top 100 are special)."""
  v, t = data.vocab_size, data.seq_len
  if data.objective == "mlm":
    obj = objectives.MaskedLM(seq_len=t, cls_id=1, sep_id=2, mask_id=3, pad_id=0, special_ids=(0, 1, 2, 3),
                              random_range=(4, v), rate=data.mlm_rate)
  elif data.objective == "causal":
    obj = objectives.CausalLM(seq_len=t, eos_id=1)
  else:
    obj = objectives.SpanCorruption(seq_len=t, eos_id=1, sentinel_ids=tuple(range(v - 1, v - 101, -1)),
                                    noise_density=data.noise_density, mean_span_length=data.mean_span_length)
  rng = np.random.default_rng(seed)
  tokens = rng.integers(4, v - 100, (batch_size, obj.row_width)).astype(np.int32)
  return obj(tokens, np.ones_like(tokens, bool), rng)


def make_tx(config, optimizer: str):
  cfg = config.optimizer.copy_and_resolve_references()
  cfg.name = optimizer
  return registry.make(cfg)


def init_state(setup: Setup, tx):
  init = functools.partial(setup.module.init_params, setup.model_cfg)
  create = lambda: step_lib.TrainState.create(init(jax.random.PRNGKey(0)), tx, jax.random.PRNGKey(1))  # noqa: E731
  return jax.jit(create)()


def _block(tree):
  return jax.block_until_ready(tree)


def _time(fn, steps: int, warmup: int) -> list[float]:
  for _ in range(warmup):
    _block(fn())
  times = []
  for _ in range(steps):
    t = time.perf_counter()
    _block(fn())
    times.append(time.perf_counter() - t)
  return times


def memory(compiled) -> tuple[str, int | None]:
  """(source, bytes): the device's peak where it keeps one, else the compiled step's footprint."""
  stats = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    return "device peak", int(stats["peak_bytes_in_use"])
  try:
    m = compiled.memory_analysis()
    return "compiled", int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
                           - m.alias_size_in_bytes)
  except Exception:  # pylint: disable=broad-except
    return "n/a", None


def flash_attention_in(hlo: str) -> str:
  """'yes'/'no' whether a cuDNN fused-attention custom call is in the compiled HLO; 'n/a' off GPU."""
  if jax.default_backend() != "gpu":
    return "n/a"
  return "yes" if re.search(r'custom_call_target="__cudnn\$fmha', hlo) else "no"


@dataclasses.dataclass
class Result:
  model: str
  optimizer: str
  compile_s: float
  step_s: float
  tokens_per_s: float
  mfu: float | None
  memory: tuple[str, int | None]
  opt_s: float
  flash: str


class _Runner:
  """One optimizer's compiled, donating train step on `setup`, and its update alone on a copy of the state."""

  def __init__(self, setup: Setup, optimizer: str, train_step=step_lib.train_step):
    self.setup, self.optimizer = setup, optimizer
    tx = make_tx(setup.config, optimizer)
    self.state = init_state(setup, tx)
    step = jax.jit(functools.partial(train_step, loss_fn=setup.loss_fn(), tx=tx), donate_argnums=0)
    self.args = (setup.batch, np.int32(setup.batch["input_ids"].shape[0]), np.float32(1e-4))
    t = time.perf_counter()
    self.compiled = step.lower(self.state, *self.args).compile()
    self.compile_s = time.perf_counter() - t
    self.flash = flash_attention_in(self.compiled.as_text())

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def opt_step(params, opt_state, grads):
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state

    self.opt_step = opt_step
    self.grads = jax.tree.map(lambda p: jnp.full(p.shape, 1e-3, p.dtype), self.state.params)
    self.opt = None

  def step(self) -> float:
    t = time.perf_counter()
    self.state, m = self.compiled(self.state, *self.args)
    _block(m["loss"])
    return time.perf_counter() - t

  def update(self) -> float:
    if self.opt is None:  # a copy of the state: the train step keeps its own
      self.opt = [jax.tree.map(jnp.copy, self.state.params), jax.tree.map(jnp.copy, self.state.opt_state)]
    t = time.perf_counter()
    self.opt[0], self.opt[1] = self.opt_step(self.opt[0], self.opt[1], self.grads)
    _block(self.opt[0])
    return time.perf_counter() - t


def _interleaved(fns: dict[str, Any], steps: int, warmup: int) -> dict[str, float]:
  """Median seconds of each callable, timed in turn (one call of each per round) so that load hits all alike."""
  times = {k: [] for k in fns}
  for i in range(warmup + steps):
    for k, fn in fns.items():
      t = fn()
      if i >= warmup:
        times[k].append(t)
  return {k: statistics.median(v) for k, v in times.items()}


def bench(setup: Setup, optimizers: list[str], steps: int, warmup: int, baseline=None) -> list[Result]:
  runners = {o: _Runner(setup, o) for o in optimizers}
  if baseline is not None:  # another train_step (e.g. an older version) timed alongside, interleaved
    runners.update({f"{o} (baseline step)": _Runner(setup, o, baseline.train_step) for o in optimizers})
  step_s = _interleaved({o: r.step for o, r in runners.items()}, steps, warmup)
  mem = {o: memory(r.compiled) for o, r in runners.items()}
  opt_s = _interleaved({o: r.update for o, r in runners.items()}, steps, warmup)
  fpt = trainer.flops_per_token(setup.module, setup.model_cfg, {k: (v.shape[1:], v.dtype) for k, v in
                                                                setup.batch.items()}, setup.seq_len)
  results = []
  for o, r in runners.items():
    tps = setup.tokens / step_s[o]
    results.append(Result(setup.label, o, r.compile_s, step_s[o], tps, metrics_lib.mfu(tps, fpt), mem[o], opt_s[o],
                          r.flash))
  return results


def _gib(n):
  return "n/a" if n is None else f"{n / 2**30:.2f} GiB"


def print_table(results: list[Result], setups: dict[str, Setup], dtype: str) -> None:
  dev = jax.devices()[0]
  print(f"\n### Training step: {dev.device_kind} ({jax.default_backend()}), compute dtype {dtype}\n")
  print("| model | batch x seq | optimizer | compile (s) | step (ms) | tokens/s | MFU | peak memory | "
        "optimizer alone (ms) | optimizer share | cuDNN flash attention |")
  print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
  for r in results:
    s = setups[r.model]
    mfu = "n/a" if r.mfu is None else f"{100 * r.mfu:.1f}%"
    print(f"| {r.model} | {s.batch_size} x {s.seq_len} | {r.optimizer} | {r.compile_s:.1f} | {1e3 * r.step_s:.1f} | "
          f"{r.tokens_per_s:,.0f} | {mfu} | {_gib(r.memory[1])} ({r.memory[0]}) | {1e3 * r.opt_s:.1f} | "
          f"{100 * r.opt_s / r.step_s:.0f}% | {r.flash} |")
  by_model = collections.defaultdict(dict)
  for r in results:
    by_model[r.model][r.optimizer] = r
  for model, rs in by_model.items():
    if "came" in rs and "adamw" in rs:
      print(f"\n{model}: CAME step / AdamW step = {rs['came'].step_s / rs['adamw'].step_s:.2f}x; CAME update / "
            f"AdamW update = {rs['came'].opt_s / rs['adamw'].opt_s:.2f}x")


# ----------------------------------------------------------------------------------------------- profile
def _hlo_ops(hlo: str) -> dict[str, tuple[str, str]]:
  """HLO instruction name -> (opcode, the jax op it came from)."""
  ops = {}
  for line in hlo.splitlines():
    m = re.match(r"\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*)$", line)
    if not m:
      continue
    name, rest = m.groups()
    op = re.search(r"\b([a-z][a-z\-]*)\(", rest)
    src = re.search(r'op_name="([^"]*)"', rest)
    kind = re.search(r"kind=(k\w+)", rest)
    opcode = op.group(1) if op else "?"
    if opcode == "fusion" and kind:
      opcode = f"fusion:{kind.group(1)}"
    where = src.group(1) if src else ""
    where = re.sub(r"^jit\(\w+\)/", "", where)
    ops[name] = (opcode, where)
  return ops


def _category(name: str, opcode: str, where: str) -> str:
  if opcode in ("dot", "convolution") or name.startswith(("ynn_fusion", "dot")) or "custom" in opcode.lower():
    return "matmul (dot / XNNPACK fusion)"
  if name.startswith("copy") or opcode == "copy" or "transpose" in name:
    return "copy / transpose"
  if opcode.startswith("fusion") and "reduce" in name:
    return "reduction fusion"
  if opcode.startswith("fusion"):
    return "elementwise fusion"
  if opcode in ("gather", "scatter", "dynamic-slice", "dynamic-update-slice"):
    return "gather / scatter / slicing"
  return opcode


def _phase(where: str) -> str:
  """Which part of the train step an HLO op (by its jax source path) belongs to."""
  if "transpose(jvp" in where:
    return "backward"
  if "jvp(" in where:
    return "forward"
  if "optimizer" in where or "cond/branch_1_fun" in where:  # the named scope (or the older lax.cond's branch)
    return "optimizer update (incl. clipping)"
  if "while/body" in where:
    return "gradient accumulation (loop)"
  return "the rest: gradient scaling, norms, metrics"


def profile(setup: Setup, optimizer: str, steps: int, warmup: int, top: int) -> None:
  """Jitted pieces timed apart, then a `jax.profiler` trace of the step broken down by HLO op."""
  tx = make_tx(setup.config, optimizer)
  state = init_state(setup, tx)
  loss_fn = setup.loss_fn()
  mb = jax.tree.map(lambda x: x[0], setup.batch)
  rng = jax.random.PRNGKey(0)

  fwd = jax.jit(lambda p, b: loss_fn(p, b, rng, train=True)[0])
  fwd_bwd = jax.jit(lambda p, b: jax.value_and_grad(lambda q: loss_fn(q, b, rng, train=True)[0])(p))
  grads = fwd_bwd(state.params, mb)[1]

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def opt_step(params, opt_state, grads):
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  step = jax.jit(functools.partial(step_lib.train_step, loss_fn=loss_fn, tx=tx), donate_argnums=0)
  args = (setup.batch, np.int32(setup.batch["input_ids"].shape[0]), np.float32(1e-4))
  compiled = step.lower(state, *args).compile()

  pieces = {}
  pieces["forward, one micro-batch"] = statistics.median(_time(lambda: fwd(state.params, mb), steps, warmup))
  pieces["forward + backward, one micro-batch"] = statistics.median(_time(lambda: fwd_bwd(state.params, mb), steps, warmup))
  opt = [jax.tree.map(jnp.copy, state.params), jax.tree.map(jnp.copy, state.opt_state)]

  def run_opt():
    opt[0], opt[1] = opt_step(opt[0], opt[1], grads)
    return opt[0]

  pieces[f"{optimizer} update alone"] = statistics.median(_time(run_opt, steps, warmup))
  holder = [state]

  def run():
    holder[0], m = compiled(holder[0], *args)
    return m["loss"]

  pieces["whole train step"] = statistics.median(_time(run, steps, warmup))
  print(f"\n### Profile: {setup.label}, {setup.batch_size} x {setup.seq_len}, {optimizer}, "
        f"{jax.devices()[0].device_kind}\n")
  print(f"| piece (jitted alone) | median (ms) | share of the step ({setup.batch['input_ids'].shape[0]} micro-batches) |")
  print("|---|---:|---:|")
  for k, v in pieces.items():
    print(f"| {k} | {1e3 * v:.1f} | {100 * v / pieces['whole train step']:.0f}% |")
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  if cost:
    print(f"\nXLA cost analysis of the step: {cost.get('flops', 0) / 1e9:.2f} GFLOP, "
          f"{cost.get('bytes accessed', 0) / 1e9:.2f} GB accessed; "
          f"temp {compiled.memory_analysis().temp_size_in_bytes / 2**20:.1f} MiB")

  # The trace: per-HLO-op (thunk) time on the CPU threads; control flow (while/conditional) holds other ops and is
  # left out, so the rest adds up to the work done.
  with tempfile.TemporaryDirectory() as d:
    jax.profiler.start_trace(d)
    for _ in range(steps):
      run()
    _block(holder[0])
    jax.profiler.stop_trace()
    files = glob.glob(os.path.join(d, "**", "*.xplane.pb"), recursive=True)
    data = jax.profiler.ProfileData.from_file(files[0])
  ops = _hlo_ops(compiled.as_text())
  per_op, calls = collections.Counter(), collections.Counter()
  for plane in data.planes:
    for line in plane.lines:
      if line.name == "python" or not plane.name.startswith("/host:CPU") and not plane.name.startswith("/device"):
        continue
      for e in line.events:
        if e.name not in ops or ops[e.name][0] in ("while", "conditional", "call"):
          continue
        per_op[e.name] += e.duration_ns
        calls[e.name] += 1
  total = sum(per_op.values()) or 1
  by_cat = collections.Counter()
  for name, ns in per_op.items():
    by_cat[_category(name, *ops[name])] += ns
  print(f"\nOp time summed over threads, per step (trace of {steps} steps): {total / steps / 1e6:.1f} ms\n")
  print("| category | ms / step | share |")
  print("|---|---:|---:|")
  for cat, ns in by_cat.most_common():
    print(f"| {cat} | {ns / steps / 1e6:.1f} | {100 * ns / total:.1f}% |")
  by_phase = collections.Counter()
  for name, ns in per_op.items():
    by_phase[_phase(ops[name][1])] += ns
  print("\n| part of the step | ms / step | share |")
  print("|---|---:|---:|")
  for phase, ns in by_phase.most_common():
    print(f"| {phase} | {ns / steps / 1e6:.1f} | {100 * ns / total:.1f}% |")
  print(f"\n| top {top} HLO ops | opcode | from | ms / step | share |")
  print("|---|---|---|---:|---:|")
  for name, ns in per_op.most_common(top):
    opcode, where = ops[name]
    where = where if len(where) < 90 else "..." + where[-87:]
    print(f"| {name} | {opcode} | {where} | {ns / steps / 1e6:.2f} | {100 * ns / total:.1f}% |")


# ------------------------------------------------------------------------------------------------- the loop
def loop(config_arg: str, steps: int, repeats: int) -> None:
  """The whole trainer (data, host loop, step) on a config, step-bounded, without evaluation or checkpoints
  inside the run: tokens/s of the budget clock (compilation included and separated)."""
  path, _, variant = config_arg.partition(":")
  name = os.path.splitext(os.path.basename(path))[0]
  for r in range(repeats):
    config = load_config(name, variant)
    config.max_steps = steps
    config.budget = "24h"
    config.eval.every_s = config.eval.every_steps = 0
    config.checkpoint.every_s = config.checkpoint.every_steps = 0
    config.tensorboard = False
    config.log_every_steps = max(1, steps // 5)
    os.chdir(REPO)  # the configs' data paths are relative to the repository
    with tempfile.TemporaryDirectory() as workdir:
      summary = trainer.train_and_evaluate(config, workdir)
      with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    train_rows = [row for row in rows if "tokens_per_sec" in row]
    steady = train_rows[1:]  # the first row's interval holds the compilation
    tps = statistics.median(row["tokens_per_sec"] for row in steady) if steady else float("nan")
    print(f"{config_arg} run {r + 1}: {summary['steps']} steps, {summary['tokens_seen']:,} tokens in "
          f"{summary['elapsed_s']:.1f} s = {summary['tokens_seen'] / summary['elapsed_s']:,.0f} tokens/s overall; "
          f"steady {tps:,.0f} tokens/s (median of {len(steady)} log intervals); compilations "
          f"{summary['train_step_compilations']}")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--models", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
  parser.add_argument("--preset", default="auto", choices=["auto", "full", "small", "tiny"])
  parser.add_argument("--batch", type=int, default=None, help="sequences per micro-batch (default: the recipe's)")
  parser.add_argument("--micro-batches", type=int, default=1, help="micro-batches accumulated per step")
  parser.add_argument("--baseline-step", default="", help="a file defining another `train_step` (e.g. `git show "
                      "REV:came_jax/train/step.py`) to time alongside the current one")
  parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
  parser.add_argument("--attention", default="auto", choices=["auto", "xla", "cudnn"],
                      help="BERT/GPT-2 attention implementation (auto: cudnn on GPU with bf16, else xla)")
  parser.add_argument("--optimizers", nargs="*", default=["came", "adamw"], choices=list(registry.OPTIMIZERS))
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--profile", action="store_true", help="profile the first model with the first optimizer")
  parser.add_argument("--top", type=int, default=15, help="HLO ops listed by --profile")
  parser.add_argument("--loop", default="", help="run the whole trainer on this config (e.g. "
                      "configs/bert_cramming.py:tiny) and report its tokens/s")
  parser.add_argument("--loop-steps", type=int, default=150)
  parser.add_argument("--repeats", type=int, default=1)
  args = parser.parse_args()
  if args.steps < 1 or args.warmup < 0:
    parser.error("--steps must be >= 1 and --warmup >= 0")
  if args.loop:
    loop(args.loop, args.loop_steps, args.repeats)
    return
  preset = args.preset if args.preset != "auto" else ("full" if on_accelerator() else "small")
  dtype = args.dtype if args.dtype != "auto" else ("bfloat16" if on_accelerator() else "float32")
  attention = args.attention
  if attention == "auto":
    attention = "cudnn" if jax.default_backend() == "gpu" and dtype == "bfloat16" else "xla"
  baseline = None
  if args.baseline_step:
    import importlib.util  # pylint: disable=g-import-not-at-top
    spec = importlib.util.spec_from_file_location("_baseline_step", args.baseline_step)
    baseline = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = baseline
    spec.loader.exec_module(baseline)
  setups = {}
  results = []
  for name in args.models:
    setup = make_setup(name, preset, args.batch, dtype, attention, args.micro_batches)
    setups[setup.label] = setup
    if args.profile:
      profile(setup, args.optimizers[0], args.steps, args.warmup, args.top)
      return
    for r in bench(setup, args.optimizers, args.steps, args.warmup, baseline):
      results.append(r)
      print(f"  {r.model} / {r.optimizer}: {1e3 * r.step_s:.1f} ms per step", flush=True)
  print_table(results, setups, dtype)


if __name__ == "__main__":
  main()
