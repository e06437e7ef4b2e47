"""Reads a Hugging Face model folder (``config.json``, ``model.safetensors``, tokenizer files) into our model.

Example (``gpt2/`` a folder ``GPT2LMHeadModel.save_pretrained`` wrote, with its tokenizer)::

    run = hf.load("gpt2/")
    run.model_name, run.model_cfg.num_layers, run.step    # ("gpt2", 12, None)
    logits = run.model.logits_fn(run.params, {"input_ids": ids}, cfg=run.model_cfg)

The model is ``config.json``'s ``model_type`` (``hf.get(model_type)``: ``gpt2``, ``bert`` in the original layout,
``t5`` v1.1), its ``Config`` that conversion's ``config_from_hf``, its parameters ``from_hf`` of the safetensors
weights (read with ``safetensors.numpy``, no torch; bfloat16 and float16 are widened to float32; a sharded
``model.safetensors.index.json`` is followed), its tokenizer :func:`came_jax.data.tokenizer.load` of the folder
(a Hugging Face tokenizer, or ours in a folder :mod:`came_jax.export` wrote).
"""

from __future__ import annotations

import json
import pathlib
from typing import TYPE_CHECKING

import jax
import ml_collections
import numpy as np

from came_jax import models
from came_jax.data import tokenizer as tokenizer_lib

if TYPE_CHECKING:
  from came_jax import pretrained

_WEIGHTS = "model.safetensors"
_INDEX = "model.safetensors.index.json"


def load(path: str | pathlib.Path) -> pretrained.Pretrained:
  """The model in the Hugging Face folder ``path`` as a :class:`~came_jax.pretrained.Pretrained`.

  ``step`` is None (no run of ours), ``config`` the folder's ``config.json``, ``params`` float32 numpy arrays (the
  tree of ``init_params``; a BERT classifier folder gives ``init_classifier_params``' tree).

  Raises:
    FileNotFoundError: naming the missing file (``config.json``, ``model.safetensors``, the tokenizer files).
    ValueError: a ``model_type`` without a conversion here, a ``config.json`` our model cannot represent
      (naming the key), weights that do not fit it, or a tokenizer that does not fit the model.
  """
  # Here, not at the top: this module is part of came_jax.hf, and came_jax.pretrained imports orbax.
  from came_jax import hf, pretrained  # pylint: disable=g-import-not-at-top

  path = pathlib.Path(path).expanduser()
  config_file = path / "config.json"
  if not config_file.is_file():
    raise FileNotFoundError(f"{path} is not a Hugging Face model folder: {config_file} is missing")
  hf_config = json.loads(config_file.read_text())
  try:
    name = hf.model_for(hf_config.get("model_type"))
  except ValueError as e:
    raise ValueError(f"{config_file}: {e}") from e
  convert = hf.get(name)
  try:
    cfg = convert.config_from_hf(hf_config)
  except ValueError as e:
    raise ValueError(f"{config_file}: {e}") from e
  try:
    params = convert.from_hf(read_weights(path), cfg)
  except (KeyError, ValueError) as e:
    raise ValueError(f"the weights in {path} do not fit its config.json ({name}): {e}") from e
  tokenizer = tokenizer_lib.load(path)
  if tokenizer.vocab_size > cfg.vocab_size:
    raise ValueError(
      f"the tokenizer in {path} has {tokenizer.vocab_size} ids but the model's vocab_size is {cfg.vocab_size}"
    )
  model_pad = getattr(cfg, "pad_id", None)  # a model that masks padding by its id (T5)
  if model_pad is not None and model_pad != tokenizer.pad_id:
    raise ValueError(f"the tokenizer in {path} pads with id {tokenizer.pad_id} but the model with {model_pad}")
  params = jax.tree.map(lambda x: np.asarray(x, np.float32), params)
  config = ml_collections.ConfigDict(hf_config)
  return pretrained.Pretrained(path, None, config, name, models.get(name), cfg, params, tokenizer)


def read_weights(path: str | pathlib.Path) -> dict[str, np.ndarray]:
  """The state dict in ``path/model.safetensors`` (or the shards its index names), as float32 numpy arrays.

  Raises:
    FileNotFoundError: naming ``model.safetensors`` (and the ``pytorch_model.bin`` it cannot read, if present).
  """
  path = pathlib.Path(path)
  if (path / _INDEX).is_file():
    shards = sorted(set(json.loads((path / _INDEX).read_text())["weight_map"].values()))
  elif (path / _WEIGHTS).is_file():
    shards = [_WEIGHTS]
  else:
    torch_file = (
      " (only safetensors are read here, not pytorch_model.bin)" if (path / "pytorch_model.bin").exists() else ""
    )
    raise FileNotFoundError(f"no weights in {path}: {path / _WEIGHTS} is missing{torch_file}")
  state = {}
  for shard in shards:
    state.update(_read_safetensors(path / shard))
  return state


def _read_safetensors(file: pathlib.Path) -> dict[str, np.ndarray]:
  """One safetensors file as float32 arrays; bfloat16 (which numpy lacks) is read through ``ml_dtypes``."""
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top

  with open(file, "rb") as f:
    header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
  if not any(v.get("dtype") == "BF16" for k, v in header.items() if k != "__metadata__"):
    return {k: np.asarray(v, np.float32) for k, v in load_file(file).items()}
  import ml_dtypes  # pylint: disable=g-import-not-at-top

  dtypes = {"BF16": ml_dtypes.bfloat16, "F16": np.float16, "F32": np.float32, "F64": np.float64}
  data = np.memmap(file, np.uint8, mode="r")
  start = 8 + int.from_bytes(bytes(data[:8]), "little")
  out = {}
  for key, info in header.items():
    if key == "__metadata__":
      continue
    if info["dtype"] not in dtypes:
      raise ValueError(f"{file}: {key} has dtype {info['dtype']}, not a float dtype")
    lo, hi = info["data_offsets"]
    out[key] = np.frombuffer(data[start + lo : start + hi], dtypes[info["dtype"]]).reshape(info["shape"])
    out[key] = out[key].astype(np.float32)
  return out
