"""Pretraining objectives: packed rows -> numpy batches with static shapes.

Each objective says how wide the packed rows it consumes are (``row_width``, ``row_stride``), which separator goes
between documents, and turns ``tokens [B, row_width]`` plus ``valid [B, row_width]`` into a batch dict. All ids
are int32, all weights float32. Randomness comes only from the ``numpy.random.Generator`` passed in, which the
pipeline seeds from ``(seed, step)`` so a resumed run sees identical batches.

Batches (B = batch size):

* ``MaskedLM``: ``input_ids``, ``attention_mask``, ``token_type_ids`` (zeros) [B,T]; ``mlm_positions``,
  ``mlm_labels``, ``mlm_weights`` [B,K] with K = round(rate*T).
* ``CausalLM``: ``input_ids``, ``labels`` (next token), ``weights`` [B,T].
* ``SpanCorruption``: ``input_ids`` [B,Ti]; ``labels`` [B,To] (sentinel 0, span 0, sentinel 1, span 1, ..., EOS;
  0-padded) and ``weights`` [B,To].

``targets`` gives the predicted ids and their weights of a batch of any of them; ``unigram_log_probs`` and
``cross_entropy`` score the best prediction that ignores the input (the targets' frequencies).
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping

import numpy as np

from came_jax.data import tokenizer as tokenizer_lib


# ----------------------------------------------------------------------------------------------------- MLM
def mask_tokens(
  input_ids: np.ndarray,
  rng: np.random.Generator,
  *,
  num_masked: int,
  mask_id: int,
  special_ids,
  random_range: tuple[int, int],
  mask_prob: float = 0.8,
  random_prob: float = 0.1,
) -> dict[str, np.ndarray]:
  """BERT masking with a fixed number of prediction slots per sequence (cramming).

  ``num_masked`` positions are drawn uniformly, without replacement, from the non-special tokens of each row
  (padding and ``[CLS]``/``[SEP]``/... never). Of those, ``mask_prob`` become ``[MASK]``, ``random_prob`` a
  uniform token from ``random_range`` and the rest stay. Rows with fewer maskable tokens than ``num_masked``
  fill the spare slots with position 0, label 0, weight 0. Valid slots come first, in increasing position.

  Returns:
    ``input_ids`` (masked copy), ``mlm_positions``, ``mlm_labels`` (int32 ``[B, K]``), ``mlm_weights``
    (float32 ``[B, K]``).
  """
  batch, length = input_ids.shape
  k = int(num_masked)
  if not 0 < k <= length:
    raise ValueError(f"num_masked={k} must be in (0, seq_len={length}]")
  maskable = ~np.isin(input_ids, np.asarray(special_ids))
  keys = rng.random((batch, length))
  keys[~maskable] = 2.0
  pos = np.argpartition(keys, k - 1, axis=1)[:, :k] if k < length else np.tile(np.arange(length), (batch, 1))
  ok = np.take_along_axis(keys, pos, axis=1) < 2.0
  order = np.argsort(np.where(ok, pos, pos + length), axis=1, kind="stable")
  pos, ok = np.take_along_axis(pos, order, axis=1), np.take_along_axis(ok, order, axis=1)
  labels = np.take_along_axis(input_ids, pos, axis=1)
  u = rng.random((batch, k))
  random_tokens = rng.integers(random_range[0], random_range[1], (batch, k))
  new = np.where(u < mask_prob, mask_id, np.where(u < mask_prob + random_prob, random_tokens, labels))
  new = np.where(ok, new, labels)
  masked = input_ids.copy()
  np.put_along_axis(masked, pos, new.astype(input_ids.dtype), axis=1)
  return {
    "input_ids": masked.astype(np.int32),
    "mlm_positions": np.where(ok, pos, 0).astype(np.int32),
    "mlm_labels": np.where(ok, labels, 0).astype(np.int32),
    "mlm_weights": ok.astype(np.float32),
  }


@dataclasses.dataclass(frozen=True)
class MaskedLM:
  """BERT/cramming MLM on packed ``[CLS] doc [SEP] doc [SEP] ... [SEP]`` sequences of length ``seq_len``.

  Each row holds ``seq_len - 2`` stream tokens (documents separated by ``[SEP]``), framed by ``[CLS]`` and a
  final ``[SEP]``. ``num_masked = round(rate * seq_len)``.
  """

  seq_len: int
  cls_id: int
  sep_id: int
  mask_id: int
  pad_id: int
  special_ids: tuple[int, ...]
  random_range: tuple[int, int]
  rate: float = 0.15

  def __post_init__(self):
    if not 0.0 < self.rate < 1.0:
      raise ValueError(f"mlm_rate={self.rate} must be in (0, 1)")
    if self.seq_len < 3:
      raise ValueError(f"seq_len={self.seq_len} is too short for MLM ([CLS] x [SEP])")

  @property
  def num_masked(self) -> int:
    return max(1, int(round(self.rate * self.seq_len)))

  row_width = property(lambda self: self.seq_len - 2)
  row_stride = property(lambda self: self.seq_len - 2)
  separator = property(lambda self: self.sep_id)

  def batch_shapes(self, batch_size: int) -> dict[str, tuple[tuple[int, ...], type]]:
    b, t, k = batch_size, self.seq_len, self.num_masked
    return {
      "input_ids": ((b, t), np.int32),
      "attention_mask": ((b, t), np.int32),
      "token_type_ids": ((b, t), np.int32),
      "mlm_positions": ((b, k), np.int32),
      "mlm_labels": ((b, k), np.int32),
      "mlm_weights": ((b, k), np.float32),
    }

  def __call__(self, tokens: np.ndarray, valid: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    batch = tokens.shape[0]
    n = valid.sum(axis=1)
    ids = np.full((batch, self.seq_len), self.pad_id, np.int32)
    ids[:, 0] = self.cls_id
    ids[:, 1:-1] = np.where(valid, tokens, self.pad_id)
    ids[np.arange(batch), n + 1] = self.sep_id
    attention = (np.arange(self.seq_len)[None, :] < (n + 2)[:, None]).astype(np.int32)
    ids = np.where(attention > 0, ids, self.pad_id)
    out = mask_tokens(
      ids,
      rng,
      num_masked=self.num_masked,
      mask_id=self.mask_id,
      special_ids=self.special_ids,
      random_range=self.random_range,
    )
    return {
      "input_ids": out["input_ids"],
      "attention_mask": attention,
      "token_type_ids": np.zeros_like(attention),
      "mlm_positions": out["mlm_positions"],
      "mlm_labels": out["mlm_labels"],
      "mlm_weights": out["mlm_weights"],
    }


# ---------------------------------------------------------------------------------------------- causal LM
@dataclasses.dataclass(frozen=True)
class CausalLM:
  """Next-token prediction on packed ``doc EOS doc EOS ...`` windows of ``seq_len + 1`` tokens, stride ``seq_len``.

  ``labels[:, t] = input_ids[:, t + 1]`` of the window, so every stream token after the first is a label once.
  """

  seq_len: int
  eos_id: int
  pad_id: int = 0

  row_width = property(lambda self: self.seq_len + 1)
  row_stride = property(lambda self: self.seq_len)
  separator = property(lambda self: self.eos_id)

  def batch_shapes(self, batch_size: int) -> dict[str, tuple[tuple[int, ...], type]]:
    shape = (batch_size, self.seq_len)
    return {"input_ids": (shape, np.int32), "labels": (shape, np.int32), "weights": (shape, np.float32)}

  def __call__(self, tokens: np.ndarray, valid: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    del rng
    tokens = np.where(valid, tokens, self.pad_id)
    return {
      "input_ids": tokens[:, :-1].astype(np.int32),
      "labels": tokens[:, 1:].astype(np.int32),
      "weights": valid[:, 1:].astype(np.float32),
    }


# ------------------------------------------------------------------------------------------ span corruption
def span_counts(length: int, noise_density: float, mean_span_length: float) -> tuple[int, int]:
  """``(num_noise_tokens, num_noise_spans)`` of ``length`` tokens, as in T5's ``random_spans_noise_mask``."""
  num_noise = min(max(int(round(length * noise_density)), 1), length - 1)
  num_spans = max(int(round(num_noise / mean_span_length)), 1)
  return num_noise, min(num_spans, num_noise, length - num_noise)


