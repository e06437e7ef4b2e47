"""Our training step against PyTorch's on the same machine: GPT-2 and original-layout BERT against `transformers`.

For each model we build our Flax model at scaled-down sizes (:data:`PEERS`), convert its initial parameters with
`came_jax.hf.get(name).to_hf` and load them into `transformers.GPT2LMHeadModel` / `BertForMaskedLM`, so both sides
start from the SAME weights and train on the SAME batch: float32, forward + backward + AdamW (`optax.adamw` inside
the trainer's own step, `came_jax.train.step.train_step`, jitted once with the state donated; `torch.optim.AdamW`
with the same hyperparameters), no clipping, dropout off (so the losses at step 0 agree). Contestants:

* ``ours``: the trainer's step (it also computes the accuracy metric and the gradient, update and parameter norms);
* ``ours, plain step``: `jax.value_and_grad` of the model's loss + `optax.adamw`, jitted (the trainer's overhead);
* ``ours, dense MLM head`` (BERT): predicting every position as `BertForMaskedLM` does, where ours predicts only
  the masked slots;
* ``PyTorch eager`` and ``torch.compile`` (the loss function compiled, AdamW eager; skipped with a note when it
  fails on this machine).

All contestants are timed in turn, one step of each per round (`came_jax.bench.timing.interleaved_times`), and the
table gives each one's median step and its fastest round, each over ours. Read both: on a shared CPU PyTorch's
eager step swings by up to 8x from one step to the next (its OpenMP threads wait for cores that other work holds;
measured on a 2-core AMD EPYC: 0.5-3.6 s for the same GPT-2 step, alone in its process), far more than our jitted
step does, so its median there is its contention, and its fastest round the nearest to a quiet machine.
Without torch or transformers the PyTorch rows are left out with a note.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
import platform
import statistics
import time
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from came_jax import hf, models
from came_jax.bench import timing, train_step
from came_jax.train import step as step_lib

LEARNING_RATE, BETAS, EPS, WEIGHT_DECAY = 1e-4, (0.9, 0.999), 1e-8, 0.01
MASK_RATE = 0.15  # BERT: the share of positions predicted
FIRST_ID = 6  # random tokens are drawn from [FIRST_ID, vocab): the tokenizer's special ids stay out
MASK_ID = 5


@dataclasses.dataclass(frozen=True)
class Peer:
  """One comparison: our model `model` at preset `preset` with `sizes`, on `batch_size` x `seq_len` tokens."""

  name: str  # the model, for tables ("GPT-2")
  model: str  # our model name (came_jax.models / came_jax.hf)
  preset: str
  sizes: dict
  batch_size: int
  seq_len: int

  def config(self) -> Any:
    return models.make_config(self.model, self.preset, **self.sizes)

  @property
  def title(self) -> str:
    s = self.sizes
    return f"{self.name} {s['num_layers']} x {s['hidden_dim']}, vocab {s['vocab_size']}"


_WIDTHS = dict(vocab_size=8192, hidden_dim=256, num_layers=4, num_heads=4, ffn_dim=1024)
PEERS = {
  "gpt2": Peer("GPT-2", "gpt2", "small", dict(_WIDTHS, max_len=256), 8, 256),
  "bert": Peer(
    "BERT (original layout, MLM)",
    "bert",
    "bert-base-original",
    dict(_WIDTHS, max_len=128, dropout_rate=0.0),
    8,
    128,
  ),
}


def tiny(peer: Peer) -> Peer:
  """`peer` shrunk for tests: 1 layer, width 32, vocab 97, 2 x 16 tokens."""
  sizes = dict(peer.sizes, vocab_size=97, hidden_dim=32, num_layers=1, num_heads=2, ffn_dim=64, max_len=16)
  return dataclasses.replace(peer, sizes=sizes, batch_size=2, seq_len=16)


def torch_available() -> Optional[str]:
  """None when torch and transformers can be imported, else the note that says which is missing."""
  missing = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
  return f"PyTorch rows skipped: {' and '.join(missing)} not installed." if missing else None


# ----------------------------------------------------------------------------------------------------------------
# The batch, on both sides


def make_batch(peer: Peer, seed: int = 0) -> dict[str, np.ndarray]:
  """Our batch for `peer`'s model: causal LM (GPT-2: next tokens, all weighted) or sparse MLM (BERT: `MASK_RATE`
  of the positions, without the first, replaced by `MASK_ID`; `mlm_labels_dense`/`mlm_weights_dense` [B, T] give
  the same targets at every position, for a dense head)."""
  cfg = peer.config()
  rng = np.random.default_rng(seed)
  b, t = peer.batch_size, peer.seq_len
  tokens = rng.integers(FIRST_ID, cfg.vocab_size, (b, t + 1)).astype(np.int32)
  if peer.model == "gpt2":
    return {"input_ids": tokens[:, :-1], "labels": tokens[:, 1:], "weights": np.ones((b, t), np.float32)}
  k = max(1, round(MASK_RATE * t))
  positions = np.sort(np.stack([rng.choice(np.arange(1, t), k, replace=False) for _ in range(b)]), axis=1)
  ids = tokens[:, :t].copy()
  labels = np.take_along_axis(ids, positions, axis=1)
  np.put_along_axis(ids, positions, MASK_ID, axis=1)
  dense_labels, dense_weights = np.zeros((b, t), np.int32), np.zeros((b, t), np.float32)
  np.put_along_axis(dense_labels, positions, labels, axis=1)
  np.put_along_axis(dense_weights, positions, 1.0, axis=1)
  return {
    "input_ids": ids,
    "attention_mask": np.ones((b, t), np.int32),
    "token_type_ids": np.zeros((b, t), np.int32),
    "mlm_positions": positions.astype(np.int32),
    "mlm_labels": labels,
    "mlm_weights": np.ones((b, k), np.float32),
    "mlm_labels_dense": dense_labels,
    "mlm_weights_dense": dense_weights,
  }


def dense_mlm(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The BERT batch with targets at every position (no `mlm_positions`): the head runs on all of them."""
  rest = {k: v for k, v in batch.items() if not k.startswith("mlm_")}
  return {**rest, "mlm_labels": batch["mlm_labels_dense"], "mlm_weights": batch["mlm_weights_dense"]}


