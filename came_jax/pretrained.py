"""Reads a pretrained model: a pretraining run directory, or a Hugging Face folder.

A run directory written by :func:`came_jax.train.trainer.train_and_evaluate` holds ``run_config.json`` (the
config, hence the model module, preset and overrides), ``tokenizer/`` and ``checkpoints/<step>/state`` (the
orbax ``TrainState``). Only ``state["params"]`` is read (an orbax partial restore), so neither the optimizer
state nor the optimizer's code is needed: a CAME run and an AdamW run load alike. A run started from
``config.init_from`` also holds ``model_config.json``, the model ``Config`` it took from there (see
:func:`record_model_config`); its ``tokenizer/`` may be a Hugging Face tokenizer.

A folder with ``config.json`` and no ``run_config.json`` is a Hugging Face model folder, read by
:func:`came_jax.hf.load` (GPT-2, BERT in the original layout, T5 v1.1).

Used by GLUE fine-tuning (:mod:`came_jax.glue`), pretraining's ``init_from`` and the Hugging Face export
(:mod:`came_jax.export`).

Example::

    run = pretrained.load("runs/bert")          # latest checkpoint
    run.model_name, run.model_cfg               # "bert", bert.Config(...)
    encoder = run.params["encoder"]
    hub = pretrained.load("bert-base-uncased/")  # a Hugging Face folder: run.step is None
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import types
from typing import Any

import jax
import ml_collections
import numpy as np

from came_jax import models
from came_jax.data import tokenizer as tokenizer_lib
from came_jax.models import layers
from came_jax.train import checkpoint as ckpt_lib

MODEL_CONFIG = "model_config.json"


@dataclasses.dataclass
class Pretrained:
  """One checkpoint of a pretraining run, or a Hugging Face model folder.

  Attributes:
    run_dir: the run directory, or the Hugging Face folder.
    step: the checkpoint's step; None for a Hugging Face folder (weights of no run of ours).
    config: the run's config (``run_config.json``); for a Hugging Face folder its ``config.json`` (the model's
      description there: ``config.model_type``, ...).
    model_name: ``config.model.name`` ("bert", "gpt2", "t5"); for a Hugging Face folder its ``model_type``.
    model: the model module (``came_jax.models.<model_name>``).
    model_cfg: the model's ``Config`` (preset, overrides and the tokenizer's vocabulary size; a run started from
      ``init_from``: ``model_config.json``; a Hugging Face folder: ``config_from_hf`` of its ``config.json``).
    params: float32 numpy parameters (the Linen ``params`` collection of ``model.init_params``; for a Hugging Face
      classifier folder those of ``init_classifier_params``).
    tokenizer: the run's (or the folder's) tokenizer.
  """

  run_dir: pathlib.Path
  step: int | None
  config: ml_collections.ConfigDict
  model_name: str
  model: types.ModuleType
  model_cfg: Any
  params: Any
  tokenizer: tokenizer_lib.TokenizerProtocol

  @property
  def description(self) -> str:
    """One line for logs and reports: what the model is and where it came from."""
    if self.step is None:
      return f"{self.model_name} ({self.run_dir}, Hugging Face {', '.join(self.config.get('architectures') or [])})"
    return (
      f"{self.model_name}:{self.config.model.preset} ({self.run_dir}, step {self.step}, "
      f"pretrained with {self.config.optimizer.name})"
    )


def checkpoint_steps(run_dir: str | pathlib.Path) -> list[int]:
  """Steps with a complete checkpoint (a ``state`` item) in ``run_dir/checkpoints``, ascending."""
  root = pathlib.Path(run_dir) / "checkpoints"
  if not root.is_dir():
    return []
  return sorted(int(p.name) for p in root.iterdir() if p.name.isdigit() and (p / "state").is_dir())


def _intact_step(run_dir: pathlib.Path, steps: list[int], step: int | None) -> int:
  """`step` if its checkpoint matches its checksums; by default the newest one that does, with a warning for each
  newer damaged one (as training resumes). Raises `DamagedCheckpointError` for a damaged `step`, or when all are."""
  damaged = []
  for candidate in [step] if step is not None else steps[::-1]:
    reason = ckpt_lib.verify(str(run_dir / "checkpoints" / str(candidate)))
    if reason is None:
      for bad, why in damaged:
        logging.getLogger(__name__).warning(
          "checkpoint %d in %s is damaged (%s); loading checkpoint %d instead", bad, run_dir, why, candidate
        )
      return candidate
    damaged.append((candidate, reason))
  where = run_dir / "checkpoints"
  if step is not None:
    others = [s for s in steps if s != step]
    raise ckpt_lib.DamagedCheckpointError(
      f"checkpoint {step} in {where} is damaged ({damaged[0][1]}); others: {others}"
    )
  raise ckpt_lib.DamagedCheckpointError(
    f"every checkpoint in {where} is damaged: " + "; ".join(f"{bad} ({why})" for bad, why in damaged)
  )


def load_config(run_dir: str | pathlib.Path) -> ml_collections.ConfigDict:
  """The config recorded in ``run_dir/run_config.json``."""
  path = pathlib.Path(run_dir) / ckpt_lib.RUN_CONFIG
  if not path.is_file():
    raise FileNotFoundError(
      f"{run_dir} is not a pretraining run directory: {path} is missing (nor is it a Hugging Face folder: no "
      "config.json)"
    )
  return ml_collections.ConfigDict(json.loads(path.read_text())["config"])


def restore_params(state_dir: str | pathlib.Path) -> Any:
  """``params`` of the orbax ``TrainState`` checkpoint item at ``state_dir``, as numpy arrays."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  state_dir = pathlib.Path(state_dir).resolve()
  checkpointer = ocp.PyTreeCheckpointer()
  absl_log = logging.getLogger("absl")
  level = absl_log.level
  absl_log.setLevel(logging.ERROR)  # orbax warns that the item folder has no step metadata: it is the step's
  try:
    tree = checkpointer.metadata(state_dir).item_metadata.tree
    if "params" not in tree:
      raise ValueError(f"{state_dir} holds no 'params' (found {sorted(tree)})")
    wanted = {"params": tree["params"]}
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), wanted)
    restored = checkpointer.restore(
      state_dir, args=ocp.args.PyTreeRestore(item=wanted, restore_args=restore_args, partial_restore=True)
    )
  finally:
    absl_log.setLevel(level)
  return jax.tree.map(lambda x: np.asarray(x, np.float32), restored["params"])


