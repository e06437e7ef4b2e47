"""GLUE: numpy metrics against scipy/scikit-learn, strict TSV readers on the real files, missing tasks in the
table, a tiny BERT from a real (few-step) pretraining run fine-tuned on real RTE and CoLA rows, and STS-B
regression from random init."""

import dataclasses
import json
import pathlib

import numpy as np
import pytest
import scipy.stats
import sklearn.metrics

from came_jax import config_files
from came_jax import pretrained
from came_jax.glue import finetune, metrics, report, tasks

REPO = pathlib.Path(__file__).resolve().parents[1]


def _config(variant="tiny"):
    return config_files.load(REPO / "configs" / "glue.py", variant)


# ----------------------------------------------------------------------------------------------------- metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_scipy_and_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = 257
    labels = rng.integers(0, 2, n)
    preds = np.where(rng.random(n) < 0.7, labels, 1 - labels)
    assert metrics.accuracy(preds, labels) == pytest.approx(sklearn.metrics.accuracy_score(labels, preds))
    assert metrics.f1(preds, labels) == pytest.approx(sklearn.metrics.f1_score(labels, preds))
    assert metrics.matthews_corr(preds, labels) == pytest.approx(sklearn.metrics.matthews_corrcoef(labels, preds))
    three, three_pred = rng.integers(0, 3, n), rng.integers(0, 3, n)  # MNLI-like
    assert metrics.matthews_corr(three_pred, three) == pytest.approx(
        sklearn.metrics.matthews_corrcoef(three, three_pred))
    scores = rng.uniform(0, 5, n)
    noisy = scores + rng.normal(0, 1.5, n)
    assert metrics.pearson(noisy, scores) == pytest.approx(scipy.stats.pearsonr(noisy, scores)[0], abs=1e-12)
    assert metrics.spearman(noisy, scores) == pytest.approx(scipy.stats.spearmanr(noisy, scores)[0], abs=1e-12)
    tied, tied_labels = np.round(noisy), np.round(scores * 2) / 2  # many ties, as in STS-B's 0.2-step scores
    np.testing.assert_allclose(metrics.rank_average(tied), scipy.stats.rankdata(tied))
    assert metrics.spearman(tied, tied_labels) == pytest.approx(scipy.stats.spearmanr(tied, tied_labels)[0],
                                                                abs=1e-12)


def test_metrics_degenerate_cases_follow_sklearn():
    labels = np.array([0, 1, 1, 0, 1])
    constant = np.zeros(5, int)
    assert metrics.matthews_corr(constant, labels) == sklearn.metrics.matthews_corrcoef(labels, constant) == 0.0
    assert metrics.f1(constant, labels) == sklearn.metrics.f1_score(labels, constant, zero_division=0) == 0.0
    assert np.isnan(metrics.pearson(np.ones(5), labels))
    assert metrics.median_over_seeds([{"a": 1.0}, {"a": 3.0}, {"a": 2.0}]) == {"a": 2.0}
    assert np.isnan(metrics.median_over_seeds([{"a": None}])["a"])


# ------------------------------------------------------------------------------------------------- TSV readers

# (task, train rows, dev rows per eval set, test rows) from ../shared/data/README.md
COUNTS = {"CoLA": (8551, 1043, 1063), "SST-2": (67349, 872, 1821), "MRPC": (3668, 408, 1725),
          "STS-B": (5749, 1500, 1379), "RTE": (2490, 277, 3000), "WNLI": (635, 71, 146)}


