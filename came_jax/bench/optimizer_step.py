"""Optimizer step time and state memory: came_jax.came vs optax AdamW/Adafactor and the PyTorch references.

For a model's real parameter shapes (`came_jax.bench.shapes`, fp32), every optimizer takes a jitted,
buffer-donating step `(params, state) <- apply(update(grads, state, params))` on fixed random gradients; when
`torch` and `came_pytorch` are installed, `torch.optim.AdamW` and `came_pytorch.CAME` take `optimizer.step()` on
the same shapes (CPU, float32, with as many threads as JAX uses). The steps are interleaved
(`came_jax.bench.timing`), and each is reported as a ratio to `optax.adamw` measured in the same run.

The table's heading names the CPU and its L2 cache as `came_jax.optim.came_cpu` reads it (the default row-block
size derives from it); rows for other cache sizes (`with_l2_sizes`) stand for machines with other caches.
"""

from __future__ import annotations

import functools
import os
import platform
import statistics
import time
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from came_jax.bench import shapes, timing
from came_jax.optim import came as came_lib
from came_jax.optim import came_cpu

# label -> a function making the optax transformation; `with_chunk_sizes` adds blocked CAMEs.
JAX_OPTIMIZERS: dict[str, Callable[[], optax.GradientTransformation]] = {
  "optax.adamw": lambda: optax.adamw(1e-3, weight_decay=0.01),
  "came_jax.came": lambda: came_lib.came(1e-3, weight_decay=0.01),
  "came_jax.came (bf16 m)": lambda: came_lib.came(1e-3, weight_decay=0.01, momentum_dtype="bfloat16"),
  "came_jax.came (8-bit m)": lambda: came_lib.came(1e-3, weight_decay=0.01, momentum_dtype="int8"),
  "optax.adafactor": lambda: optax.adafactor(1e-3),
}


def chunk_label(chunk_bytes: int) -> str:
  """The label of `came_jax.came` with row blocks of `chunk_bytes` (0: unblocked).

  >>> chunk_label(1048576), chunk_label(0)
  ('came_jax.came (blocks of 1024 KiB)', 'came_jax.came (unblocked)')
  """
  return f"came_jax.came (blocks of {chunk_bytes // 1024} KiB)" if chunk_bytes else "came_jax.came (unblocked)"


def l2_label(l2_bytes: int) -> str:
  """The label of `came_jax.came` with the row-block size it picks for an L2 cache of `l2_bytes`.

  >>> l2_label(262144)
  'came_jax.came (L2 taken as 256 KiB: blocks of 32 KiB)'
  """
  block = came_cpu.default_block_bytes(l2_bytes)
  return f"came_jax.came (L2 taken as {l2_bytes // 1024} KiB: blocks of {block // 1024} KiB)"


def with_chunk_sizes(
  chunk_sizes: Sequence[int], l2_sizes: Sequence[int] = ()
) -> dict[str, Callable[[], optax.GradientTransformation]]:
  """:data:`JAX_OPTIMIZERS` and `came_jax.came` with each of these row-block sizes (`chunk_bytes`; 0: unblocked)
  and with the block size it would pick on a core with each of these L2 sizes (`l2_sizes`, bytes)."""
  found = dict(JAX_OPTIMIZERS)
  for size in chunk_sizes:
    found[chunk_label(size)] = functools.partial(came_lib.came, 1e-3, weight_decay=0.01, chunk_bytes=size or None)
  for l2 in l2_sizes:
    block = came_cpu.default_block_bytes(l2)
    found[l2_label(l2)] = functools.partial(came_lib.came, 1e-3, weight_decay=0.01, chunk_bytes=block)
  return found


