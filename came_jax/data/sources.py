"""Text sources: random-access sequences of documents (strings).

* :class:`LocalTextSource` — a folder (recursive), a glob, or one file; one document per file.
* :class:`TfdsTextSource` — a TFDS dataset by name, read through ``as_data_source`` (array_record; no TensorFlow).
* :class:`InMemorySource` and :func:`wikitext_articles` — held-out evaluation text, WikiText lines grouped
  into articles at their `` = Title = `` headings.

Every source has ``len``, ``[i] -> str``, a ``name``, and a ``fingerprint`` that changes when its content may
have changed (it keys the token cache). Bytes that are not UTF-8 are replaced by U+FFFD and counted in
``stats()['undecodable_bytes']``; they are never fatal.
"""

from __future__ import annotations

import codecs
import glob as globlib
import hashlib
import logging
import os
import pathlib
import re
import threading
from typing import Sequence

_BINARY_SNIFF_BYTES = 8192
_WIKITEXT_TITLE = re.compile(r"^ = [^=].* = $")


def decode_text(data: bytes) -> tuple[str, int]:
  """UTF-8 text of ``data`` (a leading BOM dropped) and the number of undecodable bytes replaced by U+FFFD."""
  if data.startswith(b"\xef\xbb\xbf"):
    data = data[3:]
  _replaced.count = 0
  text = data.decode("utf-8", errors=_REPLACE_AND_COUNT)
  return text, _replaced.count


_replaced = threading.local()
_REPLACE_AND_COUNT = "came_jax.replace_and_count"


def _replace_and_count(err: UnicodeDecodeError) -> tuple[str, int]:
  _replaced.count += err.end - err.start
  return "\ufffd", err.end


codecs.register_error(_REPLACE_AND_COUNT, _replace_and_count)


class _Stats:
  """Thread-safe counts of documents read and bytes replaced."""

  def __init__(self):
    self._lock = threading.Lock()
    self._bad: dict[int, int] = {}

  def record(self, index: int, bad: int) -> None:
    with self._lock:
      self._bad[index] = bad

  def as_dict(self) -> dict:
    with self._lock:
      return {
        "documents_read": len(self._bad),
        "undecodable_bytes": sum(self._bad.values()),
        "documents_with_undecodable_bytes": sum(1 for b in self._bad.values() if b),
      }


