"""GPT-2 <-> Hugging Face: exact round trips of parameters and configs, logits equal to GPT2LMHeadModel's."""

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
from came_jax.hf import gpt2 as hf_gpt2
from came_jax.models import gpt2

V, T, B = 97, 16, 2

logits_fn = jax.jit(gpt2.logits_fn, static_argnames=("cfg", "train"))
init_params = jax.jit(gpt2.init_params, static_argnums=0)
CFG = models.make_config("gpt2", "tiny", vocab_size=V, hidden_dim=32, num_layers=2, num_heads=4, ffn_dim=128, max_len=T)


def _ids(seed=0):
  return jnp.asarray(np.random.default_rng(seed).integers(0, V, (B, T)), jnp.int32)


def _assert_matches(ours, ref):
  ours = np.asarray(ours)
  assert ours.shape == ref.shape
  assert np.abs(ours - ref).max() / np.abs(ref).max() <= 1e-4
  np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def _hf_logits(hf, ids):
  with torch.no_grad():
    return hf(input_ids=torch.as_tensor(np.array(ids), dtype=torch.long)).logits.numpy()


def test_matches_hugging_face_gpt2():
  torch.manual_seed(0)
  hf_cfg = transformers.GPT2Config(
    vocab_size=V, n_embd=32, n_layer=2, n_head=4, n_positions=T, bos_token_id=0, eos_token_id=0
  )
  hf = transformers.GPT2LMHeadModel(hf_cfg).eval()
  ids = _ids()
  ref = _hf_logits(hf, ids)
  _assert_matches(logits_fn(hf_gpt2.from_hf(hf.state_dict(), CFG), {"input_ids": ids}, cfg=CFG), ref)


def test_params_round_trip_exactly():
  rng = np.random.default_rng(0)
  params = jax.tree.map(
    lambda x: np.asarray(x) + rng.normal(0, 0.1, x.shape).astype(np.float32), init_params(CFG, jax.random.key(0))
  )
  sd = hf_gpt2.to_hf(params, CFG)
  assert "lm_head.weight" not in sd and all(v.dtype == np.float32 and v.flags.c_contiguous for v in sd.values())
  back = hf_gpt2.from_hf(sd, CFG)
  assert jax.tree.structure(back) == jax.tree.structure(params)
  jax.tree.map(np.testing.assert_array_equal, back, params)
  with pytest.raises(ValueError, match="shapes differ"):
    hf_gpt2.from_hf(sd, dataclasses.replace(CFG, ffn_dim=64))


@pytest.mark.parametrize("preset", sorted(gpt2.CONFIGS))
def test_config_round_trips_every_preset(preset):
  for cfg in (gpt2.CONFIGS[preset], dataclasses.replace(gpt2.CONFIGS[preset], dropout_rate=0.1, init_std=0.01)):
    assert hf_gpt2.config_from_hf(hf_gpt2.config_to_hf(cfg)) == cfg
  # what transformers makes of our config.json is the same model
  hf_cfg = transformers.GPT2Config(**hf_gpt2.config_to_hf(gpt2.CONFIGS[preset]))
  assert hf_gpt2.config_from_hf(hf_cfg.to_dict()) == gpt2.CONFIGS[preset]


@pytest.mark.parametrize(
  "key, value",
  [
    ("activation_function", "relu"),
    ("scale_attn_by_inverse_layer_idx", True),
    ("scale_attn_weights", False),
    ("add_cross_attention", True),
    ("tie_word_embeddings", False),
    ("attn_pdrop", 0.3),
    ("model_type", "bert"),
  ],
)
def test_config_from_hf_names_what_it_cannot_represent(key, value):
  with pytest.raises(ValueError, match=f"{key}={value!r}"):
    hf_gpt2.config_from_hf({**hf_gpt2.config_to_hf(CFG), key: value})


def test_reads_a_folder_saved_by_transformers(tmp_path):
  torch.manual_seed(1)
  hf_cfg = transformers.GPT2Config(
    vocab_size=V, n_embd=32, n_layer=2, n_head=4, n_positions=T, n_inner=48, bos_token_id=0, eos_token_id=0
  )
  transformers.GPT2LMHeadModel(hf_cfg).save_pretrained(tmp_path)
  hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
  cfg = hf_gpt2.config_from_hf(json.loads((tmp_path / "config.json").read_text()))
  assert (cfg.vocab_size, cfg.hidden_dim, cfg.num_layers, cfg.ffn_dim, cfg.max_len) == (V, 32, 2, 48, T)
  params = hf_gpt2.from_hf(load_file(tmp_path / "model.safetensors"), cfg)
  ids = _ids(1)
  _assert_matches(logits_fn(params, {"input_ids": ids}, cfg=cfg), _hf_logits(hf, ids))