def cpu_name() -> str:
  """The CPU's model name as Linux reports it (``/proc/cpuinfo``), or the platform's processor string."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.lower().startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown CPU"


def machine_line() -> str:
  """The device, and on a CPU its model, core count and L2 cache per core (as the CAME kernel reads it)."""
  device = jax.devices()[0]
  if device.platform != "cpu":
    return device.device_kind
  return (
    f"CPU: {cpu_name()}, {os.cpu_count()} cores, L2 {came_cpu.l2_cache_bytes() // 1024} KiB per core "
    f"(came_jax.came's default blocks: {came_cpu.default_block_bytes() // 1024} KiB)"
  )


class JaxRunner:
  """One optimizer's compiled, donating step over its own params and state; a call returns its seconds."""

  def __init__(self, tx: optax.GradientTransformation, params: Any, grads: Any):
    self.params = jax.tree.map(jnp.copy, params)
    self.grads = grads
    self.state = tx.init(self.params)
    self.state_bytes = shapes.num_bytes(self.state)

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(params, state, grads):
      updates, state = tx.update(grads, state, params)
      return optax.apply_updates(params, updates), state

    self._step = step

  def __call__(self) -> float:
    start = time.perf_counter()
    self.params, self.state = self._step(self.params, self.state, self.grads)
    timing.block((self.params, self.state))
    return time.perf_counter() - start


class TorchRunner:
  """A PyTorch optimizer's `step()` on tensors holding `params`, their `.grad` set to `grads`."""

  def __init__(self, make: Callable[[list], Any], params: Any, grads: Any):
    import torch  # pylint: disable=g-import-not-at-top

    self._torch = torch
    self.tensors = [torch.nn.Parameter(torch.from_numpy(np.array(p))) for p in jax.tree.leaves(params)]
    for t, g in zip(self.tensors, jax.tree.leaves(grads)):
      t.grad = torch.from_numpy(np.array(g))
    self.opt = make(self.tensors)
    self()  # creates the state
    self.state_bytes = sum(
      v.numel() * v.element_size()
      for s in self.opt.state.values()
      for v in s.values()
      if torch.is_tensor(v) and v.dim() > 0
    )

  def __call__(self) -> float:
    start = time.perf_counter()
    with self._torch.no_grad():
      self.opt.step()
    return time.perf_counter() - start


def torch_optimizers() -> dict[str, Callable[[list], Any]]:
  """label -> a function making the PyTorch optimizer over a list of tensors, for those installed."""
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


def bench_model(
  label: str,
  steps: int,
  warmup: int,
  include: Optional[Sequence[str]] = None,
  jax_optimizers: Optional[dict[str, Callable[[], optax.GradientTransformation]]] = None,
) -> str:
  """The markdown table of every optimizer's step on model `label` of `shapes.MODELS`.

  Args:
    label: the model.
    steps: timed steps per optimizer (interleaved); the median and the minimum are reported.
    warmup: untimed steps before.
    include: the labels to time (default: all).
    jax_optimizers: label -> optax transformation maker (default :data:`JAX_OPTIMIZERS`).

  Returns:
    A heading and a table: step time, its ratio to `optax.adamw`'s, state bytes over parameter bytes.
  """
  param_shapes = shapes.param_shapes(label)
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda s: jnp.asarray(rng.normal(0, 0.02, s.shape), jnp.float32), param_shapes)
  grads = jax.tree.map(lambda s: jnp.asarray(rng.normal(0, 1e-3, s.shape), jnp.float32), param_shapes)
  param_bytes = shapes.num_bytes(param_shapes)

  runners: dict[str, Any] = {}
  for name, make in (jax_optimizers or JAX_OPTIMIZERS).items():
    if include is None or name in include:
      runners[name] = JaxRunner(make(), params, grads)
  for name, make in torch_optimizers().items():
    if include is None or name in include:
      runners[name] = TorchRunner(make, params, grads)

  times = timing.interleaved_times(runners, steps, warmup)
  median = {name: statistics.median(ts) for name, ts in times.items()}
  base = median.get("optax.adamw")
  lines = [
    f"### {label}: {shapes.num_params(param_shapes) / 1e6:.1f}M params, "
    f"{len(jax.tree.leaves(param_shapes))} tensors, median of {steps} steps after {warmup} warm-up",
    "",
    machine_line(),
    "",
    "| optimizer | step (ms) | min (ms) | vs optax.adamw | state bytes / param bytes |",
    "|---|---:|---:|---:|---:|",
  ]
  for name, run in runners.items():
    ratio = f"{median[name] / base:.2f}×" if base else "n/a"
    lines.append(
      f"| {name} | {median[name] * 1e3:.1f} | {min(times[name]) * 1e3:.1f} | {ratio} | "
      f"{run.state_bytes / param_bytes:.3f} |"
    )
  return "\n".join(lines)
