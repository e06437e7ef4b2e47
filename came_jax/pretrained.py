"""Reads a finished (or running) pretraining run directory: model, parameters, tokenizer.

A run directory written by :func:`came_jax.train.trainer.train_and_evaluate` holds ``run_config.json`` (the
config, hence the model module, preset and overrides), ``tokenizer/`` and ``checkpoints/<step>/state`` (the
orbax ``TrainState``). Only ``state["params"]`` is read (an orbax partial restore), so neither the optimizer
state nor the optimizer's code is needed: a CAME run and an AdamW run load alike.

Used by GLUE fine-tuning (:mod:`came_jax.glue`) and the Hugging Face export (:mod:`came_jax.export`).

Example::

    run = pretrained.load("runs/bert")          # latest checkpoint
    run.model_name, run.model_cfg               # "bert", bert.Config(...)
    encoder = run.params["encoder"]
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


@dataclasses.dataclass
class Pretrained:
  """One checkpoint of a pretraining run.

  Attributes:
    run_dir: the run directory.
    step: the checkpoint's step.
    config: the run's config (``run_config.json``).
    model_name: ``config.model.name`` ("bert", "gpt2", "t5").
    model: the model module (``came_jax.models.<model_name>``).
    model_cfg: the model's ``Config`` (preset, overrides and the tokenizer's vocabulary size).
    params: float32 numpy parameters (the Linen ``params`` collection of ``model.init_params``).
    tokenizer: the run's tokenizer.
  """

  run_dir: pathlib.Path
  step: int
  config: ml_collections.ConfigDict
  model_name: str
  model: types.ModuleType
  model_cfg: Any
  params: Any
  tokenizer: tokenizer_lib.Tokenizer


def checkpoint_steps(run_dir: str | pathlib.Path) -> list[int]:
  """Steps with a complete checkpoint (a ``state`` item) in ``run_dir/checkpoints``, ascending."""
  root = pathlib.Path(run_dir) / "checkpoints"
  if not root.is_dir():
    return []
  return sorted(int(p.name) for p in root.iterdir() if p.name.isdigit() and (p / "state").is_dir())


def load_config(run_dir: str | pathlib.Path) -> ml_collections.ConfigDict:
  """The config recorded in ``run_dir/run_config.json``."""
  path = pathlib.Path(run_dir) / ckpt_lib.RUN_CONFIG
  if not path.is_file():
    raise FileNotFoundError(f"{run_dir} is not a pretraining run directory: {path} is missing")
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


def load(run_dir: str | pathlib.Path, step: int | None = None) -> Pretrained:
  """The run in ``run_dir`` at checkpoint ``step`` (default: the latest).

  Raises:
    FileNotFoundError: no ``run_config.json``, no tokenizer or no checkpoint (naming what is missing).
    ValueError: the restored parameters do not fit the model the config describes.
  """
  run_dir = pathlib.Path(run_dir)
  config = load_config(run_dir)
  steps = checkpoint_steps(run_dir)
  if not steps:
    raise FileNotFoundError(f"no checkpoint in {run_dir / 'checkpoints'}")
  if step is None:
    step = steps[-1]
  elif step not in steps:
    raise FileNotFoundError(f"no checkpoint for step {step} in {run_dir / 'checkpoints'} (have {steps})")
  tokenizer = tokenizer_lib.Tokenizer.load(run_dir / "tokenizer")
  model = models.get(config.model.name)
  model_cfg = models.from_config_section(config.model, config.data.vocab_size)
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
