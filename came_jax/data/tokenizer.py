"""Tokenizers: the interface the data code needs, our SentencePiece tokenizer, and Hugging Face tokenizers.

:class:`TokenizerProtocol` is all that objectives, packing, the token cache and GLUE encoding use of a tokenizer:
``encode``/``encode_batch``/``decode``, ``vocab_size``, ``fingerprint`` (cache key), the special ids ``pad_id``,
``eos_id`` (the document separator of causal LM and span corruption), ``cls_id``/``sep_id``/``mask_id`` (BERT),
``special_ids`` (never masked), ``normal_id_range`` (random MLM replacements), T5 sentinels (``num_sentinels``,
``sentinel_id``) and ``save``. A tokenizer that lacks a token raises :class:`MissingTokenError` naming it when the
id is asked for (GPT-2 has no ``[MASK]``), so a wrong objective fails before any batch is built.

Two implementations: :class:`Tokenizer`, ours, trained here with a fixed layout (below), and :class:`HFTokenizer`,
a Hugging Face tokenizer read from a model folder (``tokenizer.json`` with the ``tokenizers`` package, or a
SentencePiece ``spiece.model``/``tokenizer.model`` as T5's), whose special ids come from the tokenizer itself.
:func:`load` reads either from a folder.

Our id layout (``vocab_size`` = V, ``num_sentinels`` = S, default 100):

* 0 ``<pad>``: padding (never a label; weight 0).
* 1 ``</s>``: end of sequence, and GPT-2's ``<|endoftext|>`` role (separator between documents for causal LM
  and span corruption): ``eot_id == eos_id``.
* 2 ``<unk>``: unknown (rare: byte fallback covers every UTF-8 byte).
* 3 ``[CLS]``, 4 ``[SEP]`` (between packed documents and at the end), 5 ``[MASK]``: BERT.
* 6 .. 261 ``<0x00>`` .. ``<0xFF>``: byte-fallback pieces; then the learned unigram pieces up to V-S-1.
* V-1-i for i = 0 .. S-1: T5 sentinel ``<extra_id_i>`` (T5 convention: sentinel ids count down from the top).

The sentinels are not part of the SentencePiece model (as in T5's ``SentencePieceVocabulary``
with ``extra_ids``): the model has V-S pieces and the tokenizer appends S ids after them.
``encode`` understands the literal ``<extra_id_N>`` in text and ``decode`` prints it back.

Text is NFKC-normalised; runs of whitespace, including newlines, become one space
(SentencePiece's ``nmt_nfkc`` rule), so ``decode(encode(s))`` equals ``s`` up to that
normalisation (and lower-casing when ``lowercase=True``, done by the ``nmt_nfkc_cf`` rule
stored inside the model, so a reloaded tokenizer lower-cases too).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pathlib
import re
from typing import Any, Iterable, Protocol, Sequence

import numpy as np
import sentencepiece as spm

PAD_ID = 0
EOS_ID = 1
UNK_ID = 2
CLS_ID = 3
SEP_ID = 4
MASK_ID = 5
NUM_SPECIAL = 6  # ids below this are never masked, sampled as random tokens, or learned
_USER_SYMBOLS = ("[CLS]", "[SEP]", "[MASK]")
_SENTINEL_RE = re.compile(r"<extra_id_(\d+)>")
_MODEL_FILE = "tokenizer.model"
_META_FILE = "tokenizer.json"
# SentencePiece skips training sentences longer than this many bytes; longer lines are cut.
_MAX_SENTENCE_BYTES = 4192


class MissingTokenError(ValueError):
  """The tokenizer has no token for a role an objective or task needs (the message names the token)."""


class TokenizerProtocol(Protocol):
  """What the data code needs of a tokenizer; :class:`Tokenizer` and :class:`HFTokenizer` provide it.

  The id properties raise :class:`MissingTokenError` when the tokenizer has no such token.
  """

  @property
  def vocab_size(self) -> int:
    """Number of ids: every id it produces is below this (the model's vocabulary may be larger)."""

  @property
  def fingerprint(self) -> str:
    """A hash of everything that decides the ids: keys the token cache and the data iterator's state."""

  def encode(self, text: str) -> list[int]:
    """Token ids of ``text``, no special tokens added; literal ``<extra_id_N>`` is sentinel N."""

  def encode_batch(self, texts: Sequence[str], num_threads: int | None = None) -> list[list[int]]:
    """``encode`` of each text (sentinel text need not be parsed)."""

  def decode(self, ids: Iterable[int]) -> str:
    """Text of ``ids``."""

  @property
  def pad_id(self) -> int:
    """Padding (never a label: it always carries weight 0 or attention 0)."""

  @property
  def eos_id(self) -> int:
    """End of sequence: the separator between documents of causal LM and span corruption."""

  @property
  def cls_id(self) -> int:
    """BERT's ``[CLS]``: first token of MLM rows and GLUE examples."""

  @property
  def sep_id(self) -> int:
    """BERT's ``[SEP]``: separator between documents (MLM) and segments (GLUE)."""

  @property
  def mask_id(self) -> int:
    """BERT's ``[MASK]``."""

  @property
  def special_ids(self) -> tuple[int, ...]:
    """Ids that are never masked (nor predicted) by MLM: padding, ``[CLS]``, ``[SEP]``, ``[MASK]``, ..."""

  @property
  def normal_id_range(self) -> tuple[int, int]:
    """``[lo, hi)``: ordinary pieces (no specials, no sentinels), from which MLM draws random replacements."""

  @property
  def num_sentinels(self) -> int:
    """How many T5 sentinels ``<extra_id_i>`` there are (0: no span corruption)."""

  def sentinel_id(self, i: int) -> int:
    """Id of ``<extra_id_i>``."""

  def save(self, directory: str | os.PathLike) -> pathlib.Path:
    """Writes the tokenizer into ``directory`` so that :func:`load` reads it back; returns the directory."""


class Tokenizer:
  """A SentencePiece unigram model plus ``num_sentinels`` T5 sentinel ids at the top.

  Example (a toy vocabulary: 6 specials, 256 byte pieces, 14 learned pieces, 4 sentinels):
    >>> text = ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog met on a mat"] * 20
    >>> tok = Tokenizer.train(text, vocab_size=280, num_sentinels=4, num_threads=1)
    >>> tok.vocab_size, tok.special_ids, tok.normal_id_range
    (280, (0, 1, 2, 3, 4, 5), (6, 276))
    >>> tok.decode(tok.encode("the cat met a dog"))
    'the cat met a dog'
    >>> tok.encode("<extra_id_0>"), tok.sentinel_id(1), tok.decode([278, 279])  # sentinels count down
    ([279], 278, '<extra_id_1><extra_id_0>')
  """

  def __init__(self, model_proto: bytes, *, num_sentinels: int = 100):
    self._proto = bytes(model_proto)
    self._sp = spm.SentencePieceProcessor(model_proto=self._proto)
    self._num_pieces = self._sp.get_piece_size()
    self._num_sentinels = int(num_sentinels)
    expected = {PAD_ID: "<pad>", EOS_ID: "</s>", UNK_ID: "<unk>", CLS_ID: "[CLS]", SEP_ID: "[SEP]", MASK_ID: "[MASK]"}
    for i, piece in expected.items():
      if self._sp.id_to_piece(i) != piece:
        raise ValueError(
          f"SentencePiece model has {self._sp.id_to_piece(i)!r} at id {i}, expected {piece!r}; "
          "train it with Tokenizer.train"
        )

  # ----------------------------------------------------------------------------------------- training
  @classmethod
  def train(
    cls,
    documents: Iterable[str],
    *,
    vocab_size: int = 32768,
    num_sentinels: int = 100,
    lowercase: bool = False,
    max_sentences: int = 200_000,
    seed: int = 0,
    character_coverage: float = 0.9995,
    num_threads: int | None = None,
  ) -> "Tokenizer":
    """Trains a unigram SentencePiece model on a bounded sample of the documents' lines.

    Args:
      documents: texts; each is split into non-empty lines, the "sentences" SentencePiece trains on.
      vocab_size: total vocabulary including the specials and ``num_sentinels`` sentinels (cramming: 32768).
      num_sentinels: T5 ``<extra_id_i>`` ids appended at the top of the vocabulary.
      lowercase: case-fold all text (stored in the model's normaliser).
      max_sentences: at most this many lines, sampled uniformly with ``seed``, are used for training.
        Reading stops once ``10 * max_sentences`` lines were seen, so huge sources stay fast.
      seed: sampling seed; the same documents and seed give the same model.
      character_coverage: SentencePiece's coverage; rarer characters go to byte pieces.
      num_threads: training threads (default: all CPUs).

    Raises:
      ValueError: naming ``vocab_size`` when the text cannot support that many pieces, or when it is too small
        for the specials, the 256 byte pieces and the sentinels.
    """
    num_pieces = vocab_size - num_sentinels
    if num_pieces < NUM_SPECIAL + 256 + 1:
      raise ValueError(
        f"vocab_size={vocab_size} is too small: it needs {NUM_SPECIAL} special ids, 256 byte "
        f"pieces, {num_sentinels} sentinels and at least one learned piece"
      )
    lines = _sample_lines(documents, max_sentences, seed)
    if not lines:
      raise ValueError("no text to train the tokenizer on")
    model = io.BytesIO()
    try:
      spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        model_type="unigram",
        vocab_size=num_pieces,
        pad_id=PAD_ID,
        eos_id=EOS_ID,
        unk_id=UNK_ID,
        bos_id=-1,
        pad_piece="<pad>",
        eos_piece="</s>",
        unk_piece="<unk>",
        user_defined_symbols=list(_USER_SYMBOLS),
        byte_fallback=True,
        character_coverage=character_coverage,
        normalization_rule_name="nmt_nfkc_cf" if lowercase else "nmt_nfkc",
        input_sentence_size=0,  # the sample is drawn above, deterministically
        max_sentence_length=_MAX_SENTENCE_BYTES,
        hard_vocab_limit=True,
        num_threads=num_threads or os.cpu_count() or 1,
        minloglevel=2,
      )
    except RuntimeError as err:
      m = re.search(r"value <= (\d+)", str(err))
      if "Vocabulary size" in str(err) or m:
        limit = f" (at most {int(m.group(1)) + num_sentinels} here)" if m else ""
        raise ValueError(
          f"vocab_size={vocab_size} is larger than this corpus can support{limit}: "
          f"{len(lines)} training lines; lower data.vocab_size or add text"
        ) from err
      raise
    return cls(model.getvalue(), num_sentinels=num_sentinels)

  # ------------------------------------------------------------------------------------ persistence
  def save(self, directory: str | os.PathLike) -> pathlib.Path:
    """Writes ``tokenizer.model`` and ``tokenizer.json`` into ``directory``; returns the directory."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _atomic_write(directory / _MODEL_FILE, self._proto)
    meta = {
      "vocab_size": self.vocab_size,
      "num_sentinels": self._num_sentinels,
      "lowercase": self.lowercase,
      "fingerprint": self.fingerprint,
    }
    _atomic_write(directory / _META_FILE, json.dumps(meta, indent=2).encode())
    return directory

  @classmethod
  def load(cls, path: str | os.PathLike) -> "Tokenizer":
    """Loads from a directory written by :meth:`save` or by :mod:`came_jax.export`, or its ``tokenizer.model``.

    The sentinel count is the one recorded beside the model (100 when none is).
    """
    path = pathlib.Path(path)
    directory = path if path.is_dir() else path.parent
    model_file = directory / _MODEL_FILE if path.is_dir() else path
    if not model_file.is_file():
      raise FileNotFoundError(f"no tokenizer at {path} (expected {model_file})")
    num_sentinels = _saved_num_sentinels(directory)
    return cls(model_file.read_bytes(), num_sentinels=100 if num_sentinels is None else num_sentinels)

  @staticmethod
  def exists(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` holds a saved tokenizer."""
    return (pathlib.Path(directory) / _MODEL_FILE).is_file()

  @staticmethod
  def is_ours(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` holds one of ours: ``tokenizer.model`` with our sentinel count recorded beside it."""
    return Tokenizer.exists(directory) and _saved_num_sentinels(pathlib.Path(directory)) is not None

  # -------------------------------------------------------------------------------- encode / decode
  def encode(self, text: str) -> list[int]:
    """Token ids of ``text`` (no EOS added). Literal ``<extra_id_N>`` becomes sentinel N."""
    if "<extra_id_" not in text:
      return self._sp.encode(text)
    ids: list[int] = []
    pos = 0
    for m in _SENTINEL_RE.finditer(text):
      if m.start() > pos:
        ids += self._sp.encode(text[pos : m.start()])
      ids.append(self.sentinel_id(int(m.group(1))))
      pos = m.end()
    if pos < len(text):
      ids += self._sp.encode(text[pos:])
    return ids

  def encode_batch(self, texts: Sequence[str], num_threads: int | None = None) -> list[list[int]]:
    """Encodes many texts at once with SentencePiece's thread pool (sentinel text not parsed)."""
    return self._sp.encode(list(texts), num_threads=num_threads or os.cpu_count() or 1)

  def decode(self, ids: Iterable[int]) -> str:
    """Text of ``ids``: pad/EOS print as nothing, sentinels as ``<extra_id_N>``, ``[MASK]`` etc. literally."""
    out: list[str] = []
    run: list[int] = []
    for i in np.asarray(list(ids), dtype=np.int64).tolist():
      if i >= self._num_pieces:
        if run:
          out.append(self._sp.decode(run))
          run = []
        out.append(f"<extra_id_{self.vocab_size - 1 - i}>")
      else:
        run.append(i)
    if run:
      out.append(self._sp.decode(run))
    return "".join(out)

  def id_to_piece(self, i: int) -> str:
    """The vocabulary entry of id ``i``."""
    if i >= self._num_pieces:
      return f"<extra_id_{self.vocab_size - 1 - i}>"
    return self._sp.id_to_piece(int(i))

  # ------------------------------------------------------------------------------------- properties
  @property
  def vocab_size(self) -> int:
    """Total number of ids: SentencePiece pieces plus sentinels."""
    return self._num_pieces + self._num_sentinels

  @property
  def num_sentinels(self) -> int:
    return self._num_sentinels

  @property
  def num_pieces(self) -> int:
    """Ids below this come from SentencePiece; the sentinels are above."""
    return self._num_pieces

  @property
  def lowercase(self) -> bool:
    return "ab" in self._sp.normalize("AB")

  pad_id = property(lambda self: PAD_ID, doc="Padding id (0).")
  eos_id = property(lambda self: EOS_ID, doc="End-of-sequence id (1).")
  eot_id = property(lambda self: EOS_ID, doc="GPT-2 ``<|endoftext|>`` role: the same id as EOS (1).")
  unk_id = property(lambda self: UNK_ID, doc="Unknown-piece id (2).")
  cls_id = property(lambda self: CLS_ID, doc="``[CLS]`` id (3).")
  sep_id = property(lambda self: SEP_ID, doc="``[SEP]`` id (4).")
  mask_id = property(lambda self: MASK_ID, doc="``[MASK]`` id (5).")

  @property
  def special_ids(self) -> tuple[int, ...]:
    """Ids that are never masked or sampled: pad, eos, unk, [CLS], [SEP], [MASK]."""
    return tuple(range(NUM_SPECIAL))

  @property
  def normal_id_range(self) -> tuple[int, int]:
    """``[lo, hi)`` of ordinary pieces (byte and learned pieces; no specials, no sentinels)."""
    return NUM_SPECIAL, self._num_pieces

  def sentinel_id(self, i: int) -> int:
    """Id of T5 sentinel ``<extra_id_i>``: ``vocab_size - 1 - i``."""
    if not 0 <= i < self._num_sentinels:
      raise ValueError(f"sentinel index {i} out of range [0, {self._num_sentinels})")
    return self.vocab_size - 1 - i

  @property
  def fingerprint(self) -> str:
    """Hash of the model and sentinel count: keys the token cache."""
    h = hashlib.sha256(self._proto)
    h.update(str(self._num_sentinels).encode())
    return h.hexdigest()[:16]

  def __repr__(self) -> str:
    return (
      f"Tokenizer(vocab_size={self.vocab_size}, num_sentinels={self._num_sentinels}, "
      f"lowercase={self.lowercase}, fingerprint={self.fingerprint})"
    )


def load_or_train(
  directory: str | os.PathLike,
  documents: Iterable[str],
  *,
  vocab_size: int = 32768,
  lowercase: bool = False,
  **train_kwargs,
) -> Tokenizer:
  """Loads the tokenizer saved in ``directory`` (a run's workdir on resume), else trains and saves one.

  >>> import tempfile
  >>> text = ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog met on a mat"] * 20
  >>> with tempfile.TemporaryDirectory() as run_dir:
  ...     tok = load_or_train(run_dir, text, vocab_size=280, num_sentinels=4, num_threads=1)
  ...     again = load_or_train(run_dir, [], vocab_size=280)  # loaded: no text needed
  >>> again.fingerprint == tok.fingerprint
  True

  Raises:
    ValueError: naming ``vocab_size`` or ``lowercase`` when a saved tokenizer disagrees with the request.
  """
  if Tokenizer.exists(directory):
    tok = Tokenizer.load(directory)
    if tok.vocab_size != vocab_size:
      raise ValueError(
        f"vocab_size={vocab_size} but the tokenizer saved in {directory} has vocab_size={tok.vocab_size}"
      )
    if tok.lowercase != lowercase:
      raise ValueError(f"lowercase={lowercase} but the tokenizer saved in {directory} has lowercase={tok.lowercase}")
    return tok
  tok = Tokenizer.train(documents, vocab_size=vocab_size, lowercase=lowercase, **train_kwargs)
  tok.save(directory)
  return tok


# ------------------------------------------------------------------------------------- Hugging Face tokenizers
_ROLES = ("pad", "eos", "unk", "bos", "cls", "sep", "mask")
# Tried in order when the folder's config files do not name a role's token (hub BERT folders name none:
# transformers takes them from BertTokenizer's defaults).
_CONVENTIONAL = {
  "pad": ("[PAD]", "<pad>"),
  "eos": ("</s>", "<|endoftext|>"),
  "unk": ("[UNK]", "<unk>"),
  "bos": ("<s>", "<|startoftext|>"),
  "cls": ("[CLS]",),
  "sep": ("[SEP]",),
  "mask": ("[MASK]", "<mask>"),
}
_HF_CONFIG_FILES = ("tokenizer_config.json", "special_tokens_map.json")
_HF_MODEL_FILES = ("tokenizer.json", "spiece.model", "tokenizer.model")


class _TokenizersBackend:
  """A ``tokenizers`` ``tokenizer.json``."""

  def __init__(self, data: bytes):
    import tokenizers  # pylint: disable=g-import-not-at-top

    self.tok = tokenizers.Tokenizer.from_str(data.decode("utf-8"))
    added = self.tok.get_added_tokens_decoder()
    self.vocab_size = max([self.tok.get_vocab_size(with_added_tokens=True), *(i + 1 for i in added)])
    self.specials = {int(i) for i, t in added.items() if t.special}

  def token_to_id(self, token: str) -> int | None:
    return self.tok.token_to_id(token)

  def encode(self, text: str) -> list[int]:
    return self.tok.encode(text, add_special_tokens=False).ids

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    return [e.ids for e in self.tok.encode_batch(list(texts), add_special_tokens=False)]

  def decode(self, ids: list[int]) -> str:
    return self.tok.decode(ids, skip_special_tokens=False)


class _SentencePieceBackend:
  """A SentencePiece model plus ``extra_ids`` T5 sentinels counting down from the top (T5's ``spiece.model``)."""

  def __init__(self, data: bytes, extra_ids: int):
    self.sp = spm.SentencePieceProcessor(model_proto=data)
    self.num_pieces, self.extra_ids = self.sp.get_piece_size(), extra_ids
    self.vocab_size = self.num_pieces + extra_ids
    self.specials = {i for i in range(self.num_pieces) if self.sp.is_control(i) or self.sp.is_unknown(i)}

  def token_to_id(self, token: str) -> int | None:
    m = _SENTINEL_RE.fullmatch(token)
    if m:
      i = int(m.group(1))
      return self.vocab_size - 1 - i if i < self.extra_ids else None
    i = self.sp.piece_to_id(token)
    return i if self.sp.id_to_piece(i) == token else None

  def encode(self, text: str) -> list[int]:
    ids: list[int] = []
    pos = 0
    for m in _SENTINEL_RE.finditer(text):
      sentinel = self.token_to_id(m.group(0))
      if sentinel is not None:
        ids += self.sp.encode(text[pos : m.start()]) if m.start() > pos else []
        ids.append(sentinel)
        pos = m.end()
    return ids + (self.sp.encode(text[pos:]) if pos < len(text) else [])

  def encode_batch(self, texts: Sequence[str], num_threads: int | None = None) -> list[list[int]]:
    return self.sp.encode(list(texts), num_threads=num_threads or os.cpu_count() or 1)

  def decode(self, ids: list[int]) -> str:
    out, run = [], []
    for i in ids:
      if i >= self.num_pieces:
        out += [self.sp.decode(run), f"<extra_id_{self.vocab_size - 1 - i}>"]
        run = []
      else:
        run.append(i)
    return "".join(out) + self.sp.decode(run)


class HFTokenizer:
  """A Hugging Face tokenizer read from a model folder, with its own special ids (:class:`TokenizerProtocol`).

  Files: ``tokenizer.json`` (read with the ``tokenizers`` package; preferred), else a SentencePiece
  ``spiece.model`` or ``tokenizer.model`` (T5's, with ``extra_ids`` sentinels appended, ``<extra_id_i>`` at
  ``vocab_size - 1 - i``); beside it ``tokenizer_config.json`` and/or ``special_tokens_map.json``, whose
  ``pad_token``, ``eos_token``, ``unk_token``, ``bos_token``, ``cls_token``, ``sep_token`` and ``mask_token`` name
  the special tokens (a role named in neither takes the conventional token, ``[CLS]``, ``</s>``, ... when the
  vocabulary has one). Sentinels are the tokens ``<extra_id_0>``, ``<extra_id_1>``, ... that exist.

  * ``pad_id``: the pad token, else the EOS token (GPT-2 has no pad; padding never counts, whatever its id).
  * ``special_ids``: the named special tokens, the tokenizer's special added tokens (T5's sentinels among them)
    and SentencePiece's control pieces.
  * ``normal_id_range``: the longest run of ids holding no special id (BERT: after ``[MASK]``; GPT-2: below
    ``<|endoftext|>``; T5: between ``<unk>`` and the sentinels).

  ``encode`` never adds special tokens (no ``[CLS]``/``</s>``: objectives and GLUE frame the ids themselves).
  ``save`` writes the files back unchanged, so the fingerprint (a hash of them) survives a round trip.
  """

  def __init__(self, files: dict[str, bytes], source: str = "<memory>"):
    self._files = dict(sorted(files.items()))
    self.source = source
    config: dict[str, Any] = {}
    for name in _HF_CONFIG_FILES:  # special_tokens_map.json, where present, has the last word
      if name in files:
        config.update(json.loads(files[name]))
    if "tokenizer.json" in files:
      self._backend = _TokenizersBackend(files["tokenizer.json"])
    else:
      model = next((files[n] for n in _HF_MODEL_FILES if n in files), None)
      if model is None:
        raise FileNotFoundError(f"no Hugging Face tokenizer in {source}: none of {', '.join(_HF_MODEL_FILES)}")
      named = [t for t in _token_list(config) if _SENTINEL_RE.fullmatch(t)]
      self._backend = _SentencePieceBackend(model, int(config.get("extra_ids") or len(named)))
    self._ids: dict[str, int | None] = {}
    for role in _ROLES:
      token = _content(config.get(f"{role}_token"))
      if token is not None:
        self._ids[role] = self._backend.token_to_id(token)
        if self._ids[role] is None:
          raise ValueError(f"{source}: {role}_token={token!r} is not in the tokenizer's vocabulary")
      else:
        found = (self._backend.token_to_id(t) for t in _CONVENTIONAL[role])
        self._ids[role] = next((i for i in found if i is not None), None)
    self._sentinels: list[int] = []
    while (i := self._backend.token_to_id(f"<extra_id_{len(self._sentinels)}>")) is not None:
      self._sentinels.append(i)
    named = {self._backend.token_to_id(t) for t in _token_list(config)}
    specials = {i for i in (*self._ids.values(), *named) if i is not None}
    self._special_ids = tuple(sorted(specials | self._backend.specials | set(self._sentinels)))

  @classmethod
  def load(cls, directory: str | os.PathLike) -> "HFTokenizer":
    """The tokenizer of a Hugging Face folder (or a folder :meth:`save` wrote)."""
    directory = pathlib.Path(directory)
    names = [n for n in _HF_MODEL_FILES + _HF_CONFIG_FILES if (directory / n).is_file()]
    return cls({n: (directory / n).read_bytes() for n in names}, str(directory))

  def save(self, directory: str | os.PathLike) -> pathlib.Path:
    """Writes the files it was read from into ``directory``; returns the directory."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in self._files.items():
      _atomic_write(directory / name, data)
    return directory

  # -------------------------------------------------------------------------------- encode / decode
  def encode(self, text: str) -> list[int]:
    """Token ids of ``text``, no special tokens added."""
    return self._backend.encode(text)

  def encode_batch(self, texts: Sequence[str], num_threads: int | None = None) -> list[list[int]]:
    """``encode`` of each text (``tokenizers`` picks its own threads)."""
    if isinstance(self._backend, _SentencePieceBackend):
      return self._backend.encode_batch(texts, num_threads)
    return self._backend.encode_batch(texts)

  def decode(self, ids: Iterable[int]) -> str:
    """Text of ``ids``, special tokens printed."""
    return self._backend.decode(np.asarray(list(ids), dtype=np.int64).tolist())

  # ------------------------------------------------------------------------------------- properties
  @property
  def vocab_size(self) -> int:
    return self._backend.vocab_size

  def _id(self, role: str) -> int:
    i = self._ids[role]
    if i is None:
      raise MissingTokenError(
        f"the tokenizer in {self.source} has no {role} token (neither a {role}_token in its "
        f"{' or '.join(_HF_CONFIG_FILES)} nor {' or '.join(_CONVENTIONAL[role])} in its vocabulary)"
      )
    return i

  eos_id = property(lambda self: self._id("eos"), doc="End-of-sequence id (``eos_token``).")
  unk_id = property(lambda self: self._id("unk"), doc="Unknown-token id (``unk_token``).")
  cls_id = property(lambda self: self._id("cls"), doc="``[CLS]`` id (``cls_token``).")
  sep_id = property(lambda self: self._id("sep"), doc="``[SEP]`` id (``sep_token``).")
  mask_id = property(lambda self: self._id("mask"), doc="``[MASK]`` id (``mask_token``).")

  @property
  def pad_id(self) -> int:
    """The pad token's id, else the EOS token's."""
    return self._id("pad" if self._ids["pad"] is not None or self._ids["eos"] is None else "eos")

  @property
  def special_ids(self) -> tuple[int, ...]:
    return self._special_ids

  @property
  def normal_id_range(self) -> tuple[int, int]:
    bounds = [-1, *self._special_ids, self.vocab_size]
    lo, hi = max(zip(bounds[:-1], bounds[1:]), key=lambda b: b[1] - b[0])
    return lo + 1, hi

  @property
  def num_sentinels(self) -> int:
    return len(self._sentinels)

  def sentinel_id(self, i: int) -> int:
    """Id of ``<extra_id_i>``."""
    if not 0 <= i < len(self._sentinels):
      raise ValueError(f"sentinel index {i} out of range [0, {len(self._sentinels)})")
    return self._sentinels[i]

  @property
  def fingerprint(self) -> str:
    """Hash of the tokenizer files."""
    h = hashlib.sha256(b"hf")
    for name, data in self._files.items():
      h.update(f"\0{name}\0{len(data)}\0".encode())
      h.update(data)
    return h.hexdigest()[:16]

  def __repr__(self) -> str:
    return f"HFTokenizer({self.source!r}, vocab_size={self.vocab_size}, fingerprint={self.fingerprint})"


def _content(token: Any) -> str | None:
  """The text of a token as the config files write it: a string or ``{"content": ...}``."""
  return token.get("content") if isinstance(token, dict) else token


def _token_list(config: dict[str, Any]) -> list[str]:
  """The extra special tokens a config names (``additional_special_tokens``, transformers 5's
  ``extra_special_tokens``)."""
  tokens = []
  for key in ("additional_special_tokens", "extra_special_tokens"):
    value = config.get(key) or []
    tokens += list(value.values()) if isinstance(value, dict) else list(value)
  return [t for t in map(_content, tokens) if isinstance(t, str)]


def load(directory: str | os.PathLike) -> Tokenizer | HFTokenizer:
  """The tokenizer saved in ``directory``: ours (:meth:`Tokenizer.save`, or a :mod:`came_jax.export` folder) or
  a Hugging Face one (``tokenizer.json``, ``spiece.model``, ``tokenizer.model``).

  Raises:
    FileNotFoundError: naming the folder and the files looked for.
  """
  directory = pathlib.Path(directory)
  if Tokenizer.is_ours(directory):
    return Tokenizer.load(directory)
  if any((directory / n).is_file() for n in _HF_MODEL_FILES):
    return HFTokenizer.load(directory)
  raise FileNotFoundError(
    f"no tokenizer in {directory}: expected one of {', '.join(_HF_MODEL_FILES)} (a Hugging Face tokenizer) or "
    f"{_MODEL_FILE} with {_META_FILE} (ours)"
  )


def _saved_num_sentinels(directory: pathlib.Path) -> int | None:
  """The sentinel count recorded beside our ``tokenizer.model``: in our ``tokenizer.json``, or under ``came_jax``
  in the ``tokenizer_config.json`` of an exported folder; None when neither records one."""
  for name, keys in ((_META_FILE, ()), ("tokenizer_config.json", ("came_jax",))):
    path = directory / name
    if path.is_file():
      meta = json.loads(path.read_text())
      for key in keys:
        meta = meta.get(key) or {}
      if "num_sentinels" in meta:
        return int(meta["num_sentinels"])
  return None


def _sample_lines(documents: Iterable[str], max_sentences: int, seed: int) -> list[str]:
  lines: list[str] = []
  for doc in documents:
    lines.extend(line[: _MAX_SENTENCE_BYTES // 4] for line in doc.splitlines() if line.strip())
    if len(lines) >= 10 * max_sentences:
      break
  if len(lines) > max_sentences:
    keep = np.sort(np.random.default_rng(seed).choice(len(lines), max_sentences, replace=False))
    lines = [lines[i] for i in keep]
  return lines


def _atomic_write(path: pathlib.Path, data: bytes) -> None:
  tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
  tmp.write_bytes(data)
  os.replace(tmp, path)