@pytest.fixture(scope="module")
def glue_dir(shared_data):
    return shared_data / "glue"


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_reads_every_real_task(glue_dir, name):
    data = tasks.load_task(name, data_dir=glue_dir)
    train, dev, test = COUNTS[name]
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
    assert mrpc.evals["MRPC"].text_b[0] == "\"The foodservice pie business does not fit our long-term growth strategy."
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
    meta = ["promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
            "sentence1_parse", "sentence2_parse"]
    filler = ["1", "1e", "fiction", "(", "(", "(", "("]
    root = tmp_path / "glue"
    _write(root / "MNLI" / "train.tsv", ["index", *meta, "sentence1", "sentence2", "label1", "gold_label"],
           [[str(i), *filler, a, b, nli[i % 3], nli[i % 3]] for i, (a, b) in enumerate(pairs)])
    for kind in ("matched", "mismatched"):
        _write(root / "MNLI" / f"dev_{kind}.tsv",
               ["index", *meta, "sentence1", "sentence2", *(f"label{k}" for k in range(1, 6)), "gold_label"],
               [[str(i), *filler, a, b, *[nli[i % 3]] * 5, nli[(i + 1) % 3]] for i, (a, b) in enumerate(pairs[:9])])
        _write(root / "MNLI" / f"test_{kind}.tsv", ["index", *meta, "sentence1", "sentence2"],
               [[str(i), *filler, a, b] for i, (a, b) in enumerate(pairs[:5])])
    mnli = tasks.load_task("MNLI", data_dir=root)
    assert list(mnli.evals) == list(mnli.tests) == ["MNLI-m", "MNLI-mm"]
    assert mnli.train.labels[:4].tolist() == [0, 1, 2, 0] and mnli.evals["MNLI-mm"].labels[:2].tolist() == [1, 2]
    assert mnli.train.text_b[0] == pairs[0][1] and len(mnli.tests["MNLI-m"]) == 5

    _write(root / "QQP" / "train.tsv", ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
           [[str(i), "1", "2", a, b, str(i % 2)] for i, (a, b) in enumerate(pairs)])
    _write(root / "QQP" / "dev.tsv", ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
           [[str(i), "1", "2", a, b, str(i % 2)] for i, (a, b) in enumerate(pairs[:6])])
    _write(root / "QQP" / "test.tsv", ["id", "question1", "question2"],
           [[str(100 + i), a, b] for i, (a, b) in enumerate(pairs[:4])])
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


def test_truncation_is_longest_first():
    def reference(a, b, budget):
        while a + b > budget:
            if a > b:
                a -= 1
            else:
                b -= 1
        return a, b

    for a in range(0, 40, 3):
        for b in range(0, 40, 5):
            for budget in (7, 8, 30, 125):
                assert finetune.truncate_pair(a, b, budget) == reference(a, b, budget)


# ---------------------------------------------------------------------------------------------------- report


def test_table_marks_missing_tasks_and_partial_average():
    ok = lambda name, value: {"status": "ok", "headline": {name: value}, "dev": {name: {"accuracy": value}},
                              "per_seed": {"0": {name: {"accuracy": value}}}, "num_train": 10, "steps": 3,
                              "epochs": 1.0, "train_seconds": 0.5, "submission": []}
    mnli = {"status": "ok", "headline": {"MNLI-m": 0.8, "MNLI-mm": 0.7}}
    table = report.headline_table({"MNLI": mnli, "RTE": ok("RTE", 0.6)})
    assert table["Avg"] == pytest.approx((0.75 + 0.6) / 2)  # MNLI counts once
    assert "| 80.0/70.0 | – |" in report.markdown_table({"model": "m", "optimizer": "o", "table": table})
    results = {"MNLI": {"status": "missing", "reason": "no MNLI folder in /data"},
               "QNLI": {"status": "missing", "reason": "no train split (/data/QNLI/train.tsv is absent)"},
               "RTE": ok("RTE", 0.6), "SST-2": ok("SST-2", 0.8), "WNLI": ok("WNLI", 0.5)}
    table = report.headline_table(results)
    assert table["MNLI-m"] is None and table["QNLI"] is None and table["WNLI"] == 0.5
    assert table["Avg"] == pytest.approx(0.7) and table["avg_over"] == ["SST-2", "RTE"]  # WNLI never averaged
    md = report.markdown({"model": "bert:tiny (x)", "optimizer": "adamw", "seeds": [0], "tasks": results,
                          "table": table})
    header, _, row = md.split("\n\n")[2].split("\n")[:3]
    assert header == "| Model | MNLI-(m/mm) | QQP | QNLI | SST-2 | CoLA | STS-B | MRPC | RTE | Avg |"
    assert row == "| bert:tiny, adamw | –/– | – | – | 80.0 | – | – | – | 60.0 | 70.0* |"
    assert "- – MNLI: missing: no MNLI folder in /data." in md
    assert "- – QNLI: missing: no train split (/data/QNLI/train.tsv is absent)." in md
    assert "- – QQP: not requested" in md and "Avg over the 2 of 8 columns" in md


# -------------------------------------------------------------------------------------------- fine-tuning


