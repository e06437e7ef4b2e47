"""Hugging Face folders in: `hf.load` of folders `transformers` saved (GPT-2, original BERT, T5 v1.1, each from a
random initialisation, with a tokenizer built here) gives transformers' logits and tokens; GLUE fine-tunes from the
BERT folder and pretraining starts from the GPT-2 folder (`init_from`); what does not fit fails naming why."""

import dataclasses
import io
import json
import pathlib
import shutil

import jax
import numpy as np
import pytest
import sentencepiece as spm
import tokenizers
import torch
import transformers
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

from came_jax import config_files, export, hf, pretrained
from came_jax import models as came_models
from came_jax.data import objectives
from came_jax.data import tokenizer as tokenizer_lib
from came_jax.glue import finetune
from came_jax.hf.load import read_weights
from came_jax.train import input_pipeline, trainer

REPO = pathlib.Path(__file__).resolve().parents[2]


def _lines(shared_data, n=400):
  text = (shared_data / "corpus" / "state_union" / "1961-Kennedy.txt").read_text()
  return [line for line in text.splitlines() if line.strip()][:n]


def _sentences(shared_data, n=30):
  rows = (shared_data / "glue" / "RTE" / "dev.tsv").read_text().splitlines()[1 : n + 1]
  return [r.split("\t")[1] for r in rows]


def _save_fast(tok: tokenizers.Tokenizer, folder: pathlib.Path, **specials) -> None:
  transformers.PreTrainedTokenizerFast(tokenizer_object=tok, **specials).save_pretrained(folder)


@pytest.fixture(scope="module")
def gpt2_folder(shared_data, tmp_path_factory):
  """GPT2LMHeadModel (2 layers, width 64, no dropout) and a byte-level BPE with `<|endoftext|>` (id 0)."""
  folder = tmp_path_factory.mktemp("gpt2")
  tok = tokenizers.Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  trainer_ = trainers.BpeTrainer(
    vocab_size=500, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
  )
  tok.train_from_iterator(_lines(shared_data), trainer_)
  eot = "<|endoftext|>"
  _save_fast(tok, folder, bos_token=eot, eos_token=eot, unk_token=eot)
  torch.manual_seed(0)
  config = transformers.GPT2Config(
    vocab_size=tok.get_vocab_size(),
    n_positions=64,
    n_embd=64,
    n_layer=2,
    n_head=4,
    resid_pdrop=0.0,
    embd_pdrop=0.0,
    attn_pdrop=0.0,
    bos_token_id=0,
    eos_token_id=0,
  )
  transformers.GPT2LMHeadModel(config).save_pretrained(folder)
  return folder


@pytest.fixture(scope="module")
def bert_folder(shared_data, tmp_path_factory):
  """BertForMaskedLM (original layout, 2 layers, width 64) and a lower-casing WordPiece, `[PAD]` .. `[MASK]` first."""
  folder = tmp_path_factory.mktemp("bert")
  specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
  tok = tokenizers.Tokenizer(models.WordPiece(unk_token="[UNK]"))
  tok.normalizer = normalizers.BertNormalizer(lowercase=True)
  tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  tok.decoder = decoders.WordPiece()
  tok.train_from_iterator(_lines(shared_data), trainers.WordPieceTrainer(vocab_size=600, special_tokens=specials))
  tok.post_processor = processors.BertProcessing(("[SEP]", 3), ("[CLS]", 2))
  _save_fast(
    tok, folder, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]"
  )
  torch.manual_seed(1)
  config = transformers.BertConfig(
    vocab_size=tok.get_vocab_size(),
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=128,
    max_position_embeddings=128,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
  )
  transformers.BertForMaskedLM(config).save_pretrained(folder)
  return folder


