"""Session fixtures for the data tests: a small tokenizer trained once on a real slice of the corpus."""

import pytest

from came_jax.data import sources, token_cache
from came_jax.data.tokenizer import Tokenizer

VOCAB_SIZE = 1000


@pytest.fixture(scope="session")
def inaugural(shared_data) -> sources.LocalTextSource:
  """The 59 US inaugural addresses (about 900 KB): one document per file."""
  return sources.LocalTextSource(shared_data / "corpus" / "inaugural")


@pytest.fixture(scope="session")
def tokenizer(inaugural) -> Tokenizer:
  """A 1000-id tokenizer trained on the inaugural addresses (well under a second)."""
  return Tokenizer.train(inaugural, vocab_size=VOCAB_SIZE, max_sentences=20_000, seed=0)


@pytest.fixture(scope="session")
def inaugural_tokens(inaugural, tokenizer, tmp_path_factory) -> token_cache.TokenizedCorpus:
  """The inaugural addresses tokenized once, cached in a session tmp folder."""
  return token_cache.tokenize_source(inaugural, tokenizer, tmp_path_factory.mktemp("token_cache"))


@pytest.fixture(scope="session")
def small_source(shared_data) -> sources.LocalTextSource:
  """Three short inaugural addresses: a corpus small enough to run through several epochs."""
  return sources.LocalTextSource(str(shared_data / "corpus" / "inaugural" / "17*.txt"))
