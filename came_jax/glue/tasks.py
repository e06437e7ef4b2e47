"""The nine GLUE tasks: what each file holds, strict TSV readers, and the TFDS ``glue/<task>`` source.

Local files follow the official GLUE distribution (``<data_dir>/<TASK>/{train,dev,test}.tsv``; MNLI has
``dev_matched``/``dev_mismatched``/``test_matched``/``test_mismatched``). Its quirks are handled here, not by the
caller: CoLA train/dev have no header row (columns: source, label, original label, sentence), MRPC train/dev
begin with a UTF-8 byte-order mark, a file's last row may lack its newline, test files carry no labels and index
their rows with an ``index`` (QQP: ``id``) column. Fields are split on tabs only -- quotes are literal text (MRPC
and QNLI sentences contain unbalanced ``"``), so no csv quoting rules apply.

A row with the wrong number of fields, an unknown label or an unreadable score raises :class:`GlueFormatError`
naming the file and its 1-based line number. An absent task or split is not an error here:
:func:`load_task` raises :class:`MissingTaskError` with the reason, which the fine-tuning loop reports in the
results table.

Labels are class ids in TFDS's order (``labels[i]`` is class ``i``), so both sources give the same ids; the
label *strings* are what the GLUE server expects in a submission (``entailment``/``not_entailment`` for RTE and
QNLI, ``0``/``1`` for CoLA, SST-2, MRPC, QQP and WNLI, whose own files label that way).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Sequence

import numpy as np

# Column names of the headerless CoLA train/dev files.
_COLA_COLUMNS = ("source", "label", "original_label", "sentence")


class GlueFormatError(ValueError):
  """A malformed GLUE file; the message names the file and the 1-based line number."""


class MissingTaskError(LookupError):
  """A task (or a split it needs) is absent; the message says what is missing and where it was looked for."""


@dataclasses.dataclass(frozen=True)
class Task:
  """One GLUE task.

  Attributes:
    name: GLUE's name, also the folder and the submission file stem (``"SST-2"``).
    tfds_name: TFDS builder config (``glue/<tfds_name>``).
    text_columns: TSV header names of the one or two text fields.
    tfds_text: TFDS feature names of the same fields.
    label_column: TSV header name of the label (CoLA's headerless files use :data:`_COLA_COLUMNS`).
    labels: label strings, index = class id; None for regression (STS-B).
    metrics: metric names (see :mod:`came_jax.glue.metrics`); ``headline`` is the one shown in the table.
    evals: dev sets as ``(eval name, TSV stem, TFDS split)``; MNLI has two.
    tests: the matching test sets (same eval names, which are also the submission file stems).
    headerless: TSV stems that have no header row.
  """

  name: str
  tfds_name: str
  text_columns: tuple[str, ...]
  tfds_text: tuple[str, ...]
  label_column: str
  labels: tuple[str, ...] | None
  metrics: tuple[str, ...]
  headline: str
  evals: tuple[tuple[str, str, str], ...]
  tests: tuple[tuple[str, str, str], ...]
  headerless: tuple[str, ...] = ()

  @property
  def num_labels(self) -> int:
    """Classifier outputs: 1 for regression."""
    return 1 if self.labels is None else len(self.labels)

  @property
  def is_regression(self) -> bool:
    return self.labels is None


def _single(name, tfds_name, text, tfds_text, label, labels, metrics, headline, headerless=()):
  return Task(
    name,
    tfds_name,
    text,
    tfds_text,
    label,
    labels,
    metrics,
    headline,
    evals=((name, "dev", "validation"),),
    tests=((name, "test", "test"),),
    headerless=headerless,
  )


_BINARY = ("0", "1")
_NLI2 = ("entailment", "not_entailment")

TASKS: dict[str, Task] = {
  t.name: t
  for t in (
    Task(
      "MNLI",
      "mnli",
      ("sentence1", "sentence2"),
      ("premise", "hypothesis"),
      "gold_label",
      ("entailment", "neutral", "contradiction"),
      ("accuracy",),
      "accuracy",
      evals=(("MNLI-m", "dev_matched", "validation_matched"), ("MNLI-mm", "dev_mismatched", "validation_mismatched")),
      tests=(("MNLI-m", "test_matched", "test_matched"), ("MNLI-mm", "test_mismatched", "test_mismatched")),
    ),
    _single(
      "QQP",
      "qqp",
      ("question1", "question2"),
      ("question1", "question2"),
      "is_duplicate",
      _BINARY,
      ("f1", "accuracy"),
      "f1",
    ),
    _single(
      "QNLI", "qnli", ("question", "sentence"), ("question", "sentence"), "label", _NLI2, ("accuracy",), "accuracy"
    ),
    _single("SST-2", "sst2", ("sentence",), ("sentence",), "label", _BINARY, ("accuracy",), "accuracy"),
    _single(
      "CoLA",
      "cola",
      ("sentence",),
      ("sentence",),
      "label",
      _BINARY,
      ("matthews_corr",),
      "matthews_corr",
      headerless=("train", "dev"),
    ),
    _single(
      "STS-B",
      "stsb",
      ("sentence1", "sentence2"),
      ("sentence1", "sentence2"),
      "score",
      None,
      ("pearson", "spearman"),
      "spearman",
    ),
    _single(
      "MRPC",
      "mrpc",
      ("#1 String", "#2 String"),
      ("sentence1", "sentence2"),
      "Quality",
      _BINARY,
      ("f1", "accuracy"),
      "f1",
    ),
    _single(
      "RTE", "rte", ("sentence1", "sentence2"), ("sentence1", "sentence2"), "label", _NLI2, ("accuracy",), "accuracy"
    ),
    _single(
      "WNLI",
      "wnli",
      ("sentence1", "sentence2"),
      ("sentence1", "sentence2"),
      "label",
      _BINARY,
      ("accuracy",),
      "accuracy",
    ),
  )
}

# Accept TFDS-style and lower-case names too ("sst2", "cola", "sts-b").
_ALIASES = {**{t.tfds_name: n for n, t in TASKS.items()}, **{n.lower(): n for n in TASKS}}


def get_task(name: str) -> Task:
  """The task called ``name`` (GLUE or TFDS spelling, any case)."""
  key = name if name in TASKS else _ALIASES.get(name.lower())
  if key is None:
    raise KeyError(f"unknown GLUE task {name!r}; choose from {list(TASKS)}")
  return TASKS[key]


@dataclasses.dataclass
class Split:
  """The examples of one split: row indices (the submission's ``index``), texts, labels (None for test).

  ``labels`` are int class ids, or float scores for STS-B.
  """

  name: str
  origin: str
  index: np.ndarray
  text_a: list[str]
  text_b: list[str] | None
  labels: np.ndarray | None

  def __len__(self) -> int:
    return len(self.text_a)

  def take(self, n: int) -> "Split":
    """The first ``n`` examples (all when ``n <= 0``)."""
    if n <= 0 or n >= len(self):
      return self
    return Split(
      self.name,
      self.origin,
      self.index[:n],
      self.text_a[:n],
      None if self.text_b is None else self.text_b[:n],
      None if self.labels is None else self.labels[:n],
    )


@dataclasses.dataclass
class TaskData:
  """A task's splits: ``train``, dev sets and test sets keyed by eval name (``"CoLA"``; ``"MNLI-m"``...)."""

  task: Task
  train: Split
  evals: dict[str, Split]
  tests: dict[str, Split]


# --------------------------------------------------------------------------------------------------- TSV files


def read_tsv(
  path: str | os.PathLike, *, header: bool = True, columns: Sequence[str] | None = None
) -> tuple[list[str], list[tuple[int, list[str]]]]:
  """Reads a GLUE TSV file strictly.

  Args:
    path: the file. A leading UTF-8 byte-order mark is dropped; ``\\n`` or ``\\r\\n`` line ends; the last row
      may lack its newline, and blank lines at the end are ignored (a blank line between rows is an error).
    header: whether the first line names the columns.
    columns: column names of a headerless file.

  Returns:
    ``(column names, [(line number, fields), ...])`` with 1-based line numbers.

  Raises:
    GlueFormatError: a row (or an empty line) whose number of tab-separated fields differs from the header's,
      or text that is not UTF-8; the message names the file and line.
  """
  path = pathlib.Path(path)
  raw = path.read_bytes()
  try:
    text = raw.decode("utf-8-sig")
  except UnicodeDecodeError as e:
    line = raw[: e.start].count(b"\n") + 1
    raise GlueFormatError(f"{path}:{line}: not valid UTF-8 ({e.reason})") from None
  lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
  while lines and lines[-1] == "":
    lines.pop()  # the final newline (and blank lines after the last row)
  first = 0
  if header:
    if not lines:
      raise GlueFormatError(f"{path}:1: empty file (expected a header row)")
    names, first = lines[0].split("\t"), 1
  elif columns is not None:
    names = list(columns)
  else:
    raise ValueError("read_tsv needs header=True or the column names of a headerless file")
  rows = []
  for i in range(first, len(lines)):
    fields = lines[i].split("\t")
    if len(fields) != len(names):
      raise GlueFormatError(
        f"{path}:{i + 1}: expected {len(names)} tab-separated fields ({', '.join(names)}), found "
        f"{len(fields)}" + (" (an empty line)" if not lines[i] else "")
      )
    rows.append((i + 1, fields))
  return names, rows


def _column(names: list[str], wanted: str, path: pathlib.Path) -> int:
  if wanted not in names:
    raise GlueFormatError(f"{path}:1: no column {wanted!r} in the header {names}")
  return names.index(wanted)


def read_split(task: Task, path: str | os.PathLike, name: str, *, labeled: bool) -> Split:
  """Parses one GLUE TSV file of ``task`` into a :class:`Split`.

  ``labeled``: train/dev files (labels required) or test files (an index column, no labels).

  Raises:
    GlueFormatError: naming the file and line of the first malformed row.
  """
  path = pathlib.Path(path)
  headerless = path.stem in task.headerless
  names, rows = read_tsv(path, header=not headerless, columns=_COLA_COLUMNS if headerless else None)
  text_idx = [_column(names, c, path) for c in task.text_columns]
  if labeled:
    label_idx = _column(names, task.label_column, path)
    index_col = None
  else:
    index_col = next((names.index(c) for c in ("index", "id") if c in names), None)
    if index_col is None:
      raise GlueFormatError(f"{path}:1: a test file needs an 'index' (or 'id') column; header {names}")
  index, labels = [], []
  for row_number, (line, fields) in enumerate(rows):
    if labeled:
      value = fields[label_idx].strip()
      if task.labels is None:
        try:
          labels.append(float(value))
        except ValueError:
          raise GlueFormatError(
            f"{path}:{line}: score {value!r} in column {task.label_column!r} is not a number"
          ) from None
      elif value in task.labels:
        labels.append(task.labels.index(value))
      else:
        raise GlueFormatError(
          f"{path}:{line}: label {value!r} in column {task.label_column!r} is not one of {list(task.labels)}"
        )
      index.append(row_number)
    else:
      try:
        index.append(int(fields[index_col]))
      except ValueError:
        raise GlueFormatError(f"{path}:{line}: index {fields[index_col]!r} is not an integer") from None
  text_a = [fields[text_idx[0]] for _, fields in rows]
  text_b = [fields[text_idx[1]] for _, fields in rows] if len(text_idx) > 1 else None
  label_array = None
  if labeled:
    label_array = np.asarray(labels, np.float32 if task.is_regression else np.int32)
  return Split(name, str(path), np.asarray(index, np.int64), text_a, text_b, label_array)


def load_tsv_task(task: Task, data_dir: str | os.PathLike) -> TaskData:
  """All splits of ``task`` from ``data_dir/<TASK>/*.tsv``.

  Raises:
    MissingTaskError: the task folder, its train file or a dev file is absent (missing test files only mean no
      submission for that set: they are left out of ``TaskData.tests``).
    GlueFormatError: a malformed file.
  """
  folder = pathlib.Path(data_dir) / task.name
  if not folder.is_dir():
    raise MissingTaskError(f"no {task.name} folder in {data_dir}")
  train = folder / "train.tsv"
  if not train.is_file():
    raise MissingTaskError(f"no train split ({train} is absent)")
  evals = {}
  for eval_name, stem, _ in task.evals:
    path = folder / f"{stem}.tsv"
    if not path.is_file():
      raise MissingTaskError(f"no dev split ({path} is absent)")
    evals[eval_name] = read_split(task, path, eval_name, labeled=True)
  tests = {
    eval_name: read_split(task, folder / f"{stem}.tsv", eval_name, labeled=False)
    for eval_name, stem, _ in task.tests
    if (folder / f"{stem}.tsv").is_file()
  }
  return TaskData(task, read_split(task, train, "train", labeled=True), evals, tests)


# ------------------------------------------------------------------------------------------------------- TFDS


def _tfds_split(task: Task, source, name: str, origin: str, *, labeled: bool) -> Split:
  def text(value) -> str:
    return value if isinstance(value, str) else bytes(value).decode("utf-8")

  rows = [source[i] for i in range(len(source))]
  text_a = [text(r[task.tfds_text[0]]) for r in rows]
  text_b = [text(r[task.tfds_text[1]]) for r in rows] if len(task.tfds_text) > 1 else None
  index = np.asarray([int(r["idx"]) for r in rows], np.int64)
  labels = None
  if labeled:
    labels = np.asarray([r["label"] for r in rows], np.float32 if task.is_regression else np.int32)
  return Split(name, origin, index, text_a, text_b, labels)


def load_tfds_task(task: Task, data_dir: str | None = None, *, prepare: bool = True) -> TaskData:
  """All splits of ``task`` from TFDS ``glue/<tfds_name>`` (``builder.as_data_source``, array_record).

  ``prepare``: download and prepare the dataset when it is not in ``data_dir`` (needs internet); otherwise an
  unprepared dataset is reported missing.

  Raises:
    MissingTaskError: the dataset is not prepared (and ``prepare`` is False) or lacks the train or a dev split.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  # Registers the GLUE builder: without TensorFlow installed, TFDS does not import its text datasets itself.
  import tensorflow_datasets.text.glue  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import

  name = f"glue/{task.tfds_name}"
  builder = tfds.builder(name, data_dir=data_dir or None, file_format="array_record")
  if not builder.is_prepared():
    if not prepare:
      raise MissingTaskError(f"tfds {name} is not prepared in data_dir={data_dir!r}")
    builder.download_and_prepare(file_format="array_record")
  available = set(builder.info.splits)

  def load(split: str, eval_name: str, labeled: bool) -> Split:
    return _tfds_split(task, builder.as_data_source(split=split), eval_name, f"tfds:{name}:{split}", labeled=labeled)

  for needed in ("train", *(split for _, _, split in task.evals)):
    if needed not in available:
      raise MissingTaskError(f"tfds {name} has no {needed!r} split (has {sorted(available)})")
  evals = {eval_name: load(split, eval_name, True) for eval_name, _, split in task.evals}
  tests = {eval_name: load(split, eval_name, False) for eval_name, _, split in task.tests if split in available}
  return TaskData(task, load("train", "train", True), evals, tests)


def load_task(
  task: Task | str, *, source: str = "tsv", data_dir: str | os.PathLike | None = None, tfds_prepare: bool = True
) -> TaskData:
  """``task``'s splits from local TSV files (``source="tsv"``, ``data_dir`` the GLUE folder) or TFDS
  (``source="tfds"``, ``data_dir`` the TFDS data folder or None for TFDS's default)."""
  task = get_task(task) if isinstance(task, str) else task
  if source == "tsv":
    if data_dir is None:
      raise ValueError("source='tsv' needs data_dir, the folder holding <TASK>/{train,dev,test}.tsv")
    return load_tsv_task(task, data_dir)
  if source == "tfds":
    return load_tfds_task(task, None if data_dir is None else str(data_dir), prepare=tfds_prepare)
  raise ValueError(f"GLUE source must be 'tsv' or 'tfds', got {source!r}")
