"""Crammed BERT -> Hugging Face with remote code (``came_bert``): exported folders load with
``trust_remote_code=True`` and give our logits (relative error <= 1e-4, fp32, padded rows included) and our losses,
for several layouts, for MLM parameters and for GLUE-fine-tuned classifiers (2 labels and regression); parameters
and configs round-trip exactly; a folder saved by transformers reads back."""

import ast
import dataclasses
import json
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file

from came_jax import config_files, export, models
from came_jax.glue import finetune
from came_jax.glue import tasks as tasks_lib
from came_jax.hf import bert as hf_bert
from came_jax.models import bert

REPO = pathlib.Path(__file__).resolve().parents[2]
V, T, B = 97, 16, 3  # vocab chosen unlike any other dimension

logits_fn = jax.jit(bert.logits_fn, static_argnames=("cfg", "train"))
classifier_logits_fn = jax.jit(bert.classifier_logits_fn, static_argnames=("cfg", "train"))
loss_fn = jax.jit(bert.loss_fn, static_argnames=("cfg", "train"))
classification_loss_fn = jax.jit(bert.classification_loss_fn, static_argnames=("cfg", "train"))
init_params = jax.jit(bert.init_params, static_argnums=0)
init_classifier_params = jax.jit(bert.init_classifier_params, static_argnums=0)

TINY = models.make_config("bert", "tiny", vocab_size=V)  # pre-LN, no biases, gated GELU, learned positions
CONFIGS = {
  "tiny": TINY,
  # configs/bert_cramming.py's model: cramming's final layout
  "cramming": dataclasses.replace(TINY, position_embedding="scaled_sinusoidal", head_transform=False),
  "gelu_biases": dataclasses.replace(TINY, glu=False, use_bias=True, decoder_bias=True),
  "post_ln_types": dataclasses.replace(
    TINY, pre_ln=False, use_bias=True, type_vocab_size=2, decoder_bias=True, dropout_rate=0.1, max_len=T
  ),
}


def _rel_err(ours, ref) -> float:
  ours, ref = np.asarray(ours), np.asarray(ref)
  assert ours.shape == ref.shape, (ours.shape, ref.shape)
  return float(np.abs(ours - ref).max() / np.abs(ref).max())


def _perturb(params, seed):
  """Random init leaves norms at 1, biases at 0 and the position scale at d**-0.5: perturb every leaf."""
  rng = np.random.default_rng(seed)
  noise = lambda x: rng.normal(0.0, 0.2 if x.ndim < 2 else 0.02, x.shape).astype(np.float32)
  return jax.tree.map(lambda x: np.asarray(x) + noise(x), params)


def _batch(seed, n=B):
  """input_ids, attention_mask (rows of decreasing length, row 1 heavily padded), token_type_ids (two segments)."""
  rng = np.random.default_rng(seed)
  mask = np.ones((n, T), np.int32)
  for i in range(n):
    mask[i, T - (5 * i) % 11 :] = 0
  mask[1 % n, 4:] = 0
  return {
    "input_ids": rng.integers(6, V, (n, T)).astype(np.int32),
    "attention_mask": mask,
    "token_type_ids": np.repeat([[0] * 9 + [1] * (T - 9)], n, axis=0).astype(np.int32),
  }


def _torch(batch):
  return {k: torch.as_tensor(np.asarray(v), dtype=torch.long) for k, v in batch.items()}