@pytest.fixture(scope="module")
def t5_folder(shared_data, tmp_path_factory):
  """T5ForConditionalGeneration v1.1 (gated GELU, untied head) with a unigram `spiece.model` trained here, 8
  sentinels, as Google's folders have it (spiece.model, tokenizer_config.json, special_tokens_map.json)."""
  folder = tmp_path_factory.mktemp("t5")
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(
    sentence_iterator=iter(_lines(shared_data)),
    model_writer=model,
    model_type="unigram",
    vocab_size=300,
    pad_id=0,
    eos_id=1,
    unk_id=2,
    bos_id=-1,
    minloglevel=2,
  )
  (folder / "spiece.model").write_bytes(model.getvalue())
  extra = [f"<extra_id_{i}>" for i in range(8)]
  config = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>", "extra_ids": 8}
  (folder / "tokenizer_config.json").write_text(json.dumps({**config, "tokenizer_class": "T5Tokenizer"}))
  (folder / "special_tokens_map.json").write_text(json.dumps({**config, "additional_special_tokens": extra}))
  torch.manual_seed(2)
  hf_config = transformers.T5Config(
    vocab_size=320,  # 300 pieces + 8 sentinels, padded (as T5's 32100 -> 32128)
    d_model=32,
    d_kv=8,
    d_ff=64,
    num_layers=2,
    num_decoder_layers=2,
    num_heads=4,
    dropout_rate=0.0,
    feed_forward_proj="gated-gelu",
    tie_word_embeddings=False,
    pad_token_id=0,
    eos_token_id=1,
    decoder_start_token_id=0,
  )
  transformers.T5ForConditionalGeneration(hf_config).save_pretrained(folder)
  return folder


def _torch_model(folder, cls):
  return cls.from_pretrained(folder, dtype=torch.float32).eval()


def _errors(ours, ref) -> tuple[float, float]:
  """(max absolute error, max absolute error / max |ref|)."""
  err = float(np.max(np.abs(np.asarray(ours) - ref)))
  return err, err / float(np.max(np.abs(ref)))


# ------------------------------------------------------------------------------------------------ logits


def test_gpt2_folder_gives_transformers_logits(gpt2_folder, shared_data):
  run = hf.load(gpt2_folder)
  assert (run.model_name, run.step, run.config.model_type) == ("gpt2", None, "gpt2")
  assert (run.model_cfg.num_layers, run.model_cfg.hidden_dim, run.model_cfg.max_len) == (2, 64, 64)
  assert all(x.dtype == np.float32 for x in jax.tree.leaves(run.params))
  tok = run.tokenizer
  ids = np.asarray(
    [tok.encode(s)[:48] + [tok.eos_id] * (48 - len(tok.encode(s)[:48])) for s in _sentences(shared_data, 3)]
  )
  with torch.no_grad():
    ref = _torch_model(gpt2_folder, transformers.GPT2LMHeadModel)(input_ids=torch.from_numpy(ids)).logits.numpy()
  ours = run.model.logits_fn(run.params, {"input_ids": ids.astype(np.int32)}, cfg=run.model_cfg)
  abs_err, rel_err = _errors(ours, ref)
  print(f"gpt2 logits: max abs error {abs_err:.2e}, relative {rel_err:.2e}")
  assert abs_err <= 1e-4


def test_bert_folder_gives_transformers_logits(bert_folder, shared_data):
  run = hf.load(bert_folder)
  assert run.model_name == "bert" and not run.model_cfg.pre_ln and run.model_cfg.num_layers == 2
  arrays = finetune.encode(run.tokenizer, finetune.subsample(_rte_split(shared_data), 4), max_len=40)
  with torch.no_grad():
    ref = _torch_model(bert_folder, transformers.BertForMaskedLM)(
      **{k: torch.from_numpy(v).long() for k, v in arrays.items()}
    ).logits.numpy()
  ours = np.asarray(run.model.logits_fn(run.params, arrays, cfg=run.model_cfg))
  keep = arrays["attention_mask"].astype(bool)  # padded positions are not compared (both ignore them)
  abs_err, rel_err = _errors(ours[keep], ref[keep])
  print(f"bert MLM logits: max abs error {abs_err:.2e}, relative {rel_err:.2e}")
  assert abs_err <= 1e-4


