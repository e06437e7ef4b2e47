"""GLUE TSV readers: strict, on the real files; absent tasks and splits are missing, not crashes; malformed rows
name their file and line; MNLI's and QQP's layouts; the TFDS fields we assume."""

import numpy as np
import pytest

from came_jax.glue import report, tasks

TASKS_HERE = ("CoLA", "MRPC", "RTE", "SST-2", "STS-B", "WNLI")  # the tasks with all three splits in glue_dir


@pytest.mark.parametrize("name", TASKS_HERE)
def test_reads_every_real_task(glue_dir, glue_counts, name):
  data = tasks.load_task(name, data_dir=glue_dir)
  train, dev, test = glue_counts[name]
  assert len(data.train) == train and len(data.evals[name]) == dev and len(data.tests[name]) == test
  task = data.task
  assert (data.train.text_b is None) == (len(task.text_columns) == 1)
  np.testing.assert_array_equal(data.tests[name].index, np.arange(test))  # GLUE test files index 0..n-1
  assert data.tests[name].labels is None
  for split in (data.train, data.evals[name]):
    assert all(split.text_a) and (split.text_b is None or all(split.text_b))
    if task.is_regression:
      assert split.labels.dtype == np.float32 and 0 <= split.labels.min() and split.labels.max() <= 5
    else:
      assert set(np.unique(split.labels)) == set(range(task.num_labels))


def test_reader_quirks_on_real_rows(glue_dir):
  cola = tasks.load_task("CoLA", data_dir=glue_dir)  # no header; last dev row has no trailing newline
  assert cola.train.text_a[0] == "Our friends won't buy this analysis, let alone the next one we propose."
  assert cola.train.labels[0] == 1
  assert cola.evals["CoLA"].text_a[-1] == "John talked to Bill about himself."
  assert cola.tests["CoLA"].text_a[0] == "Bill whistled past the house."
  mrpc = tasks.load_task("MRPC", data_dir=glue_dir)  # BOM before the header's "Quality"
  assert mrpc.train.labels[0] == 1 and mrpc.train.text_a[0].startswith("Amrozi accused his brother")
  assert mrpc.evals["MRPC"].text_b[0] == '"The foodservice pie business does not fit our long-term growth strategy.'
  rte = tasks.load_task("RTE", data_dir=glue_dir)
  assert tasks.TASKS["RTE"].labels[rte.train.labels[0]] == "not_entailment"
  stsb = tasks.load_task("STS-B", data_dir=glue_dir)
  np.testing.assert_allclose(stsb.train.labels[:2], [5.0, 3.8])
  assert stsb.train.text_b[0] == "An air plane is taking off."


def test_absent_tasks_and_splits_are_missing_not_crashes(glue_dir):
  with pytest.raises(tasks.MissingTaskError, match="no train split"):
    tasks.load_task("QNLI", data_dir=glue_dir)
  for name in ("MNLI", "QQP"):
    with pytest.raises(tasks.MissingTaskError, match=f"no {name} folder"):
      tasks.load_task(name, data_dir=glue_dir)
  qnli_dev = tasks.read_split(tasks.TASKS["QNLI"], glue_dir / "QNLI" / "dev.tsv", "QNLI", labeled=True)
  assert len(qnli_dev) == 5463  # the split that is there reads fine


def test_malformed_rows_name_file_and_line(glue_dir, tmp_path):
  lines = (glue_dir / "RTE" / "dev.tsv").read_text().split("\n")
  task = tasks.TASKS["RTE"]

  def broken(line_number, replacement):
    bad = list(lines)
    bad[line_number - 1] = replacement(bad[line_number - 1])
    path = tmp_path / f"dev_{line_number}.tsv"
    path.write_text("\n".join(bad))
    return path

  path = broken(5, lambda row: row.replace("\t", " ", 1))  # a lost tab
  with pytest.raises(tasks.GlueFormatError, match=rf"{path}:5: expected 4 tab-separated fields .* found 3"):
    tasks.read_split(task, path, "RTE", labeled=True)
  path = broken(7, lambda row: row.rsplit("\t", 1)[0] + "\tmaybe")  # an unknown label
  with pytest.raises(tasks.GlueFormatError, match=rf"{path}:7: label 'maybe'"):
    tasks.read_split(task, path, "RTE", labeled=True)
  path = broken(9, lambda row: "")  # a blank line between rows
  with pytest.raises(tasks.GlueFormatError, match=rf"{path}:9: .*empty line"):
    tasks.read_split(task, path, "RTE", labeled=True)
  cola = tmp_path / "train.tsv"  # headerless CoLA: line numbers count from the first row
  rows = (glue_dir / "CoLA" / "train.tsv").read_text().split("\n")[:20]
  rows[11] = rows[11].replace("\t1\t", "\tyes\t", 1)
  cola.write_text("\n".join(rows))
  with pytest.raises(tasks.GlueFormatError, match=rf"{cola}:12: label 'yes'"):
    tasks.read_split(tasks.TASKS["CoLA"], cola, "train", labeled=True)
  stsb = tmp_path / "stsb.tsv"
  rows = (glue_dir / "STS-B" / "dev.tsv").read_text().split("\n")[:4]
  rows[3] = rows[3].rsplit("\t", 1)[0] + "\tfive"
  stsb.write_text("\n".join(rows) + "\n\n")  # blank lines at the end are fine
  with pytest.raises(tasks.GlueFormatError, match=rf"{stsb}:4: score 'five'"):
    tasks.read_split(tasks.TASKS["STS-B"], stsb, "STS-B", labeled=True)


