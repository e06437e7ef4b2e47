"""The train and eval steps: module-level pure functions, jitted once by the trainer.

`train_step` accumulates gradients over a fixed-shape stack of micro-batches with `lax.scan`; only the first
`num_micro` (a runtime value chosen by the batch-size ramp) are computed, the rest are skipped by `lax.cond`,
so shapes stay static and the ramp never recompiles. (One micro-batch per step has no loop and no accumulator.)
Each micro-batch's loss is weighted by its token count before differentiation. The learning rate also enters as a
runtime value and is written into the optimizer state's injected hyperparameters. Gradients are token-weighted
means over the micro-batches; global-norm clipping is part of the optimizer chain (`came_jax.optim.registry`). A
step whose gradient is not finite leaves params and optimizer state unchanged and is counted.

The model brings only `loss_fn(params, batch, rng, *, train) -> (loss, metrics)` with `metrics["num_tokens"]`;
every other scalar metric (e.g. MLM `accuracy`) is averaged over tokens like the loss.
"""

from __future__ import annotations

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax

from came_jax.optim import registry

LossFn = Callable[..., tuple[jax.Array, dict[str, jax.Array]]]


@flax.struct.dataclass
class TrainState:
  """Everything a step changes (donated to the jitted step), checkpointed as one pytree."""

  step: jax.Array  # int32, optimizer steps taken (skipped non-finite steps included)
  params: Any
  opt_state: Any
  rng: jax.Array  # base key (raw uint32[2]); step keys are fold_in(rng, step)
  nonfinite_consecutive: jax.Array  # int32
  nonfinite_total: jax.Array  # int32

  @classmethod
  def create(cls, params, tx: optax.GradientTransformation, rng: jax.Array) -> "TrainState":
    zero = lambda: jnp.zeros((), jnp.int32)
    state = cls(
      step=zero(),
      params=params,
      opt_state=tx.init(params),
      rng=rng,
      nonfinite_consecutive=zero(),
      nonfinite_total=zero(),
    )
    # The state is donated to the step: no two leaves may share a buffer (optax states may alias arrays).
    return jax.tree.map(jnp.copy, state)


def _split_metrics(metrics: dict[str, jax.Array]) -> tuple[jax.Array, dict[str, jax.Array]]:
  n = jnp.asarray(metrics["num_tokens"], jnp.float32)
  rest = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items() if k not in ("num_tokens", "loss")}
  return n, rest


