r"""GPT-2 small (124M) causal LM pretrained with CAME for a time budget on one GPU.

Full run (one A100/H100-class GPU, 24 hours, bf16 compute):

  python -m experiments.pretrain --config configs/gpt2.py --workdir runs/gpt2

GPT-2 small at context 1024, 512 sequences (0.5M tokens) per step after a ramp over the first 10% of the budget,
CAME (betas 0.9/0.999/0.9999, bias-corrected so that AdamW's lr 6e-4 transfers, weight decay 0.1 on
matrices/embeddings) with budget-cosine decay after a
1% warm-up, clipping at 1.0 (nanoGPT's recipe, with CAME in AdamW's place). `--config.optimizer.name=adamw` gives
nanoGPT's AdamW (betas 0.9/0.95). Expected: not yet measured on a GPU with this code; on the 24 MB sample corpus
the train loss overfits within hours, the held-out WikiText loss is the number to read.

Tiny variant (CPU, under two minutes; 60-second budget):

  python -m experiments.pretrain --config configs/gpt2.py:tiny --workdir runs/gpt2_tiny

Measured on a shared 2-core CPU (~80 s wall in all): ~200 steps, ~13k tokens/s, loss from ln(2048) = 7.6 to
~5.6, held-out (WikiText) loss ~5.9.
Data paths are relative to the repository root, next to which ../shared/data lies.
"""

import ml_collections

from came_jax.data import pipeline
from came_jax.optim import registry
from came_jax.train import sharding


def get_config(arg=None):
  """`arg`: '' (the 24-hour run) or 'tiny'."""
  variant = arg or ""
  if variant not in ("", "tiny"):
    raise ValueError(f"unknown variant {variant!r} of configs/gpt2.py; use '' or 'tiny'")
  c = ml_collections.ConfigDict()

  # Fields of came_jax.models.gpt2.Config to set on the preset (vocab_size comes from data.vocab_size).
  c.model = ml_collections.ConfigDict(dict(name="gpt2", preset="small", dtype="bfloat16"))

  c.data = pipeline.default_config()
  c.data.update(dict(
      objective="causal", seq_len=1024, vocab_size=32768,
      batch_size=16,  # the micro-batch: sequences per forward/backward pass
      path="../shared/data/corpus", eval_path="../shared/data/heldout/wikitext-103/wiki.valid.tokens",
      eval_batches=32, seed=0))
  c.tokenizer_path = ""  # a saved tokenizer to copy into the workdir instead of training one

  c.batch_size = 512  # sequences per optimizer step once the ramp is done; a multiple of data.batch_size
  c.batch_ramp = 0.1

  c.optimizer = registry.default_config()
  c.optimizer.name = "came"
  c.optimizer.grad_clip_norm = 1.0
  c.optimizer.came.update(dict(learning_rate=6e-4, weight_decay=0.1, b1=0.9, b2=0.999, b3=0.9999,
                               bias_correction=True))
  c.optimizer.adamw.update(dict(learning_rate=6e-4, weight_decay=0.1, b1=0.9, b2=0.95, eps=1e-8))

  c.schedule = ml_collections.ConfigDict(dict(
      name="budget-cosine", start_factor=0.25, peak_at=0.75, warmup=0.01, end_factor=0.1, progress="auto"))

  c.budget = "24h"
  c.max_steps = 0
  c.seed = 0
  c.max_consecutive_nonfinite = 20

  c.log_every_steps = 50
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
    c.batch_size = 32
    c.batch_ramp = 0.2
    c.optimizer.came.learning_rate = 2e-3
    c.optimizer.adamw.learning_rate = 2e-3
    c.schedule.warmup = 0.05
    c.budget = "60s"
    c.log_every_steps = 10
    c.eval.every_s = 30.0
    c.checkpoint.every_s = 30.0
  return c