def sparse(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  return {k: v for k, v in batch.items() if not k.endswith("_dense")}


# ----------------------------------------------------------------------------------------------------------------
# Contestants: each is set up (compiled / warmed) once, then `step()` returns its seconds and keeps its first loss


def adamw() -> optax.GradientTransformation:
  """`optax.adamw` with `torch.optim.AdamW`'s hyperparameters here, its learning rate injected (the trainer sets it)."""
  return optax.inject_hyperparams(optax.adamw)(
    learning_rate=LEARNING_RATE, b1=BETAS[0], b2=BETAS[1], eps=EPS, weight_decay=WEIGHT_DECAY
  )


def setup(peer: Peer) -> train_step.Setup:
  """Our side of `peer` as a `train_step.Setup` (one micro-batch), for `hlo_profile.profile` with :func:`adamw`."""
  config = ml_collections.ConfigDict({"model": {"name": peer.model, "preset": f"{peer.preset} at peer sizes"}})
  batch = jax.tree.map(lambda x: x[None], sparse(make_batch(peer)))
  module = models.get(peer.model)
  return train_step.Setup(peer.title, config, peer.config(), module, batch, peer.seq_len, peer.batch_size)


class Ours:
  """The trainer's step (`plain=False`) or a plain value_and_grad + optax.adamw step, jitted and donated."""

  def __init__(self, peer: Peer, params: Any, batch: dict[str, np.ndarray], *, plain: bool = False):
    module, cfg = models.get(peer.model), peer.config()
    loss_fn = functools.partial(module.loss_fn, cfg=cfg)
    params = jax.tree.map(jnp.array, params)  # its own buffers: the step donates them
    tx = adamw()
    if plain:

      def step(state, batch):
        params, opt_state = state
        (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, None, train=True)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

      self.state, self.args = (params, tx.init(params)), (batch,)
    else:

      def step(state, batch, num_micro, lr):
        state, metrics = step_lib.train_step(state, batch, num_micro, lr, loss_fn=loss_fn, tx=tx)
        return state, metrics["loss"]

      self.state = step_lib.TrainState.create(params, tx, jax.random.PRNGKey(0))
      self.args = (jax.tree.map(lambda x: x[None], batch), np.int32(1), np.float32(LEARNING_RATE))
    t = time.perf_counter()
    self.compiled = jax.jit(step, donate_argnums=0).lower(self.state, *self.args).compile()
    self.setup_s = time.perf_counter() - t
    self.first_loss: Optional[float] = None

  def step(self) -> float:
    t = time.perf_counter()
    self.state, loss = self.compiled(self.state, *self.args)
    timing.block(loss)
    seconds = time.perf_counter() - t
    if self.first_loss is None:
      self.first_loss = float(loss)
    return seconds


def torch_model(peer: Peer, params: Any) -> Any:
  """`transformers`' model equal to ours (`config_to_hf`), holding our `params` (`to_hf`), in train mode."""
  import torch  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel

  conversion, cfg = hf.get(peer.model), peer.config()
  hf_config = conversion.config_to_hf(cfg)
  cls = getattr(transformers, hf_config["architectures"][0])
  model = cls(transformers.AutoConfig.for_model(**hf_config))
  state = {k: torch.from_numpy(np.array(v)) for k, v in conversion.to_hf(params, cfg).items()}
  missing, unexpected = model.load_state_dict(state, strict=False)
  tied = {"lm_head.weight", "cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}
  if unexpected or set(missing) - tied:
    raise ValueError(f"state dict does not fit {cls.__name__}: missing {missing}, unexpected {unexpected}")
  model.tie_weights()
  return model.float().train()


class Torch:
  """`transformers`' model with our weights, `torch.optim.AdamW`, eager or with the loss `torch.compile`d."""

  def __init__(self, peer: Peer, params: Any, batch: dict[str, np.ndarray], *, compile: bool = False):
    import torch  # pylint: disable=import-outside-toplevel

    self.torch = torch
    self.model = torch_model(peer, params)
    self.opt = torch.optim.AdamW(
      self.model.parameters(), lr=LEARNING_RATE, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY
    )
    as_long = lambda x: torch.as_tensor(np.asarray(x), dtype=torch.long)  # noqa: E731
    if peer.model == "gpt2":
      inputs, labels = {"input_ids": as_long(batch["input_ids"])}, as_long(batch["labels"])
    else:  # BertForMaskedLM's targets: -100 (ignored) except at the masked positions
      dense = np.where(batch["mlm_weights_dense"] > 0, batch["mlm_labels_dense"], -100)
      inputs = {k: as_long(batch[k]) for k in ("input_ids", "attention_mask", "token_type_ids")}
      labels = as_long(dense)
    model = self.model

    def loss_fn(inputs, labels):
      logits = model(**inputs).logits
      return torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)

    self.loss_fn = torch.compile(loss_fn) if compile else loss_fn
    self.inputs, self.labels = inputs, labels
    self.first_loss: Optional[float] = None
    t = time.perf_counter()
    self._first = self._step()  # (for torch.compile: compilation; raises here when it fails)
    self.setup_s = time.perf_counter() - t

  def _step(self) -> float:
    loss = self.loss_fn(self.inputs, self.labels)
    loss.backward()
    self.opt.step()
    self.opt.zero_grad(set_to_none=True)
    return float(loss.detach())

  def step(self) -> float:
    t = time.perf_counter()
    self._step()
    return time.perf_counter() - t


# ----------------------------------------------------------------------------------------------------------------
# The comparison


@dataclasses.dataclass
class Row:
  peer: str  # the Peer's title
  contestant: str
  step_s: float
  setup_s: float  # compile (ours, torch.compile) or the first step (eager)
  first_loss: float
  vs_ours: float = float("nan")  # step_s / ours' step_s
  best_s: float = float("nan")  # the fastest round's step
  best_vs_ours: float = float("nan")  # best_s / ours' best_s


def compare(
  peer: Peer, steps: int, warmup: int, *, compile: bool = True, log: Callable[[str], None] = lambda s: None
) -> tuple[list[Row], list[str]]:
  """`peer`'s contestants timed in turn: rows (median of `steps` rounds after `warmup`) and notes (skips, failures).

  Every contestant starts from the same parameters (our initialisation) and steps on the same batch; a row's
  `first_loss` is its loss at step 0.
  """
  cfg = peer.config()
  params = jax.device_get(models.get(peer.model).init_params(cfg, jax.random.PRNGKey(0)))
  batch = make_batch(peer)
  contestants: dict[str, Any] = {}
  notes: list[str] = []
  log(f"{peer.title}: compiling ours")
  contestants["ours"] = Ours(peer, params, sparse(batch))
  contestants["ours, plain step"] = Ours(peer, params, sparse(batch), plain=True)
  if peer.model == "bert":
    contestants["ours, dense MLM head (as BertForMaskedLM)"] = Ours(peer, params, dense_mlm(batch))
  missing = torch_available()
  if missing:
    notes.append(missing)
  else:
    log(f"{peer.title}: PyTorch eager")
    contestants["PyTorch eager"] = Torch(peer, params, batch)
    if compile:
      log(f"{peer.title}: torch.compile (compiling)")
      try:
        contestants["torch.compile"] = Torch(peer, params, batch, compile=True)
      except Exception as e:  # pylint: disable=broad-except  # compilers fail in many ways on a CPU
        notes.append(f"torch.compile failed on this machine, kept eager: {type(e).__name__}: {str(e)[:200]}")
  log(f"{peer.title}: timing {len(contestants)} contestants in turn")
  times = timing.interleaved_times({k: c.step for k, c in contestants.items()}, steps, warmup)
  step_s = {k: statistics.median(v) for k, v in times.items()}
  best_s = {k: min(v) for k, v in times.items()}
  rows = []
  for name, c in contestants.items():
    first = c.first_loss if isinstance(c, Ours) else c._first  # pylint: disable=protected-access
    ratio, best = step_s[name] / step_s["ours"], best_s[name] / best_s["ours"]
    rows.append(Row(peer.title, name, step_s[name], c.setup_s, first, ratio, best_s[name], best))
  return rows, notes


def cpu_name() -> str:
  """The CPU's model name (Linux `/proc/cpuinfo`), else `platform.processor()`."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown CPU"


def header() -> str:
  """What the numbers were measured on: CPU (or JAX device), cores, JAX and torch threads and versions."""
  dev = jax.devices()[0]
  where = f"{cpu_name()}" if jax.default_backend() == "cpu" else f"{dev.device_kind} ({jax.default_backend()})"
  parts = [where, f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end"]
  parts.append(f"{jax.local_device_count()} JAX device(s), jax {jax.__version__}")
  if not torch_available():
    import torch  # pylint: disable=import-outside-toplevel
    import transformers  # pylint: disable=import-outside-toplevel

    parts.append(
      f"torch {torch.__version__} ({torch.get_num_threads()} threads), transformers {transformers.__version__}"
    )
  return ", ".join(parts)


def table(rows: Sequence[Row], peers: Sequence[Peer], notes: Sequence[str]) -> str:
  """The markdown table: per model, each contestant's median step, its ratio to ours, set-up time, loss at step 0."""
  by_title = {p.title: p for p in peers}
  lines = [
    f"### Training step vs PyTorch: {header()}",
    "",
    "| model | batch x seq | contestant | step (ms) | time / ours | best step (ms) | best / ours' best | "
    "compile or first step (s) | loss at step 0 |",
    "|---|---|---|---:|---:|---:|---:|---:|---:|",
  ]
  for r in rows:
    p = by_title[r.peer]
    lines.append(
      f"| {r.peer} | {p.batch_size} x {p.seq_len} | {r.contestant} | {1e3 * r.step_s:.1f} | {r.vs_ours:.2f}x | "
      f"{1e3 * r.best_s:.1f} | {r.best_vs_ours:.2f}x | {r.setup_s:.1f} | {r.first_loss:.5f} |"
    )
  lines += [""] + [f"Note: {n}" for n in notes] if notes else []
  return "\n".join(lines)


def run(names: Sequence[str], steps: int, warmup: int, *, compile: bool = True, shrink: bool = False) -> str:
  """The table for the peers `names` (keys of :data:`PEERS`); `shrink`: their :func:`tiny` versions."""
  rows, notes, peers = [], [], []
  for name in names:
    peer = tiny(PEERS[name]) if shrink else PEERS[name]
    r, n = compare(peer, steps, warmup, compile=compile, log=lambda s: print(f"  {s}", flush=True))
    rows += r
    notes += n
    peers.append(peer)
  return table(rows, peers, notes)
