"""`came_jax.optim.partition.state_specs`: optimizer-state specs read from each optimizer's own `init`, and the
state placed with them on a mesh of 8 simulated CPU devices (tests/conftest.py sets the XLA flag)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import came_jax
from came_jax.optim import partition, quantization

# What the trainer's FSDP rule gives on a 2 x 4 ("data", "fsdp") mesh, plus hand-made specs a rule never makes.
PARAMS = {
  "emb": jnp.ones((64, 48)),
  "square": jnp.ones((32, 32)),  # rows sharded: the row and column statistics have the same shape
  "square_cols": jnp.ones((32, 32)),  # columns sharded
  "square_2d": jnp.ones((32, 32)),  # rows over "data", columns over "fsdp"
  "rank3": jnp.ones((4, 8, 512)),
  "wide3": jnp.ones((256, 4, 64)),  # "largest_two" factors axes 0 and 2, "last_two" axes 1 and 2
  "bias": jnp.ones((32,)),
  "small": jnp.ones((4, 4)),
}
SPECS = {
  "emb": P("fsdp"),
  "square": P("fsdp"),
  "square_cols": P(None, "fsdp"),
  "square_2d": P("data", "fsdp"),
  "rank3": P(None, None, "fsdp"),
  "wide3": P("fsdp"),
  "bias": P(),
  "small": None,  # None: replicated
}
PARAM_SPECS = {k: P() if s is None else s for k, s in SPECS.items()}  # and its momentum's spec


def _is_spec(x):
  return isinstance(x, P)


def _assert_specs(got, expected):
  assert jax.tree.structure(got, is_leaf=_is_spec) == jax.tree.structure(expected, is_leaf=_is_spec)
  for (path, g), e in zip(
    jax.tree_util.tree_flatten_with_path(got, is_leaf=_is_spec)[0], jax.tree.leaves(expected, is_leaf=_is_spec)
  ):
    assert g == e, (jax.tree_util.keystr(path), g, e)


# v_row, v_col of each factored param under CAME's "last_two" policy: each keeps the spec of the axes it keeps.
LAST_TWO = {
  "emb": (P("fsdp"), P()),
  "square": (P("fsdp"), P()),
  "square_cols": (P(), P("fsdp")),
  "square_2d": (P("data"), P("fsdp")),
  "rank3": (P(), P(None, "fsdp")),
  "wide3": (P("fsdp"), P("fsdp")),  # (256, 4) and (256, 64): the rows (axis 0) kept by both
  "small": (P(), P()),
}
# "largest_two" with min_dim_size_to_factor=32: rank3's two largest axes (512, 8) are too small to factor (a full
# second moment, sharded like the param), wide3 is factored over axes 0 and 2, `small` keeps a full moment.
LARGEST_TWO = {**LAST_TWO, "wide3": (P("fsdp"), P())}
del LARGEST_TWO["rank3"], LARGEST_TWO["small"]


def _came_expected(factored, scales=None):
  """The expected `ScaleByCameState` specs for PARAMS; `scales`: int8 momentum block-scale specs by param."""

  def mu(k):
    if scales is not None and k in scales:
      return quantization.QuantizedArray(PARAM_SPECS[k], scales[k])
    return PARAM_SPECS[k]

  return came_jax.ScaleByCameState(
    count=P(),
    mu={k: mu(k) for k in PARAMS},
    v_row={k: factored[k][0] if k in factored else P() for k in PARAMS},
    v_col={k: factored[k][1] if k in factored else P() for k in PARAMS},
    v={k: P() if k in factored else PARAM_SPECS[k] for k in PARAMS},
    r_row={k: factored[k][0] if k in factored else P() for k in PARAMS},
    r_col={k: factored[k][1] if k in factored else P() for k in PARAMS},
  )


@pytest.mark.parametrize("momentum_dtype", ["float32", "bfloat16"])
def test_came_last_two(momentum_dtype):
  tx = came_jax.scale_by_came(momentum_dtype=momentum_dtype)
  _assert_specs(partition.state_specs(tx.init, PARAMS, SPECS), _came_expected(LAST_TWO))


def test_came_largest_two():
  tx = came_jax.scale_by_came(factoring="largest_two", min_dim_size_to_factor=32)
  _assert_specs(partition.state_specs(tx.init, PARAMS, SPECS), _came_expected(LARGEST_TWO))


def test_came_square_matrix_statistics_differ_without_names():
  """The row statistic keeps the row axis, the column statistic the column axis, whichever axis is sharded."""
  tx = came_jax.scale_by_came()
  specs = partition.state_specs(tx.init, PARAMS, SPECS)
  assert (specs.v_row["square"], specs.v_col["square"]) == (P("fsdp"), P())
  assert (specs.v_row["square_cols"], specs.v_col["square_cols"]) == (P(), P("fsdp"))
  assert (specs.r_row["square_2d"], specs.r_col["square_2d"]) == (P("data"), P("fsdp"))


@pytest.mark.parametrize("factoring", ["last_two", "largest_two"])
def test_came_int8_codes_like_the_param_block_scales_replicate_the_blocked_axis(factoring):
  tx = came_jax.scale_by_came(
    momentum_dtype="int8",
    min_quantized_size=256,
    quantization_block_size=256,
    factoring=factoring,
    min_dim_size_to_factor=32,
  )
  specs = partition.state_specs(tx.init, PARAMS, SPECS)
  # Quantized: every param of >= 256 elements. Scales: the last axis in blocks of 256 (1 or 2 blocks).
  scales = {
    "emb": P("fsdp"),
    "square": P("fsdp"),
    "square_cols": P(),
    "square_2d": P("data"),
    "rank3": P(),
    "wide3": P("fsdp"),
  }
  _assert_specs(specs, _came_expected(LAST_TWO if factoring == "last_two" else LARGEST_TWO, scales))
  state = jax.eval_shape(tx.init, PARAMS)
  assert isinstance(state.mu["rank3"], quantization.QuantizedArray) and state.mu["rank3"].scales.shape == (4, 8, 2)
  assert not isinstance(state.mu["bias"], quantization.QuantizedArray)


def test_came_chain_wrappers_keep_the_inner_specs():
  inner = came_jax.came(1e-2, weight_decay=0.1, mask=lambda p: jax.tree.map(lambda x: x.ndim >= 2, p))
  plain = partition.state_specs(inner.init, PARAMS, SPECS)
  _assert_specs(plain[0], _came_expected(LAST_TWO))

  injected = optax.inject_hyperparams(came_jax.came)(learning_rate=1e-2, weight_decay=0.1)
  specs = partition.state_specs(injected.init, PARAMS, SPECS)
  _assert_specs(specs.inner_state[0], _came_expected(LAST_TWO))
  assert all(s == P() for s in jax.tree.leaves(specs.hyperparams, is_leaf=_is_spec)) and specs.hyperparams

  multi = optax.MultiSteps(inner, every_k_schedule=4)
  specs = partition.state_specs(multi.init, PARAMS, SPECS)
  _assert_specs(specs.inner_opt_state[0], _came_expected(LAST_TWO))
  _assert_specs(specs.acc_grads, PARAM_SPECS)  # gradient accumulators: like the params
  assert specs.mini_step == P() and specs.gradient_step == P()


def test_optax_adamw_and_sgd():
  specs = partition.state_specs(optax.adamw(1e-3, weight_decay=0.1).init, PARAMS, SPECS)
  adam = specs[0]
  assert adam.count == P()
  _assert_specs(adam.mu, PARAM_SPECS)
  _assert_specs(adam.nu, PARAM_SPECS)
  sgd = partition.state_specs(optax.sgd(1e-3, momentum=0.9).init, PARAMS, SPECS)
  _assert_specs(sgd[0].trace, PARAM_SPECS)


def test_optax_adafactor():
  """optax's Adafactor factors a matrix's two largest axes; `v_row` drops the largest (the last of equals)."""
  params = {
    "emb": jnp.ones((64, 48)),
    "tall": jnp.ones((16, 2048)),
    "square": jnp.ones((32, 32)),
    "rank3": jnp.ones((4, 8, 512)),
    "bias": jnp.ones(32),
  }
  specs = {
    "emb": P("fsdp"),
    "tall": P(None, "fsdp"),
    "square": P("fsdp"),
    "rank3": P(None, None, "fsdp"),
    "bias": P("fsdp"),
  }
  tx = optax.adafactor(1e-3, min_dim_size_to_factor=8, momentum=0.9)
  got = partition.state_specs(tx.init, params, specs)
  factored, momentum = got[0], got[4].ema  # chain(factored rms, ..., ema, ...)
  assert type(factored).__name__ == "FactoredState" and factored.count == P()
  assert factored.v_row["emb"] == P() and factored.v_col["emb"] == P("fsdp")  # the kept 64 rows are sharded
  assert factored.v_row["tall"] == P() and factored.v_col["tall"] == P("fsdp")
  assert factored.v_row["rank3"] == P() and factored.v_col["rank3"] == P(None, "fsdp")
  assert factored.v["bias"] == P("fsdp") and factored.v["emb"] == P()  # full moment / placeholder
  # A square matrix: which axis optax calls "largest" is a tie-break that no shape shows; the derivation sees the
  # tie broken both ways disagree and replicates the two (small) statistics rather than guess.
  assert factored.v_row["square"] == P() and factored.v_col["square"] == P()
  assert momentum == specs  # the momentum: like the params


def test_leaves_of_no_param_are_replicated():
  """A state leaf shaped like a param axis, but under no param's path or not scaling with it, is replicated."""

  def init(params):
    return {
      "global": jnp.zeros(64),  # no param's path
      "per_param": jax.tree.map(lambda p: jnp.zeros(64), params),  # under a path, but a fixed size
      "rows": jax.tree.map(lambda p: jnp.zeros(p.shape[:1]), params),
    }  # axis 0 of each param

  tx = optax.GradientTransformation(init, lambda u, s, p=None: (u, s))
  params = {"emb": jnp.ones((64, 48)), "cols": jnp.ones((48, 64))}
  specs = partition.state_specs(tx.init, params, {"emb": P("fsdp"), "cols": P(None, "fsdp")})
  assert specs == {"global": P(), "per_param": {"emb": P(), "cols": P()}, "rows": {"emb": P("fsdp"), "cols": P()}}


