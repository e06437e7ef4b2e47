"""Objectives on real packed text: MLM masking statistics, causal shift, T5 span corruption; special ids taken from
the tokenizer (a Hugging Face one whose ids are not ours), and tokenizers that lack a token an objective needs."""

import numpy as np
import pytest

from came_jax.data import objectives, token_cache
from came_jax.data import tokenizer as tokenizer_lib
from came_jax.data.packing import PackedRows


def _rows(corpus, objective, n=None, seed=0):
  rows = PackedRows(
    corpus, width=objective.row_width, stride=objective.row_stride, separator=objective.separator, shuffle_seed=seed
  )
  n = rows.num_rows if n is None else min(n, rows.num_rows)
  return rows.rows(np.arange(n))


@pytest.mark.parametrize("rate", [0.15, 0.25])
def test_mlm_fixed_count_and_80_10_10(tokenizer, inaugural_tokens, rate):
  seq_len = 128
  mlm = objectives.make_objective("mlm", tokenizer, seq_len, mlm_rate=rate)
  k = round(rate * seq_len)
  assert mlm.num_masked == k
  tokens, valid = _rows(inaugural_tokens, mlm)
  batch = mlm(tokens, valid, np.random.default_rng(0))
  shapes = {name: (value.shape, value.dtype) for name, value in batch.items()}
  assert shapes == {name: (shape, np.dtype(dtype)) for name, (shape, dtype) in mlm.batch_shapes(len(tokens)).items()}

  # The unmasked sequence: [CLS] row [SEP] pad...
  full = valid.all(axis=1)
  original = np.zeros_like(batch["input_ids"])
  original[:, 0] = tokenizer.cls_id
  original[:, 1:-1] = tokens
  original[full, -1] = tokenizer.sep_id
  pos, labels, weights = batch["mlm_positions"], batch["mlm_labels"], batch["mlm_weights"]
  w = weights[full] > 0
  assert w.all(), "every full row has exactly K prediction slots"
  np.testing.assert_array_equal(np.take_along_axis(original, pos, axis=1)[full], labels[full])
  assert (np.diff(pos[full], axis=1) > 0).all(), "distinct positions, increasing"
  assert not np.isin(labels[full], tokenizer.special_ids).any(), "specials and padding are never masked"
  changed = batch["input_ids"] != original
  slot_mask = np.zeros_like(changed)
  np.put_along_axis(slot_mask, pos, weights > 0, axis=1)
  assert not (changed & ~slot_mask)[full].any(), "only prediction slots change"
  assert (batch["attention_mask"][full] == 1).all() and (batch["token_type_ids"] == 0).all()

  new = np.take_along_axis(batch["input_ids"], pos, axis=1)[full]
  frac_mask = (new == tokenizer.mask_id).mean()
  frac_random = ((new != tokenizer.mask_id) & (new != labels[full])).mean()
  frac_keep = (new == labels[full]).mean()
  n = new.size
  assert n > 20_000
  assert abs(frac_mask - 0.8) < 0.02 and abs(frac_keep - 0.1 - 1 / 900) < 0.015 and abs(frac_random - 0.1) < 0.015
  replaced = new[(new != tokenizer.mask_id) & (new != labels[full])]
  assert replaced.min() >= 6 and replaced.max() < tokenizer.num_pieces
  # The masked fraction of the sequence is the configured rate.
  assert abs(weights[full].sum(axis=1).mean() / seq_len - rate) < 0.5 / seq_len


def test_mlm_short_row_fills_spare_slots_with_zero_weight(tokenizer):
  mlm = objectives.make_objective("mlm", tokenizer, 16, mlm_rate=0.5)
  tokens = np.full((2, 14), 0, np.int32)
  valid = np.zeros((2, 14), bool)
  tokens[0, :3], valid[0, :3] = [100, 101, 102], True
  batch = mlm(tokens, valid, np.random.default_rng(1))
  assert batch["input_ids"][0, 4] == tokenizer.sep_id and batch["attention_mask"][0].sum() == 5
  np.testing.assert_array_equal(batch["mlm_weights"][0], [1, 1, 1, 0, 0, 0, 0, 0])
  np.testing.assert_array_equal(batch["mlm_positions"][0], [1, 2, 3, 0, 0, 0, 0, 0])
  np.testing.assert_array_equal(batch["mlm_labels"][0], [100, 101, 102, 0, 0, 0, 0, 0])
  assert batch["mlm_weights"][1].sum() == 0 and (batch["input_ids"][1, 2:] == 0).all()