def test_t5_folder_gives_transformers_logits(t5_folder, shared_data):
  run = hf.load(t5_folder)
  tok = run.tokenizer
  assert run.model_name == "t5" and run.model_cfg.vocab_size == 320 and tok.vocab_size == 308
  span = objectives.make_objective("span", tok, 32)
  docs = [np.asarray(tok.encode(s)[: span.row_width], np.int32) for s in _sentences(shared_data, 4)]
  tokens = np.stack([np.pad(d, (0, span.row_width - len(d)), constant_values=tok.eos_id) for d in docs])
  batch = span(tokens, np.ones_like(tokens, bool), np.random.default_rng(0))
  assert set(np.unique(batch["labels"])) & {tok.sentinel_id(i) for i in range(8)}
  with torch.no_grad():
    ref = _torch_model(t5_folder, transformers.T5ForConditionalGeneration)(
      input_ids=torch.from_numpy(batch["input_ids"]).long(),
      attention_mask=torch.from_numpy(batch["input_ids"] != 0).long(),
      labels=torch.from_numpy(batch["labels"]).long(),
    ).logits.numpy()
  ours = run.model.logits_fn(run.params, batch, cfg=run.model_cfg)
  abs_err, rel_err = _errors(ours, ref)
  print(f"t5 logits: max abs error {abs_err:.2e}, relative {rel_err:.2e}")
  assert abs_err <= 1e-4


def _rte_split(shared_data):
  from came_jax.glue import tasks  # pylint: disable=g-import-not-at-top

  return tasks.load_task("RTE", source="tsv", data_dir=str(shared_data / "glue")).evals["RTE"]


# --------------------------------------------------------------------------------------------- tokenizers


@pytest.mark.parametrize("name", ["gpt2", "bert", "t5"])
def test_tokenizer_matches_transformers(name, gpt2_folder, bert_folder, t5_folder, shared_data):
  folder = {"gpt2": gpt2_folder, "bert": bert_folder, "t5": t5_folder}[name]
  ours = tokenizer_lib.load(folder)
  assert isinstance(ours, tokenizer_lib.HFTokenizer)
  theirs = transformers.AutoTokenizer.from_pretrained(folder)
  texts = _sentences(shared_data)
  assert ours.encode_batch(texts) == [theirs(t, add_special_tokens=False)["input_ids"] for t in texts]
  assert [ours.encode(t) for t in texts[:5]] == ours.encode_batch(texts[:5])
  for role in ("pad", "eos", "unk", "cls", "sep", "mask"):
    token = getattr(theirs, f"{role}_token")
    if token is not None:
      assert getattr(ours, f"{role}_id") == theirs.convert_tokens_to_ids(token), role
  assert ours.vocab_size == len(theirs)


