"""The token cache: tokenize once, reload from disk, keyed by the source and the tokenizer."""

import numpy as np

from came_jax.data import token_cache
from came_jax.data.tokenizer import Tokenizer


def test_cache_is_written_once_and_reloaded(inaugural, tokenizer, tmp_path):
  first = token_cache.tokenize_source(inaugural, tokenizer, tmp_path)
  assert (tmp_path / first.fingerprint / "tokens.npy").is_file()
  second = token_cache.tokenize_source(inaugural, tokenizer, tmp_path)
  assert isinstance(second.tokens, np.memmap) and second.stats == first.stats
  np.testing.assert_array_equal(first.tokens, second.tokens)
  np.testing.assert_array_equal(first.offsets, second.offsets)
  assert first.num_documents == len(inaugural) and first.tokens.dtype == np.int32
  # Document i is the tokenizer's encoding of the file (line breaks are whitespace to the tokenizer).
  np.testing.assert_array_equal(first.document(7), tokenizer.encode(" ".join(inaugural[7].split())))
  other = Tokenizer.train(inaugural[:10], vocab_size=500)
  assert token_cache.cache_key(inaugural, other) != first.fingerprint
