"""Export to Hugging Face: GPT-2, T5 v1.1 and original-layout BERT as folders that ``transformers`` loads.

``export(params, cfg, out_dir, tokenizer=...)`` (or ``export_run(RUN_DIR, out_dir)`` for a pretraining run, or
``python -m experiments.export_hf --workdir RUN_DIR --out HF_DIR``) writes:

* ``config.json``: ``GPT2LMHeadModel``, ``T5ForConditionalGeneration``, ``BertForMaskedLM`` (MLM parameters) or
  ``BertForSequenceClassification`` (GLUE classifier parameters), written as plain JSON (no ``transformers``
  needed to export);
* ``model.safetensors``: float32 weights under Hugging Face names; tied copies are left out where Hugging Face
  re-ties them (GPT-2 ``lm_head``, BERT's decoder), T5's untied ``lm_head`` is kept;
* the tokenizer: ``tokenizer.model`` (our SentencePiece model, byte fallback included) and
  ``tokenizer_config.json`` for ``transformers``' ``SentencePieceBackend`` (``AutoTokenizer`` loads it). Its ids
  are ours: 0 ``<pad>``, 1 ``</s>`` (EOS, GPT-2's end of text), 2 ``<unk>``, 3 ``[CLS]``, 4 ``[SEP]``,
  5 ``[MASK]``, then byte and learned pieces, and T5 sentinel ``<extra_id_i>`` at ``vocab_size - 1 - i``
  (listed as added tokens). Plain text encodes to the same ids as :class:`came_jax.data.tokenizer.Tokenizer`;
  whitespace next to a literal special-token string may differ (Hugging Face splits text on special tokens).

The weight conversions live here: :func:`gpt2_to_hf_state_dict` and :func:`bert_to_hf_state_dict` (inverses of
``from_hf_state_dict`` in ``came_jax.models.gpt2``/``bert``); T5 uses ``came_jax.models.t5.to_hf_state_dict``.
Logits of the loaded model equal ours to a relative error below 1e-4 in float32 (``tests/test_export.py``).
Loading a T5 export, ``transformers`` 5 warns that ``shared.weight`` and ``lm_head.weight`` differ and will not be
tied: that is intended (it forces ``tie_word_embeddings=True`` on every T5 config, and this is how it keeps the
untied T5.1.1 head, as for Google's released checkpoints).

**Crammed BERT** (pre-LN, gated GELU, ...) has no stock Hugging Face class, and we raise
:class:`UnsupportedLayoutError` naming exactly the features of the given config that ``BertForMaskedLM`` cannot
express -- pre-LN blocks with a final LayerNorm, a gated-GELU feed-forward, an MLM head without the dense + GELU +
LayerNorm transform -- rather than ship a custom modeling file (``trust_remote_code``) that would have to be kept
in step with ``transformers`` releases. Features that *can* be expressed are converted exactly: no biases become
zero biases, scaled sinusoidal positions are baked into the learned position table, a missing token-type table
becomes one zero row, a missing decoder bias a zero bias. A crammed model's GLUE results come from
:mod:`came_jax.glue`, which needs no export.
"""

from __future__ import annotations

import json
import pathlib
import tempfile
from typing import Any

import jax
import numpy as np

from came_jax.data import tokenizer as tokenizer_lib
from came_jax.models import bert, gpt2, t5


class UnsupportedLayoutError(ValueError):
    """The model's layout has no Hugging Face equivalent; the message names the features that prevent it."""


def _np(x) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x, np.float32))


def model_name_of(cfg: Any) -> str:
    """"bert", "gpt2" or "t5" for a model ``Config``."""
    for name, module in (("bert", bert), ("gpt2", gpt2), ("t5", t5)):
        if isinstance(cfg, module.Config):
            return name
    raise TypeError(f"not a came_jax model Config: {type(cfg).__name__}")


# ----------------------------------------------------------------------------------------------------- GPT-2