def _load(auto_cls, path):
  model, info = auto_cls.from_pretrained(path, trust_remote_code=True, output_loading_info=True)
  assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
  return model.eval()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_masked_lm_loads_with_remote_code_and_gives_our_logits_and_loss(tmp_path, name):
  cfg = CONFIGS[name]
  assert hf_bert.unsupported_features(cfg)  # none of these is expressible as stock BERT
  params = _perturb(init_params(cfg, jax.random.key(0)), seed=0)
  out = export.export("bert", params, cfg, tmp_path / name)
  assert {p.name for p in out.iterdir()} == {
    "config.json",
    "model.safetensors",
    "configuration_came_bert.py",
    "modeling_came_bert.py",
  }
  config = json.loads((out / "config.json").read_text())
  assert config["model_type"] == "came_bert" and config["architectures"] == ["CameBertForMaskedLM"]
  assert hf_bert.config_from_hf(config) == cfg

  model = _load(transformers.AutoModelForMaskedLM, out)
  assert type(model).__name__ == "CameBertForMaskedLM"
  assert hf_bert.config_from_hf(model.config.to_dict()) == cfg  # what transformers makes of config.json
  batch = _batch(seed=1)
  with torch.no_grad():
    ref = model(**_torch(batch)).logits.numpy()
  ours = logits_fn(params, {k: jnp.asarray(v) for k, v in batch.items()}, cfg=cfg)
  err = _rel_err(ours, ref)  # every position, padded queries included: both mask keys only
  print(f"{name}: MLM logits relative error {err:.2e}")
  assert err <= 1e-4

  # labels -> loss as Hugging Face computes it: mean cross-entropy over the labelled positions (-100 elsewhere),
  # which is our sparse loss at those positions.
  positions = np.array([[1, 3, 2, 0], [0, 2, 1, 3], [5, 0, 9, 7]], np.int32)
  targets = np.random.default_rng(2).integers(0, V, positions.shape).astype(np.int32)
  labels = np.full((B, T), -100)
  np.put_along_axis(labels, positions, targets, axis=1)
  with torch.no_grad():
    hf_loss = model(**_torch(batch), labels=torch.as_tensor(labels)).loss.item()
  sparse = {**batch, "mlm_positions": positions, "mlm_labels": targets, "mlm_weights": np.ones(positions.shape)}
  our_loss, _ = loss_fn(params, {k: jnp.asarray(v) for k, v in sparse.items()}, None, cfg=cfg, train=False)
  np.testing.assert_allclose(hf_loss, float(our_loss), rtol=1e-5)

  # and back: the loaded model's weights are ours exactly
  back = hf_bert.from_hf(model.state_dict(), cfg)
  jax.tree.map(np.testing.assert_array_equal, back, params)


def test_encoder_loads_as_auto_model_and_training_in_transformers_reads_back(tmp_path):
  cfg = CONFIGS["post_ln_types"]  # dropout 0.1: train() mode is stochastic, eval() is not
  params = _perturb(init_params(cfg, jax.random.key(1)), seed=1)
  out = export.export("bert", params, cfg, tmp_path / "mlm")
  batch = _batch(seed=3)

  encoder = _load(transformers.AutoModel, out)
  assert type(encoder).__name__ == "CameBertModel"
  with torch.no_grad():
    hidden = encoder(**_torch(batch), output_hidden_states=True)
  assert hidden.last_hidden_state.shape == (B, T, cfg.hidden_dim) and len(hidden.hidden_states) == cfg.num_layers + 1
  args = (jnp.asarray(batch[k]) for k in ("input_ids", "attention_mask", "token_type_ids"))
  ours = bert.BertEncoder(cfg).apply({"params": params["encoder"]}, *args)
  assert _rel_err(ours, hidden.last_hidden_state.numpy()) <= 1e-4

  # One optimizer step in PyTorch (dropout on), saved by transformers, reads back as our parameters.
  model = _load(transformers.AutoModelForMaskedLM, out).train()
  labels = np.where(np.asarray(batch["attention_mask"]) == 1, np.asarray(batch["input_ids"]), -100)
  torch.manual_seed(0)
  loss = model(**_torch(batch), labels=torch.as_tensor(labels, dtype=torch.long)).loss
  loss.backward()
  torch.optim.SGD(model.parameters(), lr=0.1).step()
  model.eval().save_pretrained(tmp_path / "tuned")
  with torch.no_grad():
    ref = model(**_torch(batch)).logits.numpy()
  saved = json.loads((tmp_path / "tuned" / "config.json").read_text())
  assert hf_bert.config_from_hf(saved) == cfg
  tuned = hf_bert.from_hf(load_file(tmp_path / "tuned" / "model.safetensors"), cfg)
  moved = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != b)), tuned, params)
  assert moved["encoder"]["embeddings"]["norm"]["scale"] and moved["decoder_bias"]
  assert _rel_err(logits_fn(tuned, {k: jnp.asarray(v) for k, v in batch.items()}, cfg=cfg), ref) <= 1e-4


