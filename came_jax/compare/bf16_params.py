"""Does stochastic rounding matter for bf16 parameters? CAME with float32, bf16 round-to-nearest and bf16
stochastically rounded parameters, on the same model, data and seeds.

Three arms:

* ``float32``: float32 parameters, ``optax.apply_updates``;
* ``bf16-nearest``: the same initial values rounded to bfloat16 and kept there; ``optax.apply_updates`` rounds
  ``p + u`` to the nearest bf16 number, so an update below half a bf16 step of its parameter is lost (the sum
  itself is float32, and exact to float32 rounding: the injected learning rate is a float32 array, so CAME's
  bf16 step times the rate is a float32 update);
* ``bf16-stochastic``: as ``bf16-nearest`` with :func:`came_jax.stochastic_rounding` last in the chain.

The loop is a plain one, not the project's trainer (whose parameters are always float32): per step one batch
from :func:`came_jax.data.pipeline.from_config` (the same stream for every arm of a seed), the model's loss and
gradient (computed in float32 from the stored parameters, so that only their storage differs; gradients of bf16
parameters are bf16), CAME (``optax.inject_hyperparams``, so one compiled step per arm serves every learning
rate and seed), then ``optax.apply_updates``. The learning rate is constant, with no warm-up, clipping or weight
decay, and CAME is bias-corrected (as in the pretraining recipes, ``configs/pretrain_base.py``). The final train
loss is the mean of the last ``last`` steps' batch losses; the held-out loss is the token-weighted mean over
``eval_batches`` batches of ``data.eval_path``.
"""

from __future__ import annotations

import functools
import platform
import subprocess
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from came_jax import models
from came_jax.data import pipeline
from came_jax.optim import came as came_lib
from came_jax.optim import rounding

ARMS = ("float32", "bf16-nearest", "bf16-stochastic")


class RunResult(NamedTuple):
  """One run: final train loss, held-out loss, and the fraction of parameter elements still at their initial
  (stored) value at the end."""

  train_loss: float
  heldout_loss: float
  unchanged: float


Results = dict[tuple[float, str, int], RunResult]  # keyed by (learning rate, arm, seed)


def default_config() -> ml_collections.ConfigDict:
  """GPT-2 tiny on the State of the Union addresses (the `:tiny` recipes' data), 250 steps of 8 x 128 tokens."""
  c = ml_collections.ConfigDict()
  c.model = models.config_section("gpt2", "tiny", dtype="float32")
  c.data = pipeline.default_config()
  c.data.update(
    dict(
      path="../shared/data/corpus/state_union",
      eval_path="../shared/data/heldout/wikitext-103/wiki.valid.tokens",
      eval_batches=8,
      objective="causal",
      seq_len=128,
      batch_size=8,
      vocab_size=2048,
      tokenizer_sentences=20000,
      prefetch=0,  # batches are taken by index (`batch_at`), never streamed
    )
  )
  c.steps = 250
  c.last = 25  # steps whose batch losses make the final train loss
  c.learning_rates = (2e-3, 2e-5)  # the `:tiny` recipes' rate, and one at which round-to-nearest stalls
  c.seeds = (0, 1, 2)
  return c


def param_dtype(arm: str):
  """The dtype an arm stores its parameters in."""
  if arm not in ARMS:
    raise ValueError(f"arm {arm!r} is not one of {ARMS}")
  return jnp.float32 if arm == "float32" else jnp.bfloat16


def make_optimizer(arm: str, seed: int) -> optax.GradientTransformation:
  """Bias-corrected CAME with an injected learning rate (set it in ``state.hyperparams``); stochastic rounding
  last for ``bf16-stochastic``."""
  param_dtype(arm)  # validates the arm

  def build(learning_rate):
    tx = came_lib.came(learning_rate, bias_correction=True)
    return optax.chain(tx, rounding.stochastic_rounding(seed)) if arm == "bf16-stochastic" else tx

  return optax.inject_hyperparams(build)(learning_rate=0.0)


def _train_step(params, state, batch, *, tx, loss_fn):
  (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch)
  updates, state = tx.update(grads, state, params)
  return optax.apply_updates(params, updates), state, loss


def _eval_sums(params, batch, *, loss_fn):
  _, metrics = loss_fn(params, batch)
  return metrics["loss"] * metrics["num_tokens"], metrics["num_tokens"]


