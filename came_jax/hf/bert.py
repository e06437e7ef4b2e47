"""BERT <-> Hugging Face: ``config.json`` and state dict, as stock ``BertForMaskedLM`` /
``BertForSequenceClassification`` or, for crammed BERT, as ``came_bert`` with its own modeling file.

MLM parameters (``encoder``, ``mlm_head``, ``decoder_bias``) map to a masked-LM model, classifier parameters
(``encoder``, ``pooler``, ``classifier``) to a sequence classifier; the decoder weight is tied to the word embeddings
on both sides. Which of two forms is written is decided by :func:`unsupported_features`:

* **Stock BERT** (``model_type="bert"``), when Hugging Face BERT can express the config: the original layout, and
  also a post-LN, plain-GELU layout without biases, with scaled sinusoidal positions, without token types or decoder
  bias -- written as zero biases, a baked position table, one zero token-type row and a zero decoder bias. Linear
  weights are ``[out, in]`` there and ``[in, out]`` here, and our fused ``qkv`` kernel is Hugging Face's separate
  query, key and value. Such a model reads back (:func:`from_hf`, :func:`config_from_hf`) as the original layout
  it is equal to.
* **came_bert** (``model_type="came_bert"``), for what stock BERT cannot express -- crammed BERT's pre-LN blocks
  with a final LayerNorm, gated-GELU feed-forward, or an MLM head without the dense + GELU + LayerNorm transform:
  a PyTorch port of :mod:`came_jax.models.bert` (``came_jax/hf/remote/modeling_came_bert.py`` and
  ``configuration_came_bert.py``, which :mod:`came_jax.export` copies into the folder) that ``config.json``'s
  ``auto_map`` names for ``AutoConfig``, ``AutoModel``, ``AutoModelForMaskedLM`` and
  ``AutoModelForSequenceClassification``; ``transformers`` loads it with ``trust_remote_code=True``. The config
  holds every :class:`~came_jax.models.bert.Config` field under its own name (our compute ``dtype`` and
  ``attention_impl`` under ``"came_jax"``), the weights our parameter tree's names (:func:`remote_name`), so both
  round-trip exactly. Its masked LM predicts every position (``[B, T, V]``); the sparse head is a training-time
  saving.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any, Mapping

import jax
import numpy as np

from came_jax.data import tokenizer as tokenizer_lib
from came_jax.hf import _common
from came_jax.models import bert, layers

_DROPOUTS = ("hidden_dropout_prob", "attention_probs_dropout_prob")
_PROBLEM_TYPES = (None, "single_label_classification", "regression")

REMOTE_MODEL_TYPE = "came_bert"
MODEL_TYPES = ("bert", REMOTE_MODEL_TYPE)  # the Hugging Face model types read here
# The Auto classes of a came_bert folder: "<module>.<class>", the modules being the files of came_jax/hf/remote/.
AUTO_MAP = {
  "AutoConfig": "configuration_came_bert.CameBertConfig",
  "AutoModel": "modeling_came_bert.CameBertModel",
  "AutoModelForMaskedLM": "modeling_came_bert.CameBertForMaskedLM",
  "AutoModelForSequenceClassification": "modeling_came_bert.CameBertForSequenceClassification",
}
# Config fields written under "came_jax" rather than at the top: ours alone (Hugging Face's "dtype" is the weights').
_COMPUTE_FIELDS = ("dtype", "attention_impl")


def unsupported_features(cfg: bert.Config, *, classifier: bool = False) -> list[str]:
  """The features of ``cfg`` that stock Hugging Face BERT cannot express: empty, ``BertForMaskedLM`` /
  ``BertForSequenceClassification`` are written; otherwise the ``came_bert`` remote-code form.

  Args:
    cfg: our BERT config.
    classifier: whether the parameters are a sequence classifier's (then the MLM head does not matter).
  """
  problems = []
  if cfg.pre_ln:
    problems.append("pre-LN blocks with a final LayerNorm (pre_ln=True; Hugging Face BERT is post-LN)")
  if cfg.glu:
    problems.append(
      f"gated-GELU feed-forward (glu=True: wi is [d, 2*ffn_dim] = [{cfg.hidden_dim}, "
      f"{2 * cfg.ffn_dim}], gelu(gate) * x; Hugging Face BERT has a plain GELU MLP)"
    )
  if not classifier and not cfg.head_transform:
    problems.append(
      "no MLM head transform (head_transform=False; BertForMaskedLM always applies dense + "
      "GELU + LayerNorm before the decoder)"
    )
  return problems


def _is_classifier(params: Any) -> bool:
  return params is not None and "classifier" in params


def _is_remote(cfg: bert.Config, classifier: bool) -> bool:
  return bool(unsupported_features(cfg, classifier=classifier))


def _labels(num_labels: int) -> dict[str, Any]:
  return {
    "id2label": {str(i): f"LABEL_{i}" for i in range(num_labels)},
    "label2id": {f"LABEL_{i}": i for i in range(num_labels)},
  }


def config_to_hf(cfg: bert.Config, params: Any = None) -> dict[str, Any]:
  """The ``config.json`` of a masked LM, or of a sequence classifier for classifier ``params``: stock
  ``BertForMaskedLM`` / ``BertForSequenceClassification`` where Hugging Face BERT can express ``cfg``, else
  ``CameBertForMaskedLM`` / ``CameBertForSequenceClassification`` (``model_type="came_bert"``, with ``auto_map``).
  """
  classifier = _is_classifier(params)
  if _is_remote(cfg, classifier):
    return _remote_config(cfg, classifier)
  config = {
    "architectures": ["BertForSequenceClassification" if classifier else "BertForMaskedLM"],
    "model_type": "bert",
    "vocab_size": cfg.vocab_size,
    "hidden_size": cfg.hidden_dim,
    "num_hidden_layers": cfg.num_layers,
    "num_attention_heads": cfg.num_heads,
    "intermediate_size": cfg.ffn_dim,
    "hidden_act": "gelu",
    **{key: cfg.dropout_rate for key in _DROPOUTS},
    "max_position_embeddings": cfg.max_len,
    "type_vocab_size": max(cfg.type_vocab_size, 1),
    "layer_norm_eps": cfg.layer_norm_eps,
    "initializer_range": cfg.init_std,
    "pad_token_id": tokenizer_lib.PAD_ID,
    "tie_word_embeddings": True,
    **_labels(cfg.num_labels),
  }
  if classifier:
    config["problem_type"] = "regression" if cfg.num_labels == 1 else "single_label_classification"
  return config


def _remote_config(cfg: bert.Config, classifier: bool) -> dict[str, Any]:
  fields = dataclasses.asdict(cfg)
  config = {
    "architectures": ["CameBertForSequenceClassification" if classifier else "CameBertForMaskedLM"],
    "model_type": REMOTE_MODEL_TYPE,
    "auto_map": dict(AUTO_MAP),
    **{k: v for k, v in fields.items() if k not in _COMPUTE_FIELDS and k != "num_labels"},
    "came_jax": {k: fields[k] for k in _COMPUTE_FIELDS},
    "pad_token_id": tokenizer_lib.PAD_ID,
    "tie_word_embeddings": True,
    **_labels(cfg.num_labels),
  }
  if classifier:
    config["problem_type"] = "regression" if cfg.num_labels == 1 else "single_label_classification"
  return config


def _num_labels(hf_config: Mapping[str, Any]) -> int:
  """``num_labels`` (the size of ``id2label``), checked against ``problem_type``."""
  problem = _common.expect(
    hf_config,
    "problem_type",
    _PROBLEM_TYPES,
    None,
    "our classifier is single-label (softmax) or a regression (num_labels == 1)",
  )
  num_labels = len(hf_config["id2label"]) if "id2label" in hf_config else hf_config.get("num_labels", 2)
  if problem is not None and (problem == "regression") != (num_labels == 1):
    raise ValueError(
      f"Hugging Face config problem_type={problem!r} cannot be represented with {num_labels} "
      "labels: our classifier is a regression exactly when num_labels == 1"
    )
  return num_labels


def config_from_hf(hf_config: Mapping[str, Any]) -> bert.Config:
  """Our ``Config`` for a Hugging Face ``config.json``: a ``came_bert`` one (every field, as written by
  :func:`config_to_hf`), or a stock BERT one, read as the original layout (absent keys: Hugging Face's defaults).

  ``num_labels`` is the size of ``id2label``. From stock BERT, ``dtype`` and ``attention_impl`` (ours alone) keep
  their defaults; token ids do not change the model and are ignored.

  Raises:
    ValueError: naming the Hugging Face key of a feature our BERT lacks (another activation, relative positions, a
      decoder or cross-attention, an untied decoder, per-site dropout rates, multi-label problems).
  """
  if hf_config.get("model_type") == REMOTE_MODEL_TYPE:
    return _config_from_remote(hf_config)
  _common.check_model_type(hf_config, "bert")
  _common.expect(hf_config, "hidden_act", ("gelu",), "gelu", "our original-layout BERT uses the erf GELU")
  _common.expect(
    hf_config,
    "position_embedding_type",
    ("absolute",),
    "absolute",
    "our original-layout BERT has learned absolute positions",
  )
  _common.expect(hf_config, "is_decoder", (False,), False, "our BERT is an encoder")
  _common.expect(hf_config, "add_cross_attention", (False,), False, "our BERT has no cross-attention")
  _common.expect(hf_config, "tie_word_embeddings", (True,), True, "our MLM decoder is tied to the word embeddings")
  num_labels = _num_labels(hf_config)
  dropout = _common.one_dropout_rate(hf_config, _DROPOUTS, 0.1)
  _common.expect(
    hf_config,
    "classifier_dropout",
    (None, dropout),
    None,
    f"our pooled-output dropout is the one dropout_rate ({dropout})",
  )
  return bert.Config(
    vocab_size=hf_config.get("vocab_size", 30522),
    hidden_dim=hf_config.get("hidden_size", 768),
    num_layers=hf_config.get("num_hidden_layers", 12),
    num_heads=hf_config.get("num_attention_heads", 12),
    ffn_dim=hf_config.get("intermediate_size", 3072),
    max_len=hf_config.get("max_position_embeddings", 512),
    type_vocab_size=hf_config.get("type_vocab_size", 2),
    pre_ln=False,
    use_bias=True,
    glu=False,
    position_embedding="learned",
    decoder_bias=True,
    head_transform=True,
    num_labels=num_labels,
    dropout_rate=dropout,
    layer_norm_eps=hf_config.get("layer_norm_eps", 1e-12),
    init_std=hf_config.get("initializer_range", 0.02),
  )


def _config_from_remote(hf_config: Mapping[str, Any]) -> bert.Config:
  """A ``came_bert`` config: our fields by name (absent: ``Config``'s defaults), ``num_labels`` from ``id2label``,
  ``dtype`` and ``attention_impl`` from ``"came_jax"``; Hugging Face's own keys are ignored."""
  _common.expect(hf_config, "tie_word_embeddings", (True,), True, "our MLM decoder is tied to the word embeddings")
  fields = [f.name for f in dataclasses.fields(bert.Config) if f.name != "num_labels" and f.name not in _COMPUTE_FIELDS]
  compute = hf_config.get("came_jax") or {}
  return bert.Config(
    **{k: hf_config[k] for k in fields if k in hf_config},
    **{k: compute[k] for k in _COMPUTE_FIELDS if k in compute},
    num_labels=_num_labels(hf_config),
  )


_REMOTE_LEAVES = {"kernel": "weight", "embedding": "weight", "scale": "weight"}


def remote_name(path: tuple[str, ...]) -> str:
  """The ``came_bert`` weight name of our parameter at ``path``, PyTorch's module path of the same layer.

  >>> remote_name(("encoder", "layers_0", "mlp", "wi", "kernel"))  # stored transposed, [out, in]
  'encoder.layers.0.mlp.wi.weight'
  >>> remote_name(("encoder", "embeddings", "position_scale"))
  'encoder.embeddings.position_scale'
  """
  *modules, leaf = path
  modules = [re.sub(r"^layers_(\d+)$", r"layers.\1", m) for m in modules]
  return ".".join([*modules, _REMOTE_LEAVES.get(leaf, leaf)])


def _init_fn(classifier: bool):
  return bert.init_classifier_params if classifier else bert.init_params


def _shapes(cfg: bert.Config, classifier: bool) -> Any:
  return jax.eval_shape(functools.partial(_init_fn(classifier), cfg), jax.random.key(0))


def _keys(path) -> tuple[str, ...]:
  return tuple(k.key for k in path)


def _to_remote(params: Any, cfg: bert.Config, classifier: bool) -> dict[str, np.ndarray]:
  layers.assert_same_shapes(params, _shapes(cfg, classifier))
  sd = {}
  for path, x in jax.tree_util.tree_leaves_with_path(params):
    keys, x = _keys(path), _common.to_numpy(x)
    sd[remote_name(keys)] = x.T.copy() if keys[-1] == "kernel" else x
  return sd


def _from_remote(state_dict: Mapping[str, Any], cfg: bert.Config, classifier: bool) -> dict:
  reference = _shapes(cfg, classifier)
  names = {remote_name(_keys(path)) for path, _ in jax.tree_util.tree_leaves_with_path(reference)}
  missing, unexpected = sorted(names - set(state_dict)), sorted(set(state_dict) - names)
  if missing or unexpected:
    raise ValueError(f"the came_bert state dict does not match the config: missing {missing}, unexpected {unexpected}")

  def leaf(path, _):
    keys = _keys(path)
    x = _common.to_numpy(state_dict[remote_name(keys)])
    return x.T if keys[-1] == "kernel" else x

  return _common.checked(jax.tree_util.tree_map_with_path(leaf, reference), _init_fn(classifier), cfg)


def to_hf(params: Any, cfg: bert.Config) -> dict[str, np.ndarray]:
  """Our BERT -> the state dict (float32) of the model :func:`config_to_hf` names: ``BertForMaskedLM`` (MLM
  parameters: ``mlm_head``) or ``BertForSequenceClassification`` (classifier parameters: ``pooler``,
  ``classifier``), or their ``came_bert`` counterparts (names: :func:`remote_name`).

  The decoder weight is tied to the word embeddings and left out (Hugging Face re-ties it; ``came_bert`` computes
  the decoder from the embeddings).
  """
  classifier = _is_classifier(params)
  if _is_remote(cfg, classifier):
    return _to_remote(params, cfg, classifier)
  to_numpy = _common.to_numpy
  d = cfg.hidden_dim
  enc, emb = params["encoder"], params["encoder"]["embeddings"]
  sd: dict[str, np.ndarray] = {}

  def dense(prefix, p, out_dim):
    sd[f"{prefix}.weight"] = to_numpy(p["kernel"]).T.copy()
    sd[f"{prefix}.bias"] = to_numpy(p["bias"]) if "bias" in p else np.zeros(out_dim, np.float32)

  def norm(prefix, p):
    sd[f"{prefix}.weight"], sd[f"{prefix}.bias"] = to_numpy(p["scale"]), to_numpy(p["bias"])

  e = "bert.embeddings"
  sd[f"{e}.word_embeddings.weight"] = to_numpy(emb["word_embeddings"]["embedding"])
  if cfg.position_embedding == "learned":
    sd[f"{e}.position_embeddings.weight"] = to_numpy(emb["position_embeddings"]["embedding"])
  else:  # scaled sinusoidal: a fixed table times one learned scalar, baked into the learned table
    table = bert._sinusoids(cfg.max_len, d)  # pylint: disable=protected-access
    sd[f"{e}.position_embeddings.weight"] = to_numpy(table * to_numpy(emb["position_scale"]))
  sd[f"{e}.token_type_embeddings.weight"] = (
    to_numpy(emb["token_type_embeddings"]["embedding"]) if cfg.type_vocab_size else np.zeros((1, d), np.float32)
  )
  norm(f"{e}.LayerNorm", emb["norm"])
  for i in range(cfg.num_layers):
    layer, p = enc[f"layers_{i}"], f"bert.encoder.layer.{i}"
    qkv = layer["attention"]["qkv"]
    kernel = to_numpy(qkv["kernel"])
    bias = to_numpy(qkv["bias"]) if "bias" in qkv else np.zeros(3 * d, np.float32)
    for j, name in enumerate(("query", "key", "value")):
      sd[f"{p}.attention.self.{name}.weight"] = kernel[:, j * d : (j + 1) * d].T.copy()
      sd[f"{p}.attention.self.{name}.bias"] = bias[j * d : (j + 1) * d].copy()
    dense(f"{p}.attention.output.dense", layer["attention"]["out"], d)
    norm(f"{p}.attention.output.LayerNorm", layer["attention_norm"])
    dense(f"{p}.intermediate.dense", layer["mlp"]["wi"], cfg.ffn_dim)
    dense(f"{p}.output.dense", layer["mlp"]["wo"], d)
    norm(f"{p}.output.LayerNorm", layer["mlp_norm"])
  if classifier:
    dense("bert.pooler.dense", params["pooler"], d)
    dense("classifier", params["classifier"], cfg.num_labels)
  else:
    dense("cls.predictions.transform.dense", params["mlm_head"]["dense"], d)
    norm("cls.predictions.transform.LayerNorm", params["mlm_head"]["norm"])
    sd["cls.predictions.bias"] = (
      to_numpy(params["decoder_bias"]) if cfg.decoder_bias else np.zeros(cfg.vocab_size, np.float32)
    )
  return sd


def from_hf(state_dict: Mapping[str, Any], cfg: bert.Config) -> dict:
  """A Hugging Face state dict -> ours: ``came_bert``'s when stock BERT cannot express ``cfg``
  (:func:`unsupported_features`), else ``BertForMaskedLM``'s or ``BertForSequenceClassification``'s (original
  layout).

  Returns MLM parameters (``encoder``, ``mlm_head``, ``decoder_bias``), or classifier parameters (``encoder``,
  ``pooler``, ``classifier``) when the state dict has ``classifier`` keys, as jax arrays. Values may be torch
  tensors or arrays. The decoder weight is taken to be tied to the word embeddings (as in every released BERT).

  Raises:
    ValueError: a stock BERT state dict for a ``cfg`` not of the original layout, a ``came_bert`` one with missing
      or unexpected names, or a tree or shapes that differ from ``cfg``'s.
  """
  classifier = "classifier.weight" in state_dict
  if _is_remote(cfg, classifier):
    return _from_remote(state_dict, cfg, classifier)
  if cfg.pre_ln or cfg.glu or not cfg.use_bias or cfg.position_embedding != "learned":
    raise ValueError("Hugging Face BERT checkpoints need the original layout (e.g. 'bert-base-original')")
  sd = {k.removeprefix("bert."): _common.to_numpy(v) for k, v in state_dict.items()}

  def dense(prefix):
    return {"kernel": sd[f"{prefix}.weight"].T, "bias": sd[f"{prefix}.bias"]}

  def norm(prefix):
    return {"scale": sd[f"{prefix}.weight"], "bias": sd[f"{prefix}.bias"]}

  emb = "embeddings"
  encoder = {
    "embeddings": {
      "word_embeddings": {"embedding": sd[f"{emb}.word_embeddings.weight"]},
      "position_embeddings": {"embedding": sd[f"{emb}.position_embeddings.weight"]},
      "norm": norm(f"{emb}.LayerNorm"),
    }
  }
  if cfg.type_vocab_size:
    encoder["embeddings"]["token_type_embeddings"] = {"embedding": sd[f"{emb}.token_type_embeddings.weight"]}
  for i in range(cfg.num_layers):
    p = f"encoder.layer.{i}"
    qkv = [dense(f"{p}.attention.self.{n}") for n in ("query", "key", "value")]
    encoder[f"layers_{i}"] = {
      "attention": {
        "qkv": {
          "kernel": np.concatenate([d["kernel"] for d in qkv], axis=1),
          "bias": np.concatenate([d["bias"] for d in qkv]),
        },
        "out": dense(f"{p}.attention.output.dense"),
      },
      "attention_norm": norm(f"{p}.attention.output.LayerNorm"),
      "mlp": {"wi": dense(f"{p}.intermediate.dense"), "wo": dense(f"{p}.output.dense")},
      "mlp_norm": norm(f"{p}.output.LayerNorm"),
    }
  if "classifier.weight" in sd:
    params = {"encoder": encoder, "pooler": dense("pooler.dense"), "classifier": dense("classifier")}
    return _common.checked(params, bert.init_classifier_params, cfg)
  params = {
    "encoder": encoder,
    "mlm_head": {
      "dense": dense("cls.predictions.transform.dense"),
      "norm": norm("cls.predictions.transform.LayerNorm"),
    },
    "decoder_bias": sd.get("cls.predictions.decoder.bias", sd.get("cls.predictions.bias")),
  }
  return _common.checked(params, bert.init_params, cfg)
