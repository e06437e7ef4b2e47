"""SentencePiece tokenizer with fixed special-token ids and T5 sentinels.

Id layout (``vocab_size`` = V, ``num_sentinels`` = S, default 100):

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
from typing import Iterable, Sequence

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
    """Loads from a directory written by :meth:`save` (or its ``tokenizer.model`` file)."""
    path = pathlib.Path(path)
    directory = path if path.is_dir() else path.parent
    model_file = directory / _MODEL_FILE if path.is_dir() else path
    if not model_file.is_file():
      raise FileNotFoundError(f"no tokenizer at {path} (expected {model_file})")
    num_sentinels = 100
    if (directory / _META_FILE).is_file():
      num_sentinels = json.loads((directory / _META_FILE).read_text())["num_sentinels"]
    return cls(model_file.read_bytes(), num_sentinels=num_sentinels)

  @staticmethod
  def exists(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` holds a saved tokenizer."""
    return (pathlib.Path(directory) / _MODEL_FILE).is_file()

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