def train_step(
  state: TrainState,
  batch: dict[str, jax.Array],
  num_micro: jax.Array,
  learning_rate: jax.Array,
  *,
  loss_fn: LossFn,
  tx: optax.GradientTransformation,
  grad_shardings: Any = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer step over `batch` of shape `[max_micro, micro_batch, ...]`, using its first `num_micro`.

  `grad_shardings` (a tree of shardings like the params, e.g. FSDP's): where the float32 gradient accumulator
  lives, so that it is sharded like the params rather than whole on every device.

  Returns the new state and scalar metrics: `loss`, token-weighted model metrics, `num_tokens`, `grad_norm`
  (before clipping), `update_norm`, `param_norm`, `learning_rate`, `skipped`, `nonfinite_consecutive`,
  `nonfinite_total`.
  """
  step_rng = jax.random.fold_in(state.rng, state.step)
  params = state.params
  if grad_shardings is None:
    place = lambda tree: tree
  else:
    place = lambda tree: jax.lax.with_sharding_constraint(tree, grad_shardings)

  def micro_loss(p, mb, rng):
    # Weighted by the micro-batch's token count, so that the gradient arrives scaled for the token-weighted mean:
    # the factor rides on the backward pass's seed, not on a multiplication of every gradient.
    loss, metrics = loss_fn(p, mb, rng, train=True)
    n = jnp.asarray(metrics["num_tokens"], jnp.float32)
    return loss.astype(jnp.float32) * n, metrics

  grad_fn = jax.value_and_grad(micro_loss, has_aux=True)

  def micro_step(mb, i):
    (loss_sum, metrics), grads = grad_fn(params, mb, jax.random.fold_in(step_rng, i))
    n, extra = _split_metrics(metrics)
    grads = place(jax.tree.map(lambda g: g.astype(jnp.float32), grads))
    return grads, loss_sum, n, {k: v * n for k, v in extra.items()}

  max_micro = jax.tree.leaves(batch)[0].shape[0]
  if max_micro == 1:  # one micro-batch: no accumulator (no zero-filled pass, no add)
    carry = micro_step(jax.tree.map(lambda x: x[0], batch), 0)
  else:

    def body(c, xs):
      i, mb = xs

      def compute(c):
        g, loss, n, e = micro_step(mb, i)
        return (place(jax.tree.map(jnp.add, c[0], g)), c[1] + loss, c[2] + n, {k: c[3][k] + e[k] for k in e})

      return jax.lax.cond(i < num_micro, compute, lambda c: c, c), None

    zeros = jax.tree.map(
      lambda x: jnp.zeros(x.shape, x.dtype), jax.eval_shape(micro_step, jax.tree.map(lambda x: x[0], batch), 0)
    )
    carry, _ = jax.lax.scan(body, (place(zeros[0]), *zeros[1:]), (jnp.arange(max_micro), batch))
  g_sum, loss_sum, n_tok, extra_sum = carry
  denom = jnp.maximum(n_tok, 1.0)
  grads = jax.tree.map(lambda g, p: (g / denom).astype(p.dtype), g_sum, params)
  loss = loss_sum / denom

  grad_norm = optax.tree.norm(grads)
  finite = jnp.isfinite(grad_norm) & jnp.isfinite(loss)
  opt_state = registry.set_learning_rate(state.opt_state, learning_rate)

  # A lax.cond, not a selection of old or new values after an unconditional update: with a selection XLA:CPU keeps
  # a copy of each old state array (measured at crammed-BERT widths: +1 copy per AdamW moment, +13% temporaries,
  # AdamW's step 25% slower).
  def apply(operands):
    p, o = operands
    with jax.named_scope("optimizer"):
      updates, o = tx.update(grads, o, p)
      return optax.apply_updates(p, updates), o, optax.tree.norm(updates)

  def skip(operands):
    p, o = operands
    return p, o, jnp.zeros((), jnp.float32)

  new_params, new_opt_state, update_norm = jax.lax.cond(finite, apply, skip, (params, opt_state))
  consecutive = jnp.where(finite, 0, state.nonfinite_consecutive + 1).astype(jnp.int32)
  new_state = state.replace(
    step=state.step + 1,
    params=new_params,
    opt_state=new_opt_state,
    nonfinite_consecutive=consecutive,
    nonfinite_total=state.nonfinite_total + (~finite).astype(jnp.int32),
  )
  metrics = {
    "loss": loss,
    "num_tokens": n_tok,
    "grad_norm": grad_norm,
    "update_norm": update_norm,
    "param_norm": optax.tree.norm(new_params),
    "learning_rate": registry.get_learning_rate(new_opt_state),
    "skipped": (~finite).astype(jnp.int32),
    "nonfinite_consecutive": consecutive,
    "nonfinite_total": new_state.nonfinite_total,
    **{k: v / denom for k, v in extra_sum.items()},
  }
  return new_state, metrics


def eval_step(params, batch: dict[str, jax.Array], *, loss_fn: LossFn) -> dict[str, jax.Array]:
  """Token-weighted sums over one held-out batch: `loss_sum`, `num_tokens` and `<metric>_sum`."""
  loss, metrics = loss_fn(params, batch, jax.random.PRNGKey(0), train=False)
  n, extra = _split_metrics(metrics)
  return {"loss_sum": loss.astype(jnp.float32) * n, "num_tokens": n, **{f"{k}_sum": v * n for k, v in extra.items()}}
