"""GLUE fine-tuning: a tiny BERT from a real (few-step) pretraining run fine-tuned on real RTE and CoLA rows,
STS-B regression from random init, longest-first pair truncation, encoding with a Hugging Face tokenizer's special ids,
and configs/glue.py."""

import dataclasses
import json
import pathlib

import numpy as np
import pytest

from came_jax import config_files, pretrained
from came_jax.data import tokenizer as tokenizer_lib
from came_jax.glue import finetune
from came_jax.glue import tasks as tasks_lib
from tests.data import hf_tokenizers

REPO = pathlib.Path(__file__).resolve().parents[2]


def _config(variant="tiny"):
  return config_files.load(REPO / "configs" / "glue.py", variant)


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


def test_tiny_bert_finetunes_on_real_rows_and_writes_results(pretrained_run, glue_dir, glue_counts, tmp_path, caplog):
  config = _config("tiny")
  config.update(
    dict(
      pretrained=str(pretrained_run),
      tasks=("RTE", "CoLA"),
      data_dir=str(glue_dir),
      max_train_examples=64,
      max_eval_examples=0,
      max_steps=6,
      seeds=(0, 1),
      log_every_steps=3,
    )
  )
  out = tmp_path / "glue"
  summary = finetune.finetune_and_evaluate(config, str(out))

  saved = json.loads((out / "results.json").read_text())
  assert saved["tasks"].keys() == {"RTE", "CoLA"} and saved["seeds"] == [0, 1]
  for name, metric in (("RTE", "accuracy"), ("CoLA", "matthews_corr")):
    result = saved["tasks"][name]
    assert result["status"] == "ok" and result["steps"] == 6 and result["num_train"] == 64
    assert result["num_dev"] == {name: glue_counts[name][1]}  # the whole dev set
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
  run = pretrained.load(pretrained_run)
  cfg = dataclasses.replace(run.model_cfg, num_labels=2, dropout_rate=0.1)
  key = finetune._step_key(config.optimizer)  # pylint: disable=protected-access
  _, train_step = finetune._compiled_step(run.model, cfg, key)  # pylint: disable=protected-access
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
  config.update(
    dict(
      tokenizer_path=str(pretrained_run / "tokenizer"),
      tasks=("sts-b",),
      data_dir=str(glue_dir),
      max_train_examples=32,
      max_eval_examples=100,
      max_steps=3,
      seeds=(0,),
    )
  )
  summary = finetune.finetune_and_evaluate(config, str(tmp_path))
  result = summary["tasks"]["STS-B"]
  assert "random init" in summary["model"] and result["num_dev"] == {"STS-B": 100}
  assert set(result["dev"]["STS-B"]) == {"pearson", "spearman"} and result["headline_metric"] == "spearman"
  assert all(np.isfinite(v) for v in result["dev"]["STS-B"].values())
  rows = (tmp_path / "submission" / "STS-B.tsv").read_text().splitlines()
  assert rows[0] == "index\tprediction" and len(rows) == 1380
  assert all(len(r.split("\t")[1].split(".")[1]) == 3 for r in rows[1:])  # scores, three decimals


def test_encoding_takes_cls_sep_and_pad_from_a_hugging_face_tokenizer(glue_dir, tmp_path):
  """`[CLS] a [SEP] b [SEP]` with a Hugging Face WordPiece's ids ([CLS] 1, [SEP] 2, pad 4), which are not ours;
  a tokenizer without [CLS] (GPT-2's byte-level BPE) is refused naming it."""
  split = tasks_lib.load_task("RTE", source="tsv", data_dir=str(glue_dir)).evals["RTE"]
  split = finetune.subsample(split, 20)
  texts = split.text_a + split.text_b
  tok = tokenizer_lib.load(hf_tokenizers.wordpiece_folder(tmp_path / "wp", texts))
  arrays = finetune.encode(tok, split, max_len=48)
  ids, mask, types = arrays["input_ids"], arrays["attention_mask"], arrays["token_type_ids"]
  n = mask.sum(axis=1)
  assert (ids[:, 0] == tok.cls_id).all() and (ids[np.arange(len(ids)), n - 1] == tok.sep_id).all()
  assert ((ids == tok.sep_id).sum(axis=1) == 2).all() and (ids[mask == 0] == tok.pad_id).all()
  a = tok.encode(split.text_a[0])
  short = int(np.argmin(n))
  assert ids[0, 1 : 1 + min(len(a), 5)].tolist() == a[:5] and (types[short, : n[short]] == 1).any()
  bpe = tokenizer_lib.load(hf_tokenizers.byte_bpe_folder(tmp_path / "bpe", texts))
  with pytest.raises(tokenizer_lib.MissingTokenError, match=r"framed by \[CLS\] and \[SEP\].*no cls token"):
    finetune.encode(bpe, split, max_len=48)


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