def _glue_rows(n, num_labels, seed):
  rng = np.random.default_rng(seed)
  rows = _batch(seed, n)
  if num_labels == 1:
    rows["labels"] = rng.uniform(0.0, 5.0, n).astype(np.float32)
  else:
    rows["labels"] = rng.integers(0, num_labels, n).astype(np.int32)
  return rows


@pytest.mark.parametrize("name, task", [("tiny", "RTE"), ("post_ln_types", "STS-B")])
def test_glue_fine_tuned_classifier_exports(tmp_path, name, task):
  """A classifier fine-tuned by came_jax.glue (a few steps on random rows, from perturbed "pretrained" weights)
  loads as AutoModelForSequenceClassification with our logits and loss; STS-B is a regression (num_labels 1)."""
  num_labels = 1 if tasks_lib.TASKS[task].labels is None else len(tasks_lib.TASKS[task].labels)
  cfg = dataclasses.replace(CONFIGS[name], num_labels=num_labels, dropout_rate=0.1)
  pretrained = _perturb(init_params(cfg, jax.random.key(2)), seed=2)
  config = config_files.load(REPO / "configs" / "glue.py", "tiny")
  config.update(dict(max_steps=3, batch_size=8, log_every_steps=1))
  config.optimizer.adamw.learning_rate = 1e-3
  backbone = finetune.Backbone(bert, cfg, pretrained, None, "perturbed random init", "test")
  data = finetune.Encoded(tasks_lib.TASKS[task], _glue_rows(20, num_labels, seed=4), {}, {})
  params, info = finetune.train_one(config, backbone, cfg, data, seed=0)
  assert info["steps"] == 3 and info["nonfinite_steps"] == 0
  assert not np.array_equal(
    params["encoder"]["layers_0"]["mlp"]["wo"]["kernel"], pretrained["encoder"]["layers_0"]["mlp"]["wo"]["kernel"]
  )

  out = export.export("bert", params, cfg, tmp_path / "clf")
  config_json = json.loads((out / "config.json").read_text())
  assert config_json["architectures"] == ["CameBertForSequenceClassification"]
  assert config_json["problem_type"] == ("regression" if num_labels == 1 else "single_label_classification")
  model = _load(transformers.AutoModelForSequenceClassification, out)
  assert type(model).__name__ == "CameBertForSequenceClassification" and model.config.num_labels == num_labels

  rows = _glue_rows(B, num_labels, seed=5)
  inputs = {k: v for k, v in rows.items() if k != "labels"}
  labels = torch.as_tensor(rows["labels"], dtype=torch.float32 if num_labels == 1 else torch.long)
  with torch.no_grad():
    hf_out = model(**_torch(inputs), labels=labels)
  jax_rows = {k: jnp.asarray(v) for k, v in rows.items()}
  ours = classifier_logits_fn(params, jax_rows, cfg=cfg)
  err = _rel_err(ours, hf_out.logits.numpy())
  print(f"{name} fine-tuned on {task} ({num_labels} labels): classifier logits relative error {err:.2e}")
  assert err <= 1e-4
  our_loss, _ = classification_loss_fn(params, jax_rows, None, cfg=cfg, train=False)
  np.testing.assert_allclose(hf_out.loss.item(), float(our_loss), rtol=1e-5)
  jax.tree.map(np.testing.assert_array_equal, hf_bert.from_hf(model.state_dict(), cfg), jax.device_get(params))


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("head", ["mlm", "classifier"])
def test_params_and_configs_round_trip_exactly(name, head):
  cfg = CONFIGS[name]
  init = init_params if head == "mlm" else init_classifier_params
  params = _perturb(init(cfg, jax.random.key(3)), seed=3)
  assert hf_bert.unsupported_features(cfg, classifier=head == "classifier")  # all beyond stock BERT
  sd = hf_bert.to_hf(params, cfg)
  assert "encoder.layers.0.attention.qkv.weight" in sd and ("classifier.weight" in sd) == (head == "classifier")
  assert all(v.dtype == np.float32 and v.flags.c_contiguous for v in sd.values())
  back = hf_bert.from_hf(sd, cfg)
  assert jax.tree.structure(back) == jax.tree.structure(params)
  jax.tree.map(np.testing.assert_array_equal, back, params)

  for variant in (
    cfg,
    dataclasses.replace(cfg, num_labels=1, dtype="bfloat16", attention_impl="cudnn", layer_norm_eps=1e-6),
  ):
    config = hf_bert.config_to_hf(variant, params)
    assert config["auto_map"]["AutoModelForMaskedLM"] == "modeling_came_bert.CameBertForMaskedLM"
    assert hf_bert.config_from_hf(json.loads(json.dumps(config))) == variant


