"""came_jax: the CAME optimizer for optax, and time-budgeted LM training in Flax.

`came_jax.came` is an optax `GradientTransformation`, so it composes with the rest of optax; here after
global-norm clipping, on a small quadratic:

>>> import jax, jax.numpy as jnp, optax
>>> import came_jax
>>> tx = optax.chain(optax.clip_by_global_norm(1.0), came_jax.came(learning_rate=0.05))
>>> params = {"w": jnp.zeros((4, 3)), "b": jnp.zeros(3)}  # a factored matrix and a vector
>>> loss = lambda p: jnp.sum((p["w"] - 0.5) ** 2) + jnp.sum((p["b"] + 1.0) ** 2)
>>> state = tx.init(params)
>>> @jax.jit
... def step(params, state):
...   updates, state = tx.update(jax.grad(loss)(params), state, params)
...   return optax.apply_updates(params, updates), state
>>> float(loss(params))
6.0
>>> for _ in range(100):
...   params, state = step(params, state)
>>> round(float(loss(params)), 2)
0.02
"""

from came_jax.optim.came import ScaleByCameState, came, scale_by_came
from came_jax.optim.rounding import StochasticRoundingState, stochastic_rounding

__all__ = ["ScaleByCameState", "StochasticRoundingState", "came", "scale_by_came", "stochastic_rounding"]
__version__ = "0.1.0"
