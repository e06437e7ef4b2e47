"""Session fixtures for the data tests: a small tokenizer trained once on a real slice of the corpus."""

import pytest

from came_jax.data import sources, token_cache
from came_jax.data import tokenizer as tokenizer_lib
from came_jax.data.tokenizer import Tokenizer
from tests.data import hf_tokenizers

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


@pytest.fixture(scope="session")
def hf_wordpiece(inaugural, tmp_path_factory):
  """A Hugging Face WordPiece tokenizer (`tests/data/hf_tokenizers.py`): special ids unlike ours, 4 sentinels."""
  texts = [inaugural[i] for i in range(10)]
  return tokenizer_lib.load(hf_tokenizers.wordpiece_folder(tmp_path_factory.mktemp("hf_wordpiece"), texts))


@pytest.fixture(scope="session")
def hf_byte_bpe(inaugural, tmp_path_factory):
  """A GPT-2-style byte-level BPE (`tests/data/hf_tokenizers.py`): EOS only, no [CLS]/[SEP]/[MASK], no pad."""
  texts = [inaugural[i] for i in range(10)]
  return tokenizer_lib.load(hf_tokenizers.byte_bpe_folder(tmp_path_factory.mktemp("hf_byte_bpe"), texts))
