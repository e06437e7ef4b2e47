"""Export to Hugging Face: GPT-2, T5 and original-layout BERT folders load in transformers with our logits
(relative error <= 1e-4, fp32); a pretraining run directory exports with its tokenizer; crammed BERT exports with
its remote code (came_bert, loaded with trust_remote_code=True; more in tests/hf/test_bert_remote.py)."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from came_jax import config_files, export, models, pretrained
from came_jax.data import tokenizer as tokenizer_lib
from came_jax.hf import bert as hf_bert
from came_jax.hf import gpt2 as hf_gpt2
from came_jax.models import bert, gpt2, t5
from came_jax.optim import registry
from came_jax.train import checkpoint as ckpt_lib
from came_jax.train import step as step_lib

REPO = pathlib.Path(__file__).resolve().parents[1]
V, T, B = 397, 12, 3  # a vocabulary size unlike any other dimension

# Jitted once per (static, frozen) config: eager Linen would dominate the runtime.
gpt2_init = jax.jit(gpt2.init_params, static_argnums=0)
gpt2_logits = jax.jit(gpt2.logits_fn, static_argnames="cfg")
t5_init = jax.jit(t5.init_params, static_argnums=0)
t5_logits = jax.jit(t5.logits_fn, static_argnames="cfg")
bert_init = jax.jit(bert.init_params, static_argnums=0)
bert_init_classifier = jax.jit(bert.init_classifier_params, static_argnums=0)
bert_logits = jax.jit(bert.logits_fn, static_argnames=("cfg", "train"))
bert_classifier_logits = jax.jit(bert.classifier_logits_fn, static_argnames=("cfg", "train"))


def _rel_err(ours, ref) -> float:
  ours, ref = np.asarray(ours), np.asarray(ref)
  assert ours.shape == ref.shape, (ours.shape, ref.shape)
  return float(np.abs(ours - ref).max() / np.abs(ref).max())


def _perturb(params, seed=0):
  """Random init leaves norms at 1 and biases at 0; perturb every leaf so that each mapping is tested."""
  rng = np.random.default_rng(seed)
  noise = lambda x: rng.normal(0.0, 0.2 if x.ndim < 2 else 0.02, x.shape).astype(np.float32)
  return jax.tree.map(lambda x: np.asarray(x) + noise(x), params)


def _ids(seed=0, vocab=V):
  return np.random.default_rng(seed).integers(6, vocab, (B, T)).astype(np.int32)


def _load(cls, path, **kwargs):
  model, info = cls.from_pretrained(path, output_loading_info=True, **kwargs)
  assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
  return model.eval()


def _t(x):
  return torch.tensor(np.asarray(x), dtype=torch.long)


def test_gpt2_round_trip(tmp_path):
  cfg = models.make_config("gpt2", "tiny", vocab_size=V, hidden_dim=32, num_heads=4, ffn_dim=128, max_len=T)
  params = _perturb(gpt2_init(cfg, jax.random.key(0)))
  export.export("gpt2", params, cfg, tmp_path)
  hf = _load(transformers.GPT2LMHeadModel, tmp_path)
  ids = _ids()
  with torch.no_grad():
    ref = hf(input_ids=_t(ids)).logits.numpy()
  assert _rel_err(gpt2_logits(params, {"input_ids": jnp.asarray(ids)}, cfg=cfg), ref) <= 1e-4
  # and back: our HF import of the export gives the same parameters
  back = hf_gpt2.from_hf(hf.state_dict(), cfg)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6), back, params)


def test_t5_round_trip(tmp_path):
  cfg = models.make_config("t5", "tiny", vocab_size=V, num_decoder_layers=3)
  params = _perturb(t5_init(cfg, jax.random.key(1)), seed=1)
  export.export("t5", params, cfg, tmp_path)
  config = json.loads((tmp_path / "config.json").read_text())
  assert config["tie_word_embeddings"] is False and config["feed_forward_proj"] == "gated-gelu"
  hf = _load(transformers.T5ForConditionalGeneration, tmp_path)
  assert not hf.config.scale_decoder_outputs
  assert not torch.equal(hf.lm_head.weight, hf.shared.weight)  # the untied T5.1.1 head survived loading
  ids, targets = _ids(1), _ids(2)[:, :7]
  mask = np.ones_like(ids)
  mask[1, -4:] = 0
  decoder_ids = np.asarray(t5.shift_right(jnp.asarray(targets), cfg.decoder_start_id))
  with torch.no_grad():
    ref = hf(input_ids=_t(ids), attention_mask=_t(mask), decoder_input_ids=_t(decoder_ids)).logits.numpy()
  inputs = {
    "input_ids": jnp.asarray(ids),
    "attention_mask": jnp.asarray(mask),
    "decoder_input_ids": jnp.asarray(decoder_ids),
  }
  ours = t5_logits(params, inputs, cfg=cfg)
  assert _rel_err(ours, ref) <= 1e-4


ORIGINAL = dict(vocab_size=V, hidden_dim=32, num_layers=2, num_heads=4, ffn_dim=64, max_len=T, num_labels=3)
# An original (post-LN, plain GELU) layout using the features that export by zero-filling or baking.
EXPRESSIBLE = dict(use_bias=False, position_embedding="scaled_sinusoidal", type_vocab_size=0, decoder_bias=False)


@pytest.mark.parametrize("variant", ["original", "expressible"])
def test_bert_mlm_and_classifier_round_trip(tmp_path, variant):
  cfg = models.make_config(
    "bert", "bert-base-original", **ORIGINAL, **(EXPRESSIBLE if variant == "expressible" else {})
  )
  ids = _ids(3)
  mask = np.ones_like(ids)
  mask[2, -5:] = 0
  types = np.repeat([[0] * 7 + [1] * (T - 7)], B, axis=0) if cfg.type_vocab_size else np.zeros_like(ids)
  inputs = dict(input_ids=_t(ids), attention_mask=_t(mask), token_type_ids=_t(types))
  batch = {"input_ids": jnp.asarray(ids), "attention_mask": jnp.asarray(mask), "token_type_ids": jnp.asarray(types)}

  mlm = _perturb(bert_init(cfg, jax.random.key(2)), seed=2)
  export.export("bert", mlm, cfg, tmp_path / "mlm")
  hf = _load(transformers.BertForMaskedLM, tmp_path / "mlm")
  with torch.no_grad():
    ref = hf(**inputs).logits.numpy()
  ours = bert_logits(mlm, batch, cfg=cfg)
  valid = mask.astype(bool)  # padded positions are not compared (HF and we mask keys alike, queries are junk)
  assert _rel_err(np.asarray(ours)[valid], ref[valid]) <= 1e-4

  if variant == "expressible":
    return  # the classifier head (pooler, classifier) maps the same way in both variants
  clf = _perturb(bert_init_classifier(cfg, jax.random.key(3)), seed=3)
  export.export("bert", clf, cfg, tmp_path / "clf")
  hf = _load(transformers.BertForSequenceClassification, tmp_path / "clf")
  assert hf.config.num_labels == 3
  with torch.no_grad():
    ref = hf(**inputs).logits.numpy()
  ours = bert_classifier_logits(clf, batch, cfg=cfg)
  assert _rel_err(ours, ref) <= 1e-4


def test_crammed_bert_exports_with_remote_code(tmp_path):
  cfg = models.make_config("bert", "tiny", vocab_size=V, head_transform=False)
  params = bert_init(cfg, jax.random.key(0))
  out = export.export("bert", params, cfg, tmp_path / "out")
  assert {p.name for p in out.iterdir()} == {
    "config.json",
    "model.safetensors",
    "configuration_came_bert.py",
    "modeling_came_bert.py",
  }
  config = json.loads((out / "config.json").read_text())
  assert config["model_type"] == "came_bert" and config["architectures"] == ["CameBertForMaskedLM"]
  assert config["auto_map"]["AutoConfig"] == "configuration_came_bert.CameBertConfig"
  assert hf_bert.config_from_hf(config) == cfg
  # unsupported_features names what stock BertForMaskedLM lacks, which is what sends a config to came_bert.
  features = [p.split(" (")[0] for p in hf_bert.unsupported_features(cfg)]
  assert features == ["pre-LN blocks with a final LayerNorm", "gated-GELU feed-forward", "no MLM head transform"]
  alone = models.make_config("bert", "bert-base-original", **ORIGINAL, glu=True)
  assert [p.split(" (")[0] for p in hf_bert.unsupported_features(alone)] == ["gated-GELU feed-forward"]
  assert hf_bert.unsupported_features(models.make_config("bert", "bert-base-original", **ORIGINAL)) == []


def _fake_run(run_dir, config_name, tokenizer, *, model_overrides=None, seed=0):
  """A pretraining run directory as the trainer leaves it (run_config.json, tokenizer/, checkpoints/<step>),
  with random (perturbed) parameters instead of training."""
  config = config_files.load(REPO / "configs" / f"{config_name}.py", "tiny")
  config.data.vocab_size = tokenizer.vocab_size
  config.model.update(model_overrides or {})
  ckpt_lib.record_run(str(run_dir), config)
  tokenizer.save(run_dir / "tokenizer")
  model = models.get(config.model.name)
  model_cfg = models.from_config_section(config.model, tokenizer.vocab_size)
  params = _perturb(jax.jit(model.init_params, static_argnums=0)(model_cfg, jax.random.key(seed)), seed=seed)
  state = step_lib.TrainState.create(params, registry.make(config.optimizer), jax.random.PRNGKey(seed))
  checkpointer = ckpt_lib.Checkpointer(str(run_dir))
  checkpointer.save(5, state, elapsed_s=1.0, data_state={"batch": 5})
  checkpointer.close()
  return model_cfg, params


@pytest.fixture(scope="module")
def small_tokenizer(shared_data):
  text = (shared_data / "glue" / "RTE" / "train.tsv").read_text().splitlines()[:1500]
  return tokenizer_lib.Tokenizer.train(text, vocab_size=600, max_sentences=1500, num_threads=1)


def test_export_run_directory_with_tokenizer(tmp_path, small_tokenizer, shared_data):
  cfg, params = _fake_run(tmp_path / "run", "gpt2", small_tokenizer)
  out = export.export_run(tmp_path / "run", tmp_path / "hf")
  assert {p.name for p in out.iterdir()} == {
    "config.json",
    "model.safetensors",
    "tokenizer.model",
    "tokenizer_config.json",
  }
  hf = _load(transformers.GPT2LMHeadModel, out)
  ids = _ids(4, vocab=cfg.vocab_size)
  with torch.no_grad():
    ref = hf(input_ids=_t(ids)).logits.numpy()
  run = pretrained.load(tmp_path / "run")
  assert run.step == 5 and run.model_name == "gpt2"
  assert _rel_err(gpt2_logits(run.params, {"input_ids": jnp.asarray(ids)}, cfg=cfg), ref) <= 1e-4

  # The tokenizer files give our ids: transformers' AutoTokenizer on plain text, our loader on anything.
  hf_tok = transformers.AutoTokenizer.from_pretrained(out)
  sentences = [
    line.split("\t")[1] for line in (shared_data / "glue" / "RTE" / "dev.tsv").read_text().splitlines()[1:40]
  ]
  for s in sentences:
    assert hf_tok(s, add_special_tokens=False)["input_ids"] == small_tokenizer.encode(s)
  assert len(hf_tok) == small_tokenizer.vocab_size
  assert (
    hf_tok.pad_token_id,
    hf_tok.eos_token_id,
    hf_tok.unk_token_id,
    hf_tok.cls_token_id,
    hf_tok.sep_token_id,
    hf_tok.mask_token_id,
  ) == (0, 1, 2, 3, 4, 5)
  assert hf_tok.convert_tokens_to_ids(["<extra_id_0>", "<extra_id_99>"]) == [
    small_tokenizer.sentinel_id(0),
    small_tokenizer.sentinel_id(99),
  ]
  reloaded = tokenizer_lib.Tokenizer.load(out / "tokenizer.model")
  assert reloaded.fingerprint == small_tokenizer.fingerprint
  meta = json.loads((out / "tokenizer_config.json").read_text())["came_jax"]
  assert meta["ids"]["[MASK]"] == 5 and meta["num_sentinels"] == 100


def test_export_run_of_crammed_bert(tmp_path, small_tokenizer):
  cfg, params = _fake_run(tmp_path / "run", "bert_cramming", small_tokenizer, model_overrides={"dtype": "float32"})
  assert cfg.pre_ln and cfg.glu and cfg.position_embedding == "scaled_sinusoidal" and not cfg.head_transform
  out = export.export_run(tmp_path / "run", tmp_path / "hf")
  assert {p.name for p in out.iterdir()} == {
    "config.json",
    "model.safetensors",
    "configuration_came_bert.py",
    "modeling_came_bert.py",
    "tokenizer.model",
    "tokenizer_config.json",
  }
  assert hf_bert.config_from_hf(json.loads((out / "config.json").read_text())) == cfg
  hf = _load(transformers.AutoModelForMaskedLM, out, trust_remote_code=True)
  assert type(hf).__name__ == "CameBertForMaskedLM"
  ids = _ids(5, vocab=cfg.vocab_size)
  mask = np.ones_like(ids)
  mask[1, -4:] = 0
  with torch.no_grad():
    ref = hf(input_ids=_t(ids), attention_mask=_t(mask)).logits.numpy()
  ours = bert_logits(params, {"input_ids": jnp.asarray(ids), "attention_mask": jnp.asarray(mask)}, cfg=cfg)
  assert _rel_err(ours, ref) <= 1e-4
  assert transformers.AutoTokenizer.from_pretrained(out).mask_token_id == tokenizer_lib.MASK_ID
