"""Live parity with the official PyTorch CAME (`came-pytorch` 0.1.3, Algorithm 2 of the paper)."""

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
}
NUM_STEPS = 60


def _max_rel_error(ours: np.ndarray, ref: np.ndarray) -> float:
  scale = max(np.max(np.abs(ref)), 1e-30)
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
def test_matches_came_pytorch(lr, betas, clip_threshold, weight_decay):
  rng = np.random.default_rng(0)
  init = {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}
  # Gradients with a persistent component so momentum and instability evolve non-trivially.
  drift = {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}
  grads = [
      {k: (drift[k] + rng.normal(size=s) * (0.1 + 2.0 * (t % 7 == 0))).astype(np.float32)
       for k, s in SHAPES.items()}
      for t in range(NUM_STEPS)
  ]

  # The reference runs in float64 so that its per-step update (a parameter difference) is exact enough to
  # compare with ours, which we read directly from `tx.update`; its float32 parameters are compared too.
  torch_params = {k: torch.nn.Parameter(torch.tensor(v, dtype=torch.float64)) for k, v in init.items()}
  ref = CAME(list(torch_params.values()), lr=lr, betas=betas, clip_threshold=clip_threshold,
             weight_decay=weight_decay)

  tx = came_jax.came(lr, b1=betas[0], b2=betas[1], b3=betas[2], clip_threshold=clip_threshold,
                     weight_decay=weight_decay)
  params = jax.tree.map(jnp.asarray, init)
  state = tx.init(params)

  @jax.jit
  def step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), updates, state

  for t in range(NUM_STEPS):
    before = {k: p.detach().numpy().copy() for k, p in torch_params.items()}
    for k, p in torch_params.items():
      p.grad = torch.tensor(grads[t][k], dtype=torch.float64)
    ref.step()
    params, updates, state = step(params, state, jax.tree.map(jnp.asarray, grads[t]))
    for k in SHAPES:
      ref_param = torch_params[k].detach().numpy()
      err = _max_rel_error(np.asarray(updates[k]), ref_param - before[k])
      assert err <= 1e-5, f"update of {k} {SHAPES[k]} at step {t}: relative error {err:.2e}"
      err = _max_rel_error(np.asarray(params[k]), ref_param)
      assert err <= 1e-5, f"param {k} {SHAPES[k]} at step {t}: relative error {err:.2e}"
