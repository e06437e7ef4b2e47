"""Live parity with the official PyTorch CAME (`came-pytorch` 0.1.3, Algorithm 2 of the paper).

Both get the same float32 betas; given decimal betas they differ by how each rounds 1 - β (last test).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from came_pytorch import CAME

import came_jax

# Rank 0-4, including the degenerate (1, n) and (n, 1) matrices.
SHAPES = {
  "scalar": (),
  "vector": (7,),
  "matrix": (6, 5),
  "row": (1, 9),
  "col": (9, 1),
  "rank3": (3, 4, 5),
  "rank4": (2, 3, 4, 6),
  # With chunk_bytes=768 the CPU kernel (came_jax/optim/came_cpu.py) takes these three, the others stay with the
  # reference update:
  "tall": (32, 24),  # 4 blocks of 8 rows
  "odd": (37, 24),  # 4 blocks of 8 rows and a tail block of 5
  "wide": (3, 300),  # a row is larger than a block: 3 blocks of one row
}
NUM_STEPS = 60


def _as_float32(betas):
  """The betas as the float32 numbers came_jax computes with (see "Hyperparameter arithmetic" in came.py)."""
  return tuple(float(np.float32(b)) for b in betas)


def _max_rel_error(ours: np.ndarray, ref: np.ndarray, scale: float = 0.0) -> float:
  """max |ours - ref| relative to the leaf's magnitude: max |ref|, or `scale` if larger."""
  scale = max(np.max(np.abs(ref)), scale, 1e-30)
  return float(np.max(np.abs(ours - ref)) / scale) if ref.size else 0.0


@pytest.mark.parametrize(
  "lr,betas,clip_threshold,weight_decay",
  [
    (1e-3, (0.9, 0.999, 0.9999), 1.0, 0.0),  # the paper's defaults
    (1e-2, (0.9, 0.999, 0.9999), 1.0, 0.1),  # decoupled weight decay
    (3e-3, (0.8, 0.99, 0.999), 0.5, 0.0),  # faster statistics, tighter clipping
    (5e-3, (0.95, 0.9, 0.99), 2.0, 0.01),  # loose clipping, fast instability EMA
  ],
)
@pytest.mark.parametrize("chunk_bytes", [None, 768], ids=["reference", "cpu kernel"])
def test_matches_came_pytorch(lr, betas, clip_threshold, weight_decay, chunk_bytes):
  _compare(lr, betas, clip_threshold, weight_decay, chunk_bytes, torch_betas=_as_float32(betas), tol=1e-5)


def test_decimal_betas_differ_from_came_pytorch_by_the_rounding_of_one_minus_beta():
  """Given the decimal betas, came-pytorch takes 1 - β in float64 and came_jax in float32: at β3 = 0.9999 the
  instability's scale differs by 1.7e-4, the step by half that (8e-5); nothing else differs."""
  betas = (0.9, 0.999, 0.9999)
  scale = float(1.0 - np.float32(betas[2])) / float(np.float32(1.0 - betas[2]))
  assert 1.6e-4 < scale - 1 < 1.7e-4
  _compare(1e-3, betas, 1.0, 0.0, None, torch_betas=betas, tol=(scale - 1) / 2 + 1e-5)


def _compare(lr, betas, clip_threshold, weight_decay, chunk_bytes, *, torch_betas, tol):
  rng = np.random.default_rng(0)
  init = {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}
  # Gradients with a persistent component so momentum and instability evolve non-trivially.
  drift = {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}
  grads = [
    {k: (drift[k] + rng.normal(size=s) * (0.1 + 2.0 * (t % 7 == 0))).astype(np.float32) for k, s in SHAPES.items()}
    for t in range(NUM_STEPS)
  ]

  # Two reference runs: in float32, as users run it, for the parameters; in float64 for the per-step update, a
  # parameter difference that float32 would round too coarsely to compare with ours (read from `tx.update`).
  references = {}
  for dtype in (torch.float32, torch.float64):
    tensors = {k: torch.nn.Parameter(torch.tensor(v, dtype=dtype)) for k, v in init.items()}
    references[dtype] = (
      tensors,
      CAME(list(tensors.values()), lr=lr, betas=torch_betas, clip_threshold=clip_threshold, weight_decay=weight_decay),
    )

  tx = came_jax.came(
    lr,
    b1=betas[0],
    b2=betas[1],
    b3=betas[2],
    clip_threshold=clip_threshold,
    weight_decay=weight_decay,
    chunk_bytes=chunk_bytes,
  )
  params = jax.tree.map(jnp.asarray, init)
  state = tx.init(params)

  @jax.jit
  def step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), updates, state

  for t in range(NUM_STEPS):
    f32, f64 = references[torch.float32][0], references[torch.float64][0]
    before = {k: p.detach().numpy().copy() for k, p in f64.items()}
    for tensors, opt in references.values():
      for k, p in tensors.items():
        p.grad = torch.tensor(grads[t][k], dtype=p.dtype)
      opt.step()
    params, updates, state = step(params, state, jax.tree.map(jnp.asarray, grads[t]))
    for k in SHAPES:
      err = _max_rel_error(np.asarray(updates[k]), f64[k].detach().numpy() - before[k])
      assert err <= tol, f"update of {k} {SHAPES[k]} at step {t}: relative error {err:.2e}"
      # Relative to the parameter's own scale (its initial magnitude, or now if larger): a scalar that passes
      # through zero would otherwise turn float32 rounding into an unbounded relative error.
      err = _max_rel_error(np.asarray(params[k]), f32[k].detach().numpy(), float(np.max(np.abs(init[k]))))
      assert err <= tol, f"param {k} {SHAPES[k]} at step {t}: relative error {err:.2e}"