def record_model_config(run_dir: str | pathlib.Path, model_name: str, model_cfg: Any) -> None:
  """Writes ``run_dir/model_config.json``, the model ``Config`` of a run whose model its config's ``model`` section
  does not describe (``init_from``); :func:`load` prefers it to ``run_config.json``.

  Raises:
    ValueError: the file is there and records another model (a resumed run whose ``init_from`` changed).
  """
  path = pathlib.Path(run_dir) / MODEL_CONFIG
  record = {"name": model_name, "config": dataclasses.asdict(model_cfg)}
  if path.is_file():
    if json.loads(path.read_text()) != json.loads(json.dumps(record)):
      raise ValueError(f"{path} records another model than {model_name} {model_cfg}")
    return
  path.parent.mkdir(parents=True, exist_ok=True)
  path.with_suffix(".tmp").write_text(json.dumps(record, indent=2))
  path.with_suffix(".tmp").replace(path)


def model_config(run_dir: str | pathlib.Path, config: ml_collections.ConfigDict) -> Any:
  """The model ``Config`` of the run in ``run_dir``: ``model_config.json`` where written, else the ``model``
  section of its ``config`` with ``data.vocab_size``."""
  path = pathlib.Path(run_dir) / MODEL_CONFIG
  if not path.is_file():
    return models.from_config_section(config.model, config.data.vocab_size)
  record = json.loads(path.read_text())
  fields = {k: tuple(v) if isinstance(v, list) else v for k, v in record["config"].items()}
  return models.get(record["name"]).Config(**fields)


def load(run_dir: str | pathlib.Path, step: int | None = None) -> Pretrained:
  """The run in ``run_dir`` at checkpoint ``step`` (default: the latest), or the Hugging Face folder ``run_dir``
  (one with ``config.json`` and no ``run_config.json``; ``step`` must then be None).

  Raises:
    FileNotFoundError: no ``run_config.json`` (nor ``config.json``), no tokenizer or no checkpoint (naming what is
      missing).
    came_jax.train.checkpoint.DamagedCheckpointError: checkpoint ``step`` does not match its checksums, or (by
      default) none does; a damaged latest one is skipped with a warning.
    ValueError: the restored parameters do not fit the model the config describes; a ``step`` for a Hugging Face
      folder; what :func:`came_jax.hf.load` raises.
  """
  run_dir = pathlib.Path(run_dir)
  if not (run_dir / ckpt_lib.RUN_CONFIG).is_file() and (run_dir / "config.json").is_file():
    from came_jax import hf  # pylint: disable=g-import-not-at-top  (hf.load returns a Pretrained)

    if step:
      raise ValueError(f"{run_dir} is a Hugging Face folder: it has no checkpoint steps (asked for step {step})")
    return hf.load(run_dir)
  config = load_config(run_dir)
  steps = checkpoint_steps(run_dir)
  if not steps:
    raise FileNotFoundError(f"no checkpoint in {run_dir / 'checkpoints'}")
  if step is not None and step not in steps:
    raise FileNotFoundError(f"no checkpoint for step {step} in {run_dir / 'checkpoints'} (have {steps})")
  step = _intact_step(run_dir, steps, step)
  tokenizer = tokenizer_lib.load(run_dir / "tokenizer")
  model = models.get(config.model.name)
  model_cfg = model_config(run_dir, config)
  params = restore_params(run_dir / "checkpoints" / str(step) / "state")
  reference = jax.eval_shape(lambda: model.init_params(model_cfg, jax.random.key(0)))
  try:
    layers.assert_same_shapes(params, reference)
  except ValueError as e:
    raise ValueError(
      f"checkpoint {step} in {run_dir} does not fit {config.model.name}:{config.model.preset} "
      f"as configured in {ckpt_lib.RUN_CONFIG}: {e}"
    ) from e
  return Pretrained(run_dir, step, config, config.model.name, model, model_cfg, params, tokenizer)
