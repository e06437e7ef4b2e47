"""Hugging Face tokenizer folders built here with the `tokenizers` package (no downloads, no transformers): a
WordPiece whose special ids are not ours, and a byte-level BPE without [CLS]/[SEP]/[MASK] or a pad token."""

import json
import pathlib
from typing import Iterable

import tokenizers
from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

# Ids 0..5 in this order: none where our Tokenizer has it ([CLS] 3, [SEP] 4, [MASK] 5, pad 0, eos 1).
WORDPIECE_SPECIALS = ("[UNK]", "[CLS]", "[SEP]", "[MASK]", "[PAD]", "</s>")
SENTINELS = 4  # <extra_id_0..3>, added after training: at the top of the vocabulary, counting up


def wordpiece_folder(folder: pathlib.Path, texts: Iterable[str], vocab_size: int = 400) -> pathlib.Path:
  """A lower-casing WordPiece with `WORDPIECE_SPECIALS` first and `SENTINELS` T5 sentinels last, named in
  `tokenizer_config.json` as transformers writes it."""
  tok = tokenizers.Tokenizer(models.WordPiece(unk_token="[UNK]"))
  tok.normalizer = normalizers.BertNormalizer(lowercase=True)
  tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  tok.decoder = decoders.WordPiece()
  tok.train_from_iterator(
    texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(WORDPIECE_SPECIALS))
  )
  extra = [f"<extra_id_{i}>" for i in range(SENTINELS)]
  tok.add_special_tokens(extra)
  folder.mkdir(parents=True, exist_ok=True)
  tok.save(str(folder / "tokenizer.json"))
  config = {
    "tokenizer_class": "TokenizersBackend",
    "unk_token": "[UNK]",
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "mask_token": "[MASK]",
    "pad_token": "[PAD]",
    "eos_token": {"content": "</s>", "special": True},  # older transformers write AddedToken dicts
    "extra_special_tokens": extra,
  }
  (folder / "tokenizer_config.json").write_text(json.dumps(config))
  return folder


def byte_bpe_folder(folder: pathlib.Path, texts: Iterable[str], vocab_size: int = 400) -> pathlib.Path:
  """A GPT-2-style byte-level BPE: `<|endoftext|>` (id 0) is BOS, EOS and UNK; no pad, [CLS], [SEP], [MASK]."""
  tok = tokenizers.Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  tok.train_from_iterator(
    texts,
    trainers.BpeTrainer(
      vocab_size=vocab_size, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    ),
  )
  folder.mkdir(parents=True, exist_ok=True)
  tok.save(str(folder / "tokenizer.json"))
  eot = "<|endoftext|>"
  (folder / "tokenizer_config.json").write_text(json.dumps({"bos_token": eot, "eos_token": eot, "unk_token": eot}))
  return folder
