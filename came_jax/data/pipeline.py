"""The pretraining and held-out batch iterators, built from plain arguments or a config's ``data`` section.

Batch ``k`` of the pretraining stream is a pure function of ``(seed, k)``: sample position ``p = k * B + j``
is row ``perm_e[p mod N]`` of epoch ``e = p // N`` (``perm_e`` a permutation of the ``N`` packed rows seeded by
``(seed, e)``; a batch may straddle an epoch boundary, so no row is dropped), and the objective's randomness is
seeded by ``(seed, k)``. The iterator's state is therefore just ``k``: ``get_state()`` returns a small JSON dict,
``set_state`` restores it, and a resumed run sees the identical batch stream. Batches are built ahead in a
background thread (bounded queue).

With several processes (multi-host training), process ``i`` of ``n`` yields rows ``[i * B / n, (i + 1) * B / n)``
of each global batch of ``B`` rows: the union over processes is exactly the one-process batch, with no overlap,
whatever ``n``. The objective draws its randomness for the whole global batch (so that this holds for every
objective), which every process does alike: a process builds the global batch and keeps its rows. So the host work
per process does not shrink with more processes (about 4 ms for a 128 x 128 MLM batch on a 2-core CPU); an objective
seeded per row would divide it too, at the price of a different stream.

Example (``cfg`` a ``ConfigDict`` from :func:`default_config`)::

    tok = build_tokenizer(cfg, workdir)                      # loads workdir/tokenizer or trains and saves it
    train_it = from_config(cfg, tok, max_len=model.max_len)  # infinite, prefetched
    batch = next(train_it); state = train_it.get_state()     # put state in the checkpoint
    eval_batches = eval_from_config(cfg, tok)                # finite, deterministic, re-iterable
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import queue
import threading
import weakref

import ml_collections
import numpy as np

from came_jax.data import objectives as objectives_lib
from came_jax.data import sources as sources_lib
from came_jax.data import token_cache
from came_jax.data import tokenizer as tokenizer_lib
from came_jax.data.packing import PackedRows

_OBJECTIVE_RNG_TAG = 0x0B1E
_EPOCH_RNG_TAG = 0x5EED


def default_config() -> ml_collections.ConfigDict:
  """The ``data`` section of an experiment config, with every default.

  Keys: ``source`` ('local' | 'tfds'), ``path`` (folder, glob or file; 'local'), ``tfds_name``, ``tfds_data_dir``,
  ``tfds_split``, ``text_key`` ('tfds'), ``eval_path`` (WikiText ``*.tokens`` file; '' = no held-out set),
  ``eval_batches`` (0 = the whole file), ``seq_len``, ``batch_size``, ``objective`` ('mlm' | 'causal' | 'span'),
  ``mlm_rate``, ``noise_density``, ``mean_span_length``, ``vocab_size``, ``num_sentinels``, ``lowercase``,
  ``tokenizer_sentences`` (training sample), ``seed``, ``cache_dir`` ('' = ``$CAME_JAX_CACHE`` or
  ``~/.cache/came_jax``), ``prefetch`` (batches built ahead).
  """
  return ml_collections.ConfigDict(
    dict(
      source="local",
      path="",
      tfds_name="",
      tfds_data_dir="",
      tfds_split="train",
      text_key="text",
      eval_path="",
      eval_batches=0,
      seq_len=128,
      batch_size=32,
      objective="mlm",
      mlm_rate=0.15,
      noise_density=0.15,
      mean_span_length=3.0,
      vocab_size=32768,
      num_sentinels=100,
      lowercase=False,
      tokenizer_sentences=200_000,
      seed=0,
      cache_dir="",
      prefetch=2,
    )
  )


class PretrainIterator:
  """Infinite, seeded, resumable batch stream over packed rows, prefetched in a background thread.

  Args:
    rows: packed rows (width and separator matching ``objective``).
    objective: a callable ``(tokens, valid, rng) -> batch`` from ``objectives.py``.
    batch_size: rows per batch.
    seed: seeds the per-epoch row permutation and the objective's randomness.
    prefetch: batches built ahead (0: build on demand in the caller's thread).
    process_index, process_count: this process yields its slice of each global batch of ``batch_size`` rows
      (see the module docstring); ``batch_size`` must be divisible by ``process_count``.
  """

  def __init__(
    self,
    rows: PackedRows,
    objective,
    batch_size: int,
    seed: int,
    prefetch: int = 2,
    process_index: int = 0,
    process_count: int = 1,
  ):
    if batch_size <= 0:
      raise ValueError(f"batch_size={batch_size} must be positive")
    self.rows, self.objective, self.batch_size = rows, objective, int(batch_size)
    self.process_index, self.process_count = _check_process(batch_size, process_index, process_count)
    self.seed, self.prefetch = int(seed), int(prefetch)
    self._step = 0
    self._perms: dict[int, np.ndarray] = {}
    self._perm_lock = threading.Lock()
    self._thread: threading.Thread | None = None
    self._queue: queue.Queue | None = None
    self._stop = threading.Event()
    key = json.dumps(
      [rows.corpus.content_hash, rows.width, rows.stride, rows.separator, repr(objective), self.batch_size, self.seed]
    )
    self.fingerprint = hashlib.sha256(key.encode()).hexdigest()[:16]

  # ------------------------------------------------------------------------------------------ batches
  @property
  def num_rows(self) -> int:
    return self.rows.num_rows

  @property
  def steps_per_epoch(self) -> float:
    return self.rows.num_rows / self.batch_size

  def batch_shapes(self) -> dict:
    """``{name: (shape, dtype)}`` of every batch this process yields (its slice of the global batch)."""
    return self.objective.batch_shapes(self.batch_size // self.process_count)

  def batch_at(self, step: int) -> dict[str, np.ndarray]:
    """This process's rows of batch number ``step`` of the stream (pure: same arguments, same batch)."""
    return _process_slice(self.global_batch_at(step), self.process_index, self.process_count)

  def global_batch_at(self, step: int) -> dict[str, np.ndarray]:
    """Batch number ``step`` of the stream, all ``batch_size`` rows."""
    positions = int(step) * self.batch_size + np.arange(self.batch_size, dtype=np.int64)
    epochs, index = np.divmod(positions, self.rows.num_rows)
    row_ids = np.empty_like(index)
    for e in np.unique(epochs):
      sel = epochs == e
      row_ids[sel] = self._permutation(int(e))[index[sel]]
    tokens, valid = self.rows.rows(row_ids)
    rng = np.random.default_rng([self.seed, int(step), _OBJECTIVE_RNG_TAG])
    return self.objective(tokens, valid, rng)

  def _permutation(self, epoch: int) -> np.ndarray:
    with self._perm_lock:
      if epoch not in self._perms:
        if len(self._perms) >= 2:
          self._perms.pop(min(self._perms))
        rng = np.random.default_rng([self.seed, epoch, _EPOCH_RNG_TAG])
        self._perms[epoch] = rng.permutation(self.rows.num_rows)
      return self._perms[epoch]

  # ---------------------------------------------------------------------------------- iteration/state
  def __iter__(self) -> "PretrainIterator":
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if self.prefetch <= 0:
      batch = self.batch_at(self._step)
    else:
      if self._thread is None:
        self._start()
      step, batch = self._queue.get()
      if isinstance(batch, BaseException):
        self._thread = None
        raise batch
      assert step == self._step, (step, self._step)
    self._step += 1
    return batch

  def get_state(self) -> dict:
    """JSON-serialisable position: the next batch to be returned (prefetched batches are not counted)."""
    done = self._step * self.batch_size
    return {
      "step": self._step,
      "epoch": done // self.rows.num_rows,
      "rows_into_epoch": done % self.rows.num_rows,
      "fingerprint": self.fingerprint,
    }

  def set_state(self, state: dict) -> None:
    """Continues from ``state`` (from :meth:`get_state`).

    Raises:
      ValueError: when ``state`` came from an iterator over other data, objective, batch size or seed.
    """
    if state.get("fingerprint", self.fingerprint) != self.fingerprint:
      raise ValueError(
        f"iterator state fingerprint {state['fingerprint']} does not match this data pipeline "
        f"({self.fingerprint}): data, tokenizer, seq_len, objective, batch_size or seed changed"
      )
    self.close()
    self._step = int(state["step"])

  def close(self) -> None:
    """Stops the prefetch thread (restarted on the next ``next``)."""
    if self._thread is not None:
      self._stop.set()
      while self._thread.is_alive():
        try:
          self._queue.get(timeout=0.05)
        except queue.Empty:
          pass
      self._thread.join()
    self._thread, self._queue = None, None
    self._stop = threading.Event()

  def _start(self) -> None:
    self._queue = queue.Queue(maxsize=self.prefetch)
    # The thread holds only a weak reference, so an abandoned iterator is collected and its thread ends.
    self._thread = threading.Thread(
      target=_produce,
      args=(weakref.ref(self), self._step, self._queue, self._stop),
      name="came_jax-data-prefetch",
      daemon=True,
    )
    self._thread.start()

  def __del__(self):
    try:
      self.close()
    except Exception:  # interpreter shutdown
      pass


def _produce(ref, step: int, out: queue.Queue, stop: threading.Event) -> None:
  """Prefetch loop: puts ``(step, batch)`` for step, step + 1, ... until ``stop`` or the iterator is gone."""
  while not stop.is_set():
    it = ref()
    if it is None:
      return
    try:
      item = (step, it.batch_at(step))
    except BaseException as err:  # handed to the consumer
      item = (step, err)
    del it
    while not stop.is_set():
      try:
        out.put(item, timeout=0.1)
        break
      except queue.Full:
        if ref() is None:
          return
    if isinstance(item[1], BaseException):
      return
    step += 1


class EvalBatches:
  """Finite, deterministic batches over every packed row in source order; re-iterable.

  The last batch is filled with empty rows whose weights are 0, so shapes stay static. With several processes,
  each yields its slice of every batch, as :class:`PretrainIterator` does.
  """

  def __init__(
    self,
    rows: PackedRows,
    objective,
    batch_size: int,
    seed: int = 0,
    max_batches: int = 0,
    process_index: int = 0,
    process_count: int = 1,
  ):
    self.rows, self.objective, self.batch_size, self.seed = rows, objective, int(batch_size), int(seed)
    self.process_index, self.process_count = _check_process(batch_size, process_index, process_count)
    total = -(-rows.num_rows // self.batch_size)
    self.num_batches = min(total, max_batches) if max_batches > 0 else total

  def __len__(self) -> int:
    return self.num_batches

  def __iter__(self):
    for i in range(self.num_batches):
      yield self.batch_at(i)

  def batch_at(self, i: int) -> dict[str, np.ndarray]:
    return _process_slice(self.global_batch_at(i), self.process_index, self.process_count)

  def global_batch_at(self, i: int) -> dict[str, np.ndarray]:
    ids = i * self.batch_size + np.arange(self.batch_size)
    real = ids < self.rows.num_rows
    tokens, valid = self.rows.rows(np.where(real, ids, 0))
    valid &= real[:, None]
    batch = self.objective(tokens, valid, np.random.default_rng([self.seed, i, _OBJECTIVE_RNG_TAG]))
    for name in batch:
      if name.endswith("weights"):
        batch[name] = batch[name] * real[:, None].astype(np.float32)
    return batch

  def batch_shapes(self) -> dict:
    return self.objective.batch_shapes(self.batch_size // self.process_count)


def _check_process(batch_size: int, index: int, count: int) -> tuple[int, int]:
  if count < 1 or not 0 <= index < count:
    raise ValueError(f"process_index={index} must lie in [0, process_count={count})")
  if batch_size % count:
    raise ValueError(f"batch_size={batch_size} is not divisible by process_count={count}")
  return int(index), int(count)


def _process_slice(batch: dict[str, np.ndarray], index: int, count: int) -> dict[str, np.ndarray]:
  """Rows ``[index * B / count, (index + 1) * B / count)`` of every array (all of them for one process)."""
  if count == 1:
    return batch
  n = next(iter(batch.values())).shape[0] // count
  return {k: np.ascontiguousarray(v[index * n : (index + 1) * n]) for k, v in batch.items()}


# ----------------------------------------------------------------------------------------------- builders
def pretrain_iterator(
  source,
  tokenizer,
  *,
  seq_len: int,
  batch_size: int,
  objective: str = "mlm",
  mlm_rate: float = 0.15,
  noise_density: float = 0.15,
  mean_span_length: float = 3.0,
  seed: int = 0,
  cache_dir: str | os.PathLike | None = None,
  max_len: int | None = None,
  prefetch: int = 2,
  process_index: int = 0,
  process_count: int = 1,
) -> PretrainIterator:
  """The pretraining iterator over ``source`` (tokenized once, cached in ``cache_dir``); with ``process_count > 1``
  it yields this process's rows of each batch of ``batch_size``.

  Raises:
    ValueError: naming ``seq_len`` when it exceeds the model's ``max_len``, ``objective`` when unknown,
      ``batch_size`` when not positive.
  """
  obj = _objective(tokenizer, seq_len, objective, mlm_rate, noise_density, mean_span_length, max_len)
  corpus = token_cache.tokenize_source(source, tokenizer, cache_dir)
  rows = PackedRows(
    corpus,
    width=obj.row_width,
    stride=obj.row_stride,
    separator=obj.separator,
    shuffle_seed=seed,
    pad_id=tokenizer.pad_id,
  )
  return PretrainIterator(
    rows, obj, batch_size, seed, prefetch=prefetch, process_index=process_index, process_count=process_count
  )


def eval_batches(
  source,
  tokenizer,
  *,
  seq_len: int,
  batch_size: int,
  objective: str = "mlm",
  mlm_rate: float = 0.15,
  noise_density: float = 0.15,
  mean_span_length: float = 3.0,
  seed: int = 0,
  cache_dir: str | os.PathLike | None = None,
  max_len: int | None = None,
  max_batches: int = 0,
  process_index: int = 0,
  process_count: int = 1,
) -> EvalBatches:
  """Held-out batches over ``source`` in its own order (documents not shuffled); ``max_batches=0`` = all."""
  if batch_size <= 0:
    raise ValueError(f"batch_size={batch_size} must be positive")
  obj = _objective(tokenizer, seq_len, objective, mlm_rate, noise_density, mean_span_length, max_len)
  corpus = token_cache.tokenize_source(source, tokenizer, cache_dir)
  rows = PackedRows(
    corpus,
    width=obj.row_width,
    stride=obj.row_stride,
    separator=obj.separator,
    shuffle_seed=None,
    pad_id=tokenizer.pad_id,
  )
  return EvalBatches(rows, obj, batch_size, seed, max_batches, process_index=process_index, process_count=process_count)


def make_source(cfg: ml_collections.ConfigDict):
  """The training text source named by ``cfg.source``.

  Raises:
    ValueError: naming ``source``/``path``/``tfds_name`` when missing or unknown; the path when it has no text.
  """
  if cfg.source == "local":
    if not cfg.path:
      raise ValueError("data.path is empty (data.source='local' needs a folder, glob or file)")
    return sources_lib.LocalTextSource(cfg.path)
  if cfg.source == "tfds":
    if not cfg.tfds_name:
      raise ValueError("data.tfds_name is empty (data.source='tfds' needs a dataset name)")
    return sources_lib.TfdsTextSource(
      cfg.tfds_name, data_dir=cfg.tfds_data_dir or None, split=cfg.tfds_split, text_key=cfg.text_key
    )
  raise ValueError(f"data.source={cfg.source!r} is not one of 'local', 'tfds'")


def build_tokenizer(cfg: ml_collections.ConfigDict, workdir: str | os.PathLike, source=None):
  """``workdir/tokenizer`` if saved there (resume), else trained on ``source`` (default: the config's) and saved.

  Raises:
    ValueError: naming ``vocab_size`` when too large for the text or when it disagrees with the saved tokenizer.
  """
  directory = pathlib.Path(workdir) / "tokenizer"
  if tokenizer_lib.Tokenizer.exists(directory):
    return tokenizer_lib.load_or_train(directory, [], vocab_size=cfg.vocab_size, lowercase=cfg.lowercase)
  source = make_source(cfg) if source is None else source
  order = np.random.default_rng(cfg.seed).permutation(len(source))
  documents = (source[int(i)] for i in order)
  return tokenizer_lib.load_or_train(
    directory,
    documents,
    vocab_size=cfg.vocab_size,
    lowercase=cfg.lowercase,
    num_sentinels=cfg.num_sentinels,
    max_sentences=cfg.tokenizer_sentences,
    seed=cfg.seed,
  )


def from_config(
  cfg: ml_collections.ConfigDict,
  tokenizer,
  *,
  max_len: int | None = None,
  source=None,
  process_index: int = 0,
  process_count: int = 1,
) -> PretrainIterator:
  """:func:`pretrain_iterator` from a ``data`` config section (see :func:`default_config`)."""
  _check_vocab(cfg, tokenizer)
  return pretrain_iterator(
    make_source(cfg) if source is None else source,
    tokenizer,
    seq_len=cfg.seq_len,
    batch_size=cfg.batch_size,
    objective=cfg.objective,
    mlm_rate=cfg.mlm_rate,
    noise_density=cfg.noise_density,
    mean_span_length=cfg.mean_span_length,
    seed=cfg.seed,
    cache_dir=_cache_dir(cfg),
    max_len=max_len,
    prefetch=cfg.prefetch,
    process_index=process_index,
    process_count=process_count,
  )


def eval_from_config(
  cfg: ml_collections.ConfigDict,
  tokenizer,
  *,
  max_len: int | None = None,
  batch_size: int | None = None,
  process_index: int = 0,
  process_count: int = 1,
) -> EvalBatches | None:
  """:func:`eval_batches` over ``cfg.eval_path`` (WikiText articles); ``None`` when ``eval_path`` is ''."""
  if not cfg.eval_path:
    return None
  _check_vocab(cfg, tokenizer)
  return eval_batches(
    sources_lib.wikitext_articles(cfg.eval_path),
    tokenizer,
    seq_len=cfg.seq_len,
    batch_size=batch_size or cfg.batch_size,
    objective=cfg.objective,
    mlm_rate=cfg.mlm_rate,
    noise_density=cfg.noise_density,
    mean_span_length=cfg.mean_span_length,
    seed=cfg.seed,
    cache_dir=_cache_dir(cfg),
    max_len=max_len,
    max_batches=cfg.eval_batches,
    process_index=process_index,
    process_count=process_count,
  )


def _objective(tokenizer, seq_len, objective, mlm_rate, noise_density, mean_span_length, max_len):
  if seq_len <= 0:
    raise ValueError(f"seq_len={seq_len} must be positive")
  if max_len is not None and seq_len > max_len:
    raise ValueError(f"seq_len={seq_len} exceeds the model's max_len={max_len}")
  return objectives_lib.make_objective(
    objective, tokenizer, seq_len, mlm_rate=mlm_rate, noise_density=noise_density, mean_span_length=mean_span_length
  )


def _check_vocab(cfg, tokenizer) -> None:
  if cfg.vocab_size != tokenizer.vocab_size:
    raise ValueError(f"data.vocab_size={cfg.vocab_size} but the tokenizer has vocab_size={tokenizer.vocab_size}")


def _cache_dir(cfg) -> pathlib.Path:
  if cfg.cache_dir:
    return pathlib.Path(cfg.cache_dir)
  root = os.environ.get("CAME_JAX_CACHE") or pathlib.Path.home() / ".cache" / "came_jax"
  return pathlib.Path(root) / "tokens"