def test_from_hf_names_what_does_not_fit():
  cfg = CONFIGS["tiny"]
  sd = hf_bert.to_hf(init_params(cfg, jax.random.key(0)), cfg)
  with pytest.raises(ValueError, match=r"missing \['encoder.final_norm.bias'\], unexpected \['extra'\]"):
    hf_bert.from_hf(
      {**{k: v for k, v in sd.items() if k != "encoder.final_norm.bias"}, "extra": np.zeros(1, np.float32)}, cfg
    )
  with pytest.raises(ValueError, match="shapes differ"):
    hf_bert.from_hf(sd, dataclasses.replace(cfg, ffn_dim=32))
  with pytest.raises(ValueError, match="problem_type='regression'"):
    hf_bert.config_from_hf({**hf_bert.config_to_hf(cfg), "problem_type": "regression"})


def test_stock_layouts_still_export_without_remote_code(tmp_path):
  cfg = models.make_config("bert", "bert-base-original", vocab_size=V, hidden_dim=32, num_layers=1, num_heads=4)
  out = export.export("bert", init_params(cfg, jax.random.key(0)), cfg, tmp_path / "stock")
  assert not list(out.glob("*.py"))
  assert "auto_map" not in json.loads((out / "config.json").read_text())


def test_came_jax_imports_without_torch_and_never_imports_the_remote_code():
  code = (
    "import sys; from came_jax import export, hf; hf.names(); hf.get('bert');"
    "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, sorted(sys.modules)"
  )
  subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
  # The files shipped into export folders import torch, transformers, the standard library and each other only.
  files = export.remote_code({"auto_map": hf_bert.AUTO_MAP})
  assert sorted(files) == ["configuration_came_bert.py", "modeling_came_bert.py"]
  for text in files.values():
    imported = set()
    for node in ast.walk(ast.parse(text)):
      if isinstance(node, ast.Import):
        imported |= {a.name.split(".")[0] for a in node.names}
      elif isinstance(node, ast.ImportFrom):
        imported.add("." if node.level else node.module.split(".")[0])
    assert imported <= {"torch", "transformers", "functools", "math", "."}, imported


def test_heads_reach_the_word_embeddings_through_the_encoder(tmp_path):
  """get/set_input_embeddings come from the base model (`base_model_prefix = "encoder"`), for both heads."""
  cfg = models.make_config("bert", "tiny", vocab_size=64)
  mlm = jax.tree.map(np.asarray, bert.init_params(cfg, jax.random.key(0)))
  clf = jax.tree.map(np.asarray, bert.init_classifier_params(cfg, jax.random.key(1)))
  for params, auto in (
    (mlm, transformers.AutoModelForMaskedLM),
    (clf, transformers.AutoModelForSequenceClassification),
  ):
    out = export.export("bert", params, cfg, tmp_path / auto.__name__)
    model = auto.from_pretrained(out, trust_remote_code=True)
    assert model.get_input_embeddings() is model.encoder.embeddings.word_embeddings
    replacement = torch.nn.Embedding(64, cfg.hidden_dim)
    model.set_input_embeddings(replacement)
    assert model.encoder.embeddings.word_embeddings is replacement
