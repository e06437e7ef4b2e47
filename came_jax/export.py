"""Export to Hugging Face: GPT-2, T5 v1.1 and BERT (crammed or original) as folders that ``transformers`` loads.

``export(model_name, params, cfg, out_dir, tokenizer=...)`` (or ``export_run(RUN_DIR, out_dir)`` for a pretraining
run, or ``python -m experiments.export_hf --workdir RUN_DIR --out HF_DIR``) writes:

* ``config.json``: ``GPT2LMHeadModel``, ``T5ForConditionalGeneration``, ``BertForMaskedLM`` (MLM parameters) or
  ``BertForSequenceClassification`` (GLUE classifier parameters), or for crammed BERT ``CameBertForMaskedLM`` /
  ``CameBertForSequenceClassification`` (below), written as plain JSON (no ``transformers`` needed to export);
* for crammed BERT, the remote code that ``config.json``'s ``auto_map`` names: ``configuration_came_bert.py`` and
  ``modeling_came_bert.py`` (from ``came_jax/hf/remote/``);
* ``model.safetensors``: float32 weights under Hugging Face names; tied copies are left out where Hugging Face
  re-ties them (GPT-2 ``lm_head``, BERT's decoder), T5's untied ``lm_head`` is kept;
* the tokenizer: ``tokenizer.model`` (our SentencePiece model, byte fallback included) and
  ``tokenizer_config.json`` for ``transformers``' ``SentencePieceBackend`` (``AutoTokenizer`` loads it). Its ids
  are ours: 0 ``<pad>``, 1 ``</s>`` (EOS, GPT-2's end of text), 2 ``<unk>``, 3 ``[CLS]``, 4 ``[SEP]``,
  5 ``[MASK]``, then byte and learned pieces, and T5 sentinel ``<extra_id_i>`` at ``vocab_size - 1 - i``
  (listed as added tokens). Plain text encodes to the same ids as :class:`came_jax.data.tokenizer.Tokenizer`;
  whitespace next to a literal special-token string may differ (Hugging Face splits text on special tokens).
  A model that came in from a Hugging Face folder (``came_jax.hf.load``, ``init_from``) keeps its own tokenizer:
  its files are written back as they were read, and ``config.json``'s token ids are that tokenizer's.

The conversions (state dicts, ``config.json``) are :mod:`came_jax.hf`'s, reached by model name
(``hf.get(name)``); this module writes the folder. Logits of the loaded model equal ours to a relative error below
1e-4 in float32 (``tests/test_export.py``). Loading a T5 export, ``transformers`` 5 warns that ``shared.weight`` and
``lm_head.weight`` differ and will not be tied: that is intended (see :mod:`came_jax.hf.t5`).

**Crammed BERT** (pre-LN, gated GELU, no MLM head transform: what stock ``BertForMaskedLM`` cannot express) is
exported with its own PyTorch modeling file, the Hugging Face convention for custom architectures, and loads with
``trust_remote_code=True``::

  from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification
  mlm = AutoModelForMaskedLM.from_pretrained(out_dir, trust_remote_code=True)  # pretraining run: logits [B, T, V]
  clf = AutoModelForSequenceClassification.from_pretrained(out_dir, trust_remote_code=True)  # GLUE classifier

The weights keep our parameter tree's names, every ``Config`` field is in ``config.json`` (see
:mod:`came_jax.hf.bert`), and the logits equal ours as above (``tests/hf/test_bert_remote.py``). The original
layout still exports to the stock classes, which need no remote code.
"""

from __future__ import annotations

import importlib.resources
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


def remote_code(config: dict[str, Any]) -> dict[str, str]:
  """The modeling files a ``config.json`` names in ``auto_map`` (``"<module>.<class>"``): ``{"<module>.py": text}``
  from ``came_jax/hf/remote/``, read as text (they import torch, which came_jax does not); empty without
  ``auto_map``."""
  modules = sorted({ref.split(".")[0] for ref in config.get("auto_map", {}).values()})
  folder = importlib.resources.files(hf) / "remote"
  return {f"{m}.py": (folder / f"{m}.py").read_text(encoding="utf-8") for m in modules}


def _token_ids(config: dict[str, Any], tokenizer: tokenizer_lib.TokenizerProtocol) -> dict[str, int]:
  """The special-token ids a ``config.json`` carries, from the tokenizer written beside it (GPT-2's convention:
  its begin- and end-of-text token are one)."""
  ids = {"pad_token_id": "pad_id", "eos_token_id": "eos_id", "bos_token_id": "eos_id"}
  return {key: getattr(tokenizer, attr) for key, attr in ids.items() if key in config}


def export(
  model_name: str,
  params,
  cfg: Any,
  out_dir: str | pathlib.Path,
  *,
  tokenizer: tokenizer_lib.TokenizerProtocol | None = None,
) -> pathlib.Path:
  """Writes a Hugging Face folder for ``params`` of model ``model_name`` ("bert", "gpt2", "t5") with config ``cfg``.

  See the module docstring for the files; a BERT classifier's parameters (GLUE) export as
  ``BertForSequenceClassification`` (``CameBertForSequenceClassification`` when crammed). Nothing is written when
  the conversion fails.

  Raises:
    ValueError: no conversion for ``model_name``, parameters that do not fit ``cfg``, or a tokenizer with more ids
      than the model's vocabulary.
  """
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top

  convert = hf.get(model_name)
  params = jax.tree.map(np.asarray, jax.device_get(params))
  state_dict = convert.to_hf(params, cfg)
  config = {**convert.config_to_hf(cfg, params), "dtype": "float32"}  # the dtype of the safetensors weights
  if tokenizer is not None:
    if tokenizer.vocab_size > cfg.vocab_size:
      raise ValueError(f"the tokenizer has {tokenizer.vocab_size} ids but the model's vocab_size is {cfg.vocab_size}")
    config.update(_token_ids(config, tokenizer))
  code = remote_code(config)
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  save_file(state_dict, str(out / "model.safetensors"), metadata={"format": "pt"})
  (out / "config.json").write_text(json.dumps(config, indent=2))
  for name, text in code.items():
    (out / name).write_text(text)
  if isinstance(tokenizer, tokenizer_lib.Tokenizer):
    save_tokenizer(tokenizer, out, max_len=models.get(model_name).max_len(cfg))
  elif tokenizer is not None:  # a Hugging Face tokenizer (a model that came in through hf.load): its own files
    tokenizer.save(out)
  return out


def export_run(run_dir: str | pathlib.Path, out_dir: str | pathlib.Path, step: int | None = None) -> pathlib.Path:
  """Exports the checkpoint ``step`` (default: latest) of the pretraining run in ``run_dir``, tokenizer included
  (a crammed-BERT run with its remote code: load it with ``trust_remote_code=True``)."""
  from came_jax import pretrained  # pylint: disable=g-import-not-at-top

  run = pretrained.load(run_dir, step)
  return export(run.model_name, run.params, run.model_cfg, out_dir, tokenizer=run.tokenizer)
