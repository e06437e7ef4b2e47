"""The pretraining iterator (seeded shuffling, exact resume across epochs, prefetch), held-out batches, config
errors."""

import json

import numpy as np
import pytest

from came_jax.data import pipeline, sources


def _same(a, b):
  assert a.keys() == b.keys()
  for name in a:
    np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def _iterator(source, tokenizer, tmp_path, objective="mlm", seed=0, prefetch=2, batch_size=5, seq_len=32):
  return pipeline.pretrain_iterator(
    source,
    tokenizer,
    seq_len=seq_len,
    batch_size=batch_size,
    objective=objective,
    seed=seed,
    cache_dir=tmp_path / "cache",
    prefetch=prefetch,
  )


@pytest.mark.parametrize("objective", ["mlm", "causal", "span"])
def test_resume_continues_the_identical_stream_across_epochs(small_source, tokenizer, tmp_path, objective):
  it = _iterator(small_source, tokenizer, tmp_path, objective, batch_size=7)
  if it.num_rows % 7 == 0:  # the test wants batches that straddle an epoch boundary
    it = _iterator(small_source, tokenizer, tmp_path, objective, batch_size=8)
  n = int(2.5 * it.steps_per_epoch) + 2
  stream, states = [], []
  for _ in range(n):
    states.append(json.loads(json.dumps(it.get_state())))
    stream.append(next(it))
  it.close()
  assert states[-1]["epoch"] == 2
  boundary = int(it.steps_per_epoch)  # the batch holding the end of epoch 0 and the start of epoch 1
  for start in (1, boundary, boundary + 1, n - 3):
    resumed = _iterator(small_source, tokenizer, tmp_path, objective, batch_size=it.batch_size)
    resumed.set_state(states[start])
    for k in range(start, min(start + 4, n)):
      _same(next(resumed), stream[k])
    resumed.close()
  # Restoring an earlier state on a running iterator (prefetch thread already ahead) rewinds it too.
  it.set_state(states[3])
  _same(next(it), stream[3])
  it.close()


def test_every_row_once_per_epoch_and_shuffling_by_seed(small_source, tokenizer, tmp_path):
  it = _iterator(small_source, tokenizer, tmp_path, "causal", prefetch=0)
  rows, _ = it.rows.rows(np.arange(it.num_rows))
  n = it.num_rows
  epoch0 = np.concatenate([it.batch_at(k)["input_ids"] for k in range(int(np.ceil(it.steps_per_epoch)))])
  first_two_epochs = np.concatenate([it.batch_at(k)["input_ids"] for k in range(int(np.ceil(2 * n / 5)))])
  as_set = lambda a: sorted(map(tuple, a))  # noqa: E731
  assert as_set(epoch0[:n]) == as_set(rows[:, :-1])
  assert as_set(first_two_epochs[n : 2 * n]) == as_set(rows[:, :-1])
  assert not np.array_equal(first_two_epochs[:n], first_two_epochs[n : 2 * n]), "each epoch reshuffles"

  same = _iterator(small_source, tokenizer, tmp_path, "causal", prefetch=3)
  other = _iterator(small_source, tokenizer, tmp_path, "causal", seed=1)
  for k in range(4):
    batch = next(same)
    _same(batch, it.batch_at(k))
    assert not np.array_equal(next(other)["input_ids"], batch["input_ids"])
  same.close()
  other.close()


def test_resume_from_a_copy_of_the_corpus_elsewhere(small_source, tokenizer, tmp_path):
  """A run moved to another machine (other paths, other mtimes) resumes: the state is keyed by content."""
  it = _iterator(small_source, tokenizer, tmp_path, "span")
  for _ in range(3):
    next(it)
  state = it.get_state()
  expected = next(it)
  it.close()
  copy = tmp_path / "moved"
  copy.mkdir()
  for f in small_source.files:
    (copy / f.name).write_bytes(f.read_bytes())
  moved = pipeline.pretrain_iterator(
    sources.LocalTextSource(copy),
    tokenizer,
    seq_len=32,
    batch_size=5,
    objective="span",
    cache_dir=tmp_path / "other_cache",
  )
  moved.set_state(state)
  _same(next(moved), expected)
  moved.close()


