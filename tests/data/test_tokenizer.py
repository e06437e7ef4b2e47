"""Tokenizer: special ids, round trips on real text, sentinels, save/load, lower-casing, vocabulary errors."""

import unicodedata

import pytest

from came_jax.data import tokenizer as tokenizer_lib
from came_jax.data.tokenizer import Tokenizer


def _normalized(text: str) -> str:
  return " ".join(unicodedata.normalize("NFKC", text).split())


def test_special_token_ids(tokenizer):
  assert (tokenizer.pad_id, tokenizer.eos_id, tokenizer.unk_id) == (0, 1, 2)
  assert (tokenizer.cls_id, tokenizer.sep_id, tokenizer.mask_id) == (3, 4, 5)
  assert tokenizer.eot_id == tokenizer.eos_id
  assert [tokenizer.id_to_piece(i) for i in range(6)] == ["<pad>", "</s>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]
  assert tokenizer.vocab_size == 1000 and tokenizer.num_sentinels == 100
  assert tokenizer.sentinel_id(0) == 999 and tokenizer.sentinel_id(99) == 900
  assert tokenizer.num_pieces == 900 and tokenizer.normal_id_range == (6, 900)
  assert tokenizer.id_to_piece(999) == "<extra_id_0>"
  with pytest.raises(ValueError, match="sentinel index 100"):
    tokenizer.sentinel_id(100)


def test_round_trip_on_real_text(tokenizer, shared_data):
  # Held-out domain (never seen in training) and a file with Latin-1 letters (Caesar's 'æ' bytes are replaced).
  texts = [
    (shared_data / "corpus" / "state_union" / "1961-Kennedy.txt").read_text()[:3000],
    (shared_data / "corpus" / "gutenberg" / "carroll-alice.txt").read_text()[:3000],
    (shared_data / "corpus" / "movie_reviews" / "pos").iterdir().__next__().read_text(),
    "Brunetière, Cæsar and 漢字: byte fallback covers every character.",
  ]
  for text in texts:
    ids = tokenizer.encode(text)
    assert tokenizer.unk_id not in ids
    assert all(0 <= i < tokenizer.num_pieces for i in ids)
    assert tokenizer.decode(ids) == _normalized(text)


def test_specials_and_sentinels_in_text(tokenizer):
  ids = tokenizer.encode("[CLS] the people [MASK] <extra_id_0> nation <extra_id_7>")
  assert tokenizer.cls_id in ids and tokenizer.mask_id in ids
  assert tokenizer.sentinel_id(0) in ids and ids[-1] == tokenizer.sentinel_id(7)
  text = tokenizer.decode(ids)
  assert "<extra_id_0>" in text and text.endswith("<extra_id_7>") and "[MASK]" in text
  assert tokenizer.decode([tokenizer.pad_id, tokenizer.eos_id]) == ""


def test_save_load_and_load_or_train(tokenizer, tmp_path):
  tokenizer.save(tmp_path / "tok")
  loaded = Tokenizer.load(tmp_path / "tok")
  assert loaded.fingerprint == tokenizer.fingerprint and loaded.vocab_size == tokenizer.vocab_size
  text = "Fellow citizens of the Senate and of the House of Representatives"
  assert loaded.encode(text) == tokenizer.encode(text)
  assert Tokenizer.load(tmp_path / "tok" / "tokenizer.model").fingerprint == tokenizer.fingerprint

  def must_not_read():
    raise AssertionError("a saved tokenizer must be loaded, not retrained")
    yield

  again = tokenizer_lib.load_or_train(tmp_path / "tok", must_not_read(), vocab_size=1000)
  assert again.fingerprint == tokenizer.fingerprint
  with pytest.raises(ValueError, match="vocab_size=2000"):
    tokenizer_lib.load_or_train(tmp_path / "tok", [], vocab_size=2000)
  with pytest.raises(FileNotFoundError):
    Tokenizer.load(tmp_path / "missing")


def test_training_is_deterministic_and_lowercase_is_stored(inaugural, tokenizer, tmp_path):
  docs = inaugural[:20]
  lower = Tokenizer.train(docs, vocab_size=600, lowercase=True, seed=0)
  assert lower.lowercase and not tokenizer.lowercase
  assert lower.encode("THE UNITED STATES") == lower.encode("the united states")
  lower.save(tmp_path)
  assert Tokenizer.load(tmp_path).encode("Liberty") == lower.encode("liberty")
  assert Tokenizer.train(docs, vocab_size=600, lowercase=True, seed=0).fingerprint == lower.fingerprint


def test_vocab_too_large_names_vocab_size(inaugural):
  with pytest.raises(ValueError, match="vocab_size=50000 is larger than this corpus can support"):
    Tokenizer.train(inaugural[:2], vocab_size=50_000)
  with pytest.raises(ValueError, match="vocab_size=300 is too small"):
    Tokenizer.train(inaugural[:2], vocab_size=300)