def run(cfg: ml_collections.ConfigDict, workdir: str) -> Results:
  """Trains every (learning rate, arm, seed) of `cfg` (see :func:`default_config`); tokenizer in `workdir`.

  Each seed sets the initialisation and the data order (`data.seed`), and the stochastic rounding's bits; the
  arms of a seed start from the same values (rounded to bf16 for the bf16 arms) and see the same batches.
  """
  tokenizer = pipeline.build_tokenizer(cfg.data, workdir)
  module = models.get(cfg.model.name)
  model_cfg = models.from_config_section(cfg.model, cfg.data.vocab_size)
  max_len = module.max_len(model_cfg)
  loss_fn = lambda train: lambda p, b: module.loss_fn(p, b, None, cfg=model_cfg, train=train)  # noqa: E731
  eval_batches = [
    {k: jnp.asarray(v) for k, v in b.items()} for b in pipeline.eval_from_config(cfg.data, tokenizer, max_len=max_len)
  ]
  evaluate = jax.jit(functools.partial(_eval_sums, loss_fn=loss_fn(False)))
  steps = {}  # one compiled step per optimizer: the float32 and nearest arms' serve every seed

  def optimizer_and_step(arm, seed):
    key = (arm, seed if arm == "bf16-stochastic" else None)
    if key not in steps:
      tx = make_optimizer(arm, seed)
      steps[key] = tx, jax.jit(functools.partial(_train_step, tx=tx, loss_fn=loss_fn(True)), donate_argnums=(0, 1))
    return steps[key]

  results: Results = {}
  for seed in cfg.seeds:
    data = cfg.data.copy_and_resolve_references()
    data.seed = seed
    stream = pipeline.from_config(data, tokenizer, max_len=max_len)
    batches = [{k: jnp.asarray(v) for k, v in stream.batch_at(i).items()} for i in range(cfg.steps)]
    init = module.init_params(model_cfg, jax.random.PRNGKey(seed))
    for arm in ARMS:
      tx, step = optimizer_and_step(arm, seed)
      start = jax.tree.map(functools.partial(jnp.asarray, dtype=param_dtype(arm)), init)
      for lr in cfg.learning_rates:
        params = jax.tree.map(jnp.copy, start)  # donated to the step
        state = tx.init(params)
        state.hyperparams["learning_rate"] = jnp.asarray(lr, jnp.float32)
        losses = []
        for batch in batches:
          params, state, loss = step(params, state, batch)
          losses.append(loss)
        sums = [evaluate(params, b) for b in eval_batches]
        moved = sum(int(jnp.sum(p != p0)) for p, p0 in zip(jax.tree.leaves(params), jax.tree.leaves(start)))
        results[lr, arm, seed] = RunResult(
          train_loss=float(np.mean(jax.device_get(losses[-cfg.last :]))),
          heldout_loss=float(sum(s for s, _ in sums) / sum(n for _, n in sums)),
          unchanged=1.0 - moved / sum(p.size for p in jax.tree.leaves(start)),
        )
  return results


def cpu_name() -> str:
  """The CPU model (`lscpu`'s "Model name"), or Python's guess where lscpu is missing."""
  try:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
  except (OSError, subprocess.CalledProcessError):
    return platform.processor() or "unknown CPU"
  names = [line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")]
  return names[0] if names else platform.processor() or "unknown CPU"


def table(cfg: ml_collections.ConfigDict, results: Results, command: str, cpu: str) -> str:
  """The markdown report of :func:`run`, with the command and the CPU above it: per learning rate and arm, the
  mean ± standard deviation over seeds of the final train and held-out losses and of their differences to the
  float32 run of the same seed, and the mean fraction of parameter elements that never moved."""
  seeds = list(cfg.seeds)
  lines = [
    f"### CAME with bf16 parameters: {cfg.model.name}:{cfg.model.preset}, {cfg.steps} steps of "
    f"{cfg.data.batch_size} x {cfg.data.seq_len} tokens, seeds {','.join(str(s) for s in seeds)}",
    "",
    "```",
    command,
    "```",
    "",
    f"CPU: {cpu}. Mean ± standard deviation over seeds; Δ: difference to the float32 run of the same seed (same "
    "initialisation and batches); unchanged: parameter elements still at their initial value after the last step.",
    "",
    "| learning rate | parameters | final train loss | Δ vs fp32 | held-out loss | Δ vs fp32 | unchanged |",
    "|---:|---|---:|---:|---:|---:|---:|",
  ]
  for lr in cfg.learning_rates:
    for arm in ARMS:
      runs, ref = [results[lr, arm, s] for s in seeds], [results[lr, "float32", s] for s in seeds]
      cells = []
      for field in ("train_loss", "heldout_loss"):
        values = [getattr(r, field) for r in runs]
        paired = [getattr(r, field) - getattr(f, field) for r, f in zip(runs, ref)]
        cells.append(f"{_mean_sd(values)} | {_mean_sd(paired, signed=True)}")
      unchanged = np.mean([r.unchanged for r in runs])
      lines.append(f"| {lr:g} | {arm} | {cells[0]} | {cells[1]} | {100 * unchanged:.1f}% |")
  return "\n".join(lines)


def _mean_sd(values: Sequence[float], signed: bool = False) -> str:
  """`mean ± sd` (sample standard deviation; 0 for one value), the mean with its sign if `signed`.

  >>> _mean_sd([1.0, 2.0, 3.0]), _mean_sd([0.5, 0.5], signed=True)
  ('2.0000 ± 1.0000', '+0.5000 ± 0.0000')
  """
  sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
  return f"{float(np.mean(values)):{'+' if signed else ''}.4f} ± {sd:.4f}"
