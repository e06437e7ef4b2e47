"""came_jax.bench.peers: our step against transformers' on tiny shapes, one step: the table's rows and columns, the
same loss at step 0 (same weights, same batch), and the PyTorch rows skipped with a note when they cannot run."""

import numpy as np
import pytest
import torch

from came_jax.bench import peers
from experiments import bench_train

COLUMNS = (
  "| model | batch x seq | contestant | step (ms) | time / ours | best step (ms) | best / ours' best | "
  "compile or first step (s) | loss at step 0 |"
)


def _cells(table, contestant):
  return [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines() if f"| {contestant} |" in line]


@pytest.fixture(scope="module")
def gpt2():
  peer = peers.tiny(peers.PEERS["gpt2"])
  return peer, *peers.compare(peer, steps=1, warmup=0, compile=False)


@pytest.fixture(scope="module")
def bert():
  peer = peers.tiny(peers.PEERS["bert"])
  return peer, *peers.compare(peer, steps=1, warmup=0, compile=False)


def test_gpt2_same_loss_at_step_zero_and_the_table(gpt2):
  peer, rows, notes = gpt2
  assert [r.contestant for r in rows] == ["ours", "ours, plain step", "PyTorch eager"] and notes == []
  losses = {r.contestant: r.first_loss for r in rows}
  assert abs(losses["ours"] - np.log(97)) < 0.5  # a fresh model's loss over 97 tokens
  assert losses["PyTorch eager"] == pytest.approx(losses["ours"], rel=1e-5)
  assert losses["ours, plain step"] == pytest.approx(losses["ours"], rel=1e-6)
  assert rows[0].vs_ours == rows[0].best_vs_ours == 1.0
  assert all(0 < r.best_s <= r.step_s and r.vs_ours > 0 and r.best_vs_ours > 0 for r in rows)
  table = peers.table(rows, [peer], notes)
  lines = table.splitlines()
  assert lines[0].startswith(f"### Training step vs PyTorch: {peers.cpu_name()}") and "torch " in lines[0]
  assert lines[2] == COLUMNS
  (eager,) = _cells(table, "PyTorch eager")
  assert eager[:3] == [peer.title, "2 x 16", "PyTorch eager"] and eager[4].endswith("x") and eager[6].endswith("x")
  assert float(eager[8]) == pytest.approx(losses["ours"], rel=1e-4)


def test_bert_sparse_and_dense_heads_and_torch_agree_at_step_zero(bert):
  _, rows, _ = bert
  assert [r.contestant for r in rows] == [
    "ours",
    "ours, plain step",
    "ours, dense MLM head (as BertForMaskedLM)",
    "PyTorch eager",
  ]
  ours = rows[0].first_loss
  for r in rows[1:]:
    assert r.first_loss == pytest.approx(ours, rel=1e-5), r.contestant


def test_bert_batch_masks_the_predicted_positions():
  peer = peers.tiny(peers.PEERS["bert"])
  batch = peers.make_batch(peer)
  k = round(peers.MASK_RATE * peer.seq_len)
  assert batch["mlm_positions"].shape == (2, k) and (batch["mlm_positions"] > 0).all()
  masked = np.take_along_axis(batch["input_ids"], batch["mlm_positions"], axis=1)
  assert (masked == peers.MASK_ID).all() and (batch["mlm_labels"] >= peers.FIRST_ID).all()
  dense = peers.dense_mlm(batch)
  assert dense["mlm_labels"].shape == (2, peer.seq_len) and dense["mlm_weights"].sum() == 2 * k
  assert "mlm_positions" not in dense and not any(key.endswith("_dense") for key in peers.sparse(batch))


def test_torch_rows_skip_with_a_note(monkeypatch):
  monkeypatch.setattr(peers, "torch_available", lambda: "PyTorch rows skipped: torch not installed.")
  peer = peers.tiny(peers.PEERS["gpt2"])
  rows, notes = peers.compare(peer, steps=1, warmup=0)
  assert [r.contestant for r in rows] == ["ours", "ours, plain step"]
  table = peers.table(rows, [peer], notes)
  assert table.endswith("Note: PyTorch rows skipped: torch not installed.") and "PyTorch eager" not in table


def test_a_failing_torch_compile_is_a_note_and_eager_stays(monkeypatch):
  def fail(fn):
    raise RuntimeError("no C++ compiler")

  monkeypatch.setattr(torch, "compile", fail)
  rows, notes = peers.compare(peers.tiny(peers.PEERS["gpt2"]), steps=1, warmup=0, compile=True)
  assert rows[-1].contestant == "PyTorch eager" and "torch.compile" not in [r.contestant for r in rows]
  assert notes == ["torch.compile failed on this machine, kept eager: RuntimeError: no C++ compiler"]


def test_launcher_flag_names_the_peers():
  assert set(peers.PEERS) == {"gpt2", "bert"}
  assert "--peers" in bench_train.__doc__ and "came_jax.bench.peers" in bench_train.__doc__
