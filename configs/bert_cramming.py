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
--config.budget=2m` (the whole corpus, the README's first command): 1770 steps, train loss 5.35, held-out 5.93;
re-run on a quiet machine after the training-step changes of issue 14: 2035 steps, train loss 5.40, held-out 5.95;
with checksummed checkpoints (issue 15), quiet: 2003 steps, train loss 5.30, held-out 5.97 (2m07s wall; a
budget-bound run: the step count follows the machine). Run from the repository root, next to which
../shared/data lies.
"""

import pathlib

from came_jax import config_files, models


def get_config(arg=None):
  """`arg`: '' (the 24-hour recipe) or 'tiny'. The rest of the config is configs/pretrain_base.py's."""
  variant = arg or ""
  if variant not in ("", "tiny"):
    raise ValueError(f"unknown variant {variant!r} of configs/bert_cramming.py; use '' or 'tiny'")
  base = config_files.load_module(pathlib.Path(__file__).with_name("pretrain_base.py"))
  c = base.get_config()

  c.model = models.config_section(
    "bert", "base", dtype="bfloat16", position_embedding="scaled_sinusoidal", head_transform=False
  )
  c.data.update(dict(objective="mlm", mlm_rate=0.15, seq_len=128, vocab_size=32768, eval_batches=64))
  c.data.batch_size = 128  # the micro-batch: sequences per forward/backward pass
  c.batch_size = 8192  # sequences per optimizer step once the ramp is done; a multiple of data.batch_size
  c.batch_ramp = 0.6  # fraction of the run over which the batch grows from one micro-batch to batch_size

  c.optimizer.grad_clip_norm = 0.5
  c.optimizer.came.learning_rate = 1e-3  # cramming AdamW's rate (the base's AdamW is cramming's)
  c.schedule.name = "budget-triangle"

  if variant == "tiny":
    base.shrink_to_tiny(c)
    c.model.update(dict(preset="tiny", dtype="float32"))
    c.batch_size = 64
    c.batch_ramp = 0.5
    c.optimizer.came.learning_rate = 2e-3
    c.optimizer.adamw.learning_rate = 2e-3
  return c
