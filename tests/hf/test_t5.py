"""T5 v1.1 <-> Hugging Face: exact round trips of parameters and configs, logits and loss equal to
T5ForConditionalGeneration's, strict state-dict reading."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file

from came_jax.hf import t5 as hf_t5
from came_jax.models import t5
from tests.models.test_t5 import CFG, _batch, _rel_err  # the model tests' config and span-corruption batch

logits_fn = jax.jit(t5.logits_fn, static_argnames=("cfg", "train"))


def _hf_config(**overrides):
  return transformers.T5Config(
    vocab_size=CFG.vocab_size,
    d_model=CFG.d_model,
    d_kv=CFG.d_kv,
    d_ff=CFG.d_ff,
    num_layers=CFG.num_layers,
    num_decoder_layers=CFG.num_decoder_layers,
    num_heads=CFG.num_heads,
    relative_attention_num_buckets=CFG.relative_attention_num_buckets,
    relative_attention_max_distance=CFG.relative_attention_max_distance,
    dropout_rate=0.0,
    layer_norm_epsilon=CFG.layer_norm_epsilon,
    feed_forward_proj="gated-gelu",
    tie_word_embeddings=False,
    pad_token_id=CFG.pad_id,
    decoder_start_token_id=CFG.decoder_start_id,
    **overrides,
  )


@pytest.fixture(scope="module")
def hf_model():
  torch.manual_seed(0)
  config = _hf_config()
  model = transformers.T5ForConditionalGeneration(config).eval()
  with torch.no_grad():
    # transformers 5 always ties lm_head to the embedding (tie_word_embeddings=False only switches off the
    # output rescaling); untie it as in the released T5.1.1 checkpoints so that a swapped head would be caught.
    model.lm_head.weight = torch.nn.Parameter(torch.randn(CFG.vocab_size, CFG.d_model) * CFG.d_model**-0.5)
    for name, p in model.named_parameters():
      if "layer_norm" in name:  # norms start at 1: perturb them so that their mapping is tested
        p.add_(0.2 * torch.randn_like(p))
  assert not config.scale_decoder_outputs
  return model


@pytest.fixture(scope="module")
def hf_params(hf_model):
  return hf_t5.from_hf(hf_model.state_dict(), CFG)


def _hf_logits(model, inputs):
  with torch.no_grad():
    return model(**{k: torch.as_tensor(np.array(v), dtype=torch.long) for k, v in inputs.items()}).logits.numpy()


def test_logits_and_loss_match_hugging_face(hf_model, hf_params):
  params = hf_params
  batch = _batch()
  attention_mask = batch["input_ids"] != CFG.pad_id
  decoder_input_ids = np.asarray(t5.shift_right(jnp.asarray(batch["labels"]), CFG.decoder_start_id))
  hf_labels = np.where(batch["weights"] > 0, batch["labels"], -100)
  with torch.no_grad():
    out = hf_model(
      input_ids=torch.from_numpy(batch["input_ids"]).long(),
      attention_mask=torch.from_numpy(attention_mask).long(),
      labels=torch.from_numpy(hf_labels).long(),
    )
  # HF shifts the labels itself (replacing -100 by pad): same decoder inputs as ours.
  assert np.array_equal(hf_model._shift_right(torch.from_numpy(hf_labels)).numpy(), decoder_input_ids)

  inputs = {"input_ids": batch["input_ids"], "attention_mask": attention_mask, "decoder_input_ids": decoder_input_ids}
  logits = logits_fn(params, inputs, cfg=CFG)
  assert logits.dtype == jnp.float32
  assert _rel_err(logits, out.logits.numpy()) <= 1e-4
  np.testing.assert_allclose(np.asarray(logits), out.logits.numpy(), rtol=1e-4, atol=1e-4)

  loss, metrics = jax.jit(lambda p, b: t5.loss_fn(p, b, None, cfg=CFG, train=False))(params, batch)
  np.testing.assert_allclose(float(loss), out.loss.item(), rtol=1e-5)
  assert float(metrics["num_tokens"]) == batch["weights"].sum()
  hf_pred = out.logits.numpy().argmax(-1)
  expected_acc = ((hf_pred == batch["labels"]) * batch["weights"]).sum() / batch["weights"].sum()
  np.testing.assert_allclose(float(metrics["accuracy"]), expected_acc, rtol=1e-6)


def test_hf_conversion_round_trip_and_strictness(hf_model):
  hf_state = {k: v.numpy() for k, v in hf_model.state_dict().items()}
  params = hf_t5.from_hf(hf_state, CFG)
  back = hf_t5.to_hf(params, CFG)
  unused = "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight"
  assert set(back) == set(hf_state) - {unused}
  for key, value in back.items():
    np.testing.assert_array_equal(value, hf_state[key], err_msg=key)
  with pytest.raises(ValueError, match="unexpected"):
    hf_t5.from_hf({**hf_state, "encoder.block.0.layer.1.DenseReluDense.wi.weight": 0}, CFG)
  with pytest.raises(ValueError, match="shape"):
    hf_t5.from_hf(hf_state, dataclasses.replace(CFG, d_ff=CFG.d_ff + 1))
  with pytest.raises(KeyError, match="encoder.final_layer_norm.weight missing"):
    hf_t5.from_hf({k: v for k, v in hf_state.items() if k != "encoder.final_layer_norm.weight"}, CFG)


def test_params_round_trip_exactly():
  rng = np.random.default_rng(0)
  params = jax.tree.map(
    lambda x: np.asarray(x) + rng.normal(0, 0.1, x.shape).astype(np.float32), t5.init_params(CFG, jax.random.key(0))
  )
  sd = hf_t5.to_hf(params, CFG)
  assert all(v.dtype == np.float32 and v.flags.c_contiguous for v in sd.values())
  back = hf_t5.from_hf(sd, CFG)
  assert jax.tree.structure(back) == jax.tree.structure(params)
  jax.tree.map(np.testing.assert_array_equal, back, params)


@pytest.mark.parametrize("preset", sorted(t5.CONFIGS))
def test_config_round_trips_every_preset(preset):
  cfg = t5.CONFIGS[preset]
  for variant in (cfg, dataclasses.replace(cfg, num_decoder_layers=cfg.num_layers + 1, dropout_rate=0.1)):
    assert hf_t5.config_from_hf(hf_t5.config_to_hf(variant)) == variant
  # what transformers makes of it (tie_word_embeddings forced to True, scale_decoder_outputs=False): the same model
  hf_cfg = transformers.T5Config(**hf_t5.config_to_hf(cfg))
  assert not hf_cfg.scale_decoder_outputs
  assert hf_t5.config_from_hf(hf_cfg.to_dict()) == cfg


@pytest.mark.parametrize(
  "key, value",
  [
    ("feed_forward_proj", "relu"),  # the original T5
    ("tie_word_embeddings", True),  # an old config of a tied, rescaled head
    ("pad_token_id", None),
    ("scale_decoder_outputs", True),  # transformers 5's record of that rescaling
    ("model_type", "mt5"),
  ],
)
def test_config_from_hf_names_what_it_cannot_represent(key, value):
  with pytest.raises(ValueError, match=f"{key}={value!r}"):
    hf_t5.config_from_hf({**hf_t5.config_to_hf(CFG), key: value})


def test_reads_a_folder_saved_by_transformers(tmp_path):
  transformers.set_seed(1)
  transformers.T5ForConditionalGeneration(_hf_config()).save_pretrained(tmp_path)
  hf = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path).eval()
  cfg = hf_t5.config_from_hf(json.loads((tmp_path / "config.json").read_text()))
  assert cfg == CFG
  state_dict = load_file(tmp_path / "model.safetensors")
  assert "lm_head.weight" not in state_dict  # transformers 5 ties the head: we read it as the shared embedding
  params = hf_t5.from_hf(state_dict, cfg)
  batch = _batch(seed=1)
  mask = batch["input_ids"] != CFG.pad_id
  decoder_input_ids = np.asarray(t5.shift_right(jnp.asarray(batch["labels"]), CFG.decoder_start_id))
  inputs = {"input_ids": batch["input_ids"], "attention_mask": mask, "decoder_input_ids": decoder_input_ids}
  ref, ours = _hf_logits(hf, inputs), logits_fn(params, inputs, cfg=cfg)
  assert _rel_err(ours, ref) <= 1e-4
  np.testing.assert_allclose(np.asarray(ours), ref, rtol=1e-4, atol=1e-4)