def test_params_as_a_list_or_a_single_array():
  # A chain's `[0]` is not the first param's path: only a param's whole path followed by attribute names counts.
  params = [jnp.ones((64, 48)), jnp.ones((48, 64))]
  specs = partition.state_specs(optax.adam(1e-3).init, params, [P("fsdp"), P(None, "fsdp")])
  assert specs[0].mu == [P("fsdp"), P(None, "fsdp")] and specs[0].count == P()
  one = partition.state_specs(came_jax.scale_by_came().init, jnp.ones((64, 48)), P(None, "fsdp"))
  assert one.mu == P(None, "fsdp") and one.v_row == P() and one.v_col == P("fsdp") and one.count == P()


def test_a_layout_changed_by_the_larger_shapes_is_replicated():
  """int8 momentum from 1500 elements: the 32 x 32 param is not quantized, its 64 x 32 probe would be."""
  tx = came_jax.scale_by_came(momentum_dtype="int8", min_quantized_size=1500)
  specs = partition.state_specs(
    tx.init, {"w": jnp.ones((32, 32)), "e": jnp.ones((64, 48))}, {"w": P("fsdp"), "e": P("fsdp")}
  )
  assert specs.mu["w"] == P()  # the probe's state has no such leaf: replicated, not guessed
  assert specs.mu["e"] == quantization.QuantizedArray(P("fsdp"), P("fsdp"))
  assert specs.v_row["w"] == P("fsdp")  # the statistics' layout did not change


