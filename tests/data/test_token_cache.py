"""The token cache: tokenize once, reload from disk, keyed by the source and the tokenizer."""

import numpy as np
import pytest

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


def test_a_failed_cache_write_names_the_folder_and_leaves_nothing(inaugural, tokenizer, tmp_path, monkeypatch):
  """A full disk mid-write (numpy says only "N requested and M written"): the error names the cache folder and
  its size, and no partial cache is left to be read later."""

  def full_disk(path, array, *args, **kwargs):
    raise OSError(f"{array.size} requested and {array.size // 2} written")

  monkeypatch.setattr(np, "save", full_disk)
  with pytest.raises(OSError, match=rf"could not write the token cache \(.* MiB\) in {tmp_path}: .* Is the disk full"):
    token_cache.tokenize_source(inaugural, tokenizer, tmp_path)
  assert list(tmp_path.iterdir()) == []
  monkeypatch.undo()
  assert token_cache.tokenize_source(inaugural, tokenizer, tmp_path).num_tokens > 0
