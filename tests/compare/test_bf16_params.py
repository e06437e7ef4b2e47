"""came_jax.compare.bf16_params: a few real steps of every arm on the shared sample text, and the table."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from came_jax import models
from came_jax.compare import bf16_params


@pytest.fixture(scope="module")
def tiny_run(shared_data, tmp_path_factory):
  """Every arm, two rates, two seeds, 4 steps of a 1-layer GPT-2 at 4 x 32 tokens: (config, results)."""
  tmp = tmp_path_factory.mktemp("bf16_params")
  cfg = bf16_params.default_config()
  cfg.model = models.config_section("gpt2", "tiny", dtype="float32", num_layers=1, hidden_dim=32, ffn_dim=64)
  cfg.data.update(
    dict(
      path=str(shared_data / "corpus" / "state_union"),
      eval_path=str(shared_data / "heldout" / "wikitext-103" / "wiki.valid.tokens"),
      cache_dir=str(tmp / "cache"),
      eval_batches=1,
      seq_len=32,
      batch_size=4,
      vocab_size=512,
      tokenizer_sentences=2000,
    )
  )
  cfg.update(dict(steps=4, last=2, learning_rates=(1e-2, 1e-6), seeds=(0, 1)))
  return cfg, bf16_params.run(cfg, str(tmp))


def test_every_arm_trains_and_only_nearest_rounding_stalls(tiny_run):
  cfg, results = tiny_run
  assert set(results) == {(lr, arm, s) for lr in (1e-2, 1e-6) for arm in bf16_params.ARMS for s in (0, 1)}
  for lr, arm, seed in results:
    r = results[lr, arm, seed]
    assert np.isfinite(r.train_loss) and np.isfinite(r.heldout_loss) and 0.0 <= r.unchanged <= 1.0
    assert r.train_loss < np.log(cfg.data.vocab_size) + 0.5
  for seed in (0, 1):
    # At 1e-2 every format moves most of its parameters (not the positions past seq_len, which get no gradient).
    assert all(results[1e-2, arm, seed].unchanged < 0.5 for arm in bf16_params.ARMS)
    # At 1e-6 (updates far below half a bf16 step of weights of ~0.02) nearest rounding keeps nearly every
    # bf16 parameter, while stochastic rounding moves some, and float32 all but the unused ones.
    nearest, stochastic = results[1e-6, "bf16-nearest", seed], results[1e-6, "bf16-stochastic", seed]
    assert nearest.unchanged > 0.9 and stochastic.unchanged < nearest.unchanged - 0.01
    assert results[1e-6, "float32", seed].unchanged < stochastic.unchanged
  # The seed sets the initialisation and the data: two seeds, two different runs.
  assert results[1e-2, "float32", 0].train_loss != results[1e-2, "float32", 1].train_loss


def test_only_the_stochastic_arm_keeps_updates_below_half_a_bf16_step():
  # CAME's first step at 1e-4 is ~1.1e-4, below half the bf16 step under 0.5 (2^-10): nearest rounding (of the
  # exact float32 sum: the injected float32 rate makes every update float32) keeps every weight.
  params = {"w": jnp.full((64, 64), 0.5, jnp.bfloat16)}
  moved = {}
  for arm in ("bf16-nearest", "bf16-stochastic"):
    tx = bf16_params.make_optimizer(arm, seed=0)
    state = tx.init(params)
    state.hyperparams["learning_rate"] = jnp.asarray(1e-4, jnp.float32)
    updates, _ = tx.update({"w": jnp.ones((64, 64), jnp.bfloat16)}, state, params)
    assert updates["w"].dtype == jnp.float32
    new = optax.apply_updates(params, updates)["w"]
    assert new.dtype == jnp.bfloat16
    moved[arm] = float(jnp.mean(new != 0.5))
  assert moved["bf16-nearest"] == 0.0 and 0.02 < moved["bf16-stochastic"] < 0.1  # expected 1.1e-4 / 2^-9 = 5.7%
  assert bf16_params.param_dtype("float32") == jnp.float32
  with pytest.raises(ValueError, match="arm"):
    bf16_params.param_dtype("float16")


def test_table_reports_each_arm_against_float32():
  cfg = ml_collections.ConfigDict(
    dict(
      model=dict(name="gpt2", preset="tiny"),
      data=dict(batch_size=8, seq_len=128),
      steps=250,
      learning_rates=(2e-3,),
      seeds=(0, 1),
    )
  )
  r = bf16_params.RunResult
  results = {
    (2e-3, "float32", 0): r(5.0, 6.0, 0.03),
    (2e-3, "float32", 1): r(5.2, 6.2, 0.03),
    (2e-3, "bf16-nearest", 0): r(5.5, 6.5, 0.5),
    (2e-3, "bf16-nearest", 1): r(5.7, 6.7, 0.7),
    (2e-3, "bf16-stochastic", 0): r(5.1, 6.0, 0.05),
    (2e-3, "bf16-stochastic", 1): r(5.3, 6.2, 0.05),
  }
  lines = bf16_params.table(cfg, results, "python -m experiments.bf16_params --workdir w", "AMD EPYC").splitlines()
  assert lines[0] == "### CAME with bf16 parameters: gpt2:tiny, 250 steps of 8 x 128 tokens, seeds 0,1"
  assert lines[3] == "python -m experiments.bf16_params --workdir w"
  assert lines[6].startswith("CPU: AMD EPYC.")
  assert "| 0.002 | float32 | 5.1000 ± 0.1414 | +0.0000 ± 0.0000 | 6.1000 ± 0.1414 | +0.0000 ± 0.0000 | 3.0% |" in lines
  assert (
    "| 0.002 | bf16-nearest | 5.6000 ± 0.1414 | +0.5000 ± 0.0000 | 6.6000 ± 0.1414 | +0.5000 ± 0.0000 | 60.0% |"
    in lines
  )
  assert (
    "| 0.002 | bf16-stochastic | 5.2000 ± 0.1414 | +0.1000 ± 0.0000 | 6.1000 ± 0.1414 | +0.0000 ± 0.0000 | 5.0% |"
    in lines
  )
  assert len(lines) == 10 + 3