def test_tiny_bert_finetunes_on_real_rows_and_writes_results(pretrained_run, glue_dir, tmp_path, caplog):
    config = _config("tiny")
    config.update(dict(pretrained=str(pretrained_run), tasks=("RTE", "CoLA"), data_dir=str(glue_dir),
                       max_train_examples=64, max_eval_examples=0, max_steps=6, seeds=(0, 1), log_every_steps=3))
    out = tmp_path / "glue"
    summary = finetune.finetune_and_evaluate(config, str(out))

    saved = json.loads((out / "results.json").read_text())
    assert saved["tasks"].keys() == {"RTE", "CoLA"} and saved["seeds"] == [0, 1]
    for name, metric in (("RTE", "accuracy"), ("CoLA", "matthews_corr")):
        result = saved["tasks"][name]
        assert result["status"] == "ok" and result["steps"] == 6 and result["num_train"] == 64
        assert result["num_dev"] == {name: COUNTS[name][1]}  # the whole dev set
        assert result["headline_metric"] == metric and set(result["per_seed"]) == {"0", "1"}
        per_seed = [result["per_seed"][s][name][metric] for s in ("0", "1")]
        assert result["dev"][name][metric] == pytest.approx(np.median(per_seed))
        assert saved["table"][name] == result["dev"][name][metric]
    assert -1 <= saved["table"]["CoLA"] <= 1 and 0 <= saved["table"]["RTE"] <= 1
    assert "pretrained with came" in saved["model"] and summary["table"] == saved["table"]

    md = (out / "results.md").read_text()
    assert "| Model | MNLI-(m/mm) | QQP | QNLI | SST-2 | CoLA | STS-B | MRPC | RTE | Avg |" in md
    assert f"| {100 * saved['table']['RTE']:.1f} |" in md and "–/–" in md

    rte = (out / "submission" / "RTE.tsv").read_text().splitlines()
    assert rte[0] == "index\tprediction" and len(rte) == 3001
    assert [r.split("\t")[0] for r in rte[1:]] == [str(i) for i in range(3000)]
    assert {r.split("\t")[1] for r in rte[1:]} <= {"entailment", "not_entailment"}
    cola = (out / "submission" / "CoLA.tsv").read_text().splitlines()
    assert len(cola) == 1064 and {r.split("\t")[1] for r in cola[1:]} <= {"0", "1"}

    # One compiled train step for both tasks and both seeds.
    cfg = dataclasses.replace(pretrained.load(pretrained_run).model_cfg, num_labels=2, dropout_rate=0.1)
    key = finetune._step_key(config.optimizer)  # pylint: disable=protected-access
    _, train_step = finetune._compiled_step(cfg, key)  # pylint: disable=protected-access
    assert train_step._cache_size() == 1  # pylint: disable=protected-access

    # A re-run with the same settings reuses every (task, seed) run: same numbers, nothing retrained.
    caplog.set_level("INFO", logger="came_jax")
    again = finetune.finetune_and_evaluate(config, str(out))
    assert again["table"] == summary["table"]
    assert sum("reusing" in r.message for r in caplog.records) == 4
    assert not any("step 3/6" in r.message for r in caplog.records)


def test_regression_task_from_random_init(pretrained_run, glue_dir, tmp_path):
    """STS-B (one output, mean squared error) from a randomly initialised tiny BERT with a saved tokenizer."""
    config = _config("tiny")
    config.update(dict(tokenizer_path=str(pretrained_run / "tokenizer"), tasks=("sts-b",), data_dir=str(glue_dir),
                       max_train_examples=32, max_eval_examples=100, max_steps=3, seeds=(0,)))
    summary = finetune.finetune_and_evaluate(config, str(tmp_path))
    result = summary["tasks"]["STS-B"]
    assert "random init" in summary["model"] and result["num_dev"] == {"STS-B": 100}
    assert set(result["dev"]["STS-B"]) == {"pearson", "spearman"} and result["headline_metric"] == "spearman"
    assert all(np.isfinite(v) for v in result["dev"]["STS-B"].values())
    rows = (tmp_path / "submission" / "STS-B.tsv").read_text().splitlines()
    assert rows[0] == "index\tprediction" and len(rows) == 1380
    assert all(len(r.split("\t")[1].split(".")[1]) == 3 for r in rows[1:])  # scores, three decimals


def test_glue_configs_load():
    full, tiny = _config(""), _config("tiny")
    assert (full.epochs, full.batch_size, full.max_len, full.optimizer.name) == (5, 16, 128, "adamw")
    assert full.optimizer.adamw.learning_rate == 4e-5 and full.schedule.warmup == 0.1 and full.dropout_rate == 0.1
    assert len(full.seeds) > 1 and full.tasks == () and tiny.max_steps > 0
    with pytest.raises(ValueError, match="unknown variant"):
        _config("huge")
    bad = _config("tiny")
    bad.tasks = ("SQuAD",)
    with pytest.raises(KeyError, match="unknown GLUE task 'SQuAD'"):
        finetune.finetune_and_evaluate(bad, "/nonexistent/never/written")