class LocalTextSource(Sequence[str]):
  """Text files, one document per file: a folder (searched recursively), a glob (``**`` allowed) or a file.

  Hidden files and binary files (a NUL byte in the first 8 KiB) are skipped. Files are sorted by path.

  Raises:
    ValueError: naming the path when it matches no file, or when no matched file holds any text.
  """

  def __init__(self, path: str | os.PathLike):
    self.path = str(path)
    p = pathlib.Path(self.path).expanduser()
    if p.is_dir():
      candidates = [
        f for f in p.rglob("*") if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts)
      ]
    elif p.is_file():
      candidates = [p]
    else:
      candidates = [pathlib.Path(f) for f in globlib.glob(str(p), recursive=True)]  # skips hidden names
      candidates = [f for f in candidates if f.is_file()]
      if not candidates:
        raise ValueError(f"corpus path {self.path!r} matches no file (not a folder, a file or a glob with matches)")
    files = sorted(candidates)
    if not files:
      raise ValueError(f"corpus path {self.path!r} holds no files")
    self.files: list[pathlib.Path] = []
    self.skipped_binary: list[pathlib.Path] = []
    has_text = False
    for f in files:
      head = f.open("rb").read(_BINARY_SNIFF_BYTES)
      if b"\x00" in head:
        self.skipped_binary.append(f)
        continue
      self.files.append(f)
      has_text = has_text or bool(head.strip())
    if not self.files or not has_text:
      raise ValueError(
        f"corpus path {self.path!r} has no text: {len(files)} file(s), "
        f"{len(self.skipped_binary)} binary, the rest empty"
      )
    if self.skipped_binary:
      logging.warning(
        "%s: skipped %d binary file(s), e.g. %s", self.path, len(self.skipped_binary), self.skipped_binary[0]
      )
    self._stats = _Stats()

  @property
  def name(self) -> str:
    return f"local:{self.path}"

  @property
  def fingerprint(self) -> str:
    h = hashlib.sha256()
    for f in self.files:
      st = f.stat()
      h.update(f"{f.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]

  def __len__(self) -> int:
    return len(self.files)

  def __getitem__(self, i):  # type: ignore[override]
    if isinstance(i, slice):
      return [self[j] for j in range(*i.indices(len(self)))]
    text, bad = decode_text(self.files[i].read_bytes())
    self._stats.record(i if i >= 0 else i + len(self), bad)
    if bad:
      logging.info("%s: replaced %d undecodable byte(s)", self.files[i], bad)
    return text

  def stats(self) -> dict:
    """Counts over the documents read so far: documents_read, undecodable_bytes, ..._with_undecodable_bytes."""
    return self._stats.as_dict()


class TfdsTextSource(Sequence[str]):
  """A TFDS dataset split read with ``builder.as_data_source`` (array_record random access; TensorFlow not needed).

  Args:
    name: registered builder name, e.g. ``"wikipedia/20230601.en"`` or a local ``GeneratorBasedBuilder``'s name.
    data_dir: TFDS data folder.
    split: split name or slice (``"train[:1%]"``).
    text_key: the feature holding the text.
    prepare: call ``download_and_prepare(file_format="array_record")`` when the split is missing. Local builders
      prepare offline; a dataset that needs a download fails on a machine without internet, with TFDS's error.
    manual_dir: TFDS ``manual_dir`` (``dl_manager.manual_dir``) for builders that read files placed by hand.
  """

  def __init__(
    self,
    name: str,
    data_dir: str | os.PathLike | None = None,
    split: str = "train",
    text_key: str = "text",
    prepare: bool = True,
    manual_dir: str | os.PathLike | None = None,
  ):
    import tensorflow_datasets as tfds

    if not name:
      raise ValueError("data.tfds_name is empty")
    self._tfds_name, self.split, self.text_key = name, split, text_key
    self.data_dir = None if data_dir is None else str(data_dir)
    builder = tfds.builder(name, data_dir=self.data_dir, file_format="array_record")
    if not builder.is_prepared():
      if not prepare:
        raise ValueError(f"tfds dataset {name!r} is not prepared in data_dir={self.data_dir!r}")
      config = tfds.download.DownloadConfig(manual_dir=None if manual_dir is None else str(manual_dir))
      builder.download_and_prepare(file_format="array_record", download_config=config)
    self._builder = builder
    self._ds = builder.as_data_source(split=split)
    if len(self._ds) == 0:
      raise ValueError(f"tfds dataset {name!r} split {split!r} in {self.data_dir!r} is empty")
    self._stats = _Stats()

  @property
  def name(self) -> str:
    return f"tfds:{self._tfds_name}:{self.split}"

  @property
  def fingerprint(self) -> str:
    info = self._builder.info
    key = f"{info.full_name}\0{self.split}\0{self.text_key}\0{self._builder.data_dir}\0{len(self._ds)}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]

  def __len__(self) -> int:
    return len(self._ds)

  def __getitem__(self, i):  # type: ignore[override]
    if isinstance(i, slice):
      return [self[j] for j in range(*i.indices(len(self)))]
    if not -len(self) <= i < len(self):
      raise IndexError(f"document {i} out of range [0, {len(self)})")
    value = self._ds[i][self.text_key]
    if isinstance(value, str):
      return value
    text, bad = decode_text(bytes(value))
    self._stats.record(i if i >= 0 else i + len(self), bad)
    return text

  def stats(self) -> dict:
    return self._stats.as_dict()


class InMemorySource(Sequence[str]):
  """A list of documents already in memory (held-out articles, tests)."""

  def __init__(self, documents: Sequence[str], name: str = "memory", undecodable_bytes: int = 0):
    self._docs = list(documents)
    self._name = name
    self._undecodable = undecodable_bytes
    if not any(d.strip() for d in self._docs):
      raise ValueError(f"source {name!r} has no text")

  @property
  def name(self) -> str:
    return self._name

  @property
  def fingerprint(self) -> str:
    h = hashlib.sha256()
    for d in self._docs:
      h.update(hashlib.sha256(d.encode("utf-8", "surrogatepass")).digest())
    return h.hexdigest()[:16]

  def __len__(self) -> int:
    return len(self._docs)

  def __getitem__(self, i):  # type: ignore[override]
    return self._docs[i]

  def stats(self) -> dict:
    return {"documents_read": len(self._docs), "undecodable_bytes": self._undecodable}


def wikitext_articles(path: str | os.PathLike) -> InMemorySource:
  """WikiText ``*.tokens`` lines grouped into articles: a new article starts at each `` = Title = `` line.

  Sub-headings (`` = = Section = = ``) stay inside their article. Blank lines are dropped; the article keeps its
  title line. Returns an :class:`InMemorySource` named after the file.

  Raises:
    ValueError: naming the path when the file holds no article.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise ValueError(f"held-out path {str(path)!r} is not a file")
  text, bad = decode_text(path.read_bytes())
  articles: list[list[str]] = []
  for line in text.splitlines():
    if _WIKITEXT_TITLE.match(line):
      articles.append([])
    if not line.strip():
      continue
    if not articles:
      articles.append([])
    articles[-1].append(line.strip())
  docs = ["\n".join(a) for a in articles if a]
  if not docs:
    raise ValueError(f"held-out path {str(path)!r} has no text")
  return InMemorySource(docs, name=f"wikitext:{path.resolve()}", undecodable_bytes=bad)