def test_special_ids_come_from_each_tokenizer(gpt2_folder, bert_folder, t5_folder):
  gpt2_tok, bert_tok, t5_tok = (tokenizer_lib.load(f) for f in (gpt2_folder, bert_folder, t5_folder))
  # GPT-2: <|endoftext|> is EOS, and padding (it has no pad token); no sentinels, no [MASK].
  assert (gpt2_tok.eos_id, gpt2_tok.pad_id, gpt2_tok.num_sentinels) == (0, 0, 0)
  assert gpt2_tok.normal_id_range == (1, gpt2_tok.vocab_size)
  with pytest.raises(
    tokenizer_lib.MissingTokenError,
    match=r"objective='mlm'.*no cls token.*no sep token.*no mask token \(neither a mask_token",
  ):
    objectives.make_objective("mlm", gpt2_tok, 32)
  with pytest.raises(tokenizer_lib.MissingTokenError, match=r"objective='span'.*<extra_id_0>"):
    objectives.make_objective("span", gpt2_tok, 32)
  # BERT: [PAD] [UNK] [CLS] [SEP] [MASK] = 0..4, not our 3/4/5; no EOS for causal LM.
  assert (bert_tok.pad_id, bert_tok.cls_id, bert_tok.sep_id, bert_tok.mask_id) == (0, 2, 3, 4)
  assert bert_tok.special_ids == (0, 1, 2, 3, 4) and bert_tok.normal_id_range == (5, bert_tok.vocab_size)
  with pytest.raises(tokenizer_lib.MissingTokenError, match=r"objective='causal'.*no eos token"):
    objectives.make_objective("causal", bert_tok, 32)
  # T5: sentinels count down from the top of the SentencePiece pieces plus 8 extra ids.
  assert [t5_tok.sentinel_id(i) for i in (0, 7)] == [307, 300] and t5_tok.normal_id_range == (3, 300)
  assert t5_tok.encode("<extra_id_1> the") == [306, *t5_tok.encode("the")]
  assert t5_tok.decode([306, *t5_tok.encode("the")]) == "<extra_id_1>the"


# ---------------------------------------------------------------------------------------------------- errors


def test_missing_files_unknown_models_and_unrepresentable_configs_fail_clearly(gpt2_folder, tmp_path):
  with pytest.raises(FileNotFoundError, match=r"not a Hugging Face model folder: .*config\.json is missing"):
    hf.load(tmp_path)
  folder = tmp_path / "copy"
  shutil.copytree(gpt2_folder, folder)
  (folder / "model.safetensors").rename(tmp_path / "weights")
  with pytest.raises(FileNotFoundError, match=r"model\.safetensors is missing"):
    hf.load(folder)
  (tmp_path / "weights").rename(folder / "model.safetensors")
  config = json.loads((folder / "config.json").read_text())
  (folder / "config.json").write_text(json.dumps({**config, "model_type": "resnet"}))
  with pytest.raises(
    ValueError, match=r"model_type='resnet' has no conversion here \(known: bert, came_bert, gpt2, t5\)"
  ):
    hf.load(folder)
  (folder / "config.json").write_text(json.dumps({**config, "activation_function": "relu"}))
  with pytest.raises(ValueError, match=r"config\.json: Hugging Face config activation_function='relu' cannot be"):
    hf.load(folder)
  (folder / "config.json").write_text(json.dumps({**config, "n_layer": 3}))
  with pytest.raises(ValueError, match="do not fit its config.json"):
    hf.load(folder)
  (folder / "config.json").write_text(json.dumps(config))
  (folder / "tokenizer.json").unlink()
  with pytest.raises(FileNotFoundError, match=r"no tokenizer in .*tokenizer\.json"):
    hf.load(folder)
  with pytest.raises(FileNotFoundError, match="is not a pretraining run directory.*nor is it a Hugging Face folder"):
    pretrained.load(tmp_path)


def test_pretrained_load_reads_a_hugging_face_folder(gpt2_folder):
  run = pretrained.load(gpt2_folder)
  assert run.step is None and run.model_name == "gpt2" and "Hugging Face GPT2LMHeadModel" in run.description
  with pytest.raises(ValueError, match="Hugging Face folder: it has no checkpoint steps"):
    pretrained.load(gpt2_folder, step=3)


