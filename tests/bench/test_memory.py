"""came_jax.bench.memory and shapes: optimizer state sized on real model shapes, without allocating."""

import pytest

from came_jax.bench import memory, shapes


def test_state_of_each_optimizer_on_bert_base():
  params = shapes.param_shapes("BERT-base (crammed)")
  assert 100e6 < shapes.num_params(params) < 130e6 and shapes.num_bytes(params) == 4 * shapes.num_params(params)
  states = memory.state_bytes(params)
  pbytes = shapes.num_bytes(params)
  assert states["Adam"] == pytest.approx(2 * pbytes, rel=1e-3)
  assert states["SGD-momentum"] == pytest.approx(pbytes, rel=1e-3)
  assert states["Adafactor"] < 0.05 * pbytes  # factored second moment, no momentum
  assert pbytes < states["CAME"] < 1.1 * pbytes  # momentum + factored statistics
  assert states["CAME 8-bit-m"] < states["CAME bf16-m"] < states["CAME"]


def test_tables_have_a_row_per_model():
  text = memory.tables(["GPT-2 small (124M)", "T5-base (v1.1)"])
  assert text.startswith("### Optimizer state, in multiples of the fp32 parameter bytes\n\n| model | params |")
  assert text.count("| GPT-2 small (124M) |") == 2 and text.count("| T5-base (v1.1) |") == 2
  assert "| CAME / Adam |" in text
