"""Tokenizer: special ids, round trips on real text, sentinels, save/load, lower-casing, vocabulary errors; the
tokenizer protocol and Hugging Face tokenizers (special ids from their files, missing tokens, `load`)."""

import json
import unicodedata

import pytest

from came_jax.data import tokenizer as tokenizer_lib
from came_jax.data.tokenizer import Tokenizer
from tests.data import hf_tokenizers


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


# ------------------------------------------------------------------------------ the protocol, Hugging Face tokenizers


def _protocol_members() -> set[str]:
  return {name for name in vars(tokenizer_lib.TokenizerProtocol) if not name.startswith("_")}


def test_both_tokenizers_provide_the_protocol(tokenizer, hf_wordpiece):
  members = _protocol_members()
  assert {"encode", "encode_batch", "vocab_size", "fingerprint", "mask_id", "sentinel_id", "save"} <= members
  for tok in (tokenizer, hf_wordpiece):
    assert all(hasattr(tok, name) for name in members), sorted(n for n in members if not hasattr(tok, n))


def test_hf_tokenizer_takes_special_ids_from_its_files(hf_wordpiece):
  tok = hf_wordpiece
  assert (tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id, tok.pad_id, tok.eos_id) == (0, 1, 2, 3, 4, 5)
  v = tok.vocab_size
  assert tok.num_sentinels == 4 and [tok.sentinel_id(i) for i in range(4)] == [v - 4, v - 3, v - 2, v - 1]
  assert tok.special_ids == (0, 1, 2, 3, 4, 5, v - 4, v - 3, v - 2, v - 1)
  assert tok.normal_id_range == (6, v - 4)  # the longest run of ids without a special one
  ids = tok.encode("We the People [SEP] <extra_id_2>")
  assert ids[-2:] == [tok.sep_id, tok.sentinel_id(2)] and tok.cls_id not in ids  # no [CLS] ... [SEP] added
  assert tok.encode_batch(["liberty", "we the people"]) == [tok.encode("liberty"), tok.encode("we the people")]
  assert tok.decode(tok.encode("liberty and justice")) == "liberty and justice"
  with pytest.raises(ValueError, match=r"sentinel index 4 out of range \[0, 4\)"):
    tok.sentinel_id(4)


def test_hf_tokenizer_without_pad_or_mask(hf_byte_bpe):
  tok = hf_byte_bpe
  assert tok.eos_id == 0 and tok.pad_id == 0  # GPT-2 pads with its EOS
  assert tok.num_sentinels == 0 and tok.normal_id_range == (1, tok.vocab_size)
  with pytest.raises(tokenizer_lib.MissingTokenError, match=r"no mask token \(neither a mask_token .* nor \[MASK\]"):
    _ = tok.mask_id
  text = "Fellow-Citizens of the Senate: ünïcödé"
  assert tok.decode(tok.encode(text)) == text  # byte-level: everything round-trips


def test_config_names_win_over_conventional_tokens_and_special_tokens_map_has_the_last_word(inaugural, tmp_path):
  folder = hf_tokenizers.wordpiece_folder(tmp_path / "wp", [inaugural[0], inaugural[1]])
  config = json.loads((folder / "tokenizer_config.json").read_text())
  (folder / "tokenizer_config.json").write_text(json.dumps({**config, "cls_token": "</s>", "mask_token": "[UNK]"}))
  (folder / "special_tokens_map.json").write_text(json.dumps({"mask_token": "[SEP]"}))
  tok = tokenizer_lib.load(folder)
  assert (tok.cls_id, tok.mask_id) == (5, 2)
  for name in ("tokenizer_config.json", "special_tokens_map.json"):
    (folder / name).unlink()
  bare = tokenizer_lib.load(folder)  # no config files: the conventional [CLS], [SEP], ... of the vocabulary
  assert (bare.cls_id, bare.sep_id, bare.mask_id, bare.pad_id, bare.eos_id) == (1, 2, 3, 4, 5)
  assert bare.fingerprint != tok.fingerprint
  (folder / "tokenizer_config.json").write_text(json.dumps({"mask_token": "<mask>"}))
  with pytest.raises(ValueError, match=r"mask_token='<mask>' is not in the tokenizer's vocabulary"):
    tokenizer_lib.load(folder)


def test_load_tells_ours_from_hugging_face_and_round_trips(tokenizer, hf_wordpiece, tmp_path):
  hf_wordpiece.save(tmp_path / "hf")
  again = tokenizer_lib.load(tmp_path / "hf")
  assert isinstance(again, tokenizer_lib.HFTokenizer) and again.fingerprint == hf_wordpiece.fingerprint
  assert again.fingerprint != tokenizer.fingerprint
  ours = tokenizer_lib.load(tokenizer.save(tmp_path / "ours"))
  assert isinstance(ours, Tokenizer) and ours.fingerprint == tokenizer.fingerprint
  # A folder came_jax.export wrote: tokenizer.model with the sentinel count in tokenizer_config.json.
  exported = tmp_path / "exported"
  exported.mkdir()
  (exported / "tokenizer.model").write_bytes((tmp_path / "ours" / "tokenizer.model").read_bytes())
  (exported / "tokenizer_config.json").write_text(json.dumps({"came_jax": {"num_sentinels": 100}}))
  assert tokenizer_lib.load(exported).fingerprint == tokenizer.fingerprint
  with pytest.raises(FileNotFoundError, match=r"no tokenizer in .*tokenizer\.json, spiece\.model, tokenizer\.model"):
    tokenizer_lib.load(tmp_path / "missing")