def _write(path, header, rows):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n")


def test_mnli_and_qqp_layouts(glue_dir, tmp_path):
  """MNLI (matched/mismatched dev and test files) and QQP ('id' index, is_duplicate) in the official column
  layout, filled with real RTE sentence pairs (MNLI and QQP themselves are too large to carry here)."""
  pairs = [r.split("\t")[1:3] for r in (glue_dir / "RTE" / "dev.tsv").read_text().splitlines()[1:31]]
  nli = ("entailment", "neutral", "contradiction")
  meta = [
    "promptID",
    "pairID",
    "genre",
    "sentence1_binary_parse",
    "sentence2_binary_parse",
    "sentence1_parse",
    "sentence2_parse",
  ]
  filler = ["1", "1e", "fiction", "(", "(", "(", "("]
  root = tmp_path / "glue"
  _write(
    root / "MNLI" / "train.tsv",
    ["index", *meta, "sentence1", "sentence2", "label1", "gold_label"],
    [[str(i), *filler, a, b, nli[i % 3], nli[i % 3]] for i, (a, b) in enumerate(pairs)],
  )
  for kind in ("matched", "mismatched"):
    _write(
      root / "MNLI" / f"dev_{kind}.tsv",
      ["index", *meta, "sentence1", "sentence2", *(f"label{k}" for k in range(1, 6)), "gold_label"],
      [[str(i), *filler, a, b, *[nli[i % 3]] * 5, nli[(i + 1) % 3]] for i, (a, b) in enumerate(pairs[:9])],
    )
    _write(
      root / "MNLI" / f"test_{kind}.tsv",
      ["index", *meta, "sentence1", "sentence2"],
      [[str(i), *filler, a, b] for i, (a, b) in enumerate(pairs[:5])],
    )
  mnli = tasks.load_task("MNLI", data_dir=root)
  assert list(mnli.evals) == list(mnli.tests) == ["MNLI-m", "MNLI-mm"]
  assert mnli.train.labels[:4].tolist() == [0, 1, 2, 0] and mnli.evals["MNLI-mm"].labels[:2].tolist() == [1, 2]
  assert mnli.train.text_b[0] == pairs[0][1] and len(mnli.tests["MNLI-m"]) == 5

  _write(
    root / "QQP" / "train.tsv",
    ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
    [[str(i), "1", "2", a, b, str(i % 2)] for i, (a, b) in enumerate(pairs)],
  )
  _write(
    root / "QQP" / "dev.tsv",
    ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
    [[str(i), "1", "2", a, b, str(i % 2)] for i, (a, b) in enumerate(pairs[:6])],
  )
  _write(
    root / "QQP" / "test.tsv",
    ["id", "question1", "question2"],
    [[str(100 + i), a, b] for i, (a, b) in enumerate(pairs[:4])],
  )
  qqp = tasks.load_task("qqp", data_dir=root)
  assert qqp.tests["QQP"].index.tolist() == [100, 101, 102, 103] and qqp.train.labels[:3].tolist() == [0, 1, 0]
  report.write_submission(tmp_path / "MNLI-m.tsv", mnli.task, mnli.tests["MNLI-m"].index, np.array([2, 0, 1, 1, 0]))
  assert (tmp_path / "MNLI-m.tsv").read_text().splitlines()[1:3] == ["0\tcontradiction", "1\tentailment"]


def test_tfds_source_fields_and_unprepared_dataset(tmp_path):
  """TFDS glue/<task> has the features and label order we assume (no download: builders only)."""
  import tensorflow_datasets as tfds
  import tensorflow_datasets.text.glue  # noqa: F401

  for task in tasks.TASKS.values():
    features = tfds.builder(f"glue/{task.tfds_name}", data_dir=str(tmp_path)).info.features
    assert set(task.tfds_text) | {"label", "idx"} == set(features)
    if task.labels is not None:
      names = features["label"].names
      assert len(names) == len(task.labels)
      if task.labels[0] != "0":
        assert tuple(names) == task.labels
  with pytest.raises(tasks.MissingTaskError, match="not prepared"):
    tasks.load_task("RTE", source="tfds", data_dir=tmp_path, tfds_prepare=False)
