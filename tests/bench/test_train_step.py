"""came_jax.bench.train_step: synthetic batches with the tokenizer's ids, the presets, and a timed tiny step."""

import dataclasses

import numpy as np
import pytest

from came_jax import config_files, models
from came_jax.bench import train_step
from came_jax.data import tokenizer
from experiments import bench_train
from tests.train.tiny_configs import REPO, load_config


def _setup(name, preset, **kwargs):
  """What `experiments/bench_train.py --models NAME --preset PRESET` sets up."""
  path, title, small_seq_len = bench_train.RECIPES[name]
  config = config_files.load(REPO / path, "tiny" if preset == "tiny" else "")
  seq_len = small_seq_len if preset == "small" else None
  return train_step.make_setup(config, title, preset, seq_len=seq_len, **kwargs)


@pytest.mark.parametrize("name", list(bench_train.RECIPES))
def test_small_preset_keeps_the_widths_with_two_layers(name):
  setup = _setup(name, "small", batch_size=2, dtype="float32", attention="xla", micro_batches=2)
  full = models.from_config_section(
    config_files.load(REPO / bench_train.RECIPES[name][0]).model, setup.model_cfg.vocab_size
  )
  assert setup.model_cfg.num_layers == 2 and setup.seq_len == bench_train.RECIPES[name][2]
  assert dataclasses.replace(setup.model_cfg, num_layers=full.num_layers) == dataclasses.replace(
    full, dtype="float32"
  )  # (T5: the decoder follows the encoder's 2 layers)
  assert setup.batch["input_ids"].shape == (2, 2, setup.seq_len) and setup.batch_size == 4
  assert setup.tokens == 4 * setup.seq_len and setup.flops_per_token() > 0
  assert setup.label.endswith("2 layers)")
  cudnn = _setup(name, "small", batch_size=2, dtype="bfloat16", attention="cudnn")
  assert cudnn.model_cfg.attention_impl == "cudnn" and setup.model_cfg.attention_impl is None


def test_with_layers_sets_every_layer_count_it_finds():
  t5 = models.make_config("t5", "tiny", num_decoder_layers=3)
  assert train_step.with_layers(t5, 2).num_layers == train_step.with_layers(t5, 2).num_decoder_layers == 2
  follows = train_step.with_layers(models.make_config("t5", "tiny"), 2)
  assert follows.num_decoder_layers is None and follows.n_decoder_layers == 2


def _data(objective, vocab_size=512, seq_len=32):
  config = load_config("bert_cramming", "tiny")
  config.data.update(dict(objective=objective, vocab_size=vocab_size, seq_len=seq_len))
  return config.data


def test_synthetic_mlm_batch_uses_the_tokenizers_special_ids():
  batch = train_step.synthetic_batch(_data("mlm"), batch_size=4)
  ids = batch["input_ids"]
  assert (ids[:, 0] == tokenizer.CLS_ID).all() and (ids[:, -1] == tokenizer.SEP_ID).all()
  assert (batch["attention_mask"] == 1).all()
  masked = np.take_along_axis(ids, batch["mlm_positions"], axis=1)
  assert (masked == tokenizer.MASK_ID).any() and (batch["mlm_weights"] == 1).all()
  assert (batch["mlm_labels"] >= tokenizer.NUM_SPECIAL).all() and (batch["mlm_labels"] < 512 - 100).all()


def test_synthetic_causal_and_span_batches_use_the_tokenizers_ids():
  causal = train_step.synthetic_batch(_data("causal"), batch_size=2)
  assert ((causal["input_ids"] >= tokenizer.NUM_SPECIAL) & (causal["input_ids"] < 412)).all()
  np.testing.assert_array_equal(causal["input_ids"][:, 1:], causal["labels"][:, :-1])
  span = train_step.synthetic_batch(_data("span"), batch_size=2)
  assert (span["labels"][:, 0] == 511).all()  # the first sentinel, <extra_id_0>, is the top id
  assert (span["input_ids"][:, -1] == tokenizer.EOS_ID).all()
  assert set(span) == {"input_ids", "labels", "weights"}


def test_resolve_on_cpu():
  assert train_step.resolve("auto", "auto", "auto") == ("small", "float32", "xla")
  assert train_step.resolve("tiny", "bfloat16", "cudnn") == ("tiny", "bfloat16", "cudnn")


def test_bench_times_each_optimizer_and_the_table_compares_them():
  setup = _setup("gpt2", "tiny", batch_size=2, dtype="float32", attention="xla")
  results = train_step.bench(setup, ["came", "adamw"], steps=1, warmup=0)
  assert [r.optimizer for r in results] == ["came", "adamw"]
  for r in results:
    assert r.step_s > 0 and r.opt_s > 0 and r.compile_s > 0 and r.tokens_per_s == pytest.approx(setup.tokens / r.step_s)
    assert r.mfu is None and r.flash == "n/a" and r.memory[0] in ("compiled", "device peak", "n/a")
  table = train_step.table(results, {setup.label: setup}, "float32")
  assert f"| {setup.label} | 2 x 128 | came |" in table and f"| {setup.label} | 2 x 128 | adamw |" in table
  assert f"{setup.label}: CAME step / AdamW step = " in table
