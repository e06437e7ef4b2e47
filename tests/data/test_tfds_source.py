"""The TFDS path: a local GeneratorBasedBuilder over real sample files, prepared as array_record, read by name."""

import pathlib

import numpy as np
import pytest
import tensorflow_datasets as tfds

from came_jax.data import pipeline
from came_jax.data import sources

N_FILES = 6


class CameJaxSampleText(tfds.core.GeneratorBasedBuilder):
    """A few inaugural addresses, read from ``manual_dir`` (registered with TFDS as ``came_jax_sample_text``)."""

    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Point manual_dir at a folder of .txt files."

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

    it = pipeline.pretrain_iterator(again, tokenizer, seq_len=32, batch_size=4, objective="causal",
                                    cache_dir=tmp_path / "cache", prefetch=0)
    batch = next(it)
    assert batch["input_ids"].shape == (4, 32) and batch["input_ids"].dtype == np.int32


def test_tfds_errors(tmp_path):
    with pytest.raises(ValueError, match="not prepared"):
        sources.TfdsTextSource("came_jax_sample_text", data_dir=tmp_path, prepare=False)
    with pytest.raises(ValueError, match="tfds_name"):
        sources.TfdsTextSource("", data_dir=tmp_path)
