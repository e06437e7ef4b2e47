"""Export to Hugging Face: GPT-2, T5 v1.1 and original-layout BERT as folders that ``transformers`` loads.

``export(model_name, params, cfg, out_dir, tokenizer=...)`` (or ``export_run(RUN_DIR, out_dir)`` for a pretraining
run, or ``python -m experiments.export_hf --workdir RUN_DIR --out HF_DIR``) writes:

* ``config.json``: ``GPT2LMHeadModel``, ``T5ForConditionalGeneration``, ``BertForMaskedLM`` (MLM parameters) or
  ``BertForSequenceClassification`` (GLUE classifier parameters), written as plain JSON (no ``transformers``
  needed to export);
* ``model.safetensors``: float32 weights under Hugging Face names; tied copies are left out where Hugging Face
  re-ties them (GPT-2 ``lm_head``, BERT's decoder), T5's untied ``lm_head`` is kept;
* the tokenizer: ``tokenizer.model`` (our SentencePiece model, byte fallback included) and
  ``tokenizer_config.json`` for ``transformers``' ``SentencePieceBackend`` (``AutoTokenizer`` loads it). Its ids
  are ours: 0 ``<pad>``, 1 ``</s>`` (EOS, GPT-2's end of text), 2 ``<unk>``, 3 ``[CLS]``, 4 ``[SEP]``,
  5 ``[MASK]``, then byte and learned pieces, and T5 sentinel ``<extra_id_i>`` at ``vocab_size - 1 - i``
  (listed as added tokens). Plain text encodes to the same ids as :class:`came_jax.data.tokenizer.Tokenizer`;
  whitespace next to a literal special-token string may differ (Hugging Face splits text on special tokens).

The conversions (state dicts, ``config.json``) are :mod:`came_jax.hf`'s, reached by model name
(``hf.get(name)``); this module writes the folder. Logits of the loaded model equal ours to a relative error below
1e-4 in float32 (``tests/test_export.py``). Loading a T5 export, ``transformers`` 5 warns that ``shared.weight`` and
``lm_head.weight`` differ and will not be tied: that is intended (see :mod:`came_jax.hf.t5`).

**Crammed BERT** (pre-LN, gated GELU, ...) has no stock Hugging Face class: export raises
:class:`came_jax.hf.UnsupportedLayoutError` naming exactly the features of the given config that
``BertForMaskedLM`` cannot express, before anything is written (see :mod:`came_jax.hf.bert`). A crammed model's
GLUE results come from :mod:`came_jax.glue`, which needs no export.
"""

from __future__ import annotations

import json
import pathlib
import tempfile
from typing import Any

import jax
import numpy as np

from came_jax import hf, models
from came_jax.data import tokenizer as tokenizer_lib


def save_tokenizer(tokenizer: tokenizer_lib.Tokenizer, out_dir: str | pathlib.Path, *, max_len: int | None) -> None:
  """``tokenizer.model`` + ``tokenizer_config.json`` (``SentencePieceBackend``, our special ids, sentinels).

  ``Tokenizer.load(out_dir / "tokenizer.model")`` reads it back (with the default 100 sentinels; the count is
  also recorded under ``came_jax`` in ``tokenizer_config.json``).
  """
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory() as tmp:  # Tokenizer.save writes tokenizer.model (+ our tokenizer.json)
    (out / "tokenizer.model").write_bytes((tokenizer.save(tmp) / "tokenizer.model").read_bytes())

  def token(content):
    return {
      "content": content,
      "special": True,
      "lstrip": False,
      "rstrip": False,
      "normalized": False,
      "single_word": False,
    }

  specials = {
    tokenizer_lib.PAD_ID: "<pad>",
    tokenizer_lib.EOS_ID: "</s>",
    tokenizer_lib.UNK_ID: "<unk>",
    tokenizer_lib.CLS_ID: "[CLS]",
    tokenizer_lib.SEP_ID: "[SEP]",
    tokenizer_lib.MASK_ID: "[MASK]",
  }
  added = {str(i): token(p) for i, p in specials.items()}
  # Sentinels are appended after the SentencePiece pieces, <extra_id_{S-1}> first, so <extra_id_i> = V - 1 - i.
  for i in reversed(range(tokenizer.num_sentinels)):
    added[str(tokenizer.sentinel_id(i))] = token(f"<extra_id_{i}>")
  config = {
    "tokenizer_class": "SentencePieceBackend",
    "pad_token": "<pad>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "mask_token": "[MASK]",
    "added_tokens_decoder": added,
    "came_jax": {
      "vocab_size": tokenizer.vocab_size,
      "num_sentinels": tokenizer.num_sentinels,
      "lowercase": tokenizer.lowercase,
      "fingerprint": tokenizer.fingerprint,
      "ids": {v: k for k, v in specials.items()},
      "sentinel_id": "vocab_size - 1 - i for <extra_id_i>",
    },
  }
  if max_len:
    config["model_max_length"] = max_len
  (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2))


def export(
  model_name: str, params, cfg: Any, out_dir: str | pathlib.Path, *, tokenizer: tokenizer_lib.Tokenizer | None = None
) -> pathlib.Path:
  """Writes a Hugging Face folder for ``params`` of model ``model_name`` ("bert", "gpt2", "t5") with config ``cfg``.

  See the module docstring for the files; a BERT classifier's parameters (GLUE) export as
  ``BertForSequenceClassification``. Nothing is written when the conversion fails.

  Raises:
    came_jax.hf.UnsupportedLayoutError: a crammed-BERT layout (naming the features).
    ValueError: no conversion for ``model_name``, or the tokenizer's vocabulary size differs from the model's.
  """
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top

  convert = hf.get(model_name)
  params = jax.tree.map(np.asarray, jax.device_get(params))
  state_dict = convert.to_hf(params, cfg)
  config = {**convert.config_to_hf(cfg, params), "dtype": "float32"}  # the dtype of the safetensors weights
  if tokenizer is not None and tokenizer.vocab_size != cfg.vocab_size:
    raise ValueError(f"the tokenizer has {tokenizer.vocab_size} ids but the model's vocab_size is {cfg.vocab_size}")
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  save_file(state_dict, str(out / "model.safetensors"), metadata={"format": "pt"})
  (out / "config.json").write_text(json.dumps(config, indent=2))
  if tokenizer is not None:
    save_tokenizer(tokenizer, out, max_len=models.get(model_name).max_len(cfg))
  return out


def export_run(run_dir: str | pathlib.Path, out_dir: str | pathlib.Path, step: int | None = None) -> pathlib.Path:
  """Exports the checkpoint ``step`` (default: latest) of the pretraining run in ``run_dir``, tokenizer included.

  Raises:
    came_jax.hf.UnsupportedLayoutError: the run is a crammed BERT (nothing is written).
  """
  from came_jax import pretrained  # pylint: disable=g-import-not-at-top

  run = pretrained.load(run_dir, step)
  return export(run.model_name, run.params, run.model_cfg, out_dir, tokenizer=run.tokenizer)