def gpt2_to_hf_state_dict(params, cfg: gpt2.Config) -> dict[str, np.ndarray]:
    """Our GPT-2 parameters -> ``GPT2LMHeadModel`` state dict (``lm_head`` omitted: tied to ``wte``).

    HF's ``Conv1D`` stores ``[in, out]`` like our kernels, so nothing is transposed.
    """
    sd = {"transformer.wte.weight": _np(params["wte"]["embedding"]),
          "transformer.wpe.weight": _np(params["wpe"]["embedding"])}

    def dense(prefix, p):
        sd[f"{prefix}.weight"], sd[f"{prefix}.bias"] = _np(p["kernel"]), _np(p["bias"])

    def norm(prefix, p):
        sd[f"{prefix}.weight"], sd[f"{prefix}.bias"] = _np(p["scale"]), _np(p["bias"])

    for i in range(cfg.num_layers):
        layer, h = params[f"layers_{i}"], f"transformer.h.{i}"
        norm(f"{h}.ln_1", layer["attention_norm"])
        dense(f"{h}.attn.c_attn", layer["attention"]["qkv"])
        dense(f"{h}.attn.c_proj", layer["attention"]["out"])
        norm(f"{h}.ln_2", layer["mlp_norm"])
        dense(f"{h}.mlp.c_fc", layer["mlp"]["wi"])
        dense(f"{h}.mlp.c_proj", layer["mlp"]["wo"])
    norm("transformer.ln_f", params["final_norm"])
    return sd


def _gpt2_config(cfg: gpt2.Config) -> dict[str, Any]:
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": cfg.vocab_size, "n_positions": cfg.max_len, "n_embd": cfg.hidden_dim,
        "n_layer": cfg.num_layers, "n_head": cfg.num_heads, "n_inner": cfg.ffn_dim,
        "activation_function": "gelu_new",  # tanh GELU, as ours
        "resid_pdrop": cfg.dropout_rate, "embd_pdrop": cfg.dropout_rate, "attn_pdrop": cfg.dropout_rate,
        "layer_norm_epsilon": cfg.layer_norm_eps, "initializer_range": cfg.init_std,
        "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
        "bos_token_id": tokenizer_lib.EOS_ID, "eos_token_id": tokenizer_lib.EOS_ID,
        "pad_token_id": tokenizer_lib.PAD_ID, "tie_word_embeddings": True,
    }


# -------------------------------------------------------------------------------------------------------- BERT


def bert_unsupported_features(cfg: bert.Config, *, classifier: bool = False) -> list[str]:
    """The features of ``cfg`` that Hugging Face BERT cannot express (empty: exportable)."""
    problems = []
    if cfg.pre_ln:
        problems.append("pre-LN blocks with a final LayerNorm (pre_ln=True; Hugging Face BERT is post-LN)")
    if cfg.glu:
        problems.append(f"gated-GELU feed-forward (glu=True: wi is [d, 2*ffn_dim] = [{cfg.hidden_dim}, "
                        f"{2 * cfg.ffn_dim}], gelu(gate) * x; Hugging Face BERT has a plain GELU MLP)")
    if not classifier and not cfg.head_transform:
        problems.append("no MLM head transform (head_transform=False; BertForMaskedLM always applies dense + "
                        "GELU + LayerNorm before the decoder)")
    return problems


def _check_bert(cfg: bert.Config, classifier: bool) -> None:
    problems = bert_unsupported_features(cfg, classifier=classifier)
    if problems:
        raise UnsupportedLayoutError(
            "this BERT layout (crammed BERT) has no Hugging Face equivalent: " + "; ".join(problems)
            + ". Only the original layout (e.g. preset 'bert-base-original') exports to BertForMaskedLM / "
            "BertForSequenceClassification. (Without biases, with scaled sinusoidal positions, without token types "
            "or decoder bias would be fine: those are written as zero biases, a baked position table, a zero "
            "token-type row and a zero decoder bias.)")


