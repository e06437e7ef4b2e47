"""Training-step speed of the recipes' models: step time, tokens/s, MFU, compile time, peak memory, the optimizer's
share of the step and whether cuDNN flash attention is in the compiled step.

The step is the trainer's own (`came_jax.train.step.train_step`, jitted once with the state donated) on
micro-batches made by the recipe's objective from random tokens, with the tokenizer's special ids; the model and
optimizer are the recipe's (`configs/bert_cramming.py`, `configs/gpt2.py`, `configs/t5.py`). Each optimizer's
step is timed in turn with the others' (`came_jax.bench.timing.interleaved`), and so is its update alone (update
+ apply on a copy of the state, also jitted and donated), which gives its share of the step.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import importlib.util
import re
import sys
import time
from types import ModuleType
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from came_jax import models
from came_jax.bench import timing
from came_jax.data import objectives
from came_jax.data import tokenizer as tokenizer_lib
from came_jax.optim import registry
from came_jax.train import metrics as metrics_lib
from came_jax.train import step as step_lib

SMALL_LAYERS = 2  # the `small` preset's layer count (of each stack)


def on_accelerator() -> bool:
  """Whether JAX runs on something other than the CPU."""
  return jax.default_backend() != "cpu"


def resolve(preset: str, dtype: str, attention: str) -> tuple[str, str, str]:
  """The command line's `auto` choices made: `full` and bf16 on an accelerator, `small` and fp32 on CPU, cuDNN
  attention on GPU with bf16 (else XLA's)."""
  preset = preset if preset != "auto" else ("full" if on_accelerator() else "small")
  dtype = dtype if dtype != "auto" else ("bfloat16" if on_accelerator() else "float32")
  if attention == "auto":
    attention = "cudnn" if jax.default_backend() == "gpu" and dtype == "bfloat16" else "xla"
  return preset, dtype, attention


@dataclasses.dataclass(frozen=True)
class SpecialIds:
  """The id layout of `came_jax.data.tokenizer.Tokenizer` for `vocab_size` ids, without a trained model: what
  `objectives.make_objective` reads of a tokenizer.

  >>> ids = SpecialIds(vocab_size=1000)
  >>> ids.cls_id, ids.sep_id, ids.mask_id, ids.normal_id_range, ids.sentinel_id(0)
  (3, 4, 5, (6, 900), 999)
  """

  vocab_size: int
  num_sentinels: int = 100

  pad_id = tokenizer_lib.PAD_ID
  eos_id = tokenizer_lib.EOS_ID
  cls_id = tokenizer_lib.CLS_ID
  sep_id = tokenizer_lib.SEP_ID
  mask_id = tokenizer_lib.MASK_ID
  special_ids = tuple(range(tokenizer_lib.NUM_SPECIAL))

  @property
  def normal_id_range(self) -> tuple[int, int]:
    return tokenizer_lib.NUM_SPECIAL, self.vocab_size - self.num_sentinels

  def sentinel_id(self, i: int) -> int:
    return self.vocab_size - 1 - i


def synthetic_batch(data, batch_size: int, seed: int = 0) -> dict[str, np.ndarray]:
  """A micro-batch of the objective of `data` (a config's `data` section) over uniformly random ordinary tokens,
  made as the pipeline makes it (`objectives.make_objective`) with the tokenizer's special ids."""
  ids = SpecialIds(data.vocab_size, data.num_sentinels)
  obj = objectives.make_objective(
    data.objective,
    ids,
    data.seq_len,
    mlm_rate=data.mlm_rate,
    noise_density=data.noise_density,
    mean_span_length=data.mean_span_length,
  )
  rng = np.random.default_rng(seed)
  tokens = rng.integers(*ids.normal_id_range, (batch_size, obj.row_width)).astype(np.int32)
  return obj(tokens, np.ones_like(tokens, bool), rng)


def with_layers(cfg: Any, n: int) -> Any:
  """`cfg` with `num_layers` and every other layer count it sets (`num_decoder_layers`, ...) made `n`; a count
  left None (following `num_layers`) stays so."""
  counts = {
    f.name: n
    for f in dataclasses.fields(cfg)
    if re.fullmatch(r"num_(\w+_)?layers", f.name) and (f.name == "num_layers" or getattr(cfg, f.name) is not None)
  }
  return dataclasses.replace(cfg, **counts)


@dataclasses.dataclass
class Setup:
  """One model's recipe at a preset: its config, model Config, module and a synthetic batch."""

  title: str  # the model, for tables ("crammed BERT")
  config: Any
  model_cfg: Any
  module: ModuleType
  batch: dict[str, np.ndarray]  # [micro_batches, micro-batch, ...]
  seq_len: int
  batch_size: int  # sequences per step, over all micro-batches

  @property
  def label(self) -> str:
    layers = getattr(self.model_cfg, "num_layers", None)
    return f"{self.title} ({self.config.model.preset}, {layers} layers)"

  @property
  def tokens(self) -> int:
    return self.batch_size * self.seq_len

  def loss_fn(self):
    return functools.partial(self.module.loss_fn, cfg=self.model_cfg)

  def flops_per_token(self) -> float:
    """The model's training FLOPs per input token of one micro-batch."""
    return float(self.module.flops_per_token(self.model_cfg, {k: v.shape[1:] for k, v in self.batch.items()}))


def make_setup(
  config: Any,
  title: str,
  preset: str,
  batch_size: Optional[int],
  dtype: str,
  attention: str,
  micro_batches: int = 1,
  seq_len: Optional[int] = None,
) -> Setup:
  """The model of a pretraining `config` (a recipe, or its `:tiny` variant for the `tiny` preset) at `preset`
  (`small`: the same widths with :data:`SMALL_LAYERS` layers; see the launcher), at sequence length `seq_len`
  (default: the config's), computing in `dtype` with attention `attention` (`xla`: the model's default, or
  `cudnn`), on `micro_batches` synthetic micro-batches of `batch_size` sequences (default: the config's)."""
  config = config.copy_and_resolve_references()
  if seq_len:
    config.data.seq_len = seq_len
  config.model.dtype = dtype
  module = models.get(config.model.name)
  model_cfg = models.from_config_section(config.model, config.data.vocab_size)
  if preset == "small":
    model_cfg = with_layers(model_cfg, SMALL_LAYERS)
  if attention != "xla":
    model_cfg = dataclasses.replace(model_cfg, attention_impl=attention)
  b = batch_size or config.data.batch_size
  stacked = [synthetic_batch(config.data, b, seed=i) for i in range(micro_batches)]
  batch = jax.tree.map(lambda *x: np.stack(x), *stacked)
  return Setup(title, config, model_cfg, module, batch, config.data.seq_len, b * micro_batches)


def make_tx(config, optimizer: str) -> optax.GradientTransformation:
  """The recipe's optimizer section with `optimizer` (a registry name) in place of its own."""
  cfg = config.optimizer.copy_and_resolve_references()
  cfg.name = optimizer
  return registry.make(cfg)


def init_state(setup: Setup, tx: optax.GradientTransformation) -> step_lib.TrainState:
  init = functools.partial(setup.module.init_params, setup.model_cfg)
  create = lambda: step_lib.TrainState.create(init(jax.random.PRNGKey(0)), tx, jax.random.PRNGKey(1))  # noqa: E731
  return jax.jit(create)()


def step_args(setup: Setup) -> tuple[dict[str, np.ndarray], np.int32, np.float32]:
  """The train step's arguments after the state: every micro-batch, their number, a learning rate."""
  return setup.batch, np.int32(setup.batch["input_ids"].shape[0]), np.float32(1e-4)


def memory(compiled) -> tuple[str, Optional[int]]:
  """(source, bytes): the device's peak where it keeps one, else the compiled step's footprint."""
  stats = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    return "device peak", int(stats["peak_bytes_in_use"])
  try:
    m = compiled.memory_analysis()
    return "compiled", int(
      m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes
    )
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
  mfu: Optional[float]
  memory: tuple[str, Optional[int]]
  opt_s: float
  flash: str


class Runner:
  """One optimizer's compiled, donating train step on `setup`, and its update alone on a copy of the state; `step`
  and `update` return their seconds."""

  def __init__(self, setup: Setup, optimizer: str, train_step=step_lib.train_step):
    self.setup, self.optimizer = setup, optimizer
    tx = make_tx(setup.config, optimizer)
    self.state = init_state(setup, tx)
    step = jax.jit(functools.partial(train_step, loss_fn=setup.loss_fn(), tx=tx), donate_argnums=0)
    self.args = step_args(setup)
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
    timing.block(m["loss"])
    return time.perf_counter() - t

  def update(self) -> float:
    if self.opt is None:  # a copy of the state: the train step keeps its own
      self.opt = [jax.tree.map(jnp.copy, self.state.params), jax.tree.map(jnp.copy, self.state.opt_state)]
    t = time.perf_counter()
    self.opt[0], self.opt[1] = self.opt_step(self.opt[0], self.opt[1], self.grads)
    timing.block(self.opt[0])
    return time.perf_counter() - t


def load_step_module(path: str) -> ModuleType:
  """A file defining another `train_step` (e.g. `git show REV:came_jax/train/step.py`), loaded as a module."""
  spec = importlib.util.spec_from_file_location("_baseline_step", path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # (dataclasses in it look their module up)
  spec.loader.exec_module(module)
  return module


def bench(
  setup: Setup, optimizers: Sequence[str], steps: int, warmup: int, baseline: Optional[ModuleType] = None
) -> list[Result]:
  """Each optimizer's step on `setup`: the median of `steps` interleaved steps after `warmup`, and its update alone.

  `baseline`: a module with another `train_step` (`load_step_module`), timed alongside for every optimizer.
  """
  runners = {o: Runner(setup, o) for o in optimizers}
  if baseline is not None:
    runners.update({f"{o} (baseline step)": Runner(setup, o, baseline.train_step) for o in optimizers})
  step_s = timing.interleaved({o: r.step for o, r in runners.items()}, steps, warmup)
  mem = {o: memory(r.compiled) for o, r in runners.items()}
  opt_s = timing.interleaved({o: r.update for o, r in runners.items()}, steps, warmup)
  fpt = setup.flops_per_token()
  results = []
  for o, r in runners.items():
    tps = setup.tokens / step_s[o]
    results.append(
      Result(setup.label, o, r.compile_s, step_s[o], tps, metrics_lib.mfu(tps, fpt), mem[o], opt_s[o], r.flash)
    )
  return results


def _gib(n: Optional[int]) -> str:
  return "n/a" if n is None else f"{n / 2**30:.2f} GiB"


def table(results: Sequence[Result], setups: dict[str, Setup], dtype: str) -> str:
  """The markdown table of `results` (`setups` by label), then CAME's step and update over AdamW's per model."""
  dev = jax.devices()[0]
  lines = [
    f"### Training step: {dev.device_kind} ({jax.default_backend()}), compute dtype {dtype}",
    "",
    "| model | batch x seq | optimizer | compile (s) | step (ms) | tokens/s | MFU | peak memory | "
    "optimizer alone (ms) | optimizer share | cuDNN flash attention |",
    "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
  ]
  for r in results:
    s = setups[r.model]
    mfu = "n/a" if r.mfu is None else f"{100 * r.mfu:.1f}%"
    lines.append(
      f"| {r.model} | {s.batch_size} x {s.seq_len} | {r.optimizer} | {r.compile_s:.1f} | "
      f"{1e3 * r.step_s:.1f} | {r.tokens_per_s:,.0f} | {mfu} | {_gib(r.memory[1])} ({r.memory[0]}) | "
      f"{1e3 * r.opt_s:.1f} | {100 * r.opt_s / r.step_s:.0f}% | {r.flash} |"
    )
  by_model = collections.defaultdict(dict)
  for r in results:
    by_model[r.model][r.optimizer] = r
  for model, rs in by_model.items():
    if "came" in rs and "adamw" in rs:
      lines += [
        "",
        f"{model}: CAME step / AdamW step = {rs['came'].step_s / rs['adamw'].step_s:.2f}x; CAME update "
        f"/ AdamW update = {rs['came'].opt_s / rs['adamw'].opt_s:.2f}x",
      ]
  return "\n".join(lines)
