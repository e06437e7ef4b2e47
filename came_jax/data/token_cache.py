"""Tokenize a source once and keep the ids on disk: ``tokens.npy`` (int32) + ``offsets.npy`` (int64).

Document ``i`` is ``tokens[offsets[i]:offsets[i+1]]`` (no EOS/SEP added; packing adds separators). The cache
folder is ``cache_dir/<key>/`` with ``key = sha256(tokenizer fingerprint, source fingerprint, format version)``,
written to a temporary folder and renamed, so a crash never leaves a half-written cache, and arrays are opened
memory-mapped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pathlib
import shutil
import time

import numpy as np

_FORMAT_VERSION = "1"


@dataclasses.dataclass(frozen=True)
class TokenizedCorpus:
  """Token ids of every document of a source, concatenated, with document offsets.

  Attributes:
    tokens: int32 ``[num_tokens]`` (memory-mapped when cached).
    offsets: int64 ``[num_documents + 1]``, ``offsets[0] == 0``.
    fingerprint: cache key; changes with the tokenizer or the source.
    stats: ``documents``, ``tokens``, ``undecodable_bytes``, ``seconds`` (tokenization time), ``source``,
      ``content_hash``.
  """

  tokens: np.ndarray
  offsets: np.ndarray
  fingerprint: str
  stats: dict

  @property
  def num_documents(self) -> int:
    return len(self.offsets) - 1

  @property
  def num_tokens(self) -> int:
    return int(self.offsets[-1])

  @property
  def content_hash(self) -> str:
    """Hash of the token ids and offsets: equal for equal data, wherever the files lie (used by resume)."""
    return self.stats.get("content_hash", self.fingerprint)

  def document(self, i: int) -> np.ndarray:
    """Token ids of document ``i``."""
    return np.asarray(self.tokens[self.offsets[i] : self.offsets[i + 1]])


def cache_key(source, tokenizer) -> str:
  """The cache folder name for ``source`` tokenized by ``tokenizer``."""
  key = f"{_FORMAT_VERSION}\0{tokenizer.fingerprint}\0{source.name}\0{source.fingerprint}"
  return hashlib.sha256(key.encode()).hexdigest()[:20]


def tokenize_source(
  source,
  tokenizer,
  cache_dir: str | os.PathLike | None = None,
  *,
  docs_per_chunk: int = 256,
  num_threads: int | None = None,
) -> TokenizedCorpus:
  """Token ids of every document in ``source``, read from ``cache_dir`` when present, else computed and saved.

  Each document is split into lines, the lines are encoded in parallel by SentencePiece and concatenated (line
  breaks are whitespace to the tokenizer, so this equals encoding the whole document). Undecodable bytes met
  while reading are logged and counted in ``stats['undecodable_bytes']``.

  Args:
    source: a sequence of strings with ``name`` and ``fingerprint`` (see ``sources.py``).
    tokenizer: any :class:`~came_jax.data.tokenizer.TokenizerProtocol` (ours or a Hugging Face one).
    cache_dir: where to keep the arrays; ``None`` keeps them in memory only.
    docs_per_chunk: documents encoded per SentencePiece call.
    num_threads: SentencePiece encoding threads (default: all CPUs).
  """
  key = cache_key(source, tokenizer)
  folder = None if cache_dir is None else pathlib.Path(cache_dir) / key
  if folder is not None and (folder / "meta.json").is_file():
    meta = json.loads((folder / "meta.json").read_text())
    return TokenizedCorpus(np.load(folder / "tokens.npy", mmap_mode="r"), np.load(folder / "offsets.npy"), key, meta)

  start = time.perf_counter()
  pieces: list[np.ndarray] = []
  lengths = np.zeros(len(source), np.int64)
  for lo in range(0, len(source), docs_per_chunk):
    docs = [source[i] for i in range(lo, min(lo + docs_per_chunk, len(source)))]
    lines, owner = [], []
    for j, doc in enumerate(docs):
      for line in doc.splitlines():
        if line.strip():
          lines.append(line)
          owner.append(j)
    encoded = tokenizer.encode_batch(lines, num_threads=num_threads) if lines else []
    for j, ids in zip(owner, encoded):
      lengths[lo + j] += len(ids)
    pieces.extend(np.asarray(ids, np.int32) for ids in encoded)
  tokens = np.concatenate(pieces) if pieces else np.zeros(0, np.int32)
  offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
  source_stats = source.stats() if hasattr(source, "stats") else {}
  meta = {
    "source": source.name,
    "documents": len(source),
    "tokens": int(offsets[-1]),
    "undecodable_bytes": int(source_stats.get("undecodable_bytes", 0)),
    "seconds": round(time.perf_counter() - start, 3),
    "tokenizer": tokenizer.fingerprint,
    "content_hash": hashlib.sha256(tokens.tobytes() + offsets.tobytes()).hexdigest()[:16],
  }
  if meta["undecodable_bytes"]:
    logging.warning("%s: replaced %d undecodable byte(s) with U+FFFD", source.name, meta["undecodable_bytes"])
  logging.info(
    "tokenized %s: %d documents, %d tokens in %.1fs", source.name, meta["documents"], meta["tokens"], meta["seconds"]
  )
  if folder is None:
    return TokenizedCorpus(tokens, offsets, key, meta)

  folder.parent.mkdir(parents=True, exist_ok=True)
  tmp = folder.parent / f".{key}.{os.getpid()}.tmp"
  shutil.rmtree(tmp, ignore_errors=True)
  tmp.mkdir()
  try:
    np.save(tmp / "tokens.npy", tokens)
    np.save(tmp / "offsets.npy", offsets)
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
  except OSError as e:  # a full disk, a quota: numpy's message ("N requested and M written") names neither
    shutil.rmtree(tmp, ignore_errors=True)
    need = tokens.nbytes + offsets.nbytes
    raise OSError(
      f"could not write the token cache ({need / 2**20:.1f} MiB) in {folder.parent}: {e}. Is the disk full? "
      "config.data.cache_dir sets where it goes."
    ) from e
  try:
    os.replace(tmp, folder)
  except OSError:  # another process wrote the same cache first
    shutil.rmtree(tmp, ignore_errors=True)
  return TokenizedCorpus(np.load(folder / "tokens.npy", mmap_mode="r"), np.load(folder / "offsets.npy"), key, meta)