def corrupted_lengths(length: int, noise_density: float, mean_span_length: float) -> tuple[int, int]:
  """Input and target lengths (each with its EOS) after corrupting ``length`` raw tokens."""
  num_noise, num_spans = span_counts(length, noise_density, mean_span_length)
  return length - num_noise + num_spans + 1, num_noise + num_spans + 1


def random_spans_helper(
  inputs_length: int, noise_density: float = 0.15, mean_span_length: float = 3.0
) -> tuple[int, int]:
  """Raw tokens per example and target length so corrupted inputs are exactly ``inputs_length`` (T5's helper).

  Returns the largest raw length whose encoder input (non-noise tokens, one sentinel per span, EOS) has exactly
  ``inputs_length`` tokens, and the matching target length. E.g. ``random_spans_helper(512) == (568, 114)``.
  """
  if inputs_length < 3:
    raise ValueError(f"seq_len={inputs_length} is too short for span corruption")
  best = None
  for raw in range(2, 2 * inputs_length + 8):
    n_in, n_out = corrupted_lengths(raw, noise_density, mean_span_length)
    if n_in == inputs_length:
      best = (raw, n_out)
    elif n_in > inputs_length:
      break
  if best is None:
    raise ValueError(f"no raw length gives exactly seq_len={inputs_length} span-corrupted inputs")
  return best


