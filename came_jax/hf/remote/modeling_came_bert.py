"""came_jax's BERT in PyTorch for Hugging Face ``transformers``: crammed BERT and every other layout of its config.

Shipped with ``configuration_came_bert.py`` in folders exported by ``came_jax.export`` (``config.json`` maps the
Auto classes here through ``auto_map``) and loaded with ``trust_remote_code=True``::

  from transformers import AutoModelForMaskedLM
  model = AutoModelForMaskedLM.from_pretrained("exported_folder", trust_remote_code=True)

It imports only ``torch`` and ``transformers`` and computes what ``came_jax.models.bert`` computes, layer by layer:

* embeddings: word + position (a learned table, or fixed sinusoids -- sin on even, cos on odd channels -- times one
  learned scalar ``position_scale``) + token type (when ``type_vocab_size > 0``), LayerNorm, dropout;
* blocks: pre-LN ``x + drop(attn(LN(x)))``, ``x + drop(mlp(LN(x)))`` with a final LayerNorm after the last block,
  or post-LN ``LN(x + drop(attn(x)))``, ``LN(x + drop(mlp(x)))``; attention has one fused ``qkv`` projection
  (columns query|key|value, then heads) and masks padded keys (``attention_mask`` 1 = token, 0 = padding); the
  feed-forward is ``wo(gelu(wi(x)))`` or, gated, ``wo(gelu(gate) * x)`` with ``(x, gate)`` the halves of ``wi(x)``;
  GELU is the exact (erf) one;
* masked LM: optional head transform (dense, GELU, LayerNorm), then the decoder tied to the word embeddings
  (computed from them, so it has no weight of its own) plus an optional bias. Logits cover every position
  ``[B, T, V]``; came_jax's sparse prediction at the masked positions only is a training-time saving;
* classification: pooler (dense + tanh on the first token), dropout, linear classifier; ``num_labels == 1`` is a
  regression.

Weight names mirror came_jax's parameter tree (``encoder.layers.0.attention.qkv.weight`` is
``params["encoder"]["layers_0"]["attention"]["qkv"]["kernel"].T``).
"""

import functools
import math

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput, MaskedLMOutput, SequenceClassifierOutput

try:  # transformers >= 5: initialisers that leave weights loaded from a checkpoint alone
  from transformers import initialization as init
except ImportError:
  from torch.nn import init

from .configuration_came_bert import CameBertConfig


@functools.lru_cache(maxsize=8)
def _sinusoids(length: int, dim: int) -> torch.Tensor:
  """Vaswani et al. (2017) sinusoids ``[length, dim]``, sin on even and cos on odd channels, float32 on the CPU."""
  pos = torch.arange(length, dtype=torch.float64)[:, None]
  inv = torch.exp(torch.arange(0, dim, 2, dtype=torch.float64) * (-math.log(10000.0) / dim))
  table = torch.zeros(length, dim, dtype=torch.float64)
  table[:, 0::2] = torch.sin(pos * inv)
  table[:, 1::2] = torch.cos(pos * inv)
  return table.float()


class CameBertEmbeddings(nn.Module):
  """Word (+ position) (+ token type) embeddings, LayerNorm, dropout."""

  def __init__(self, config: CameBertConfig):
    super().__init__()
    self.config = config
    d = config.hidden_dim
    self.word_embeddings = nn.Embedding(config.vocab_size, d)
    if config.position_embedding == "learned":
      self.position_embeddings = nn.Embedding(config.max_len, d)
    else:
      self.position_scale = nn.Parameter(torch.full((1,), d**-0.5))
    if config.type_vocab_size:
      self.token_type_embeddings = nn.Embedding(config.type_vocab_size, d)
    self.norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
    self.dropout = nn.Dropout(config.dropout_rate)

  def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
    config, t = self.config, input_ids.shape[1]
    if t > config.max_len:
      raise ValueError(f"sequence length {t} exceeds max_len={config.max_len}")
    x = self.word_embeddings(input_ids)
    if config.position_embedding == "learned":
      x = x + self.position_embeddings.weight[:t]
    else:
      x = x + self.position_scale * _sinusoids(t, config.hidden_dim).to(device=x.device, dtype=x.dtype)
    if config.type_vocab_size:
      types = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
      x = x + self.token_type_embeddings(types)
    return self.dropout(self.norm(x))


