"""A stand-in model with the model protocol of `came_jax.models` (Config, CONFIGS, init_params, loss_fn,
logits_fn, flops_per_token, max_len): a bigram causal LM (embedding -> norm scale -> tied-free output matrix) that
compiles in well under a second, so loop tests spend their time on the loop. Registered as
`came_jax.models.standin`."""

import dataclasses
from typing import Mapping

import jax
import jax.numpy as jnp
import optax


@dataclasses.dataclass(frozen=True)
class Config:
  vocab_size: int = 2048
  hidden_dim: int = 16
  max_len: int = 128
  dtype: str = "float32"


CONFIGS = {"tiny": Config()}


def init_params(cfg: Config, rng: jax.Array) -> dict:
  k1, k2 = jax.random.split(rng)
  return {
    "embed": 0.02 * jax.random.normal(k1, (cfg.vocab_size, cfg.hidden_dim)),
    "scale": jnp.ones((cfg.hidden_dim,)),
    "out": 0.02 * jax.random.normal(k2, (cfg.hidden_dim, cfg.vocab_size)),
  }


def max_len(cfg: Config) -> int:
  return cfg.max_len


def logits_fn(params, batch, *, cfg: Config, train: bool = False, rng=None):
  del rng, train
  dtype = jnp.dtype(cfg.dtype)
  h = params["embed"][batch["input_ids"]].astype(dtype) * params["scale"].astype(dtype)
  return (h @ params["out"].astype(dtype)).astype(jnp.float32)


def loss_fn(params, batch, rng, *, cfg: Config, train: bool):
  logits = logits_fn(params, batch, cfg=cfg, train=train, rng=rng)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"])
  w = batch["weights"].astype(jnp.float32)
  n = w.sum()
  loss = (ce * w).sum() / jnp.maximum(n, 1.0)
  acc = ((logits.argmax(-1) == batch["labels"]) * w).sum() / jnp.maximum(n, 1.0)
  return loss, {"loss": loss, "num_tokens": n, "accuracy": acc}


def flops_per_token(cfg: Config, batch_shapes: Mapping[str, tuple[int, ...]]) -> float:
  del batch_shapes
  return 6.0 * 2 * cfg.hidden_dim * cfg.vocab_size
