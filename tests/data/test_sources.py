"""Local text sources, undecodable bytes, WikiText articles, and the errors for corpora without text; the TFDS
path: a local GeneratorBasedBuilder over real sample files, prepared as array_record, read by name."""

import glob
import pathlib
import re

import numpy as np
import pytest
import tensorflow_datasets as tfds
from etils import epath

from came_jax.data import pipeline, sources


def test_folder_is_searched_recursively_and_sorted(shared_data):
  src = sources.LocalTextSource(shared_data / "corpus" / "movie_reviews")
  assert len(src) == 2000  # pos/ and neg/
  assert src.files == sorted(src.files)
  assert src[0] == src.files[0].read_text()
  assert src.name.startswith("local:") and len(src.fingerprint) == 16


def test_glob_and_single_file(shared_data):
  pattern = str(shared_data / "corpus" / "inaugural" / "18*.txt")
  assert len(sources.LocalTextSource(pattern)) == len(glob.glob(pattern)) > 0
  everything = sources.LocalTextSource(str(shared_data / "corpus" / "**" / "*.txt"))
  assert len(everything) == len(glob.glob(str(shared_data / "corpus" / "**" / "*.txt"), recursive=True))
  one = sources.LocalTextSource(shared_data / "corpus" / "tinyshakespeare" / "input.txt")
  assert len(one) == 1 and one[0].startswith("First Citizen:")


def test_hidden_and_binary_files_are_skipped(tmp_path):
  (tmp_path / "a.txt").write_text("hello world")
  (tmp_path / ".hidden.txt").write_text("secret")
  (tmp_path / "sub").mkdir()
  (tmp_path / "sub" / "b.txt").write_text("second document")
  (tmp_path / "image.bin").write_bytes(b"\x89PNG\x00\x00\x01")
  src = sources.LocalTextSource(tmp_path)
  assert [f.name for f in src.files] == ["a.txt", "b.txt"]
  assert [f.name for f in src.skipped_binary] == ["image.bin"]


def test_undecodable_bytes_are_replaced_and_counted(shared_data, tmp_path):
  assert sources.decode_text(b"ab\xff\xfecd\xe9") == ("ab\ufffd\ufffdcd\ufffd", 3)
  assert sources.decode_text("\ufeffCæsar".encode()) == ("Cæsar", 0)
  # Real files: Nixon's addresses carry stray non-UTF-8 punctuation bytes.
  src = sources.LocalTextSource(str(shared_data / "corpus" / "state_union" / "197[0-4]-Nixon.txt"))
  texts = [src[i] for i in range(len(src))]
  stats = src.stats()
  assert stats["documents_read"] == 5 and stats["documents_with_undecodable_bytes"] == 5
  assert stats["undecodable_bytes"] >= sum(t.count("\ufffd") for t in texts) > 0
  (tmp_path / "latin1.txt").write_bytes("Brunetière".encode("latin-1"))
  latin = sources.LocalTextSource(tmp_path)
  assert latin[0] == "Bruneti\ufffdre" and latin.stats()["undecodable_bytes"] == 1


def test_wikitext_articles(shared_data):
  path = shared_data / "heldout" / "wikitext-103" / "wiki.valid.tokens"
  articles = sources.wikitext_articles(path)
  lines = path.read_text().splitlines()
  titles = [line for line in lines if re.match(r"^ = [^=].* = $", line)]
  assert len(articles) == len(titles) == 60
  for article, title in zip(articles, titles):
    assert article.splitlines()[0] == title.strip()
    assert not any(re.match(r"^= [^=].* =$", line) for line in article.splitlines()[1:])
  assert sum(len(a.splitlines()) for a in articles) == sum(1 for line in lines if line.strip())
  assert any("= = " in a for a in articles)  # section headings stay inside their article


@pytest.mark.parametrize("make", ["empty_folder", "no_match_glob", "empty_files", "binary_only", "missing_file"])
def test_corpus_without_text_names_the_path(tmp_path, make):
  folder = tmp_path / "corpus"
  folder.mkdir()
  path = folder
  if make == "no_match_glob":
    path = folder / "*.txt"
  elif make == "empty_files":
    (folder / "a.txt").write_text("")
    (folder / "b.txt").write_text("  \n\n ")
  elif make == "binary_only":
    (folder / "a.bin").write_bytes(b"\x00\x01\x02")
  elif make == "missing_file":
    path = folder / "nothing.txt"
  with pytest.raises(ValueError, match=re.escape(str(path))):
    sources.LocalTextSource(path)
  if make == "empty_folder":
    with pytest.raises(ValueError, match="heldout.tokens"):
      sources.wikitext_articles(folder / "heldout.tokens")


N_FILES = 6


class CameJaxSampleText(tfds.core.GeneratorBasedBuilder):
  """A few inaugural addresses, read from ``manual_dir`` (registered with TFDS as ``came_jax_sample_text``)."""

  VERSION = tfds.core.Version("1.0.0")
  MANUAL_DOWNLOAD_INSTRUCTIONS = "Point manual_dir at a folder of .txt files."

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls):
    """This file, as tfds finds it for a builder in a top-level module. For one in a package (`tests.data.test_sources`)
    tfds asks `importlib_resources`, which it imports lazily but does not require on Python >= 3.9."""
    return epath.Path(__file__)

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({"text": tfds.features.Text()}))

  def _split_generators(self, dl_manager):
    return {"train": self._generate_examples(pathlib.Path(dl_manager.manual_dir))}

  def _generate_examples(self, folder):
    for path in sorted(folder.glob("*.txt"))[:N_FILES]:
      yield path.name, {"text": path.read_text()}


def test_tfds_builder_by_name_as_array_record(shared_data, tmp_path, tokenizer):
  tfds.disable_progress_bar()
  folder = shared_data / "corpus" / "inaugural"
  src = sources.TfdsTextSource("came_jax_sample_text", data_dir=tmp_path, manual_dir=folder)
  assert list((tmp_path / "came_jax_sample_text" / "1.0.0").glob("*.array_record-*"))
  expected = sorted(p.read_text() for p in sorted(folder.glob("*.txt"))[:N_FILES])
  assert len(src) == N_FILES and sorted(src) == expected
  assert src.name == "tfds:came_jax_sample_text:train"

  # Prepared: a second source reads it back without preparing (same fingerprint, so the token cache is reused).
  again = sources.TfdsTextSource("came_jax_sample_text", data_dir=tmp_path, prepare=False)
  assert again.fingerprint == src.fingerprint

  it = pipeline.pretrain_iterator(
    again, tokenizer, seq_len=32, batch_size=4, objective="causal", cache_dir=tmp_path / "cache", prefetch=0
  )
  batch = next(it)
  assert batch["input_ids"].shape == (4, 32) and batch["input_ids"].dtype == np.int32


def test_tfds_errors(tmp_path):
  with pytest.raises(ValueError, match="not prepared"):
    sources.TfdsTextSource("came_jax_sample_text", data_dir=tmp_path, prepare=False)
  with pytest.raises(ValueError, match="tfds_name"):
    sources.TfdsTextSource("", data_dir=tmp_path)


def test_tfds_catalog_builders_resolve_their_code():
  """tfds finds a catalog dataset's files through `importlib_resources` (an install requirement of ours: tfds
  itself asks for it only on old Pythons); without it `data.source="tfds"` fails while preparing any dataset."""
  from tensorflow_datasets.text import glue  # pylint: disable=g-import-not-at-top

  assert pathlib.Path(str(glue.Glue.code_path)).name == "glue.py"