def test_causal_lm_labels_are_next_tokens(tokenizer, inaugural_tokens):
  causal = objectives.make_objective("causal", tokenizer, 64)
  tokens, valid = _rows(inaugural_tokens, causal)
  batch = causal(tokens, valid, np.random.default_rng(0))
  np.testing.assert_array_equal(batch["input_ids"][:, 1:], batch["labels"][:, :-1])
  np.testing.assert_array_equal(batch["labels"][:-1, -1], batch["input_ids"][1:, 0])  # windows overlap by one
  assert batch["weights"][:-1].all() and batch["weights"].dtype == np.float32
  last = batch["weights"][-1] > 0
  assert (batch["labels"][-1][~last] == 0).all()
  assert (batch["input_ids"] == tokenizer.eos_id).sum() >= inaugural_tokens.num_documents - 1


def test_random_spans_helper_matches_t5():
  assert objectives.random_spans_helper(512) == (568, 114)  # T5's inputs_length=512 example
  for length in range(8, 600, 7):
    raw, targets = objectives.random_spans_helper(length)
    assert objectives.corrupted_lengths(raw, 0.15, 3.0) == (length, targets)
    assert objectives.corrupted_lengths(raw + 1, 0.15, 3.0)[0] > length


def test_span_corruption_statistics_order_and_reconstruction(tokenizer, inaugural_tokens):
  seq_len = 128
  span = objectives.make_objective("span", tokenizer, seq_len)
  raw_len, target_len = objectives.random_spans_helper(seq_len)
  assert (span.row_width, span.targets_length) == (raw_len, target_len)
  tokens, valid = _rows(inaugural_tokens, span)
  full = valid.all(axis=1)
  batch = span(tokens, valid, np.random.default_rng(0))
  x, y, w = batch["input_ids"][full], batch["labels"][full], batch["weights"][full]
  assert x.shape[1] == seq_len and y.shape[1] == target_len
  assert (x[:, -1] == tokenizer.eos_id).all() and (y[:, -1] == tokenizer.eos_id).all(), "exact lengths, no pad"
  assert (w == 1).all()

  sentinels = {tokenizer.sentinel_id(i): i for i in range(tokenizer.num_sentinels)}
  span_lengths, noise = [], 0
  starts = set()
  for xi, yi, raw in zip(x, y, tokens[full]):
    in_idx = [sentinels[t] for t in xi if t in sentinels]
    out_idx = [sentinels[t] for t in yi if t in sentinels]
    assert in_idx == out_idx == list(range(len(in_idx))), "sentinels 0, 1, 2, ... in both"
    # Reconstruct: replace sentinel i in the inputs by the tokens after sentinel i in the targets.
    pieces, current = {}, None
    for t in yi[:-1]:
      if t in sentinels:
        current = sentinels[t]
        pieces[current] = []
      else:
        pieces[current].append(t)
    rebuilt = []
    for t in xi[:-1]:
      rebuilt.extend(pieces[sentinels[t]] if t in sentinels else [t])
    np.testing.assert_array_equal(rebuilt, raw)
    span_lengths += [len(p) for p in pieces.values()]
    noise += sum(len(p) for p in pieces.values())
    starts.add(int(np.flatnonzero(np.isin(xi, list(sentinels)))[0]))
  assert min(span_lengths) >= 1
  assert abs(noise / (len(x) * raw_len) - 0.15) < 0.005
  assert abs(np.mean(span_lengths) - 3.0) < 0.2
  assert len(starts) > 10, "span positions are random"


