"""Packing: fixed-width rows cut from one stream of documents joined by separators.

The stream is ``doc[o_0] SEP doc[o_1] SEP ... doc[o_{D-1}] SEP`` where ``o`` is a seeded permutation of the
(non-empty) documents. Row ``r`` is ``stream[r * stride : r * stride + width]``; rows are gathered lazily from the
token cache, so nothing is materialised. With ``stride == width`` every stream token is in exactly one row; with
``width == stride + 1`` (causal LM) consecutive rows overlap by one token, so every token but the first is a
next-token label exactly once. The last row may be short: its tail is marked invalid (padding). No token is lost.

Example:
  >>> import numpy as np
  >>> from came_jax.data.token_cache import TokenizedCorpus
  >>> corpus = TokenizedCorpus(np.array([7, 8, 9, 10, 11], np.int32), np.array([0, 2, 5]), "k", {})
  >>> rows = PackedRows(corpus, width=3, stride=3, separator=1, shuffle_seed=None)
  >>> tokens, valid = rows.rows(np.arange(rows.num_rows))
  >>> tokens.tolist(), valid.sum(axis=1).tolist()
  ([[7, 8, 1], [9, 10, 11], [1, 0, 0]], [3, 3, 1])
"""

from __future__ import annotations

import numpy as np

from came_jax.data.token_cache import TokenizedCorpus


class PackedRows:
  """Random access to packed rows of a :class:`TokenizedCorpus`.

  Args:
    corpus: token ids and document offsets.
    width: tokens per row.
    stride: stream distance between the starts of consecutive rows (``width`` or ``width - 1``).
    separator: id placed after every document (EOS for causal LM and span corruption, ``[SEP]`` for MLM).
    shuffle_seed: seed of the document order; ``None`` keeps the source order (evaluation).
    pad_id: value of invalid (past-the-end) positions.

  Causal LM rows (``stride = width - 1``) overlap by one token: the last input of a row is the first of the next.

    >>> import numpy as np
    >>> from came_jax.data.token_cache import TokenizedCorpus
    >>> corpus = TokenizedCorpus(np.array([7, 8, 9, 10, 11], np.int32), np.array([0, 2, 5]), "k", {})
    >>> rows = PackedRows(corpus, width=4, stride=3, separator=1, shuffle_seed=None)
    >>> rows.stream(0, rows.stream_length).tolist()
    [7, 8, 1, 9, 10, 11, 1]
    >>> rows.rows(np.arange(rows.num_rows))[0].tolist()
    [[7, 8, 1, 9], [9, 10, 11, 1]]
  """

  def __init__(
    self, corpus: TokenizedCorpus, *, width: int, stride: int, separator: int, shuffle_seed: int | None, pad_id: int = 0
  ):
    if not 0 < stride <= width:
      raise ValueError(f"need 0 < stride <= width, got stride={stride}, width={width}")
    self.corpus, self.width, self.stride = corpus, int(width), int(stride)
    self.separator, self.pad_id = int(separator), int(pad_id)
    lengths = np.diff(np.asarray(corpus.offsets))
    docs = np.flatnonzero(lengths > 0)
    if docs.size == 0:
      raise ValueError(f"tokenized corpus {corpus.stats.get('source', corpus.fingerprint)} has no tokens")
    if shuffle_seed is not None:
      docs = np.random.default_rng([int(shuffle_seed), 0x9ACC]).permutation(docs)
    self.document_order = docs
    self._doc_start = np.asarray(corpus.offsets)[docs]
    self._doc_len = lengths[docs]
    self._seg_start = np.concatenate([[0], np.cumsum(self._doc_len + 1)])
    self.stream_length = int(self._seg_start[-1])  # tokens + one separator per document
    overlap = self.width - self.stride
    self.num_rows = max(1, -(-(self.stream_length - overlap) // self.stride))

  def stream(self, start: int, stop: int) -> np.ndarray:
    """Stream tokens ``[start, stop)`` (clipped to the stream)."""
    pos = np.arange(max(0, start), min(stop, self.stream_length))
    return self._gather(pos)

  def rows(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``indices``: int32 tokens ``[n, width]`` and bool ``valid`` ``[n, width]`` (False = padding)."""
    indices = np.asarray(indices, np.int64)
    if indices.size and (indices.min() < 0 or indices.max() >= self.num_rows):
      raise IndexError(f"row index out of range [0, {self.num_rows})")
    pos = indices[:, None] * self.stride + np.arange(self.width)[None, :]
    valid = pos < self.stream_length
    tokens = self._gather(np.minimum(pos, self.stream_length - 1))
    return np.where(valid, tokens, self.pad_id).astype(np.int32), valid

  def _gather(self, pos: np.ndarray) -> np.ndarray:
    seg = np.searchsorted(self._seg_start, pos, side="right") - 1
    offset = pos - self._seg_start[seg]
    doc_len = self._doc_len[seg]
    is_sep = offset >= doc_len
    ids = np.asarray(self.corpus.tokens[self._doc_start[seg] + np.minimum(offset, doc_len - 1)])
    return np.where(is_sep, self.separator, ids).astype(np.int32)
