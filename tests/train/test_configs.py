"""The full (24-hour) recipes validate, and crammed BERT's train step traces at full size (no compilation)."""

import functools

import jax
import numpy as np
import pytest

from came_jax.optim import registry
from came_jax.train import budget, step as step_lib, validation
from tiny_configs import REPO, load_config


@pytest.mark.parametrize("name", ["bert_cramming", "gpt2", "t5"])
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
  model = validation.model_module(c)
  tx = registry.make(c.optimizer)
  params = jax.eval_shape(functools.partial(model.init_params, model_cfg), jax.random.PRNGKey(0))
  state = jax.eval_shape(lambda p: step_lib.TrainState.create(p, tx, jax.random.PRNGKey(1)), params)
  k = round(c.data.mlm_rate * c.data.seq_len)
  mb, t, m = c.data.batch_size, c.data.seq_len, c.batch_size // c.data.batch_size
  shapes = {"input_ids": ((m, mb, t), np.int32), "attention_mask": ((m, mb, t), np.int32),
            "token_type_ids": ((m, mb, t), np.int32), "mlm_positions": ((m, mb, k), np.int32),
            "mlm_labels": ((m, mb, k), np.int32), "mlm_weights": ((m, mb, k), np.float32)}
  batch = {n: jax.ShapeDtypeStruct(s, d) for n, (s, d) in shapes.items()}
  fn = functools.partial(step_lib.train_step, loss_fn=functools.partial(model.loss_fn, cfg=model_cfg), tx=tx)
  new_state, metrics = jax.eval_shape(fn, state, batch, jax.ShapeDtypeStruct((), np.int32),
                                      jax.ShapeDtypeStruct((), np.float32))
  assert jax.tree.map(lambda x: (x.shape, x.dtype), new_state) == jax.tree.map(lambda x: (x.shape, x.dtype), state)
  assert metrics["loss"].shape == () and "accuracy" in metrics
  n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
  assert 100e6 < n_params < 150e6  # crammed BERT base with a 32768 vocabulary