def test_span_corruption_pads_a_short_final_row(tokenizer):
  span = objectives.make_objective("span", tokenizer, 32)
  tokens = np.zeros((1, span.row_width), np.int32)
  valid = np.zeros_like(tokens, bool)
  tokens[0, :10], valid[0, :10] = np.arange(100, 110), True
  batch = span(tokens, valid, np.random.default_rng(0))
  n_in, n_out = objectives.corrupted_lengths(10, 0.15, 3.0)
  assert (batch["input_ids"][0, n_in:] == 0).all() and batch["input_ids"][0, n_in - 1] == tokenizer.eos_id
  np.testing.assert_array_equal(batch["weights"][0], np.arange(span.targets_length) < n_out)


def test_unknown_objective_names_objective(tokenizer):
  with pytest.raises(ValueError, match="objective='bert'"):
    objectives.make_objective("bert", tokenizer, 128)
  with pytest.raises(ValueError, match="mlm_rate"):
    objectives.make_objective("mlm", tokenizer, 128, mlm_rate=1.5)


# --------------------------------------------------------------------- special ids from the tokenizer object


@pytest.fixture(scope="module")
def wordpiece_tokens(small_source, hf_wordpiece):
  return token_cache.tokenize_source(small_source, hf_wordpiece)


def test_objectives_take_special_ids_from_a_hugging_face_tokenizer(hf_wordpiece, wordpiece_tokens):
  tok = hf_wordpiece  # [CLS] 1, [SEP] 2, [MASK] 3, pad 4, </s> 5, sentinels at the top: none of ours
  mlm = objectives.make_objective("mlm", tok, 64, mlm_rate=0.25)
  tokens, valid = _rows(wordpiece_tokens, mlm)
  tokens[-1, 10:], valid[-1, 10:] = 0, False  # a short row, to see the padding
  batch = mlm(tokens, valid, np.random.default_rng(0))
  ids, weights = batch["input_ids"], batch["mlm_weights"] > 0
  assert (ids[:, 0] == tok.cls_id).all() and ids[-1, 11] == tok.sep_id and (ids[-1, 12:] == tok.pad_id).all()
  assert (ids[:-1, -1] == tok.sep_id).all() and (ids == tok.sep_id)[:-1].sum() > len(ids) - 1  # between docs too
  masked = np.take_along_axis(ids, batch["mlm_positions"], axis=1)[weights]
  assert (masked == tok.mask_id).mean() > 0.7
  assert not np.isin(batch["mlm_labels"][weights], tok.special_ids).any()
  lo, hi = tok.normal_id_range
  replaced = masked[(masked != tok.mask_id) & (masked != batch["mlm_labels"][weights])]
  assert len(replaced) and ((lo <= replaced) & (replaced < hi)).all()

  causal = objectives.make_objective("causal", tok, 64)
  assert causal.separator == tok.eos_id == 5 and causal.pad_id == tok.pad_id == 4

  span = objectives.make_objective("span", tok, 16)
  tokens, valid = _rows(wordpiece_tokens, span, n=8)
  batch = span(tokens, valid, np.random.default_rng(0))
  sentinels = [tok.sentinel_id(i) for i in range(tok.num_sentinels)]
  assert span.sentinel_ids == tuple(sentinels) and (batch["labels"][:, 0] == sentinels[0]).all()
  assert (batch["input_ids"][:, -1] == tok.eos_id).all()


def test_a_tokenizer_without_the_tokens_an_objective_needs_is_named(hf_byte_bpe):
  with pytest.raises(tokenizer_lib.MissingTokenError, match=r"objective='mlm'.*no cls token.*no sep token.*no mask"):
    objectives.make_objective("mlm", hf_byte_bpe, 64)
  with pytest.raises(tokenizer_lib.MissingTokenError, match=r"objective='span'.*no T5 sentinels \(<extra_id_0>"):
    objectives.make_objective("span", hf_byte_bpe, 64)
  causal = objectives.make_objective("causal", hf_byte_bpe, 64)  # GPT-2 needs only its <|endoftext|>
  assert causal.eos_id == causal.pad_id == hf_byte_bpe.eos_id == 0
