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

import pathlib

from came_jax import config_files, models


def get_config(arg=None):
  """`arg`: '' (the 24-hour run) or 'tiny'. The rest of the config is configs/pretrain_base.py's."""
  variant = arg or ""
  if variant not in ("", "tiny"):
    raise ValueError(f"unknown variant {variant!r} of configs/gpt2.py; use '' or 'tiny'")
  base = config_files.load_module(pathlib.Path(__file__).with_name("pretrain_base.py"))
  c = base.get_config()

  c.model = models.config_section("gpt2", "small", dtype="bfloat16")
  c.data.update(dict(objective="causal", seq_len=1024, vocab_size=32768))
  c.data.batch_size = 16  # the micro-batch: sequences per forward/backward pass
  c.batch_size = 512  # sequences per optimizer step once the ramp is done; a multiple of data.batch_size
  c.batch_ramp = 0.1

  c.optimizer.came.update(dict(learning_rate=6e-4, weight_decay=0.1))
  c.optimizer.adamw.update(dict(learning_rate=6e-4, weight_decay=0.1, b2=0.95, eps=1e-8))
  c.schedule.update(dict(name="budget-cosine", warmup=0.01, end_factor=0.1))
  c.log_every_steps = 50

  if variant == "tiny":
    base.shrink_to_tiny(c)
    c.model.update(dict(preset="tiny", dtype="float32"))
    c.batch_size = 32
    c.batch_ramp = 0.2
    c.optimizer.came.learning_rate = 2e-3
    c.optimizer.adamw.learning_rate = 2e-3
    c.schedule.warmup = 0.05
  return c
