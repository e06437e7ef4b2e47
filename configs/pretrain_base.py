"""The base of the pretraining recipes (configs/bert_cramming.py, gpt2.py, t5.py): not a recipe itself.

It holds what the recipes share: the sample corpus and the held-out WikiText file, CAME bias-corrected (so that
AdamW's rates transfer, see experiments/README.md), a 24-hour budget, hourly evaluation, half-hourly checkpoints,
TensorBoard, one device by default. A recipe loads it, sets its model section and states what it changes:

  base = config_files.load_module(pathlib.Path(__file__).with_name("pretrain_base.py"))
  c = base.get_config()
  c.model = models.config_section("gpt2", "small", dtype="bfloat16")
  ...
  if variant == "tiny":
    base.shrink_to_tiny(c)

A recipe always states its model, objective (with its rates), sequence length, vocabulary, batch sizes, learning
rates and schedule name, even where one equals the value here (which is here only so that every key has a valid
value); anything else only where it differs. There is no model: run alone,

  python -m experiments.pretrain --config configs/pretrain_base.py --workdir runs/x

fails before anything is built, with `ValueError: config.model.name=None is not a model (known: bert, gpt2, t5)`.
Use a recipe.
"""

import ml_collections

from came_jax.data import pipeline
from came_jax.optim import registry
from came_jax.train import sharding


def get_config(arg=None):
  """The shared skeleton; `arg` must be empty (the base has no variants)."""
  if arg:
    raise ValueError(
      f"configs/pretrain_base.py has no variant {arg!r}: it is the base of the pretraining recipes "
      "(configs/bert_cramming.py, configs/gpt2.py, configs/t5.py), each with a ':tiny' variant"
    )
  c = ml_collections.ConfigDict()

  # Set by each recipe: `came_jax.models.config_section(name, preset, **fields)` (vocab_size from data.vocab_size).
  c.model = ml_collections.ConfigDict(
    dict(name=ml_collections.config_dict.placeholder(str), preset=ml_collections.config_dict.placeholder(str))
  )

  c.data = pipeline.default_config()  # a recipe sets objective, seq_len, vocab_size and batch_size (the micro-batch)
  c.data.update(
    dict(
      path="../shared/data/corpus", eval_path="../shared/data/heldout/wikitext-103/wiki.valid.tokens", eval_batches=32
    )
  )
  c.tokenizer_path = ""  # a saved tokenizer to copy into the workdir instead of training one
  # Start from a pretrained model instead of a random initialisation: a came_jax run directory (its latest
  # checkpoint) or a Hugging Face folder (config.json + model.safetensors + tokenizer; GPT-2, original-layout BERT,
  # T5 v1.1). It fixes the model and the tokenizer: model.name must be its model, model fields set here apply on top
  # only where its parameters still fit (dtype, dropout_rate, ...), model.preset is not used, data.vocab_size must be
  # its tokenizer's size and tokenizer_path empty. "" = random init.
  c.init_from = ""

  c.batch_size = 32  # sequences per optimizer step (after the ramp); a multiple of data.batch_size
  c.batch_ramp = 0.0  # fraction of the run over which the batch grows from one micro-batch to batch_size

  # CAME at the paper's betas, bias-corrected; the other optimizers' defaults (cramming's AdamW, optax's Adafactor)
  # for `--config.optimizer.name=...`.
  c.optimizer = registry.default_config()
  c.optimizer.came.bias_correction = True

  # A recipe names its schedule (came_jax/train/schedules.py). Progress "auto": the fraction of the budget, or of
  # max_steps when max_steps > 0.
  c.schedule = ml_collections.ConfigDict(
    dict(name="constant", start_factor=0.25, peak_at=0.75, warmup=0.0, end_factor=0.0, progress="auto")
  )

  c.budget = "24h"
  c.max_steps = 0  # > 0: also stop after this many steps, and drive the schedules by steps (deterministic)
  c.seed = 0  # parameter init and dropout
  c.max_consecutive_nonfinite = 20

  c.log_every_steps = 100
  c.eval = ml_collections.ConfigDict(dict(every_steps=0, every_s=3600.0))
  c.checkpoint = ml_collections.ConfigDict(dict(every_steps=0, every_s=1800.0, max_to_keep=2))
  c.tensorboard = True
  # Devices: data-parallel x fully-sharded axes (-1: the remaining devices); default one device. Multi-host: the
  # coordinator and process count (or $JAX_COORDINATOR_ADDRESS, $JAX_NUM_PROCESSES, $JAX_PROCESS_ID).
  c.mesh = sharding.mesh_config()
  c.distributed = sharding.distributed_config()
  return c


def shrink_to_tiny(c: ml_collections.ConfigDict) -> None:
  """What every recipe's `:tiny` variant shares: a 60-second CPU run on the State of the Union addresses, a
  2048-piece vocabulary, 16 sequences of 128 tokens per micro-batch, evaluation and checkpoints every 30 s.

  The recipe then sets its model preset, batch size and learning rate.
  """
  c.data.update(
    dict(
      vocab_size=2048,
      batch_size=16,
      seq_len=128,
      tokenizer_sentences=20000,
      path="../shared/data/corpus/state_union",
      eval_batches=8,
    )
  )
  c.budget = "60s"
  c.log_every_steps = 10
  c.eval.every_s = 30.0
  c.checkpoint.every_s = 30.0