def bert_to_hf_state_dict(params, cfg: bert.Config) -> dict[str, np.ndarray]:
    """Our original-layout BERT -> ``BertForMaskedLM`` (MLM parameters: ``mlm_head``) or
    ``BertForSequenceClassification`` (classifier parameters: ``pooler``, ``classifier``) state dict.

    The decoder weight is tied to the word embeddings and left out (Hugging Face re-ties it).

    Raises:
      UnsupportedLayoutError: naming the crammed-BERT features Hugging Face BERT cannot express.
    """
    classifier = "classifier" in params
    _check_bert(cfg, classifier)
    d = cfg.hidden_dim
    enc, emb = params["encoder"], params["encoder"]["embeddings"]
    sd: dict[str, np.ndarray] = {}

    def dense(prefix, p, out_dim):
        sd[f"{prefix}.weight"] = _np(p["kernel"]).T.copy()
        sd[f"{prefix}.bias"] = _np(p["bias"]) if "bias" in p else np.zeros(out_dim, np.float32)

    def norm(prefix, p):
        sd[f"{prefix}.weight"], sd[f"{prefix}.bias"] = _np(p["scale"]), _np(p["bias"])

    e = "bert.embeddings"
    sd[f"{e}.word_embeddings.weight"] = _np(emb["word_embeddings"]["embedding"])
    if cfg.position_embedding == "learned":
        sd[f"{e}.position_embeddings.weight"] = _np(emb["position_embeddings"]["embedding"])
    else:  # scaled sinusoidal: a fixed table times one learned scalar, baked into the learned table
        table = bert._sinusoids(cfg.max_len, d)  # pylint: disable=protected-access
        sd[f"{e}.position_embeddings.weight"] = _np(table * _np(emb["position_scale"]))
    sd[f"{e}.token_type_embeddings.weight"] = (_np(emb["token_type_embeddings"]["embedding"]) if cfg.type_vocab_size
                                               else np.zeros((1, d), np.float32))
    norm(f"{e}.LayerNorm", emb["norm"])
    for i in range(cfg.num_layers):
        layer, p = enc[f"layers_{i}"], f"bert.encoder.layer.{i}"
        qkv = layer["attention"]["qkv"]
        kernel = _np(qkv["kernel"])
        bias = _np(qkv["bias"]) if "bias" in qkv else np.zeros(3 * d, np.float32)
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
        sd["cls.predictions.bias"] = (_np(params["decoder_bias"]) if cfg.decoder_bias
                                      else np.zeros(cfg.vocab_size, np.float32))
    return sd


def _bert_config(cfg: bert.Config, classifier: bool) -> dict[str, Any]:
    config = {
        "architectures": ["BertForSequenceClassification" if classifier else "BertForMaskedLM"],
        "model_type": "bert",
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_dim, "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads, "intermediate_size": cfg.ffn_dim, "hidden_act": "gelu",
        "hidden_dropout_prob": cfg.dropout_rate, "attention_probs_dropout_prob": cfg.dropout_rate,
        "max_position_embeddings": cfg.max_len, "type_vocab_size": max(cfg.type_vocab_size, 1),
        "layer_norm_eps": cfg.layer_norm_eps, "initializer_range": cfg.init_std,
        "pad_token_id": tokenizer_lib.PAD_ID, "tie_word_embeddings": True,
    }
    if classifier:
        config["id2label"] = {str(i): f"LABEL_{i}" for i in range(cfg.num_labels)}
        config["label2id"] = {f"LABEL_{i}": i for i in range(cfg.num_labels)}
        config["problem_type"] = "regression" if cfg.num_labels == 1 else "single_label_classification"
    return config


# ---------------------------------------------------------------------------------------------------------- T5


def _t5_config(cfg: t5.Config) -> dict[str, Any]:
    return {
        "architectures": ["T5ForConditionalGeneration"], "model_type": "t5",
        "vocab_size": cfg.vocab_size, "d_model": cfg.d_model, "d_kv": cfg.d_kv, "d_ff": cfg.d_ff,
        "num_layers": cfg.num_layers, "num_decoder_layers": cfg.n_decoder_layers, "num_heads": cfg.num_heads,
        "relative_attention_num_buckets": cfg.relative_attention_num_buckets,
        "relative_attention_max_distance": cfg.relative_attention_max_distance,
        "dropout_rate": cfg.dropout_rate, "layer_norm_epsilon": cfg.layer_norm_epsilon,
        "feed_forward_proj": "gated-gelu",
        # T5.1.1: an untied head and no d_model**-0.5 rescaling before it; transformers reads this flag as
        # "do not rescale" and keeps the separate lm_head.weight found in the checkpoint.
        "tie_word_embeddings": False,
        "pad_token_id": cfg.pad_id, "decoder_start_token_id": cfg.decoder_start_id,
        "eos_token_id": tokenizer_lib.EOS_ID, "is_encoder_decoder": True,
    }


# ------------------------------------------------------------------------------------------------- the folder


def hf_state_dict(params, cfg: Any) -> dict[str, np.ndarray]:
    """Hugging Face state dict (float32 numpy) for any of our models."""
    name = model_name_of(cfg)
    if name == "gpt2":
        return gpt2_to_hf_state_dict(params, cfg)
    if name == "bert":
        return bert_to_hf_state_dict(params, cfg)
    return {k: _np(v) for k, v in t5.to_hf_state_dict(params, cfg).items()}


