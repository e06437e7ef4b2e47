"""BERT <-> Hugging Face: exact round trips of parameters and configs, logits equal to BertForMaskedLM's and
BertForSequenceClassification's (original layout); crammed layouts are written as came_bert (remote code, tested in
tests/hf/test_bert_remote.py)."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file

from came_jax import models
from came_jax.hf import bert as hf_bert
from came_jax.models import bert

V, T, K, B = 97, 16, 4, 3  # vocab chosen unlike any other dimension, so a [B, T, V] tensor is recognisable

# Jitted once per config (configs are frozen dataclasses, hence static); eager Linen would dominate the runtime.
logits_fn = jax.jit(bert.logits_fn, static_argnames=("cfg", "train"))
classifier_logits_fn = jax.jit(bert.classifier_logits_fn, static_argnames=("cfg", "train"))
init_params = jax.jit(bert.init_params, static_argnums=0)
init_classifier_params = jax.jit(bert.init_classifier_params, static_argnums=0)

SIZES = dict(vocab_size=V, hidden_dim=32, num_layers=2, num_heads=4, ffn_dim=64, max_len=T, num_labels=3)
CFG = models.make_config("bert", "bert-base-original", **SIZES)


def _assert_close(ours, ref, rel=1e-4):
  ours, ref = np.asarray(ours), np.asarray(ref)
  assert ours.shape == ref.shape
  err = np.abs(ours - ref).max() / np.abs(ref).max()
  assert err <= rel, f"relative error {err:.2e}"
  np.testing.assert_allclose(ours, ref, rtol=rel, atol=rel * np.abs(ref).max())


def _inputs(seed=0):
  """input_ids, attention_mask (row 1 padded), token_type_ids (two segments) and mlm_positions."""
  rng = np.random.default_rng(seed)
  mask = np.ones((B, T), np.int32)
  mask[1, T - 5 :] = 0
  return {
    "input_ids": jnp.asarray(rng.integers(1, V, (B, T)), jnp.int32),
    "attention_mask": jnp.asarray(mask),
    "token_type_ids": jnp.asarray(np.repeat([[0] * 9 + [1] * (T - 9)], B, axis=0), jnp.int32),
    "mlm_positions": jnp.asarray(np.stack([rng.choice(T - 5, K, replace=False) for _ in range(B)]), jnp.int32),
  }


def _torch(batch):
  keys = ("input_ids", "attention_mask", "token_type_ids")
  return {k: torch.as_tensor(np.array(batch[k]), dtype=torch.long) for k in keys}


def _hf_config(**overrides):
  return transformers.BertConfig(
    vocab_size=V,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=T,
    **overrides,
  )


def _perturbed(params, seed):
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda x: np.asarray(x) + rng.normal(0, 0.1, x.shape).astype(np.float32), params)


def test_matches_hugging_face_bert_mlm_and_classifier():
  torch.manual_seed(0)
  hf_cfg = _hf_config(num_labels=3)
  batch = _inputs()
  dense = {k: v for k, v in batch.items() if k != "mlm_positions"}

  hf_mlm = transformers.BertForMaskedLM(hf_cfg).eval()
  with torch.no_grad():
    hf_mlm.cls.predictions.bias.normal_()  # non-zero decoder bias, so its conversion is tested
    ref = hf_mlm(**_torch(batch)).logits.numpy()
  params = hf_bert.from_hf(hf_mlm.state_dict(), CFG)
  full = logits_fn(params, dense, cfg=CFG)
  _assert_close(full, ref)

  sparse = logits_fn(params, batch, cfg=CFG)
  gathered = np.take_along_axis(np.asarray(full), np.asarray(batch["mlm_positions"])[..., None], axis=1)
  np.testing.assert_allclose(sparse, gathered, rtol=1e-5, atol=1e-5)

  hf_cls = transformers.BertForSequenceClassification(hf_cfg).eval()
  with torch.no_grad():
    ref_cls = hf_cls(**_torch(batch)).logits.numpy()
  cls_params = hf_bert.from_hf(hf_cls.state_dict(), CFG)
  _assert_close(classifier_logits_fn(cls_params, dense, cfg=CFG), ref_cls)


@pytest.mark.parametrize("head", ["mlm", "classifier"])
def test_params_round_trip_exactly(head):
  init = init_params if head == "mlm" else init_classifier_params
  params = _perturbed(init(CFG, jax.random.key(0)), seed=1)
  sd = hf_bert.to_hf(params, CFG)
  assert ("classifier.weight" in sd) == (head == "classifier")
  assert all(v.dtype == np.float32 and v.flags.c_contiguous for v in sd.values())
  back = hf_bert.from_hf(sd, CFG)
  assert jax.tree.structure(back) == jax.tree.structure(params)
  jax.tree.map(np.testing.assert_array_equal, back, params)
  with pytest.raises(ValueError, match="shapes differ"):
    hf_bert.from_hf(sd, dataclasses.replace(CFG, ffn_dim=32))
  with pytest.raises(ValueError, match="need the original layout"):
    hf_bert.from_hf(sd, dataclasses.replace(CFG, use_bias=False))


@pytest.mark.parametrize("preset", sorted(bert.CONFIGS))
def test_config_round_trips_every_preset(preset):
  cfg = bert.CONFIGS[preset]
  if hf_bert.unsupported_features(cfg):  # crammed BERT: the came_bert config, every field under its own name
    config = hf_bert.config_to_hf(cfg)
    assert config["model_type"] == "came_bert" and config["architectures"] == ["CameBertForMaskedLM"]
    assert config["pre_ln"] and config["glu"] and "AutoModelForMaskedLM" in config["auto_map"]
    assert hf_bert.config_from_hf(config) == cfg
    return
  for variant in (cfg, dataclasses.replace(cfg, num_labels=1, dropout_rate=0.0, layer_norm_eps=1e-6)):
    assert hf_bert.config_from_hf(hf_bert.config_to_hf(variant)) == variant
  hf_cfg = transformers.BertConfig(**hf_bert.config_to_hf(cfg))  # what transformers makes of it: the same model
  assert hf_bert.config_from_hf(hf_cfg.to_dict()) == cfg


def test_config_of_classifier_params():
  params = jax.eval_shape(lambda: bert.init_classifier_params(CFG, jax.random.key(0)))
  config = hf_bert.config_to_hf(CFG, params)
  assert config["architectures"] == ["BertForSequenceClassification"]
  assert config["problem_type"] == "single_label_classification" and len(config["id2label"]) == 3
  assert hf_bert.config_from_hf(config) == CFG
  assert hf_bert.config_to_hf(CFG)["architectures"] == ["BertForMaskedLM"]
  # a classifier ignores the MLM head, so a crammed-head-only config is a stock classifier, and a came_bert MLM
  bare = dataclasses.replace(CFG, head_transform=False)
  assert hf_bert.config_to_hf(bare, params)["architectures"] == ["BertForSequenceClassification"]
  assert hf_bert.config_to_hf(bare)["architectures"] == ["CameBertForMaskedLM"]
  assert hf_bert.config_from_hf(hf_bert.config_to_hf(bare)) == bare


@pytest.mark.parametrize(
  "key, value",
  [
    ("hidden_act", "relu"),
    ("position_embedding_type", "relative_key"),
    ("is_decoder", True),
    ("tie_word_embeddings", False),
    ("attention_probs_dropout_prob", 0.0),
    ("classifier_dropout", 0.3),
    ("problem_type", "multi_label_classification"),
    ("problem_type", "regression"),  # with 3 labels
    ("model_type", "roberta"),
  ],
)
def test_config_from_hf_names_what_it_cannot_represent(key, value):
  with pytest.raises(ValueError, match=f"{key}={value!r}"):
    hf_bert.config_from_hf({**hf_bert.config_to_hf(CFG), key: value})


def test_reads_folders_saved_by_transformers(tmp_path):
  batch = _inputs(1)
  dense = {k: v for k, v in batch.items() if k != "mlm_positions"}
  for head, cls, ours_fn in (
    ("mlm", transformers.BertForMaskedLM, logits_fn),
    ("clf", transformers.BertForSequenceClassification, classifier_logits_fn),
  ):
    transformers.set_seed(2)
    model = cls(_hf_config(num_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    model.save_pretrained(tmp_path / head)
    hf_model = cls.from_pretrained(tmp_path / head).eval()
    with torch.no_grad():
      ref = hf_model(**_torch(batch)).logits.numpy()
    cfg = hf_bert.config_from_hf(json.loads((tmp_path / head / "config.json").read_text()))
    assert cfg == dataclasses.replace(CFG, dropout_rate=0.0)
    params = hf_bert.from_hf(load_file(tmp_path / head / "model.safetensors"), cfg)
    _assert_close(ours_fn(params, dense, cfg=cfg), ref)
