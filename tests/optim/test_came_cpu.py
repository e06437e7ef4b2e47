"""The CPU kernel (came_jax/optim/came_cpu.py): equal to the reference update on every path, chosen only where it
should be, and its block size read from the machine."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import came_jax
from came_jax.optim import came_cpu, quantization


def _uses_kernel(tx, params) -> bool:
  """Whether the update of `params` runs a block loop (the CPU kernel) anywhere."""
  jaxpr = jax.make_jaxpr(tx.update)(params, tx.init(params))
  return "scan" in str(jaxpr) or "while" in str(jaxpr)


def _run_both(shape, steps=4, seed=0, **kwargs):
  """Updates and final states of the reference (chunk_bytes=None) and the kernel (blocks of 4 KiB: 1024 floats)
  on the same gradients."""
  rng = np.random.default_rng(seed)
  params = {"w": jnp.asarray(rng.normal(size=shape), jnp.float32)}
  reference = came_jax.scale_by_came(**kwargs, chunk_bytes=None)
  blocked = came_jax.scale_by_came(**kwargs, chunk_bytes=4096)
  assert not _uses_kernel(reference, params)
  s1, s2 = reference.init(params), blocked.init(params)
  pairs = []
  for t in range(steps):
    # A persistent part plus noise, with a spike now and then, so every average moves.
    grads = {"w": jnp.asarray(rng.normal(size=shape) * (0.1 + 2.0 * (t % 3 == 0)) + 1.0, jnp.float32)}
    u1, s1 = jax.jit(reference.update)(grads, s1)
    u2, s2 = jax.jit(blocked.update)(grads, s2)
    pairs.append((u1["w"], u2["w"]))
  return pairs, s1, s2, (blocked, params)


def _close(a, b, tol):
  a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
  np.testing.assert_allclose(b, a, rtol=tol, atol=tol * float(np.max(np.abs(a))))


SHAPES = {
  "even blocks": (96, 64),  # 16 rows a block (4 KiB), 6 blocks
  "tail block": (101, 40),  # 25 rows a block, 4 blocks and a tail of 1
  "wide rows": (7, 1500),  # a row is larger than a block: one row a block
  "two rows": (2, 1000),  # the smallest matrix the kernel takes
}


@pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
@pytest.mark.parametrize("bias_correction", [False, True])
@pytest.mark.parametrize("factoring", ["last_two", "largest_two"])
def test_kernel_equals_reference_fp32(shape, bias_correction, factoring):
  pairs, s1, s2, (blocked, params) = _run_both(
    shape, bias_correction=bias_correction, factoring=factoring, min_dim_size_to_factor=2
  )
  assert _uses_kernel(blocked, params)
  for u1, u2 in pairs:
    _close(u1, u2, 1e-5)  # the same math; float32 sums taken in another order
  for field in ("mu", "v_row", "v_col", "r_row", "r_col"):
    _close(getattr(s1, field)["w"], getattr(s2, field)["w"], 1e-5)
  assert int(s1.count) == int(s2.count) == len(pairs)


@pytest.mark.parametrize("shape", [(96, 64), (101, 40)], ids=["even blocks", "tail block"])
@pytest.mark.parametrize("momentum_dtype", ["bfloat16", "int8"])
@pytest.mark.parametrize("bias_correction", [False, True])
def test_kernel_equals_reference_with_stored_momentum(shape, momentum_dtype, bias_correction):
  pairs, s1, s2, (blocked, params) = _run_both(
    shape, momentum_dtype=momentum_dtype, min_quantized_size=64, bias_correction=bias_correction
  )
  assert _uses_kernel(blocked, params)
  if momentum_dtype == "int8":
    assert isinstance(s2.mu["w"], quantization.QuantizedArray)
  else:
    assert s2.mu["w"].dtype == jnp.bfloat16
    # Same random bits for the same element (the block's flat offset): the stored momenta agree except where
    # the float32 rounding of û puts a value on the other side of a rounding boundary.
    same = np.asarray(s1.mu["w"] == s2.mu["w"])
    assert same.mean() > 0.99
  for u1, u2 in pairs:
    # A stored momentum rounds (bf16: 2⁻⁸; 8-bit codes: up to ~2/127 of a block's maximum) and a value the
    # reordered sums move across a boundary rounds to the neighbouring code.
    _close(u1, u2, 2e-2)
  for field in ("v_row", "v_col"):  # the second moment does not depend on the stored momentum
    _close(getattr(s1, field)["w"], getattr(s2, field)["w"], 1e-5)


def test_kernel_equals_reference_for_bf16_gradients():
  rng = np.random.default_rng(1)
  g = {"w": jnp.asarray(rng.normal(size=(64, 48)), jnp.bfloat16)}
  reference = came_jax.scale_by_came(chunk_bytes=None)
  blocked = came_jax.scale_by_came(chunk_bytes=2048)
  u1, _ = reference.update(g, reference.init(g))
  u2, _ = blocked.update(g, blocked.init(g))
  assert u1["w"].dtype == u2["w"].dtype == jnp.bfloat16
  _close(u1["w"], u2["w"], 1e-2)  # a bf16 ulp


def test_only_large_two_dimensional_factored_leaves_take_the_kernel():
  params = {
    "matrix": jnp.ones((64, 64)),  # 16 KiB: blocked at 4 KiB
    "small": jnp.ones((16, 16)),  # 1 KiB: one block, the reference
    "rank3": jnp.ones((4, 64, 64)),  # a stack of matrices: the reference
    "vector": jnp.ones((4096,)),  # unfactored: the reference
    "thin": jnp.ones((4, 4096)),  # unfactored under largest_two (4 < 128): the reference
  }
  for name, p in params.items():
    kernel = _uses_kernel(came_jax.scale_by_came(chunk_bytes=4096), {name: p})
    assert kernel == (name in ("matrix", "thin")), name
  assert not _uses_kernel(came_jax.scale_by_came(chunk_bytes=4096, factoring="largest_two"), {"t": params["thin"]})
  assert not _uses_kernel(came_jax.scale_by_came(chunk_bytes=None), {"m": params["matrix"]})


def test_auto_blocks_only_on_a_single_device_cpu(monkeypatch):
  big = {"w": jnp.ones((256, 256))}  # 256 KiB
  # The tests run with 8 simulated CPU devices (tests/conftest.py): a mesh could shard the rows, so no blocks.
  assert jax.device_count() > 1 and not _uses_kernel(came_jax.scale_by_came(), big)
  monkeypatch.setattr(jax, "device_count", lambda *a: 1)
  monkeypatch.setenv(came_cpu.L2_ENV, "256K")  # blocks of 32 KiB
  assert came_cpu.default_block_bytes() == 32 * 1024
  assert _uses_kernel(came_jax.scale_by_came(), big)
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert not _uses_kernel(came_jax.scale_by_came(), big)


def test_reference_update_is_the_plain_math():
  """One step from zero state by hand, for a matrix and a vector: the reference is the docstring's math."""
  rng = np.random.default_rng(2)
  g = rng.normal(size=(5, 3)).astype(np.float32)
  # The betas as the float32 numbers CAME computes with (see "Hyperparameter arithmetic" in came.py).
  b1, b2, b3 = (float(np.float32(b)) for b in (0.9, 0.999, 0.9999))
  eps1, eps2 = 1e-30, 1e-16
  sq = g.astype(np.float64) ** 2 + eps1
  r, c = (1 - b2) * sq.mean(1), (1 - b2) * sq.mean(0)
  u = g / np.sqrt(np.outer(r / r.mean(), c))
  u = u / max(1.0, np.sqrt(np.mean(u**2)))
  m = (1 - b1) * u
  res = (u - m) ** 2 + eps2
  rr, cc = (1 - b3) * res.mean(1), (1 - b3) * res.mean(0)
  expected = m / np.sqrt(np.outer(rr / rr.mean(), cc))
  tx = came_jax.scale_by_came(chunk_bytes=None)
  update, state = tx.update(jnp.asarray(g), tx.init(jnp.asarray(g)))
  np.testing.assert_allclose(update, expected, rtol=1e-5)
  np.testing.assert_allclose(state.v_row, r, rtol=1e-5)
  vector = g[0]
  v = (1 - b2) * (vector.astype(np.float64) ** 2 + eps1)
  u = vector / np.sqrt(v)
  u = u / max(1.0, np.sqrt(np.mean(u**2)))
  update, _ = tx.update(jnp.asarray(vector), tx.init(jnp.asarray(vector)))
  np.testing.assert_allclose(update, (1 - b1) * u, rtol=1e-5)