def span_corrupt(
  tokens: np.ndarray,
  rng: np.random.Generator,
  *,
  sentinel_ids: np.ndarray,
  eos_id: int,
  noise_density: float = 0.15,
  mean_span_length: float = 3.0,
) -> tuple[np.ndarray, np.ndarray]:
  """T5 span corruption of one sequence.

  The sequence is cut into alternating non-noise / noise spans (starting with non-noise, span boundaries uniform
  as in T5's ``_random_segmentation``). Inputs: non-noise tokens with noise span ``i`` replaced by sentinel
  ``sentinel_ids[i]``, then EOS. Targets: ``sentinel_ids[i]`` followed by noise span ``i``, for every ``i``, then
  EOS. Sequences shorter than 2 tokens are not corrupted (inputs = tokens + EOS, targets = EOS).
  """
  tokens = np.asarray(tokens, np.int32)
  length = len(tokens)
  eos = np.array([eos_id], np.int32)
  if length < 2:
    return np.concatenate([tokens, eos]), eos
  num_noise, num_spans = span_counts(length, noise_density, mean_span_length)
  if num_spans > len(sentinel_ids):
    raise ValueError(f"{num_spans} noise spans need more than the {len(sentinel_ids)} sentinels")

  def segment(num_items: int) -> np.ndarray:
    cuts = np.sort(rng.choice(num_items - 1, num_spans - 1, replace=False)) + 1
    return np.diff(np.concatenate([[0], cuts, [num_items]]))

  span_lengths = np.stack([segment(length - num_noise), segment(num_noise)], axis=1).reshape(-1)
  is_noise = np.repeat(np.tile([False, True], num_spans), span_lengths)
  previous = np.concatenate([[not is_noise[0]], is_noise[:-1]])
  noise_starts = is_noise & ~previous  # first token of noise span i
  clean_starts = ~is_noise & previous  # first token of non-noise span i (which precedes noise span i)
  sentinels = np.asarray(sentinel_ids, np.int32)
  inputs = np.where(noise_starts, sentinels[np.maximum(np.cumsum(noise_starts) - 1, 0)], tokens)
  targets = np.where(clean_starts, sentinels[np.maximum(np.cumsum(clean_starts) - 1, 0)], tokens)
  return (
    np.concatenate([inputs[~is_noise | noise_starts], eos]),
    np.concatenate([targets[is_noise | clean_starts], eos]),
  )


