"""Packing: pack with separators, lose no token, seeded document order, empty documents skipped."""

import numpy as np
import pytest

from came_jax.data import token_cache
from came_jax.data.packing import PackedRows


def _expected_stream(corpus, rows: PackedRows) -> np.ndarray:
  return np.concatenate([np.append(corpus.document(d), rows.separator) for d in rows.document_order])


@pytest.mark.parametrize("width,stride", [(126, 126), (129, 128), (7, 7), (8, 7)])
def test_packing_loses_no_tokens(inaugural_tokens, width, stride):
  rows = PackedRows(inaugural_tokens, width=width, stride=stride, separator=4, shuffle_seed=3)
  tokens, valid = rows.rows(np.arange(rows.num_rows))
  stream = _expected_stream(inaugural_tokens, rows)
  assert rows.stream_length == len(stream) == inaugural_tokens.num_tokens + inaugural_tokens.num_documents
  # Each stream token is the (stride-window) start of exactly one row; with overlap, every later token is also
  # the last token of exactly one row: a next-token label exactly once.
  np.testing.assert_array_equal(tokens[:, :stride][valid[:, :stride]], stream)
  np.testing.assert_array_equal(tokens[:, width - stride :][valid[:, width - stride :]], stream[width - stride :])
  assert valid[:-1].all() and (tokens[~valid] == 0).all()
  assert (tokens == 4).sum(axis=None) >= inaugural_tokens.num_documents


def test_document_order_is_seeded(inaugural_tokens):
  def order(seed):
    return PackedRows(inaugural_tokens, width=64, stride=64, separator=1, shuffle_seed=seed).document_order

  np.testing.assert_array_equal(order(0), order(0))
  assert not np.array_equal(order(0), order(1))
  np.testing.assert_array_equal(order(None), np.arange(inaugural_tokens.num_documents))


def test_empty_documents_are_skipped():
  corpus = token_cache.TokenizedCorpus(np.array([7, 8, 9], np.int32), np.array([0, 2, 2, 3]), "k", {})
  rows = PackedRows(corpus, width=3, stride=3, separator=1, shuffle_seed=None)
  np.testing.assert_array_equal(rows.stream(0, 10), [7, 8, 1, 9, 1])
  with pytest.raises(ValueError, match="no tokens"):
    PackedRows(
      token_cache.TokenizedCorpus(np.zeros(0, np.int32), np.array([0, 0]), "k", {}),
      width=3,
      stride=3,
      separator=1,
      shuffle_seed=None,
    )
