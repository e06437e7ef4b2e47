r"""T5 v1.1 base (248M) pretrained with CAME on span corruption for a time budget on one GPU.

Full run (one A100/H100-class GPU, 24 hours, bf16 compute):

  python -m experiments.pretrain --config configs/t5.py --workdir runs/t5

T5.1.1 base, 512 input tokens (15% noise, mean span 3, so 114 target tokens), 128 sequences per step as in T5 (2^16
input tokens), CAME (betas 0.9/0.999/0.9999, bias-corrected, lr 1e-3, no weight decay: T5 uses none) with budget-
linear decay after a 1% warm-up. `--config.optimizer.name=adafactor` gives T5's Adafactor (lr 1e-2, decay 0.8,
parameter scaling, no momentum). Expected: not yet measured on a GPU with this code; on the 24 MB sample corpus the
held-out WikiText loss is the number to read.

Tiny variant (CPU, under two minutes; 60-second budget):

  python -m experiments.pretrain --config configs/t5.py:tiny --workdir runs/t5_tiny

Measured on a shared 2-core CPU (~80 s wall in all): ~195 steps, ~13k tokens/s, span loss from ln(2048) = 7.6
to ~5.0, held-out (WikiText) loss ~5.2.
Data paths are relative to the repository root, next to which ../shared/data lies.
"""

import pathlib

from came_jax import config_files, models


def get_config(arg=None):
  """`arg`: '' (the 24-hour run) or 'tiny'. The rest of the config is configs/pretrain_base.py's."""
  variant = arg or ""
  if variant not in ("", "tiny"):
    raise ValueError(f"unknown variant {variant!r} of configs/t5.py; use '' or 'tiny'")
  base = config_files.load_module(pathlib.Path(__file__).with_name("pretrain_base.py"))
  c = base.get_config()

  c.model = models.config_section("t5", "base", dtype="bfloat16")
  c.data.update(dict(objective="span", seq_len=512, noise_density=0.15, mean_span_length=3.0, vocab_size=32128))
  c.data.batch_size = 32  # the micro-batch: sequences per forward/backward pass
  c.batch_size = 128  # sequences per optimizer step, constant (no ramp) as in T5; a multiple of data.batch_size

  c.optimizer.came.update(dict(learning_rate=1e-3, weight_decay=0.0))
  c.optimizer.adafactor.update(dict(learning_rate=1e-2, momentum=None, multiply_by_parameter_scale=True))
  c.schedule.update(dict(name="budget-linear", warmup=0.01))

  if variant == "tiny":
    base.shrink_to_tiny(c)
    c.model.update(dict(preset="tiny", dtype="float32"))
    c.batch_size = 32
    c.optimizer.came.learning_rate = 3e-3
    c.schedule.warmup = 0.05
  return c