def test_bfloat16_and_sharded_weights_are_read(gpt2_folder, tmp_path):
  """A checkpoint saved in bfloat16 (numpy has no such dtype) across two shards with an index."""
  import safetensors.torch  # pylint: disable=g-import-not-at-top

  folder = tmp_path / "bf16"
  shutil.copytree(gpt2_folder, folder)
  state = safetensors.torch.load_file(folder / "model.safetensors")
  (folder / "model.safetensors").unlink()
  names = sorted(state)
  shards = {"model-1.safetensors": names[: len(names) // 2], "model-2.safetensors": names[len(names) // 2 :]}
  for shard, keys in shards.items():
    safetensors.torch.save_file({k: state[k].to(torch.bfloat16) for k in keys}, folder / shard)
  index = {"weight_map": {k: shard for shard, keys in shards.items() for k in keys}}
  (folder / "model.safetensors.index.json").write_text(json.dumps(index))
  weights = read_weights(folder)
  assert sorted(weights) == names
  for k in names:
    assert weights[k].dtype == np.float32
    np.testing.assert_array_equal(weights[k], state[k].to(torch.bfloat16).float().numpy())
  run = hf.load(folder)
  wte = run.params["wte"]["embedding"]
  np.testing.assert_array_equal(wte, state["transformer.wte.weight"].to(torch.bfloat16).float().numpy())


# ----------------------------------------------------------------------------------------- GLUE from BERT


def test_glue_finetunes_from_a_hugging_face_bert(bert_folder, shared_data, tmp_path):
  config = config_files.load(REPO / "configs" / "glue.py", "tiny")
  config.update(
    dict(
      pretrained=str(bert_folder),
      tasks=("RTE",),
      data_dir=str(shared_data / "glue"),
      max_train_examples=32,
      max_eval_examples=32,
      max_steps=3,
      batch_size=8,
      eval_batch_size=32,
      log_every_steps=1,
    )
  )
  summary = finetune.finetune_and_evaluate(config, str(tmp_path))
  rte = summary["tasks"]["RTE"]
  assert rte["status"] == "ok" and rte["steps"] == 3 and 0 <= rte["headline"]["RTE"] <= 1
  assert summary["model"].startswith(f"bert ({bert_folder}, Hugging Face BertForMaskedLM")
  assert np.isfinite(json.loads((tmp_path / "runs" / "RTE" / "seed_0.json").read_text())["final_loss"])


# ------------------------------------------------------------------------------------ pretraining init_from


def _pretrain_config(shared_data, cache, **overrides):
  c = config_files.load(REPO / "configs" / "gpt2.py", "tiny")
  c.data.update(
    dict(
      path=str(shared_data / "corpus" / "state_union"),
      eval_path="",
      seq_len=32,
      batch_size=4,
      cache_dir=str(cache),
      prefetch=0,
    )
  )
  c.update(dict(batch_size=4, batch_ramp=0.0, max_steps=3, log_every_steps=1, tensorboard=False))
  c.eval.every_s = c.checkpoint.every_s = 0.0
  for key, value in overrides.items():
    section, _, leaf = key.rpartition(".")
    (c[section] if section else c)[leaf] = value
  return c


def test_pretraining_starts_from_a_hugging_face_gpt2(gpt2_folder, shared_data, tmp_path):
  source = hf.load(gpt2_folder)
  vocab = source.tokenizer.vocab_size
  config = _pretrain_config(shared_data, tmp_path / "cache", init_from=str(gpt2_folder), **{"data.vocab_size": vocab})
  workdir = tmp_path / "run"
  summary = trainer.train_and_evaluate(config, str(workdir))
  assert summary["steps"] == 3 and summary["num_params"] == sum(x.size for x in jax.tree.leaves(source.params))

  # Step 1's loss is that of the Hugging Face parameters on batch 0: the run started from them.
  batch = input_pipeline.make_train_iterator(config, source.tokenizer).batch_at(0)
  loss, _ = source.model.loss_fn(source.params, batch, jax.random.key(0), cfg=source.model_cfg, train=False)
  first = json.loads((workdir / "metrics.jsonl").read_text().splitlines()[0])
  assert first["step"] == 1 and first["loss"] == pytest.approx(float(loss), rel=1e-4)

  # The run directory describes itself: the Hugging Face model's Config and tokenizer, three steps on.
  run = pretrained.load(workdir)
  assert run.step == 3 and run.model_cfg == dataclasses.replace(source.model_cfg, dtype="float32")
  assert isinstance(run.tokenizer, tokenizer_lib.HFTokenizer)
  assert run.tokenizer.fingerprint == source.tokenizer.fingerprint
  assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(run.params), jax.tree.leaves(source.params)))
  # ... and resumes (the same source) to a longer max_steps.
  config.max_steps = 4
  assert trainer.train_and_evaluate(config, str(workdir))["steps"] == 4

  # A run of ours is a starting point too: its model_config.json and its (Hugging Face) tokenizer carry over.
  again = _pretrain_config(
    shared_data, tmp_path / "cache", init_from=str(workdir), max_steps=1, **{"data.vocab_size": vocab}
  )
  assert trainer.train_and_evaluate(again, str(tmp_path / "again"))["steps"] == 1
  second = pretrained.load(tmp_path / "again")
  assert second.model_cfg == run.model_cfg and second.tokenizer.fingerprint == source.tokenizer.fingerprint