def test_unsharded_params_and_bad_specs():
  tx = came_jax.scale_by_came()
  specs = partition.state_specs(tx.init, PARAMS, jax.tree.map(lambda _: P(), PARAMS))
  assert all(s == P() for s in jax.tree.leaves(specs, is_leaf=_is_spec))
  with pytest.raises(ValueError, match=r"param \['bias'\] has more entries"):
    partition.state_specs(tx.init, PARAMS, {**SPECS, "bias": P(None, "fsdp")})


# ----------------------------------------------------------------------------------------- placed on a mesh
@pytest.fixture(scope="module")
def mesh():
  assert jax.device_count() >= 8, "tests/conftest.py must set --xla_force_host_platform_device_count=8"
  return Mesh(np.array(jax.devices()[:8]).reshape(2, 4), ("data", "fsdp"))


def _named(mesh, specs):
  return jax.tree.map(lambda s: NamedSharding(mesh, s), specs, is_leaf=_is_spec)


@pytest.mark.parametrize("name", ["came_int8", "came_largest_two", "adamw", "adafactor", "multi_steps", "injected"])
def test_state_created_with_the_specs_is_sharded(mesh, name):
  tx = {
    "came_int8": lambda: came_jax.came(1e-2, momentum_dtype="int8", min_quantized_size=256),
    "came_largest_two": lambda: came_jax.came(1e-2, factoring="largest_two", min_dim_size_to_factor=32),
    "adamw": lambda: optax.adamw(1e-3),
    "adafactor": lambda: optax.adafactor(1e-3, min_dim_size_to_factor=8, momentum=0.9),
    "multi_steps": lambda: optax.MultiSteps(came_jax.came(1e-2, bias_correction=True), every_k_schedule=2),
    "injected": lambda: optax.inject_hyperparams(came_jax.came)(learning_rate=1e-2),
  }[name]()
  specs = partition.state_specs(tx.init, PARAMS, SPECS)
  state = jax.jit(tx.init, out_shardings=_named(mesh, specs))(PARAMS)
  leaves = jax.tree_util.tree_flatten_with_path(state)[0]
  spec_leaves = jax.tree.leaves(specs, is_leaf=_is_spec)
  assert len(leaves) == len(spec_leaves)
  split = 0
  for (path, x), spec in zip(leaves, spec_leaves):
    assert x.sharding.is_equivalent_to(NamedSharding(mesh, spec), x.ndim), jax.tree_util.keystr(path)
    ways = int(np.prod([mesh.shape[a] for a in spec if a is not None]))
    assert x.addressable_shards[0].data.size == x.size // ways, jax.tree_util.keystr(path)
    split += ways > 1
  assert split >= 5  # momenta (or codes) of the sharded params at least
  jax.tree.map(np.testing.assert_array_equal, state, tx.init(PARAMS))  # the values of the unplaced init


@pytest.mark.parametrize("momentum_dtype", ["float32", "bfloat16", "int8"])
def test_came_init_on_placed_params_places_its_state_with_these_specs(mesh, momentum_dtype):
  tx = came_jax.came(1e-2, momentum_dtype=momentum_dtype, min_quantized_size=256)
  placed = tx.init(jax.device_put(PARAMS, _named(mesh, SPECS)))
  specs = partition.state_specs(tx.init, PARAMS, SPECS)
  for (path, x), spec in zip(jax.tree_util.tree_flatten_with_path(placed)[0], jax.tree.leaves(specs, is_leaf=_is_spec)):
    assert isinstance(x.sharding, NamedSharding) and x.sharding.mesh == mesh, jax.tree_util.keystr(path)
    assert x.sharding.is_equivalent_to(NamedSharding(mesh, spec), x.ndim), jax.tree_util.keystr(path)
    assert not np.any(np.asarray(x)), jax.tree_util.keystr(path)  # zeros, as unplaced
  assert placed[0].v_row["square"].sharding.spec == P("fsdp") and placed[0].v_col["square"].sharding.spec == P()
  # Unplaced params: nothing is placed.
  assert not isinstance(tx.init(PARAMS)[0].v_row["emb"].sharding, NamedSharding)
