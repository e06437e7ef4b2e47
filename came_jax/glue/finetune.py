"""GLUE fine-tuning of a pretrained model with a classifier (BERT): `finetune_and_evaluate(config, workdir)`.

The model is reached only through the protocol of `came_jax.models` (its classifier functions). For each task in
`config.tasks` (default: all nine) and each seed in `config.seeds`: a fresh classifier head on the pretrained model,
`config.epochs` epochs (or `config.max_steps` steps) of `config.batch_size` examples with the optimizer built by
`came_jax.optim.registry` from `config.optimizer` (cramming's AdamW, or CAME) under a cosine schedule with linear
warm-up, dropout `config.dropout_rate`; then the dev sets are scored and the test sets predicted. Per metric the
median over seeds is reported; the test predictions submitted are those of the seed whose headline dev score is the
median (the lower median for an even number of seeds).

Shapes are static: every example is padded to `config.max_len` (`[CLS] a [SEP] b [SEP]`, longest-first
truncation), the last batch of an epoch is filled with weight-0 copies of real rows, so one compiled train step
(jitted once per model config and donated, `came_jax.train.step.train_step` with a single micro-batch) serves
every task with the same number of labels and every seed. The learning rate is a runtime argument.

Outputs in `workdir`: `results.json`, `results.md` (see `came_jax.glue.report`), `submission/<TASK>.tsv`, and
`runs/<TASK>/seed_<k>.json`, one finished (task, seed) each: a re-run with the same settings reuses them, so an
interrupted sweep resumes at the next task or seed.

Absent tasks or splits are reported, never fatal; malformed files raise `GlueFormatError` (file and line).
Data come from a GLUE-layout folder (`config.source="tsv"`) or TFDS `glue/<task>` (`"tfds"`), see
`came_jax.glue.tasks`. Reported training seconds include compilation for the first run of each model config.

Measured (2-core CPU, `configs/glue.py:tiny` from random init, 600 steps, full training and dev sets): SST-2
accuracy 72.9, STS-B Spearman 9.3, RTE 53.1, CoLA MCC 0.0, at about 120 steps/s (batch 16, length 64).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import pathlib
import time
import types
from typing import Any, Callable

import jax
import ml_collections
import numpy as np

from came_jax import models
from came_jax import pretrained as pretrained_lib
from came_jax.data import tokenizer as tokenizer_lib
from came_jax.glue import metrics as metrics_lib
from came_jax.glue import report
from came_jax.glue import tasks as tasks_lib
from came_jax.optim import registry
from came_jax.train import schedules
from came_jax.train import step as step_lib

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------------ inputs


def truncate_pair(len_a: int, len_b: int, budget: int) -> tuple[int, int]:
  """Longest-first truncation (BERT's): remove tokens one at a time from the longer text (from `b` on ties)
  until `len_a + len_b <= budget`. Returns the kept lengths."""
  if len_a + len_b <= budget:
    return len_a, len_b
  half = budget // 2
  if len_a <= half:
    return len_a, budget - len_a
  if len_b <= half:
    return budget - len_b, len_b
  return budget - half, half


def encode(tokenizer: tokenizer_lib.TokenizerProtocol, split: tasks_lib.Split, max_len: int) -> dict[str, np.ndarray]:
  """`[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]`, padded with the tokenizer's pad id to `max_len`: int32
  `input_ids`, `attention_mask`, `token_type_ids` (1 on `b [SEP]`) of shape `[N, max_len]`.

  Raises:
    came_jax.data.tokenizer.MissingTokenError: the tokenizer has no `[CLS]`, `[SEP]` or pad token (naming it).
  """
  try:
    cls_id, sep_id, pad_id = tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id
  except tokenizer_lib.MissingTokenError as e:
    raise tokenizer_lib.MissingTokenError(f"GLUE examples are framed by [CLS] and [SEP]: {e}") from e
  n = len(split)
  pair = split.text_b is not None
  ids_a = tokenizer.encode_batch(split.text_a) if n else []
  ids_b = tokenizer.encode_batch(split.text_b) if pair and n else [[] for _ in range(n)]
  input_ids = np.full((n, max_len), pad_id, np.int32)
  mask = np.zeros((n, max_len), np.int32)
  types = np.zeros((n, max_len), np.int32)
  budget = max_len - (3 if pair else 2)
  for i, (a, b) in enumerate(zip(ids_a, ids_b)):
    la, lb = truncate_pair(len(a), len(b), budget)
    row = [cls_id, *a[:la], sep_id]
    if pair:
      row += [*b[:lb], sep_id]
    input_ids[i, : len(row)] = row
    mask[i, : len(row)] = 1
    types[i, la + 2 : len(row)] = 1
  return {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": types}


def _gather(arrays: dict[str, np.ndarray], rows: np.ndarray, size: int) -> dict[str, np.ndarray]:
  """`rows` of every array, filled up to `size` with copies of the first rows (weight 0)."""
  n = len(rows)
  fill = np.resize(rows, size) if n < size else rows
  out = {k: v[fill] for k, v in arrays.items()}
  out["weights"] = (np.arange(size) < n).astype(np.float32)
  return out


def subsample(split: tasks_lib.Split, n: int, seed: int = 0) -> tasks_lib.Split:
  """`n` examples drawn without replacement (a fixed `seed`), in file order; all when `n <= 0`."""
  if n <= 0 or n >= len(split):
    return split
  keep = np.sort(np.random.default_rng(seed).choice(len(split), n, replace=False))
  return tasks_lib.Split(
    split.name,
    split.origin,
    split.index[keep],
    [split.text_a[i] for i in keep],
    None if split.text_b is None else [split.text_b[i] for i in keep],
    None if split.labels is None else split.labels[keep],
  )


# ------------------------------------------------------------------------------------------ compiled functions


def _step_key(optimizer: ml_collections.ConfigDict) -> str:
  """The optimizer config without its peak learning rate, which the step takes at run time: rates share a step."""
  optimizer = ml_collections.ConfigDict(optimizer.to_dict())
  optimizer[optimizer.name].learning_rate = 0.0
  return optimizer.to_json()


@functools.cache
def _compiled_step(model: types.ModuleType, cfg: Any, optimizer_json: str):
  """(tx, jitted donated train step) for a model config and an optimizer config (`_step_key`): compiled once,
  shared by tasks with the same number of labels, by all seeds and by all learning rates."""
  tx = registry.make(ml_collections.ConfigDict(json.loads(optimizer_json)))
  loss_fn = functools.partial(model.classification_loss_fn, cfg=cfg)
  return tx, jax.jit(functools.partial(step_lib.train_step, loss_fn=loss_fn, tx=tx), donate_argnums=0)


@functools.cache
def _jitted(model: types.ModuleType) -> tuple[Callable, Callable]:
  """The model's classifier init and logits, jitted (the model Config static)."""
  return (
    jax.jit(model.init_classifier_params, static_argnums=0),
    jax.jit(model.classifier_logits_fn, static_argnames=("cfg", "train")),
  )


def predict(model: types.ModuleType, params, cfg: Any, arrays: dict[str, np.ndarray], batch_size: int) -> np.ndarray:
  """Class ids (argmax) or, for regression, the predicted scores of every row of `arrays`."""
  n = len(arrays["input_ids"])
  outputs = []
  logits_fn = _jitted(model)[1]
  for start in range(0, n, batch_size):
    rows = np.arange(start, min(start + batch_size, n))
    logits = logits_fn(params, _gather(arrays, rows, batch_size), cfg=cfg)
    outputs.append(np.asarray(logits)[: len(rows)])
  logits = np.concatenate(outputs) if outputs else np.zeros((0, cfg.num_labels), np.float32)
  return logits[:, 0] if cfg.num_labels == 1 else logits.argmax(-1).astype(np.int32)


# ------------------------------------------------------------------------------------------------- one run


@dataclasses.dataclass
class Encoded:
  """A task's data as arrays: train inputs and labels, each dev set with labels, each test set with indices."""

  task: tasks_lib.Task
  train: dict[str, np.ndarray]
  evals: dict[str, tuple[dict[str, np.ndarray], np.ndarray]]
  tests: dict[str, tuple[dict[str, np.ndarray], np.ndarray]]


def train_one(
  config: ml_collections.ConfigDict, backbone: Backbone, cfg: Any, data: Encoded, seed: int
) -> tuple[Any, dict[str, Any]]:
  """Fine-tunes one seed. Returns the parameters and `{"steps", "epochs", "train_seconds", "final_loss",
  "train_loss", "examples_per_sec", "nonfinite_steps"}`: `final_loss` is the last logged step's loss,
  `train_loss` the mean over the last 10% of the steps (kept on the device until the end: no host syncs)."""
  train = data.train
  n = len(train["labels"])
  bs = config.batch_size
  steps_per_epoch = -(-n // bs)
  total = config.max_steps or config.epochs * steps_per_epoch
  tx, train_step = _compiled_step(backbone.model, cfg, _step_key(config.optimizer))
  lr_fn = schedules.make_lr_schedule(config.schedule, registry.peak_learning_rate(config.optimizer))
  init_rng, state_rng = jax.random.split(jax.random.PRNGKey(seed))
  params = _jitted(backbone.model)[0](cfg, init_rng, backbone.params)
  state = step_lib.TrainState.create(params, tx, state_rng)
  inputs = {k: train[k] for k in ("input_ids", "attention_mask", "token_type_ids", "labels")}

  start, step, loss = time.perf_counter(), 0, float("nan")
  tail_from, tail = int(0.9 * total), []
  epoch = 0
  while step < total:
    order = np.random.default_rng([seed, epoch]).permutation(n)
    for b in range(steps_per_epoch):
      if step >= total:
        break
      batch = _gather(inputs, order[b * bs : (b + 1) * bs], bs)
      batch = {k: v[None] for k, v in batch.items()}  # one micro-batch
      state, metrics = train_step(state, batch, np.int32(1), np.float32(lr_fn(step / total)))
      step += 1
      if step > tail_from:
        tail.append(metrics["loss"])
      if step % config.log_every_steps == 0 or step == total:
        loss = float(metrics["loss"])
        log.info(
          "%s seed %d: step %d/%d (epoch %d), loss %.4f, lr %.3g",
          data.task.name,
          seed,
          step,
          total,
          epoch + 1,
          loss,
          float(metrics["learning_rate"]),
        )
    epoch += 1
  jax.block_until_ready(state.params)
  seconds = time.perf_counter() - start
  if not np.isfinite(loss) or int(state.nonfinite_total):
    log.warning("%s seed %d: %d non-finite steps skipped", data.task.name, seed, int(state.nonfinite_total))
  return state.params, {
    "steps": step,
    "epochs": round(step / steps_per_epoch, 3),
    "train_seconds": seconds,
    "final_loss": loss,
    "train_loss": float(np.mean(jax.device_get(tail))) if tail else float("nan"),
    "examples_per_sec": step * bs / max(seconds, 1e-9),
    "nonfinite_steps": int(state.nonfinite_total),
  }


def evaluate(
  config, model: types.ModuleType, cfg, params, data: Encoded
) -> tuple[dict[str, dict[str, float]], dict[str, list]]:
  """Dev metrics per eval set, and test predictions per test set (as JSON-ready lists)."""
  dev = {}
  for name, (arrays, labels) in data.evals.items():
    preds = predict(model, params, cfg, arrays, config.eval_batch_size)
    dev[name] = metrics_lib.compute(data.task.metrics, preds, labels)
  test = {}
  for name, (arrays, _) in data.tests.items():
    test[name] = predict(model, params, cfg, arrays, config.eval_batch_size).tolist()
  return dev, test


# --------------------------------------------------------------------------------------------- the backbone


@dataclasses.dataclass
class Backbone:
  """What every task starts from: the model module (one with a classifier, `models.has_classifier`), its config,
  the pretrained parameters (None: random init), the tokenizer, and a description for the report."""

  model: types.ModuleType
  cfg: Any
  params: Any
  tokenizer: tokenizer_lib.TokenizerProtocol
  description: str
  fingerprint: str


def _params_fingerprint(params) -> str:
  h = hashlib.sha256()
  for leaf in jax.tree.leaves(params):
    h.update(np.ascontiguousarray(leaf).tobytes())
  return h.hexdigest()[:16]


def load_backbone(
  config: ml_collections.ConfigDict, workdir: pathlib.Path, task_data: dict[str, tasks_lib.TaskData]
) -> Backbone:
  """The pretrained model `config.pretrained`: a pretraining run (latest checkpoint, or `config.pretrained_step`)
  or a Hugging Face folder (`config.json` and no `run_config.json`; BERT in the original layout, MLM or classifier:
  its encoder is used). With `config.pretrained == ""` a randomly initialised `config.model` preset (tests and
  notebooks) whose tokenizer is `config.tokenizer_path` (ours or a Hugging Face tokenizer folder) or, when that is
  empty, one trained on the tasks' training text and saved in `workdir/tokenizer`."""
  if config.pretrained:
    run = pretrained_lib.load(pathlib.Path(config.pretrained).expanduser(), config.pretrained_step or None)
    _require_classifier(run.model, f"config.pretrained={config.pretrained!r} is a {run.model_name} model")
    return Backbone(
      run.model,
      run.model_cfg,
      run.params,
      run.tokenizer,
      run.description,
      f"{run.tokenizer.fingerprint}:{_params_fingerprint(run.params)}",
    )
  if config.tokenizer_path:
    tokenizer = tokenizer_lib.load(pathlib.Path(config.tokenizer_path).expanduser())
  else:
    texts = (t for d in task_data.values() for t in (d.train.text_a + (d.train.text_b or [])))
    tokenizer = tokenizer_lib.load_or_train(
      workdir / "tokenizer", texts, vocab_size=config.vocab_size, max_sentences=20000
    )
  model = models.get(config.model.name)
  _require_classifier(model, f"config.model.name={config.model.name!r}")
  cfg = models.from_config_section(config.model, tokenizer.vocab_size)
  return Backbone(
    model,
    cfg,
    None,
    tokenizer,
    f"{config.model.name}:{config.model.preset} (random init, no pretraining)",
    f"{tokenizer.fingerprint}:random",
  )


def _require_classifier(model: types.ModuleType, what: str) -> None:
  if not models.has_classifier(model):
    raise ValueError(
      f"{what}: GLUE fine-tuning needs a model with a sequence classifier "
      f"({', '.join(models.CLASSIFIER)}); {model.__name__} has none"
    )


# -------------------------------------------------------------------------------------------------- the sweep


_RUN_KEYS = (
  "max_len",
  "batch_size",
  "epochs",
  "max_steps",
  "max_train_examples",
  "max_eval_examples",
  "dropout_rate",
  "dtype",
  "optimizer",
  "schedule",
  "source",
  "data_dir",
  "tfds_data_dir",
  "model",
  "pretrained_step",
)


def _run_fingerprint(config, backbone: Backbone, task: str, seed: int) -> str:
  settings = {k: json.loads(ml_collections.ConfigDict({"v": config[k]}).to_json())["v"] for k in _RUN_KEYS}
  key = json.dumps({"settings": settings, "backbone": backbone.fingerprint, "task": task, "seed": seed}, sort_keys=True)
  return hashlib.sha256(key.encode()).hexdigest()[:16]


def _check(config: ml_collections.ConfigDict) -> list[str]:
  """Validates the config; returns the task names to run."""
  names = [tasks_lib.get_task(t).name for t in config.tasks] if config.tasks else list(tasks_lib.TASKS)
  for key in ("batch_size", "eval_batch_size", "max_len", "log_every_steps"):
    if config[key] <= 0:
      raise ValueError(f"config.{key}={config[key]!r} must be positive")
  for key in ("epochs", "max_steps", "max_train_examples", "max_eval_examples"):
    if config[key] < 0:
      raise ValueError(f"config.{key}={config[key]!r} must be >= 0")
  if not config.epochs and not config.max_steps:
    raise ValueError("config.epochs and config.max_steps are both 0: nothing to train")
  if not config.seeds:
    raise ValueError("config.seeds is empty: give at least one seed")
  if config.source not in ("tsv", "tfds"):
    raise ValueError(f"config.source={config.source!r} must be 'tsv' or 'tfds'")
  if config.schedule.name not in schedules.LR_SCHEDULES:
    raise ValueError(f"config.schedule.name={config.schedule.name!r} is not one of {schedules.LR_SCHEDULES}")
  registry.hyperparams(config.optimizer)
  return names


def finetune_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Fine-tunes on every task of `config` (see `configs/glue.py`); writes and returns the results.

  Returns:
    The content of `workdir/results.json`: per task either `status: "ok"` with median dev metrics, per-seed
    metrics and run statistics, or `status: "missing"` with the reason; and `table`, the headline scores.

  Raises:
    ValueError: a bad config value (naming its key).
    came_jax.glue.tasks.GlueFormatError: a malformed data file (naming file and line).
  """
  names = _check(config)
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  data_dir = (
    str(pathlib.Path(config.data_dir).expanduser())
    if config.source == "tsv"
    else (config.tfds_data_dir and str(pathlib.Path(config.tfds_data_dir).expanduser())) or None
  )

  task_data: dict[str, tasks_lib.TaskData] = {}
  results: dict[str, Any] = {}
  for name in names:
    try:
      task_data[name] = tasks_lib.load_task(
        name, source=config.source, data_dir=data_dir, tfds_prepare=config.tfds_prepare
      )
    except tasks_lib.MissingTaskError as e:
      log.warning("%s: missing (%s); reported as missing.", name, e)
      results[name] = {"status": "missing", "reason": str(e)}

  backbone = load_backbone(config, workdir, task_data) if task_data else None
  if backbone is not None:
    limit = backbone.model.max_len(backbone.cfg)
    if limit is not None and config.max_len > limit:
      raise ValueError(f"config.max_len={config.max_len} exceeds the model's max_len={limit}")
    log.info("Fine-tuning %s on %s; seeds %s.", backbone.description, list(task_data), list(config.seeds))

  submission_dir = workdir / "submission"
  for name, data in task_data.items():
    results[name] = _run_task(config, backbone, data, workdir, submission_dir)

  summary = {
    "model": backbone.description if backbone else None,
    "optimizer": config.optimizer.name,
    "seeds": list(config.seeds),
    "tasks": {n: results[n] for n in names},
    "table": report.headline_table({n: results[n] for n in names}),
    "config": json.loads(config.to_json_best_effort()),
  }
  report.write_json(workdir / "results.json", summary)
  (workdir / "results.md").write_text(report.markdown(summary))
  log.info("Results in %s:\n%s", workdir, report.markdown_table(summary))
  return summary


def _run_task(
  config, backbone: Backbone, data: tasks_lib.TaskData, workdir: pathlib.Path, submission_dir: pathlib.Path
) -> dict[str, Any]:
  task = data.task
  tok, max_len = backbone.tokenizer, config.max_len
  train = subsample(data.train, config.max_train_examples)
  encoded_train = encode(tok, train, max_len)
  encoded_train["labels"] = train.labels
  evals = {}
  for name, split in data.evals.items():
    split = subsample(split, config.max_eval_examples)
    evals[name] = (encode(tok, split, max_len), split.labels)
  tests = {name: (encode(tok, split, max_len), split.index) for name, split in data.tests.items()}
  encoded = Encoded(task, encoded_train, evals, tests)
  truncated = float(np.mean(encoded_train["attention_mask"][:, -1] == 1)) if len(train) else 0.0

  cfg = dataclasses.replace(
    backbone.cfg,
    num_labels=task.num_labels,
    dropout_rate=config.dropout_rate,
    **({"dtype": config.dtype} if config.dtype else {}),
  )
  run_dir = workdir / "runs" / task.name
  run_dir.mkdir(parents=True, exist_ok=True)
  per_seed: dict[int, dict[str, Any]] = {}
  for seed in config.seeds:
    seed = int(seed)
    path = run_dir / f"seed_{seed}.json"
    fingerprint = _run_fingerprint(config, backbone, task.name, seed)
    if path.is_file():
      previous = json.loads(path.read_text())
      if previous.get("fingerprint") == fingerprint:
        log.info("%s seed %d: reusing %s", task.name, seed, path)
        per_seed[seed] = previous
        continue
    params, stats = train_one(config, backbone, cfg, encoded, seed)
    dev, test = evaluate(config, backbone.model, cfg, params, encoded)
    log.info(
      "%s seed %d: %s (%d steps, %.1f s)",
      task.name,
      seed,
      report.format_metrics(dev),
      stats["steps"],
      stats["train_seconds"],
    )
    per_seed[seed] = {"fingerprint": fingerprint, "dev": dev, "test_predictions": test, **stats}
    report.write_json(path, per_seed[seed])

  first_eval = task.evals[0][0]
  score = lambda s: per_seed[s]["dev"][first_eval][task.headline]
  seeds = sorted(per_seed, key=lambda s: (score(s) if score(s) is not None and np.isfinite(score(s)) else -np.inf, s))
  chosen = seeds[(len(seeds) - 1) // 2]
  submissions = []
  for name, (_, index) in tests.items():
    path = submission_dir / f"{name}.tsv"
    report.write_submission(path, task, index, np.asarray(per_seed[chosen]["test_predictions"][name]))
    submissions.append(str(path.relative_to(workdir)))
  dev_median = {name: metrics_lib.median_over_seeds([per_seed[s]["dev"][name] for s in seeds]) for name in data.evals}
  return {
    "status": "ok",
    "dev": dev_median,
    "headline": {name: dev_median[name][task.headline] for name in data.evals},
    "headline_metric": task.headline,
    "per_seed": {str(s): per_seed[s]["dev"] for s in sorted(per_seed)},
    # Mean training loss over each seed's last 10% of steps (None for runs recorded before it was kept).
    "train_loss": {str(s): per_seed[s].get("train_loss") for s in sorted(per_seed)},
    "submission_seed": chosen,
    "submission": submissions,
    "missing_test": [name for name, _, _ in task.tests if name not in tests],
    "num_train": len(train),
    "num_dev": {name: len(labels) for name, (_, labels) in evals.items()},
    "num_test": {name: len(index) for name, (_, index) in tests.items()},
    "truncated_train_fraction": truncated,
    "steps": int(np.median([per_seed[s]["steps"] for s in per_seed])),
    "epochs": float(np.median([per_seed[s]["epochs"] for s in per_seed])),
    "train_seconds": float(np.median([per_seed[s]["train_seconds"] for s in per_seed])),
    "examples_per_sec": float(np.median([per_seed[s]["examples_per_sec"] for s in per_seed])),
    "sources": {
      "train": data.train.origin,
      **{n: s.origin for n, s in data.evals.items()},
      **{f"test:{n}": s.origin for n, s in data.tests.items()},
    },
  }