class CameBertAttention(nn.Module):
  """Self-attention with one fused ``qkv`` projection, padded keys masked."""

  def __init__(self, config: CameBertConfig):
    super().__init__()
    d = config.hidden_dim
    self.num_heads = config.num_heads
    self.dropout_rate = config.dropout_rate
    self.qkv = nn.Linear(d, 3 * d, bias=config.use_bias)
    self.out = nn.Linear(d, d, bias=config.use_bias)

  def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``x``: ``[B, T, d]``; ``mask``: additive ``[B, 1, 1, T]`` (0 or the dtype's minimum) or None."""
    b, t, d = x.shape
    q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
    dropout = self.dropout_rate if self.training else 0.0
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
    return self.out(out.transpose(1, 2).reshape(b, t, d))


class CameBertMlp(nn.Module):
  """``wo(gelu(wi(x)))``, or gated: ``wo(gelu(gate) * x)`` with ``wi`` projecting to ``2 * ffn_dim``."""

  def __init__(self, config: CameBertConfig):
    super().__init__()
    self.glu = config.glu
    width = 2 * config.ffn_dim if config.glu else config.ffn_dim
    self.wi = nn.Linear(config.hidden_dim, width, bias=config.use_bias)
    self.wo = nn.Linear(config.ffn_dim, config.hidden_dim, bias=config.use_bias)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    h = self.wi(x)
    if self.glu:
      h, gate = h.chunk(2, dim=-1)
      return self.wo(F.gelu(gate) * h)
    return self.wo(F.gelu(h))


class CameBertLayer(nn.Module):
  """Attention + feed-forward with residuals, pre-LN or post-LN."""

  def __init__(self, config: CameBertConfig):
    super().__init__()
    self.pre_ln = config.pre_ln
    self.attention = CameBertAttention(config)
    self.attention_norm = nn.LayerNorm(config.hidden_dim, eps=config.layer_norm_eps)
    self.mlp = CameBertMlp(config)
    self.mlp_norm = nn.LayerNorm(config.hidden_dim, eps=config.layer_norm_eps)
    self.dropout = nn.Dropout(config.dropout_rate)

  def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if self.pre_ln:
      x = x + self.dropout(self.attention(self.attention_norm(x), mask))
      return x + self.dropout(self.mlp(self.mlp_norm(x)))
    x = self.attention_norm(x + self.dropout(self.attention(x, mask)))
    return self.mlp_norm(x + self.dropout(self.mlp(x)))


class CameBertPreTrainedModel(PreTrainedModel):
  """Weight initialisation as came_jax's: normal(``init_std``) weights and embeddings, zero biases, unit
  LayerNorms, ``position_scale = hidden_dim ** -0.5``."""

  config_class = CameBertConfig
  base_model_prefix = "encoder"
  _no_split_modules = ["CameBertLayer"]

  def _init_weights(self, module: nn.Module) -> None:
    std = self.config.init_std
    if isinstance(module, (nn.Linear, nn.Embedding)):
      init.normal_(module.weight, mean=0.0, std=std)
      if getattr(module, "bias", None) is not None:
        init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
      init.ones_(module.weight)
      init.zeros_(module.bias)
    elif isinstance(module, CameBertEmbeddings) and hasattr(module, "position_scale"):
      init.constant_(module.position_scale, self.config.hidden_dim**-0.5)
    elif isinstance(module, CameBertForMaskedLM) and module.decoder_bias is not None:
      init.zeros_(module.decoder_bias)


class CameBertModel(CameBertPreTrainedModel):
  """The encoder: embeddings, blocks and (pre-LN) a final LayerNorm. ``last_hidden_state`` is ``[B, T, d]``;
  ``hidden_states`` (``output_hidden_states=True``) are the embeddings' output and each block's. Loaded from a
  masked LM's or a classifier's folder, it leaves their heads out."""

  _keys_to_ignore_on_load_unexpected = [r"^mlm_head\.", r"^decoder_bias$", r"^pooler\.", r"^classifier\."]

  def __init__(self, config: CameBertConfig):
    super().__init__(config)
    self.embeddings = CameBertEmbeddings(config)
    self.layers = nn.ModuleList([CameBertLayer(config) for _ in range(config.num_layers)])
    self.final_norm = nn.LayerNorm(config.hidden_dim, eps=config.layer_norm_eps) if config.pre_ln else None
    self.post_init()

  def get_input_embeddings(self) -> nn.Embedding:
    return self.embeddings.word_embeddings

  def set_input_embeddings(self, value: nn.Embedding) -> None:
    self.embeddings.word_embeddings = value

  def forward(
    self,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    token_type_ids: torch.Tensor | None = None,
    output_hidden_states: bool | None = None,
    return_dict: bool | None = None,
  ) -> BaseModelOutput | tuple:
    x = self.embeddings(input_ids, token_type_ids)
    mask = None
    if attention_mask is not None:  # keys only: padded queries still attend to the tokens, as in came_jax
      keep = attention_mask.to(torch.bool)[:, None, None, :]
      mask = torch.zeros(keep.shape, dtype=x.dtype, device=x.device).masked_fill(~keep, torch.finfo(x.dtype).min)
    hidden = [x] if output_hidden_states else None
    for layer in self.layers:
      x = layer(x, mask)
      if hidden is not None:
        hidden.append(x)
    if self.final_norm is not None:
      x = self.final_norm(x)
    out = BaseModelOutput(last_hidden_state=x, hidden_states=tuple(hidden) if hidden is not None else None)
    return out if _return_dict(self.config, return_dict) else out.to_tuple()


class CameBertMlmHead(nn.Module):
  """The MLM head transform: dense, GELU, LayerNorm."""

  def __init__(self, config: CameBertConfig):
    super().__init__()
    self.dense = nn.Linear(config.hidden_dim, config.hidden_dim, bias=config.use_bias)
    self.norm = nn.LayerNorm(config.hidden_dim, eps=config.layer_norm_eps)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.norm(F.gelu(self.dense(x)))


class CameBertForMaskedLM(CameBertPreTrainedModel):
  """Encoder, optional head transform, decoder tied to the word embeddings (+ optional bias). ``logits``:
  ``[B, T, V]``; with ``labels`` ``[B, T]`` (-100 = not predicted) the mean cross-entropy is ``loss``."""

  def __init__(self, config: CameBertConfig):
    super().__init__(config)
    self.encoder = CameBertModel(config)
    self.mlm_head = CameBertMlmHead(config) if config.head_transform else None
    self.decoder_bias = nn.Parameter(torch.zeros(config.vocab_size)) if config.decoder_bias else None
    self.post_init()

  def forward(
    self,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    token_type_ids: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    output_hidden_states: bool | None = None,
    return_dict: bool | None = None,
  ) -> MaskedLMOutput | tuple:
    enc = self.encoder(input_ids, attention_mask, token_type_ids, output_hidden_states, return_dict=True)
    h = enc.last_hidden_state if self.mlm_head is None else self.mlm_head(enc.last_hidden_state)
    logits = F.linear(h, self.encoder.embeddings.word_embeddings.weight, self.decoder_bias)
    loss = None
    if labels is not None:
      loss = F.cross_entropy(logits.view(-1, logits.shape[-1]).float(), labels.view(-1), ignore_index=-100)
    out = MaskedLMOutput(loss=loss, logits=logits, hidden_states=enc.hidden_states)
    return out if _return_dict(self.config, return_dict) else out.to_tuple()


class CameBertForSequenceClassification(CameBertPreTrainedModel):
  """Encoder, pooler (dense + tanh on the first token), dropout, classifier. ``logits``: ``[B, num_labels]``; with
  ``labels`` the loss of ``config.problem_type`` as Hugging Face's classifiers compute it (regression: mean squared
  error for ``num_labels == 1``; single-label: cross-entropy; multi-label: binary cross-entropy)."""

  def __init__(self, config: CameBertConfig):
    super().__init__(config)
    self.num_labels = config.num_labels
    self.encoder = CameBertModel(config)
    self.pooler = nn.Linear(config.hidden_dim, config.hidden_dim)
    self.dropout = nn.Dropout(config.dropout_rate)
    self.classifier = nn.Linear(config.hidden_dim, config.num_labels)
    self.post_init()

  def forward(
    self,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    token_type_ids: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    output_hidden_states: bool | None = None,
    return_dict: bool | None = None,
  ) -> SequenceClassifierOutput | tuple:
    enc = self.encoder(input_ids, attention_mask, token_type_ids, output_hidden_states, return_dict=True)
    pooled = torch.tanh(self.pooler(enc.last_hidden_state[:, 0]))
    logits = self.classifier(self.dropout(pooled))
    loss = None
    if labels is not None:
      problem = self.config.problem_type
      if problem is None:
        if self.num_labels == 1:
          problem = "regression"
        elif labels.dtype in (torch.long, torch.int):
          problem = "single_label_classification"
        else:
          problem = "multi_label_classification"
      if problem == "regression":
        loss = F.mse_loss(logits.squeeze(-1) if self.num_labels == 1 else logits, labels.to(logits.dtype))
      elif problem == "single_label_classification":
        loss = F.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
      else:
        loss = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
    out = SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=enc.hidden_states)
    return out if _return_dict(self.config, return_dict) else out.to_tuple()


def _return_dict(config: CameBertConfig, return_dict: bool | None) -> bool:
  return config.return_dict if return_dict is None else return_dict
