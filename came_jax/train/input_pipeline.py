"""What the loop needs from `came_jax.data`: tokenizer, micro-batch stream, held-out batches, stacking.

The data iterator yields micro-batches of `config.data.batch_size` sequences. At each step the host pulls as
many as the batch-size ramp asks for and stacks them into a fixed `[max_micro, micro_batch, ...]` array (unused
slots are zeros the step never computes), so the jitted step always sees one shape. With several processes each
pulls only its rows of every micro-batch (`process_index`/`process_count`); the trainer assembles global arrays.
"""

from __future__ import annotations

import pathlib
from typing import Any, Optional

import ml_collections
import numpy as np

from came_jax.data import pipeline, throughput
from came_jax.data import tokenizer as tokenizer_lib


def make_tokenizer(
  config: ml_collections.ConfigDict, workdir: str, init_tokenizer: Optional[tokenizer_lib.TokenizerProtocol] = None
) -> tokenizer_lib.TokenizerProtocol:
  """`WORKDIR/tokenizer`: `init_tokenizer` (the one `config.init_from` brings), saved there on the first start;
  else loaded on resume, else copied from `config.tokenizer_path`, else trained and saved.

  Raises:
    ValueError: `WORKDIR/tokenizer` holds another tokenizer than `init_tokenizer`.
  """
  target = pathlib.Path(workdir) / "tokenizer"
  if init_tokenizer is not None:
    if not target.is_dir():
      init_tokenizer.save(target)
    saved = tokenizer_lib.load(target)
    if saved.fingerprint != init_tokenizer.fingerprint:
      raise ValueError(f"{target} holds another tokenizer than config.init_from={config.init_from!r} brings.")
    return init_tokenizer
  if config.tokenizer_path and not tokenizer_lib.Tokenizer.exists(target):
    source = pathlib.Path(config.tokenizer_path)
    if not tokenizer_lib.Tokenizer.exists(source):
      raise ValueError(f"config.tokenizer_path={config.tokenizer_path!r} holds no saved tokenizer.")
    tokenizer_lib.Tokenizer.load(source).save(target)
  return pipeline.build_tokenizer(config.data, workdir)


def make_train_iterator(
  config: ml_collections.ConfigDict,
  tokenizer,
  max_len: Optional[int] = None,
  *,
  process_index: int = 0,
  process_count: int = 1,
):
  """The resumable micro-batch stream (`get_state`/`set_state`): this process's rows of each micro-batch."""
  return pipeline.from_config(
    config.data, tokenizer, max_len=max_len, process_index=process_index, process_count=process_count
  )


def build_rate(train_iter, num_batches: int = 8) -> float:
  """Tokens/s at which the (single) prefetch thread can build `train_iter`'s batches; its position is kept."""
  return throughput.build_rate(train_iter, num_batches)


def make_eval_batches(
  config: ml_collections.ConfigDict,
  tokenizer,
  max_len: Optional[int] = None,
  *,
  process_index: int = 0,
  process_count: int = 1,
):
  """Re-iterable held-out batches (`config.data.eval_path`; this process's rows), or None without a held-out set."""
  return pipeline.eval_from_config(
    config.data, tokenizer, max_len=max_len, process_index=process_index, process_count=process_count
  )


class MicroBatchStacker:
  """Stacks `n <= max_micro` micro-batches into fixed `[max_micro, ...]` arrays, zero-filling the rest.

  Args:
    shapes: `{name: (shape, dtype)}` of one micro-batch.
    max_micro: micro-batches per optimizer step at the end of the batch-size ramp.
  """

  def __init__(self, shapes: dict[str, tuple[tuple[int, ...], Any]], max_micro: int):
    self.shapes, self.max_micro = shapes, int(max_micro)

  def stack(self, micro_batches: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    n = len(micro_batches)
    if not 0 < n <= self.max_micro:
      raise ValueError(f"{n} micro-batches for a step of at most {self.max_micro}")
    out = {}
    for name, (shape, dtype) in self.shapes.items():
      arr = np.zeros((self.max_micro, *shape), dtype)
      for i, mb in enumerate(micro_batches):
        arr[i] = mb[name]
      out[name] = arr
    return out
