"""came_jax: the CAME optimizer for optax, and time-budgeted LM training in Flax."""

from came_jax.optim.came import ScaleByCameState, came, scale_by_came

__all__ = ["ScaleByCameState", "came", "scale_by_came"]
__version__ = "0.1.0"