def test_state_from_another_pipeline_is_refused(small_source, tokenizer, tmp_path):
  state = _iterator(small_source, tokenizer, tmp_path, seed=0).get_state()
  with pytest.raises(ValueError, match="fingerprint"):
    _iterator(small_source, tokenizer, tmp_path, seed=1).set_state(state)


def test_eval_batches_are_finite_deterministic_and_padded(shared_data, tokenizer, tmp_path):
  cfg = pipeline.default_config()
  cfg.update(
    dict(
      eval_path=str(shared_data / "heldout" / "wikitext-103" / "wiki.valid.tokens"),
      seq_len=128,
      batch_size=64,
      vocab_size=tokenizer.vocab_size,
      cache_dir=str(tmp_path),
    )
  )
  for objective, weight in [("mlm", "mlm_weights"), ("causal", "weights"), ("span", "weights")]:
    cfg.objective = objective
    batches = pipeline.eval_from_config(cfg, tokenizer)
    assert batches.rows.document_order.tolist() == list(range(60)), "articles in file order"
    first, second = list(batches), list(batches)
    assert len(first) == len(batches) == -(-batches.rows.num_rows // 64)
    for a, b in zip(first, second):
      _same(a, b)
    shapes = {k: v.shape for k, v in first[-1].items()}
    assert shapes == {k: s for k, (s, _) in batches.batch_shapes().items()}
    spare = len(first) * 64 - batches.rows.num_rows
    assert spare > 0 and (first[-1][weight][64 - spare :] == 0).all()
  cfg.eval_batches = 2
  assert len(pipeline.eval_from_config(cfg, tokenizer)) == 2
  cfg.eval_path = ""
  assert pipeline.eval_from_config(cfg, tokenizer) is None


def test_from_config_trains_saves_and_reloads_the_tokenizer(shared_data, tmp_path):
  cfg = pipeline.default_config()
  cfg.update(
    dict(
      path=str(shared_data / "corpus" / "inaugural" / "17*.txt"),
      vocab_size=700,
      tokenizer_sentences=2000,
      seq_len=64,
      batch_size=4,
      cache_dir=str(tmp_path / "cache"),
    )
  )
  tok = pipeline.build_tokenizer(cfg, tmp_path / "run")
  assert (tmp_path / "run" / "tokenizer" / "tokenizer.model").is_file()
  assert pipeline.build_tokenizer(cfg, tmp_path / "run").fingerprint == tok.fingerprint
  it = pipeline.from_config(cfg, tok, max_len=64)
  assert {k: v.shape for k, v in next(it).items()} == {k: s for k, (s, _) in it.batch_shapes().items()}
  it.close()


@pytest.mark.parametrize(
  "override,message",
  [
    (dict(seq_len=256), "seq_len=256 exceeds the model's max_len=128"),
    (dict(objective="bert"), "objective='bert'"),
    (dict(vocab_size=32768), "vocab_size=32768"),
    (dict(path=""), "data.path"),
    (dict(source="hub"), "data.source='hub'"),
    (dict(source="tfds"), "data.tfds_name"),
    (dict(batch_size=0), "batch_size=0"),
  ],
)
def test_config_errors_name_the_key(shared_data, tokenizer, tmp_path, override, message):
  cfg = pipeline.default_config()
  cfg.update(
    dict(
      path=str(shared_data / "corpus" / "inaugural" / "17*.txt"),
      vocab_size=tokenizer.vocab_size,
      cache_dir=str(tmp_path),
    )
  )
  cfg.update(override)
  with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
    pipeline.from_config(cfg, tokenizer, max_len=128)
