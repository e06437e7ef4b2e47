"""The pretraining recipes: each validates (full and tiny), is the base plus a delta, takes model fields from the
command line as the launcher parses it; crammed BERT's train step traces at full size (no compilation)."""

import dataclasses
import functools

import jax
import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags

from came_jax import models
from came_jax.optim import registry
from came_jax.train import budget, validation
from came_jax.train import step as step_lib
from tests.train.tiny_configs import REPO, load_config

RECIPES = ("bert_cramming", "gpt2", "t5")


def _flat_keys(config, prefix=""):
  keys = set()
  for k, v in config.items():
    keys |= _flat_keys(v, f"{prefix}{k}.") if hasattr(v, "items") else {prefix + k}
  return keys


def _parse(argv):
  """`FLAGS.config` after parsing `argv` as experiments/pretrain.py does (on fresh flags, locked config).

  config_flags reads the `--config.*` overrides from sys.argv unless given `sys_argv`; app.run passes sys.argv.
  """
  argv = ["pretrain", *argv]
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file(
    "config", None, "A configs/*.py file.", flag_values=flag_values, lock_config=True, sys_argv=argv
  )
  flag_values(argv)
  return flag_values.config


@pytest.mark.parametrize("name", RECIPES)
@pytest.mark.parametrize("variant", ["", "tiny"])
def test_configs_validate(name, variant):
  config = load_config(name, variant)
  model_cfg = validation.check(config)
  assert model_cfg.vocab_size == config.data.vocab_size
  assert budget.parse_budget(config.budget) == (86400.0 if not variant else 60.0)
  # The docstring gives the command that runs this variant.
  suffix = f":{variant}" if variant else ""
  command = f"python -m experiments.pretrain --config configs/{name}.py{suffix} --workdir"
  assert command in (REPO / "configs" / f"{name}.py").read_text()


def test_crammed_bert_recipe():
  c = load_config("bert_cramming", "")
  assert (c.model.name, c.model.preset, c.model.dtype) == ("bert", "base", "bfloat16")
  assert (c.data.seq_len, c.batch_size, c.batch_size // c.data.batch_size) == (128, 8192, 64)
  assert c.schedule.name == "budget-triangle" and c.budget == "24h" and c.batch_ramp > 0
  assert c.optimizer.name == "came"
  assert (c.optimizer.came.b1, c.optimizer.came.b2, c.optimizer.came.b3) == (0.9, 0.999, 0.9999)
  c.optimizer.name = "adamw"  # cramming's optimizer by one override
  assert (c.optimizer.adamw.learning_rate, c.optimizer.adamw.b2, c.optimizer.adamw.eps) == (1e-3, 0.98, 1e-12)


def test_full_crammed_bert_step_traces():
  """Shapes and dtypes of one full-size step (64 x 128 x 128 tokens, bf16 compute) by tracing, not compiling."""
  c = load_config("bert_cramming", "")
  model_cfg = validation.check(c)
  model = models.get(c.model.name)
  tx = registry.make(c.optimizer)
  params = jax.eval_shape(functools.partial(model.init_params, model_cfg), jax.random.PRNGKey(0))
  state = jax.eval_shape(lambda p: step_lib.TrainState.create(p, tx, jax.random.PRNGKey(1)), params)
  k = round(c.data.mlm_rate * c.data.seq_len)
  mb, t, m = c.data.batch_size, c.data.seq_len, c.batch_size // c.data.batch_size
  shapes = {
    "input_ids": ((m, mb, t), np.int32),
    "attention_mask": ((m, mb, t), np.int32),
    "token_type_ids": ((m, mb, t), np.int32),
    "mlm_positions": ((m, mb, k), np.int32),
    "mlm_labels": ((m, mb, k), np.int32),
    "mlm_weights": ((m, mb, k), np.float32),
  }
  batch = {n: jax.ShapeDtypeStruct(s, d) for n, (s, d) in shapes.items()}
  fn = functools.partial(step_lib.train_step, loss_fn=functools.partial(model.loss_fn, cfg=model_cfg), tx=tx)
  new_state, metrics = jax.eval_shape(
    fn, state, batch, jax.ShapeDtypeStruct((), np.int32), jax.ShapeDtypeStruct((), np.float32)
  )
  assert jax.tree.map(lambda x: (x.shape, x.dtype), new_state) == jax.tree.map(lambda x: (x.shape, x.dtype), state)
  assert metrics["loss"].shape == () and "accuracy" in metrics
  n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
  assert 100e6 < n_params < 150e6  # crammed BERT base with a 32768 vocabulary


@pytest.mark.parametrize("name", RECIPES)
@pytest.mark.parametrize("variant", ["", "tiny"])
def test_recipe_is_the_base_and_a_delta(name, variant):
  """A recipe sets the base's keys and adds none (a misspelt key cannot slip in); its model section has every field
  of the model's Config (vocab_size aside: it is data.vocab_size), each settable from the command line."""
  base, recipe = load_config("pretrain_base", ""), load_config(name, variant)
  assert _flat_keys(recipe) - _flat_keys(recipe.model, "model.") == _flat_keys(base) - _flat_keys(base.model, "model.")
  fields = {f.name for f in dataclasses.fields(models.get(recipe.model.name).Config)}
  assert set(recipe.model) == {"name", "preset"} | fields - {"vocab_size"}


def test_base_alone_fails_naming_the_model():
  with pytest.raises(ValueError, match=r"config\.model\.name=None is not a model \(known: bert, gpt2, t5\)"):
    validation.check(load_config("pretrain_base", ""))
  with pytest.raises(ValueError, match="no variant 'tiny'"):
    load_config("pretrain_base", "tiny")


@pytest.mark.parametrize("name", RECIPES)
@pytest.mark.parametrize("variant", ["", "tiny"])
def test_model_fields_override_from_the_command_line(name, variant):
  """`--config.model.<field>=...` as absl parses it for the launcher reaches the model's Config (int, float, bool,
  str, optional int; fields the recipe sets and fields it leaves to the preset); nothing else changes."""
  fields = dict(num_layers=3, dropout_rate=0.25, dtype="float32" if not variant else "bfloat16")
  fields.update(dict(bert_cramming=dict(pre_ln=False), gpt2={}, t5=dict(num_decoder_layers=1))[name])
  suffix = f":{variant}" if variant else ""
  argv = [f"--config={REPO / 'configs' / name}.py{suffix}"]
  argv += [f"--config.model.{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in fields.items()]
  config = _parse(argv)
  assert {k: config.model[k] for k in fields} == fields

  model_cfg = models.from_config_section(config.model, config.data.vocab_size)
  plain = load_config(name, variant)
  before = models.from_config_section(plain.model, plain.data.vocab_size)
  assert all(getattr(before, k) != v for k, v in fields.items())  # every override changes something
  assert model_cfg == dataclasses.replace(before, **fields)
  assert model_cfg.vocab_size == config.data.vocab_size
  assert validation.check(config) == model_cfg
  without_model = lambda c: {k: v for k, v in c.to_dict().items() if k != "model"}  # noqa: E731
  assert without_model(config) == without_model(plain)
