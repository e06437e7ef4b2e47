"""Where a train step's time goes: its jitted pieces timed apart, then a `jax.profiler` trace of the whole step
summed by HLO op, by op category and by part of the step (forward, backward, optimizer update, ...).

The trace counts per-HLO-op (thunk) time on the CPU threads (or the device); control flow (while, conditional,
call) holds other ops and is left out, so the rest adds up to the work done.
"""

from __future__ import annotations

import collections
import functools
import glob
import os
import re
import statistics
import tempfile
from typing import Optional

import jax
import jax.numpy as jnp
import optax

from came_jax.bench import timing, train_step
from came_jax.train import step as step_lib

_CONTROL_FLOW = ("while", "conditional", "call")


def hlo_ops(hlo: str) -> dict[str, tuple[str, str]]:
  """HLO instruction name -> (opcode, the jax op it came from), from a compiled module's text.

  >>> hlo_ops('%fusion.3 = f32[8]{0} fusion(%p), kind=kLoop, metadata={op_name="jit(step)/jvp(mul)"}')
  {'fusion.3': ('fusion:kLoop', 'jvp(mul)')}
  """
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


def category(name: str, opcode: str, where: str) -> str:
  """The kind of work an HLO op does (matmul, copy, reduction or elementwise fusion, slicing, or its opcode).

  >>> category("dot.1", "dot", ""), category("reduce_fusion", "fusion:kInput", ""), category("add.2", "add", "")
  ('matmul (dot / XNNPACK fusion)', 'reduction fusion', 'add')
  """
  del where
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


def phase(where: str) -> str:
  """Which part of the train step an HLO op (by its jax source path) belongs to.

  >>> phase("while/body/transpose(jvp(dense))"), phase("optimizer/mul")
  ('backward', 'optimizer update (incl. clipping)')
  """
  if "transpose(jvp" in where:
    return "backward"
  if "jvp(" in where:
    return "forward"
  if "optimizer" in where or "cond/branch_1_fun" in where:  # the named scope (or the older lax.cond's branch)
    return "optimizer update (incl. clipping)"
  if "while/body" in where:
    return "gradient accumulation (loop)"
  return "the rest: gradient scaling, norms, metrics"


def _trace_ns(run, steps: int, ops: dict[str, tuple[str, str]]) -> collections.Counter:
  """Nanoseconds per HLO op over `steps` calls of `run` under `jax.profiler` (control flow left out)."""
  with tempfile.TemporaryDirectory() as d:
    jax.profiler.start_trace(d)
    out = None
    for _ in range(steps):
      out = run()
    timing.block(out)
    jax.profiler.stop_trace()
    files = glob.glob(os.path.join(d, "**", "*.xplane.pb"), recursive=True)
    data = jax.profiler.ProfileData.from_file(files[0])
  per_op = collections.Counter()
  for plane in data.planes:
    for line in plane.lines:
      if line.name == "python" or not plane.name.startswith("/host:CPU") and not plane.name.startswith("/device"):
        continue
      for e in line.events:
        if e.name not in ops or ops[e.name][0] in _CONTROL_FLOW:
          continue
        per_op[e.name] += e.duration_ns
  return per_op


def _shares(title: str, counts: collections.Counter, steps: int, total: int) -> list[str]:
  lines = [f"| {title} | ms / step | share |", "|---|---:|---:|"]
  for key, ns in counts.most_common():
    lines.append(f"| {key} | {ns / steps / 1e6:.1f} | {100 * ns / total:.1f}% |")
  return lines


def profile(
  setup: train_step.Setup,
  optimizer: str,
  steps: int,
  warmup: int,
  top: int,
  tx: Optional[optax.GradientTransformation] = None,
) -> str:
  """The markdown report: jitted pieces timed alone (median of `steps` after `warmup`), the XLA cost analysis,
  then the traced op time by category, by part of the step, and the `top` HLO ops.

  `tx`: the optimizer (default: the recipe's `setup.config` with `optimizer`, `train_step.make_tx`); `optimizer`
  names it in the report.
  """
  tx = tx if tx is not None else train_step.make_tx(setup.config, optimizer)
  state = train_step.init_state(setup, tx)
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
  args = train_step.step_args(setup)
  compiled = step.lower(state, *args).compile()

  median = lambda fn: statistics.median(timing.repeat(fn, steps, warmup))  # noqa: E731
  pieces = {
    "forward, one micro-batch": median(lambda: fwd(state.params, mb)),
    "forward + backward, one micro-batch": median(lambda: fwd_bwd(state.params, mb)),
  }
  opt = [jax.tree.map(jnp.copy, state.params), jax.tree.map(jnp.copy, state.opt_state)]

  def run_opt():
    opt[0], opt[1] = opt_step(opt[0], opt[1], grads)
    return opt[0]

  pieces[f"{optimizer} update alone"] = median(run_opt)
  holder = [state]

  def run():
    holder[0], m = compiled(holder[0], *args)
    return m["loss"]

  pieces["whole train step"] = median(run)
  lines = [
    f"### Profile: {setup.label}, {setup.batch_size} x {setup.seq_len}, {optimizer}, {jax.devices()[0].device_kind}",
    "",
    f"| piece (jitted alone) | median (ms) | share of the step ({setup.batch['input_ids'].shape[0]} micro-batches) |",
    "|---|---:|---:|",
  ]
  for k, v in pieces.items():
    lines.append(f"| {k} | {1e3 * v:.1f} | {100 * v / pieces['whole train step']:.0f}% |")
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  if cost:
    lines += [
      "",
      f"XLA cost analysis of the step: {cost.get('flops', 0) / 1e9:.2f} GFLOP, "
      f"{cost.get('bytes accessed', 0) / 1e9:.2f} GB accessed; "
      f"temp {compiled.memory_analysis().temp_size_in_bytes / 2**20:.1f} MiB",
    ]

  ops = hlo_ops(compiled.as_text())
  per_op = _trace_ns(run, steps, ops)
  total = sum(per_op.values()) or 1
  by_cat, by_phase = collections.Counter(), collections.Counter()
  for name, ns in per_op.items():
    by_cat[category(name, *ops[name])] += ns
    by_phase[phase(ops[name][1])] += ns
  lines += ["", f"Op time summed over threads, per step (trace of {steps} steps): {total / steps / 1e6:.1f} ms", ""]
  lines += _shares("category", by_cat, steps, total)
  lines += [""] + _shares("part of the step", by_phase, steps, total)
  lines += ["", f"| top {top} HLO ops | opcode | from | ms / step | share |", "|---|---|---|---:|---:|"]
  for name, ns in per_op.most_common(top):
    opcode, where = ops[name]
    where = where if len(where) < 90 else "..." + where[-87:]
    lines.append(f"| {name} | {opcode} | {where} | {ns / steps / 1e6:.2f} | {100 * ns / total:.1f}% |")
  return "\n".join(lines)
