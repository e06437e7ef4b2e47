"""Configuration of came_jax's BERT (``model_type="came_bert"``) for Hugging Face ``transformers``.

Shipped next to ``config.json`` in folders exported by ``came_jax.export`` and loaded with
``trust_remote_code=True``; it imports only ``transformers``. The fields are those of ``came_jax.models.bert.Config``
under the same names (Hugging Face's usual names, ``hidden_size`` and the like, are aliases), so that every crammed
or original layout is one config: pre-LN or post-LN blocks, biases or none, gated-GELU or GELU feed-forward, learned
or scaled sinusoidal positions, token types or none, an MLM head transform and decoder bias or none.
"""

from transformers import PretrainedConfig


class CameBertConfig(PretrainedConfig):
  """came_jax BERT sizes and layout; the defaults are crammed BERT ``base``.

  Args:
    vocab_size, hidden_dim, num_layers, num_heads: sizes.
    ffn_dim: width entering the feed-forward output projection (with ``glu`` the input projection is twice this).
    max_len: number of positions.
    type_vocab_size: token-type vocabulary; 0 = no token-type embedding (``token_type_ids`` are ignored).
    pre_ln: pre-LN blocks plus a final LayerNorm (crammed); False = post-LN (original BERT).
    use_bias: biases in the attention and feed-forward linear layers and in the MLM head's dense layer (the
      classification pooler and classifier always have biases).
    glu: gated-GELU feed-forward, ``gelu(gate) * x`` with ``(x, gate)`` the two halves of ``wi``'s output.
    position_embedding: "learned" or "scaled_sinusoidal" (fixed sinusoids times one learned scalar).
    decoder_bias: a bias on the MLM decoder (tied to the word embeddings).
    head_transform: dense + GELU + LayerNorm before the MLM decoder.
    dropout_rate: dropout on embeddings, residual branches, attention probabilities and the pooled output.
    layer_norm_eps, init_std: LayerNorm epsilon; std of the normal initialisation of weights and embeddings.
    **kwargs: ``PretrainedConfig``'s (``id2label`` sets the number of classifier outputs; 1 = regression).
  """

  model_type = "came_bert"
  attribute_map = {
    "hidden_size": "hidden_dim",
    "num_hidden_layers": "num_layers",
    "num_attention_heads": "num_heads",
    "intermediate_size": "ffn_dim",
    "max_position_embeddings": "max_len",
    "initializer_range": "init_std",
  }

  def __init__(
    self,
    vocab_size=32768,
    hidden_dim=768,
    num_layers=16,
    num_heads=12,
    ffn_dim=1536,
    max_len=512,
    type_vocab_size=0,
    pre_ln=True,
    use_bias=False,
    glu=True,
    position_embedding="learned",
    decoder_bias=False,
    head_transform=True,
    dropout_rate=0.0,
    layer_norm_eps=1e-12,
    init_std=0.02,
    **kwargs,
  ):
    if hidden_dim % num_heads:
      raise ValueError(f"hidden_dim={hidden_dim} not divisible by num_heads={num_heads}")
    if position_embedding not in ("learned", "scaled_sinusoidal"):
      raise ValueError(f"position_embedding must be 'learned' or 'scaled_sinusoidal': {position_embedding!r}")
    super().__init__(**kwargs)
    self.vocab_size = vocab_size
    self.hidden_dim = hidden_dim
    self.num_layers = num_layers
    self.num_heads = num_heads
    self.ffn_dim = ffn_dim
    self.max_len = max_len
    self.type_vocab_size = type_vocab_size
    self.pre_ln = pre_ln
    self.use_bias = use_bias
    self.glu = glu
    self.position_embedding = position_embedding
    self.decoder_bias = decoder_bias
    self.head_transform = head_transform
    self.dropout_rate = dropout_rate
    self.layer_norm_eps = layer_norm_eps
    self.init_std = init_std
