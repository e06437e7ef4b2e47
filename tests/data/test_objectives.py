"""Objectives on real packed text: MLM masking statistics, causal shift, T5 span corruption."""

import numpy as np
import pytest

from came_jax.data import objectives
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