def hf_config(params, cfg: Any) -> dict[str, Any]:
    """The ``config.json`` content for our model (``params`` tells a BERT classifier from an MLM model)."""
    name = model_name_of(cfg)
    if name == "gpt2":
        config = _gpt2_config(cfg)
    elif name == "bert":
        config = _bert_config(cfg, "classifier" in params)
    else:
        config = _t5_config(cfg)
    return {**config, "dtype": "float32"}


def save_tokenizer(tokenizer: tokenizer_lib.Tokenizer, out_dir: str | pathlib.Path, *, max_len: int | None) -> None:
    """``tokenizer.model`` + ``tokenizer_config.json`` (``SentencePieceBackend``, our special ids, sentinels).

    ``Tokenizer.load(out_dir / "tokenizer.model")`` reads it back (with the default 100 sentinels; the count is
    also recorded under ``came_jax`` in ``tokenizer_config.json``).
    """
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:  # Tokenizer.save writes tokenizer.model (+ our tokenizer.json)
        (out / "tokenizer.model").write_bytes((tokenizer.save(tmp) / "tokenizer.model").read_bytes())

    def token(content):
        return {"content": content, "special": True, "lstrip": False, "rstrip": False, "normalized": False,
                "single_word": False}

    specials = {tokenizer_lib.PAD_ID: "<pad>", tokenizer_lib.EOS_ID: "</s>", tokenizer_lib.UNK_ID: "<unk>",
                tokenizer_lib.CLS_ID: "[CLS]", tokenizer_lib.SEP_ID: "[SEP]", tokenizer_lib.MASK_ID: "[MASK]"}
    added = {str(i): token(p) for i, p in specials.items()}
    # Sentinels are appended after the SentencePiece pieces, <extra_id_{S-1}> first, so <extra_id_i> = V - 1 - i.
    for i in reversed(range(tokenizer.num_sentinels)):
        added[str(tokenizer.sentinel_id(i))] = token(f"<extra_id_{i}>")
    config = {
        "tokenizer_class": "SentencePieceBackend",
        "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>", "cls_token": "[CLS]",
        "sep_token": "[SEP]", "mask_token": "[MASK]",
        "added_tokens_decoder": added,
        "came_jax": {"vocab_size": tokenizer.vocab_size, "num_sentinels": tokenizer.num_sentinels,
                     "lowercase": tokenizer.lowercase, "fingerprint": tokenizer.fingerprint,
                     "ids": {v: k for k, v in specials.items()},
                     "sentinel_id": "vocab_size - 1 - i for <extra_id_i>"},
    }
    if max_len:
        config["model_max_length"] = max_len
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2))


def export(params, cfg: Any, out_dir: str | pathlib.Path, *,
           tokenizer: tokenizer_lib.Tokenizer | None = None) -> pathlib.Path:
    """Writes a Hugging Face folder for ``params`` of the model described by ``cfg`` (see the module docstring).

    Raises:
      UnsupportedLayoutError: a crammed-BERT layout (naming the features).
      ValueError: the tokenizer's vocabulary size differs from the model's.
    """
    from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top

    params = jax.tree.map(np.asarray, jax.device_get(params))
    state_dict = hf_state_dict(params, cfg)
    config = hf_config(params, cfg)
    if tokenizer is not None and tokenizer.vocab_size != cfg.vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} ids but the model's vocab_size is "
                         f"{cfg.vocab_size}")
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(state_dict, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(config, indent=2))
    if tokenizer is not None:
        save_tokenizer(tokenizer, out, max_len=getattr(cfg, "max_len", None))
    return out


def export_run(run_dir: str | pathlib.Path, out_dir: str | pathlib.Path, step: int | None = None) -> pathlib.Path:
    """Exports the checkpoint ``step`` (default: latest) of the pretraining run in ``run_dir``, tokenizer included.

    Raises:
      UnsupportedLayoutError: the run is a crammed BERT.
    """
    from came_jax import pretrained  # pylint: disable=g-import-not-at-top

    run = pretrained.load(run_dir, step)
    if run.model_name == "bert":
        _check_bert(run.model_cfg, classifier=False)  # before anything is written
    return export(run.params, run.model_cfg, out_dir, tokenizer=run.tokenizer)