@dataclasses.dataclass(frozen=True)
class SpanCorruption:
  """T5 span corruption of packed ``doc EOS doc EOS ...`` rows; raw row length from :func:`random_spans_helper`."""

  seq_len: int
  eos_id: int
  sentinel_ids: tuple[int, ...]
  noise_density: float = 0.15
  mean_span_length: float = 3.0
  pad_id: int = 0

  def __post_init__(self):
    raw, targets = random_spans_helper(self.seq_len, self.noise_density, self.mean_span_length)
    object.__setattr__(self, "_raw", raw)
    object.__setattr__(self, "_targets", targets)
    spans = span_counts(raw, self.noise_density, self.mean_span_length)[1]
    if spans > len(self.sentinel_ids):
      raise ValueError(
        f"seq_len={self.seq_len} gives {spans} noise spans but only "
        f"{len(self.sentinel_ids)} sentinels exist; raise num_sentinels"
      )

  row_width = property(lambda self: self._raw)
  row_stride = property(lambda self: self._raw)
  separator = property(lambda self: self.eos_id)
  targets_length = property(lambda self: self._targets, doc="Decoder length To.")

  def batch_shapes(self, batch_size: int) -> dict[str, tuple[tuple[int, ...], type]]:
    return {
      "input_ids": ((batch_size, self.seq_len), np.int32),
      "labels": ((batch_size, self._targets), np.int32),
      "weights": ((batch_size, self._targets), np.float32),
    }

  def __call__(self, tokens: np.ndarray, valid: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    batch = tokens.shape[0]
    inputs = np.full((batch, self.seq_len), self.pad_id, np.int32)
    labels = np.full((batch, self._targets), self.pad_id, np.int32)
    weights = np.zeros((batch, self._targets), np.float32)
    sentinels = np.asarray(self.sentinel_ids, np.int32)
    for b in range(batch):
      x, y = span_corrupt(
        tokens[b][valid[b]],
        rng,
        sentinel_ids=sentinels,
        eos_id=self.eos_id,
        noise_density=self.noise_density,
        mean_span_length=self.mean_span_length,
      )
      inputs[b, : len(x)] = x
      labels[b, : len(y)] = y
      weights[b, : len(y)] = 1.0
    return {"input_ids": inputs, "labels": labels, "weights": weights}


def make_objective(
  name: str,
  tokenizer,
  seq_len: int,
  *,
  mlm_rate: float = 0.15,
  noise_density: float = 0.15,
  mean_span_length: float = 3.0,
):
  """The objective called ``name`` (``mlm``, ``causal`` or ``span``) with the tokenizer's special ids.

  ``tokenizer`` is any :class:`~came_jax.data.tokenizer.TokenizerProtocol`: ours or a Hugging Face one.

  Raises:
    ValueError: naming ``objective`` for an unknown name.
    came_jax.data.tokenizer.MissingTokenError: naming the objective and the token the tokenizer lacks (``mlm``:
      ``[CLS]``, ``[SEP]``, ``[MASK]``; ``causal``: EOS; ``span``: EOS and the sentinels ``<extra_id_i>``).
  """
  if name not in ("mlm", "causal", "span"):
    raise ValueError(f"objective={name!r} is not one of 'mlm', 'causal', 'span'")
  try:
    return _make_objective(name, tokenizer, seq_len, mlm_rate, noise_density, mean_span_length)
  except tokenizer_lib.MissingTokenError as e:
    raise tokenizer_lib.MissingTokenError(f"objective={name!r} cannot run with this tokenizer: {e}") from e


def _make_objective(name, tokenizer, seq_len, mlm_rate, noise_density, mean_span_length):
  if name == "mlm":
    ids = _special_ids(tokenizer, "cls", "sep", "mask", "pad")
    return MaskedLM(
      seq_len=seq_len,
      cls_id=ids["cls"],
      sep_id=ids["sep"],
      mask_id=ids["mask"],
      pad_id=ids["pad"],
      special_ids=tuple(tokenizer.special_ids),
      random_range=tuple(tokenizer.normal_id_range),
      rate=mlm_rate,
    )
  ids = _special_ids(tokenizer, "eos", "pad")
  if name == "causal":
    return CausalLM(seq_len=seq_len, eos_id=ids["eos"], pad_id=ids["pad"])
  if not tokenizer.num_sentinels:
    raise tokenizer_lib.MissingTokenError("the tokenizer has no T5 sentinels (<extra_id_0>, <extra_id_1>, ...)")
  sentinels = tuple(tokenizer.sentinel_id(i) for i in range(tokenizer.num_sentinels))
  return SpanCorruption(
    seq_len=seq_len,
    eos_id=ids["eos"],
    sentinel_ids=sentinels,
    noise_density=noise_density,
    mean_span_length=mean_span_length,
    pad_id=ids["pad"],
  )


def _special_ids(tokenizer, *roles: str) -> dict[str, int]:
  """``{role: tokenizer.<role>_id}``; one MissingTokenError naming every role the tokenizer lacks."""
  ids, missing = {}, []
  for role in roles:
    try:
      ids[role] = getattr(tokenizer, f"{role}_id")
    except tokenizer_lib.MissingTokenError as e:
      missing.append(str(e))
  if missing:
    raise tokenizer_lib.MissingTokenError("; ".join(missing))
  return ids


# ------------------------------------------------------------------------------------------------ targets
def targets(batch: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
  """The token ids a batch of any objective here asks to predict, and their loss weights.

  ``MaskedLM``: ``mlm_labels`` and ``mlm_weights`` (the masked positions only); ``CausalLM`` and
  ``SpanCorruption``: ``labels`` and ``weights``.

  >>> batch = CausalLM(seq_len=3, eos_id=1)(np.array([[7, 8, 9, 1]]), np.ones((1, 4), bool), None)
  >>> ids, weights = targets(batch)
  >>> ids.tolist(), weights.tolist()
  ([[8, 9, 1]], [[1.0, 1.0, 1.0]])
  """
  if "mlm_labels" in batch:
    return batch["mlm_labels"], batch["mlm_weights"]
  return batch["labels"], batch["weights"]


def unigram_log_probs(batches: Iterable[Mapping[str, np.ndarray]], vocab_size: int) -> np.ndarray:
  """Log-frequencies ``[vocab_size]`` of the weighted targets of ``batches``, add-one smoothed.

  The best prediction that ignores the input: a model near its loss has learnt which tokens are common, not yet
  how to use their context.

  >>> batch = {"labels": np.array([[2, 2, 3]]), "weights": np.array([[1.0, 1.0, 0.0]])}
  >>> np.exp(unigram_log_probs([batch], vocab_size=4)).round(3).tolist()  # counts 1 + (0, 0, 2, 0)
  [0.167, 0.167, 0.5, 0.167]
  """
  counts = np.ones(vocab_size)
  for batch in batches:
    ids, weights = targets(batch)
    np.add.at(counts, ids.ravel(), weights.ravel())
  return np.log(counts / counts.sum())


def cross_entropy(log_probs: np.ndarray, batches: Iterable[Mapping[str, np.ndarray]]) -> float:
  """Weighted mean negative log-probability of the targets of ``batches`` under fixed per-id ``log_probs``.

  >>> batch = {"labels": np.array([[0, 1]]), "weights": np.array([[1.0, 1.0]])}
  >>> round(cross_entropy(np.log([0.5, 0.25, 0.25]), [batch]), 4)  # (ln 2 + ln 4) / 2
  1.0397
  """
  nll = total = 0.0
  for batch in batches:
    ids, weights = targets(batch)
    nll -= float((log_probs[ids] * weights).sum())
    total += float(weights.sum())
  return nll / total
