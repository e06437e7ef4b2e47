r"""CAME vs bias-corrected CAME vs AdamW fine-tuning one pretrained BERT on GLUE, each at rates swept on dev.

First pretrain the backbone (the README's main recipe, bounded by steps; 6 min on a 2-core CPU shared with other runs):

  python -m experiments.pretrain --config configs/bert_cramming.py:tiny --workdir runs/glue_backbone \
      --config.data.path=../shared/data/corpus --config.max_steps=3000 --config.budget=2h

then (measured wall time in experiments/README.md):

  python -m experiments.compare_glue --config configs/compare_glue.py --workdir runs/compare_glue

RTE, MRPC, STS-B, CoLA and SST-2 with cramming's fine-tuning recipe (configs/glue.py: 5 epochs of batch 16,
cosine schedule with 10% warm-up, no weight decay, no clipping) except: sequences of 64 tokens (the tiny model's
CPU cost), and at most 4000 training examples per task (a fixed random subset: STS-B, CoLA and SST-2 are
subsampled; the tables say so). Every optimizer at every rate of its grid with seeds 0, 1, 2; per task the rate
with the best median dev score is kept (the same seeds pick and report: a dev-set sweep, as in BERT's and
cramming's tables). Expected: a tiny model pretrained on 24 MB sits near chance on RTE, MRPC and CoLA, so the
fine-tuning train loss is reported beside the scores.
"""

import pathlib

import ml_collections

from came_jax import config_files


def get_config(arg=None):
  """No variants (`arg` must be empty)."""
  if arg:
    raise ValueError(f"configs/compare_glue.py has no variant {arg!r}")
  common = config_files.load_module(pathlib.Path(__file__).with_name("compare_common.py"))
  glue = config_files.load(pathlib.Path(__file__).with_name("glue.py"), "")
  glue.pretrained = "runs/glue_backbone"
  glue.tasks = ("RTE", "MRPC", "STS-B", "CoLA", "SST-2")
  glue.max_len = 64
  glue.max_train_examples = 4000
  glue.seeds = (0, 1, 2)
  glue.log_every_steps = 1000
  glue.optimizer.came.bias_correction = False  # "came" is the reference; `came_bc` the corrected one

  c = ml_collections.ConfigDict()
  c.name = "compare_glue"
  c.glue = glue
  c.optimizers = ("came", "came_bc", "adamw")
  c.variants = common.variants()
  # AdamW and the bias-corrected CAME on one grid; the reference CAME's start-up spike wants ~3x less. (The first
  # run had a grid one rate shorter at the top; STS-B, CoLA and SST-2 kept its top rate, so the grid was extended.)
  c.learning_rates = ml_collections.ConfigDict(
    dict(came=(3e-5, 1e-4, 3e-4, 1e-3), came_bc=(1e-4, 3e-4, 1e-3, 3e-3), adamw=(1e-4, 3e-4, 1e-3, 3e-3))
  )
  return c
