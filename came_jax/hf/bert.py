"""BERT <-> Hugging Face ``BertForMaskedLM`` / ``BertForSequenceClassification``: ``config.json`` and state dict.

MLM parameters (``encoder``, ``mlm_head``, ``decoder_bias``) map to ``BertForMaskedLM``, classifier parameters
(``encoder``, ``pooler``, ``classifier``) to ``BertForSequenceClassification``; the decoder weight is tied to the
word embeddings on both sides. Linear weights are ``[out, in]`` there and ``[in, out]`` here, and our fused
``qkv`` kernel is Hugging Face's separate query, key and value.

**Crammed BERT** (pre-LN, gated GELU, ...) has no stock Hugging Face class: :func:`to_hf` and
:func:`config_to_hf` raise :class:`~came_jax.hf.UnsupportedLayoutError` naming exactly the features of the given
config that Hugging Face BERT cannot express (:func:`unsupported_features`) -- pre-LN blocks with a final
LayerNorm, a gated-GELU feed-forward, an MLM head without the dense + GELU + LayerNorm transform -- rather than
ship a custom modeling file (``trust_remote_code``) that would have to be kept in step with ``transformers``
releases. Features that *can* be expressed are converted exactly: no biases become zero biases, scaled
sinusoidal positions are baked into the learned position table, a missing token-type table becomes one zero row,
a missing decoder bias a zero bias. Such a model reads back (:func:`from_hf`, :func:`config_from_hf`) as the
original layout it is equal to. A crammed model's GLUE results come from :mod:`came_jax.glue`, which needs no
export.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from came_jax.data import tokenizer as tokenizer_lib
from came_jax.hf import _common
from came_jax.models import bert

_DROPOUTS = ("hidden_dropout_prob", "attention_probs_dropout_prob")
_PROBLEM_TYPES = (None, "single_label_classification", "regression")


def unsupported_features(cfg: bert.Config, *, classifier: bool = False) -> list[str]:
  """The features of ``cfg`` that Hugging Face BERT cannot express (empty: exportable).

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


def _check(cfg: bert.Config, classifier: bool) -> None:
  problems = unsupported_features(cfg, classifier=classifier)
  if problems:
    raise _common.UnsupportedLayoutError(
      "this BERT layout (crammed BERT) has no Hugging Face equivalent: "
      + "; ".join(problems)
      + ". Only the original layout (e.g. preset 'bert-base-original') exports to BertForMaskedLM / "
      "BertForSequenceClassification. (Without biases, with scaled sinusoidal positions, without token types "
      "or decoder bias would be fine: those are written as zero biases, a baked position table, a zero "
      "token-type row and a zero decoder bias.)"
    )


def _is_classifier(params: Any) -> bool:
  return params is not None and "classifier" in params


def config_to_hf(cfg: bert.Config, params: Any = None) -> dict[str, Any]:
  """The ``config.json`` of ``BertForMaskedLM``, or of ``BertForSequenceClassification`` for classifier ``params``.

  Raises:
    UnsupportedLayoutError: naming the crammed-BERT features Hugging Face BERT cannot express.
  """
  classifier = _is_classifier(params)
  _check(cfg, classifier)
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
    "id2label": {str(i): f"LABEL_{i}" for i in range(cfg.num_labels)},
    "label2id": {f"LABEL_{i}": i for i in range(cfg.num_labels)},
  }
  if classifier:
    config["problem_type"] = "regression" if cfg.num_labels == 1 else "single_label_classification"
  return config


def config_from_hf(hf_config: Mapping[str, Any]) -> bert.Config:
  """Our original-layout ``Config`` for a Hugging Face BERT ``config.json`` (absent keys: Hugging Face's defaults).

  ``num_labels`` is the size of ``id2label``. ``dtype`` and ``attention_impl`` (ours alone) keep their defaults;
  token ids do not change the model and are ignored.

  Raises:
    ValueError: naming the Hugging Face key of a feature our BERT lacks (another activation, relative positions, a
      decoder or cross-attention, an untied decoder, per-site dropout rates, multi-label problems).
  """
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
  problem = _common.expect(
    hf_config,
    "problem_type",
    _PROBLEM_TYPES,
    None,
    "our classifier is single-label (softmax) or a regression (num_labels == 1)",
  )
  dropout = _common.one_dropout_rate(hf_config, _DROPOUTS, 0.1)
  _common.expect(
    hf_config,
    "classifier_dropout",
    (None, dropout),
    None,
    f"our pooled-output dropout is the one dropout_rate ({dropout})",
  )
  num_labels = len(hf_config["id2label"]) if "id2label" in hf_config else hf_config.get("num_labels", 2)
  if problem is not None and (problem == "regression") != (num_labels == 1):
    raise ValueError(
      f"Hugging Face config problem_type={problem!r} cannot be represented with {num_labels} "
      "labels: our classifier is a regression exactly when num_labels == 1"
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


def to_hf(params: Any, cfg: bert.Config) -> dict[str, np.ndarray]:
  """Our BERT -> ``BertForMaskedLM`` (MLM parameters: ``mlm_head``) or ``BertForSequenceClassification``
  (classifier parameters: ``pooler``, ``classifier``) state dict, float32.

  The decoder weight is tied to the word embeddings and left out (Hugging Face re-ties it).

  Raises:
    UnsupportedLayoutError: naming the crammed-BERT features Hugging Face BERT cannot express.
  """
  classifier = _is_classifier(params)
  _check(cfg, classifier)
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
  """A Hugging Face ``BertForMaskedLM`` or ``BertForSequenceClassification`` state dict (original layout) -> ours.

  Returns MLM parameters (``encoder``, ``mlm_head``, ``decoder_bias``) when the state dict has ``cls.predictions``
  keys, classifier parameters (``encoder``, ``pooler``, ``classifier``) when it has ``classifier`` keys, as jax
  arrays. Values may be torch tensors or arrays. The decoder weight is taken to be tied to the word embeddings (as
  in every released BERT).

  Raises:
    ValueError: ``cfg`` is not the original layout, or the tree or shapes differ from ``cfg``'s.
  """
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