# --- The block size ------------------------------------------------------------------------------------------------


def test_l2_size_comes_from_the_environment_variable(monkeypatch):
  monkeypatch.setenv(came_cpu.L2_ENV, "2M")
  assert came_cpu.l2_cache_bytes() == 2 << 20
  assert came_cpu.default_block_bytes() == came_cpu.MAX_BLOCK_BYTES
  monkeypatch.setenv(came_cpu.L2_ENV, "262144")
  assert came_cpu.default_block_bytes() == 32 * 1024
  monkeypatch.setenv(came_cpu.L2_ENV, "lots")
  with pytest.raises(ValueError, match=came_cpu.L2_ENV):
    came_cpu.l2_cache_bytes()


def test_l2_size_read_from_sysfs_then_sysconf_then_fallback(monkeypatch, tmp_path):
  monkeypatch.delenv(came_cpu.L2_ENV, raising=False)
  for i, (level, kind, size) in enumerate(
    [("1", "Data", "48K"), ("1", "Instruction", "32K"), ("2", "Unified", "2048K")]
  ):
    d = tmp_path / f"index{i}"
    d.mkdir()
    (d / "level").write_text(level + "\n")
    (d / "type").write_text(kind + "\n")
    (d / "size").write_text(size + "\n")
  real_glob = came_cpu.glob.glob
  monkeypatch.setattr(came_cpu.glob, "glob", lambda pattern: sorted(str(p) for p in tmp_path.iterdir()))
  assert came_cpu.l2_cache_bytes() == 2048 * 1024
  monkeypatch.setattr(came_cpu.glob, "glob", lambda pattern: [])
  monkeypatch.setattr(came_cpu.os, "sysconf", lambda name: 512 * 1024)
  assert came_cpu.l2_cache_bytes() == 512 * 1024
  monkeypatch.setattr(came_cpu.os, "sysconf", lambda name: 0)  # glibc's answer when it does not know
  assert came_cpu.l2_cache_bytes() == came_cpu.FALLBACK_L2_BYTES
  monkeypatch.setattr(came_cpu.glob, "glob", real_glob)
  assert came_cpu.l2_cache_bytes() >= 64 * 1024  # this machine's, whatever it is


def test_block_rows():
  assert came_cpu.block_rows((32768, 768), 128 * 1024) == 42
  assert came_cpu.block_rows((768, 3072), 128 * 1024) == 10
  assert came_cpu.block_rows((64, 64), 16 * 1024) is None  # fits in one block
  assert came_cpu.block_rows((1, 1 << 20), 4096) is None  # one row: nothing to block
  assert came_cpu.block_rows((3, 1 << 20), 4096) == 1
  assert came_cpu.block_rows((10, 100), 3999) == 5  # never a single block holding every row
