"""Fixtures for the trainer tests: tiny configs on the shared sample text, one tokenizer for the session, and
the stand-in model registered as `came_jax.models.standin`."""

import sys

import pytest

from tests.train import standin
from tests.train.tiny_configs import load_config, set_dotted

sys.modules.setdefault("came_jax.models.standin", standin)

# Scripts the tests run as subprocesses. Importing one patches the library (a checkpoint save that SIGKILLs the
# process, gloo collectives), so `--doctest-modules` must not collect them.
collect_ignore = ["kill_after_checkpoint.py", "multiprocess_worker.py", "signal_at_step.py", "file_size_limit.py"]


@pytest.fixture(scope="session")
def tiny_config(shared_data, tmp_path_factory):
  """`make(name, **{"dotted.key": value})` -> a `:tiny` config reading the shared data, sharing one tokenizer.

  `name` is a config file (`gpt2`, `bert_cramming`, `t5`) or `standin` (gpt2's tiny config with the stand-in
  model). Runs are step-bounded (`max_steps`) and evaluate only at the end unless told otherwise.
  """
  from came_jax.data import pipeline  # pylint: disable=g-import-not-at-top

  root = tmp_path_factory.mktemp("shared_tokenizer")
  cache = tmp_path_factory.mktemp("token_cache")

  def make(name: str, **overrides):
    c = load_config("gpt2" if name == "standin" else name)
    if name == "standin":
      c.model.name = "standin"
    c.data.path = str(shared_data / "corpus" / "state_union")
    c.data.eval_path = str(shared_data / "heldout" / "wikitext-103" / "wiki.valid.tokens")
    c.data.cache_dir = str(cache)
    c.data.eval_batches = 2
    c.data.prefetch = 0 if name == "standin" else 2
    c.tokenizer_path = str(root / "tokenizer")
    c.max_steps = 8
    c.log_every_steps = 1
    c.eval.every_s = 0.0
    c.checkpoint.every_s = 0.0
    c.tensorboard = False
    for k, v in overrides.items():
      set_dotted(c, k, v)
    return c

  pipeline.build_tokenizer(make("gpt2").data, root)  # trains once, saves root/tokenizer
  return make
