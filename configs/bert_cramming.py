r"""Crammed BERT: a BERT-base-sized model pretrained with CAME in 24 hours on one GPU (Geiping & Goldstein, 2022).

Full recipe (one A100/H100-class GPU, 24 hours, bf16 compute):

  python -m experiments.pretrain --config configs/bert_cramming.py --workdir runs/bert_cramming

16-layer, 768-wide crammed BERT (pre-LN, no biases, gated GELU, scaled sinusoidal positions, sparse MLM head) at
sequence length 128; the batch ramps from 128 to 8192 sequences over the first 60% of the budget; CAME with the
paper's betas (0.9, 0.999, 0.9999), bias-corrected, under cramming's budget-triangle schedule (0.25 x lr rising to
lr at 75% of the budget, then down to 0), gradient clipping at 0.5, weight decay 0.01 on matrices and embeddings
only. Cramming's AdamW (lr 1e-3, betas 0.9/0.98, eps 1e-12) by one override: `--config.optimizer.name=adamw`. CAME's
peak rate is AdamW's 1e-3: with the bias correction AdamW's rates transfer to CAME (experiments/README.md, "Is CAME
worth choosing?"); the reference CAME (`--config.optimizer.came.bias_correction=False`) would want a different,
horizon-dependent rate. Not tuned further. Expected: not yet measured on a GPU with this code. On the 24 MB sample
corpus the model sees many epochs in 24 hours and will overfit, so read the held-out WikiText loss, not the train
loss; a real run needs a larger corpus (`--config.data.source=tfds --config.data.tfds_name=...`).

On several GPUs: `--config.mesh.data=-1` (data-parallel) or `--config.mesh.fsdp=-1` (params and optimizer state
sharded too); on several hosts also `--config.distributed.*` (see README.md). The batch sizes are global.

Tiny variant (CPU, under two minutes including tokenizer training; 60-second budget):

  python -m experiments.pretrain --config configs/bert_cramming.py:tiny --workdir runs/bert_tiny

Measured with the bias-corrected CAME on a quiet 2-core AMD EPYC (67 s wall in all): 896 steps, 5.63M tokens,
MLM loss from ln(2048) = 7.6 to 5.58, held-out (WikiText) MLM loss 5.63. With `--config.data.path=../shared/data/corpus
--config.budget=2m` (the whole corpus, the README's first command): 1770 steps, train loss 5.35, held-out 5.93.
Data paths are relative to the repository root, next to which ../shared/data lies.
"""

import ml_collections

from came_jax.data import pipeline
from came_jax.optim import registry
from came_jax.train import sharding


def get_config(arg=None):
  """`arg`: '' (the 24-hour recipe) or 'tiny'."""
  variant = arg or ""
  if variant not in ("", "tiny"):
    raise ValueError(f"unknown variant {variant!r} of configs/bert_cramming.py; use '' or 'tiny'")
  c = ml_collections.ConfigDict()

  # Fields of came_jax.models.bert.Config to set on the preset (vocab_size comes from data.vocab_size).
  c.model = ml_collections.ConfigDict(dict(
      name="bert", preset="base", dtype="bfloat16", position_embedding="scaled_sinusoidal", head_transform=False))

  c.data = pipeline.default_config()
  c.data.update(dict(
      objective="mlm", mlm_rate=0.15, seq_len=128, vocab_size=32768,
      batch_size=128,  # the micro-batch: sequences per forward/backward pass
      path="../shared/data/corpus", eval_path="../shared/data/heldout/wikitext-103/wiki.valid.tokens",
      eval_batches=64, seed=0))
  c.tokenizer_path = ""  # a saved tokenizer to copy into the workdir instead of training one

  c.batch_size = 8192  # sequences per optimizer step once the ramp is done; a multiple of data.batch_size
  c.batch_ramp = 0.6  # fraction of the run over which the batch grows from one micro-batch to batch_size

  c.optimizer = registry.default_config()
  c.optimizer.name = "came"
  c.optimizer.grad_clip_norm = 0.5
  c.optimizer.came.update(dict(learning_rate=1e-3, weight_decay=0.01, b1=0.9, b2=0.999, b3=0.9999,
                               bias_correction=True))
  c.optimizer.adamw.update(dict(learning_rate=1e-3, weight_decay=0.01, b1=0.9, b2=0.98, eps=1e-12))

  c.schedule = ml_collections.ConfigDict(dict(
      name="budget-triangle", start_factor=0.25, peak_at=0.75, warmup=0.0, end_factor=0.0,
      progress="auto"))  # auto: fraction of the budget, or of max_steps when max_steps > 0

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

  if variant == "tiny":
    c.model.update(dict(preset="tiny", dtype="float32"))
    c.data.update(dict(vocab_size=2048, batch_size=16, seq_len=128, tokenizer_sentences=20000,
                       path="../shared/data/corpus/state_union", eval_batches=8))
    c.batch_size = 64
    c.batch_ramp = 0.5
    c.optimizer.came.learning_rate = 2e-3
    c.optimizer.adamw.learning_rate = 2e-3
    c.budget = "60s"
    c.log_every_steps = 10
    c.eval.every_s = 30.0
    c.checkpoint.every_s = 30.0
  return c
