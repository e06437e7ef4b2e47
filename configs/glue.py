r"""GLUE fine-tuning of a pretrained BERT with cramming's recipe (Geiping & Goldstein 2022, `GLUE_sane.yaml`).

Full recipe (every task found in ../shared/data/glue; one GPU):

  python -m experiments.finetune_glue --config configs/glue.py --config.pretrained=runs/bert_cramming \
      --workdir runs/bert_cramming_glue [--config.optimizer.name=came] [--config.tasks='("RTE","CoLA")']

From a Hugging Face BERT instead (original layout, e.g. bert-base-uncased: config.json, model.safetensors and
tokenizer.json in one folder): `--config.pretrained=path/to/bert-base-uncased`.

5 epochs, batch 16, max length 128, AdamW (lr 4e-5, betas 0.9/0.98, eps 1e-6, no weight decay, no clipping) under
cosine decay with 10% linear warm-up, dropout 0.1, 5 seeds with the median reported; dev sets are scored and test
sets predicted in GLUE submission format. `--config.optimizer.name=came` swaps in bias-corrected CAME at the same
peak rate (AdamW's rates transfer to it: experiments/README.md, GLUE). Results: `OUT/results.md` (cramming's table),
`OUT/results.json`, `OUT/submission/*.tsv`. Here MNLI and QQP are absent and QNLI has no train split: those columns
show '–'. Expected: cramming reports an average around 78-80 for its 24-hour crammed BERT (MNLI ~83); a model
pretrained on the 24 MB sample corpus will score far lower. Not yet measured on a GPU with this code.

Tiny variant (CPU, about a minute; random init unless `--config.pretrained` is given, a tokenizer is trained on
the GLUE training text when neither a run nor `tokenizer_path` provides one):

  python -m experiments.finetune_glue --config configs/glue.py:tiny --workdir /tmp/glue_tiny

RTE and CoLA on 256 training examples each, 16 steps, 200 dev examples, 1 seed; expect chance-level scores.
Paths are relative to the working directory: run from the repository root, next to which ../shared lies.
"""

import ml_collections

from came_jax import models
from came_jax.optim import registry


def get_config(arg=None):
  """`arg`: '' (cramming's recipe) or 'tiny'."""
  variant = arg or ""
  if variant not in ("", "tiny"):
    raise ValueError(f"unknown variant {variant!r} of configs/glue.py; use '' or 'tiny'")
  c = ml_collections.ConfigDict()

  # RUN_DIR of a BERT pretraining run (experiments/pretrain.py), or a Hugging Face BERT folder (original layout:
  # config.json, model.safetensors, tokenizer files); "" = random init of `model`
  c.pretrained = ""
  c.pretrained_step = 0  # checkpoint step to load; 0 = the latest (a Hugging Face folder has one)
  # Only without `pretrained`: the model (a BERT preset; any Config field may be set), and the tokenizer (a saved
  # Tokenizer folder; "" = train one with `vocab_size` pieces on the tasks' training text, saved in WORKDIR/tokenizer).
  c.model = models.config_section("bert", "base")
  c.tokenizer_path = ""
  c.vocab_size = 32768

  c.source = "tsv"  # "tsv": GLUE-layout folder `data_dir`; "tfds": tfds glue/<task> in `tfds_data_dir`
  c.data_dir = "../shared/data/glue"
  c.tfds_data_dir = ""  # "" = TFDS's default
  c.tfds_prepare = True  # download and prepare a tfds dataset that is not there yet
  c.tasks = ()  # GLUE names, e.g. ("RTE", "CoLA"); () = all nine (absent ones are reported as missing)

  c.max_len = 128  # every example is padded (or truncated, longest first) to this many tokens
  c.batch_size = 16
  c.eval_batch_size = 128
  c.epochs = 5
  c.max_steps = 0  # > 0: train this many steps instead of `epochs` (the schedule then spans max_steps)
  c.max_train_examples = 0  # > 0: a fixed random subset of the training set (tests, quick looks)
  c.max_eval_examples = 0  # > 0: a fixed random subset of each dev set
  c.dropout_rate = 0.1
  c.dtype = ""  # compute dtype; "" = the pretrained model's
  c.seeds = (0, 1, 2, 3, 4)

  c.optimizer = registry.default_config()
  c.optimizer.name = "adamw"
  c.optimizer.grad_clip_norm = 0.0
  c.optimizer.adamw.update(dict(learning_rate=4e-5, weight_decay=0.0, b1=0.9, b2=0.98, eps=1e-6))
  c.optimizer.came.update(dict(learning_rate=4e-5, weight_decay=0.0, bias_correction=True))
  c.optimizer.adafactor.update(dict(learning_rate=4e-5))
  c.schedule = ml_collections.ConfigDict(dict(name="budget-cosine", warmup=0.1, end_factor=0.0))

  c.log_every_steps = 100

  if variant == "tiny":
    c.model.preset = "tiny"
    c.vocab_size = 2048
    c.tasks = ("RTE", "CoLA")
    c.max_len = 64
    c.max_train_examples = 256
    c.max_eval_examples = 200
    c.max_steps = 16
    c.seeds = (0,)
    c.optimizer.adamw.learning_rate = 1e-3
    c.optimizer.came.learning_rate = 1e-3
    c.log_every_steps = 8
  return c