@pytest.mark.parametrize(
  "overrides,message",
  [
    ({"model.name": "bert"}, r"config\.model\.name='bert': config\.init_from=.* is a gpt2 model"),
    ({"data.vocab_size": 2048}, r"config\.data\.vocab_size=2048: .*brings a tokenizer of \d+ ids"),
    ({"tokenizer_path": "/some/tokenizer"}, r"config\.tokenizer_path='/some/tokenizer': must be empty"),
    ({"model.num_layers": 4}, r"config\.model\.num_layers: .*num_layers=4 \(the model has 2\)"),
    ({"init_from": "/no/such/folder"}, r"config\.init_from='/no/such/folder': .*is not a pretraining run directory"),
  ],
)
def test_init_from_mismatches_fail_before_anything_is_built(gpt2_folder, shared_data, tmp_path, overrides, message):
  vocab = tokenizer_lib.load(gpt2_folder).vocab_size
  settings = {"init_from": str(gpt2_folder), "data.vocab_size": vocab, **overrides}
  config = _pretrain_config(shared_data, tmp_path / "cache", **settings)
  with pytest.raises((ValueError, FileNotFoundError), match=message):
    trainer.train_and_evaluate(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_a_model_that_came_in_goes_back_out(gpt2_folder, shared_data, tmp_path):
  """hf.load -> export: the folder loads in transformers with the same logits, tokens and special ids."""
  run = hf.load(gpt2_folder)
  out = export.export(run.model_name, run.params, run.model_cfg, tmp_path / "out", tokenizer=run.tokenizer)
  config = json.loads((out / "config.json").read_text())
  assert config["pad_token_id"] == run.tokenizer.pad_id and config["eos_token_id"] == run.tokenizer.eos_id
  text = _sentences(shared_data, 1)[0]
  assert transformers.AutoTokenizer.from_pretrained(out)(text)["input_ids"] == run.tokenizer.encode(text)
  ids = np.asarray([run.tokenizer.encode(text)[:32]], np.int32)
  with torch.no_grad():
    ref = _torch_model(out, transformers.GPT2LMHeadModel)(input_ids=torch.from_numpy(ids).long()).logits.numpy()
  ours = run.model.logits_fn(run.params, {"input_ids": ids}, cfg=run.model_cfg)
  assert _errors(ours, ref)[1] <= 1e-4


def test_a_crammed_bert_export_loads_back(bert_folder, tmp_path):
  """model_type came_bert (our remote-code export of crammed BERT) is read by the BERT conversion."""
  tok = tokenizer_lib.load(bert_folder)
  cfg = came_models.make_config("bert", "tiny", vocab_size=tok.vocab_size)
  params = jax.tree.map(np.asarray, came_models.get("bert").init_params(cfg, jax.random.key(0)))
  out = export.export("bert", params, cfg, tmp_path / "crammed", tokenizer=tok)
  assert json.loads((out / "config.json").read_text())["model_type"] == "came_bert"
  run = hf.load(out)
  assert run.model_name == "bert" and run.model_cfg == cfg
  jax.tree.map(np.testing.assert_array_equal, run.params, params)
