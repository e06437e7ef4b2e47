"""The trainer on a mesh of 8 simulated CPU devices (tests/conftest.py sets the XLA flag): sharding rules for params
and optimizer state, the same losses on 1 and 8 devices (data-parallel and FSDP), checkpoints that move between
meshes, per-process input slices, and the multi-process settings."""

import json
import os
import pathlib
import re
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import came_jax
from came_jax.optim import registry
from came_jax.train import input_pipeline, sharding, trainer
from came_jax.train import step as step_lib
from tests.train.tiny_configs import REPO, load_config

MESHES = {"one": (1, 1), "dp": (8, 1), "fsdp": (1, 8), "dp_fsdp": (2, 4)}


def _losses(workdir):
  rows = [json.loads(line) for line in pathlib.Path(workdir, "metrics.jsonl").read_text().splitlines()]
  return {r["step"]: r["loss"] for r in rows if "tokens_per_sec" in r}


def _run(tiny_config, workdir, mesh, max_steps, name="standin", **overrides):
  # A constant rate and no batch ramp: a run to step 3 then resumed to 6 sees what a run to step 6 sees.
  config = tiny_config(
    name,
    max_steps=max_steps,
    batch_ramp=0.0,
    **{
      "schedule.name": "constant",
      "schedule.warmup": 0.0,
      "mesh.data": MESHES[mesh][0],
      "mesh.fsdp": MESHES[mesh][1],
      **overrides,
    },
  )
  return trainer.train_and_evaluate(config, str(workdir))


@pytest.fixture(scope="module")
def reference(tiny_config, tmp_path_factory):
  """Six stand-in steps on one device."""
  workdir = tmp_path_factory.mktemp("one_device")
  summary = _run(tiny_config, workdir, "one", 6)
  assert summary["mesh"] == {"data": 1, "fsdp": 1}
  return _losses(workdir), summary


# ---------------------------------------------------------------------------------------------------- rules
def test_fsdp_spec_shards_the_largest_divisible_axis_and_replicates_small_leaves():
  assert sharding.fsdp_spec((2048, 16), 8, 1024) == P("fsdp")
  assert sharding.fsdp_spec((16, 2048), 8, 1024) == P(None, "fsdp")
  assert sharding.fsdp_spec((12, 768, 64), 8, 1024) == P(None, "fsdp")  # 12 and 64: 768 is the largest divisible
  assert sharding.fsdp_spec((768, 768), 8, 1024) == P("fsdp")  # the first of equals
  assert sharding.fsdp_spec((1000, 24), 8, 1024) == P("fsdp")
  assert sharding.fsdp_spec((1001, 24), 8, 1024) == P(None, "fsdp")  # the largest axis does not divide
  assert sharding.fsdp_spec((1001, 23), 8, 1024) == P()  # no axis divides
  assert sharding.fsdp_spec((768,), 8, 1024) == P()  # small
  assert sharding.fsdp_spec((2048, 16), 1, 0) == P()  # no fsdp axis


PARAMS = {
  "emb": jnp.ones((64, 48)),
  "square": jnp.ones((32, 32)),
  "rank3": jnp.ones((4, 8, 512)),
  "bias": jnp.ones((32,)),
  "small": jnp.ones((4, 4)),
}


def _spec(x):
  return tuple(x.sharding.spec) + (None,) * (x.ndim - len(x.sharding.spec))


@pytest.mark.parametrize("momentum_dtype", ["float32", "int8"])
def test_state_specs_match_what_came_places_itself(momentum_dtype):
  """CAME places its state along a concrete sharded param's axes; the trainer's rule (on shapes only) agrees."""
  mesh = sharding.make_mesh(2, 4)
  specs = sharding.param_specs(PARAMS, mesh, min_size=64)
  tx = came_jax.came(1e-2, momentum_dtype=momentum_dtype, min_quantized_size=256)
  placed = tx.init(jax.device_put(PARAMS, sharding.named(mesh, specs)))
  shape = jax.eval_shape(lambda: step_lib.TrainState.create(PARAMS, tx, jax.random.PRNGKey(0)))
  ours = sharding.train_state_shardings(shape, tx, mesh, min_size=64).opt_state
  leaves = jax.tree_util.tree_flatten_with_path(placed)[0]
  our_specs = [s.spec for s in jax.tree.leaves(ours)]
  assert len(leaves) == len(our_specs)
  checked = 0
  for (path, leaf), spec in zip(leaves, our_specs):
    if isinstance(leaf.sharding, NamedSharding):  # CAME places every state array
      assert leaf.sharding.is_equivalent_to(NamedSharding(mesh, spec), leaf.ndim), jax.tree_util.keystr(path)
      checked += 1
  assert checked > 25
  # The factored statistics of the square matrix (rows sharded) are told apart without names.
  state = placed[0]
  assert _spec(state.v_row["square"]) == ("fsdp",) and _spec(state.v_col["square"]) == (None,)


@pytest.mark.parametrize("optimizer", ["came", "adamw", "adafactor"])
def test_created_train_state_is_sharded_not_replicated(optimizer):
  mesh = sharding.make_mesh(1, 8)
  cfg = registry.default_config()
  cfg.name = optimizer
  cfg.adafactor.min_dim_size_to_factor = 8
  tx = registry.make(cfg)
  create = lambda: step_lib.TrainState.create(  # noqa: E731
    jax.tree.map(lambda p: p * 1.0, PARAMS), tx, jax.random.PRNGKey(0)
  )
  shape = jax.eval_shape(create)
  shardings = sharding.train_state_shardings(shape, tx, mesh, min_size=64)
  state = jax.jit(create, out_shardings=shardings)()
  # Every param-shaped leaf of the optimizer state is split 8 ways like its param; small leaves stay whole.
  big = [x for x in jax.tree.leaves(state.opt_state) if x.size >= 64 * 48]
  assert big and all(x.addressable_shards[0].data.size == x.size // 8 for x in big)
  assert state.params["emb"].addressable_shards[0].data.shape == (8, 48)
  assert state.params["bias"].sharding.is_fully_replicated
  assert state.step.sharding.is_fully_replicated and state.rng.sharding.is_fully_replicated
  if optimizer == "came":
    came_state = state.opt_state.inner_state[1][0]
    assert came_state.v_row["emb"].addressable_shards[0].data.shape == (8,)  # rows kept, sharded
    assert came_state.v_col["emb"].sharding.is_fully_replicated  # the reduced (sharded) axis is gone


# ------------------------------------------------------------------------------------- the trainer on 8 devices
@pytest.mark.parametrize("mesh", ["dp", "dp_fsdp"])
def test_same_losses_on_one_and_eight_devices(tiny_config, tmp_path, reference, mesh):
  losses, ref_summary = reference
  summary = _run(tiny_config, tmp_path, mesh, 6)
  assert summary["mesh"] == dict(zip(sharding.AXES, MESHES[mesh]))
  ours = _losses(tmp_path)
  assert list(ours) == list(losses) == [1, 2, 3, 4, 5, 6]
  np.testing.assert_allclose(list(ours.values()), list(losses.values()), rtol=2e-6)
  assert losses[6] < losses[1]
  assert summary["heldout_loss"] == pytest.approx(ref_summary["heldout_loss"], rel=2e-6)
  assert summary["train_step_compilations"] == 1


@pytest.mark.parametrize("first,then", [("dp_fsdp", "one"), ("one", "fsdp")])
def test_checkpoint_moves_between_one_and_eight_devices(tiny_config, tmp_path, reference, first, then):
  """Three steps on one mesh, resumed for three more on the other: the losses of six steps on one device."""
  losses, _ = reference
  no_eval = {"data.eval_path": ""}
  _run(tiny_config, tmp_path, first, 3, **no_eval)
  summary = _run(tiny_config, tmp_path, then, 6, **no_eval)
  assert summary["steps"] == 6 and summary["mesh"] == dict(zip(sharding.AXES, MESHES[then]))
  resumed = _losses(tmp_path)
  np.testing.assert_allclose([resumed[s] for s in range(1, 7)], [losses[s] for s in range(1, 7)], rtol=2e-6)


def test_crammed_bert_fsdp_matches_one_device(tiny_config, tmp_path):
  """The real (tiny) crammed BERT with every matrix sharded 8 ways."""
  small = {"mesh.fsdp_min_size": 1024, "data.eval_path": "", "batch_size": 16}
  _run(tiny_config, tmp_path / "one", "one", 2, name="bert_cramming", **small)
  _run(tiny_config, tmp_path / "fsdp", "dp_fsdp", 2, name="bert_cramming", **small)
  np.testing.assert_allclose(
    list(_losses(tmp_path / "fsdp").values()), list(_losses(tmp_path / "one").values()), rtol=1e-5
  )


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_two_processes_match_one_and_their_checkpoint_restores_on_one_device(tiny_config, tmp_path, reference):
  """A real multi-host run: two processes of 4 CPU devices each (gloo), through the launcher, each loading half of
  every batch. Same losses as one device; its checkpoint resumes in this single process on one device."""
  losses, _ = reference
  config = tiny_config(
    "standin", max_steps=3, batch_ramp=0.0, **{"schedule.name": "constant", "schedule.warmup": 0.0, "mesh.data": -1}
  )
  flags = ["--config", "configs/gpt2.py:tiny", "--workdir", str(tmp_path)]
  for key in (
    "model.name",
    "data.path",
    "data.eval_path",
    "data.cache_dir",
    "data.prefetch",
    "tokenizer_path",
    "max_steps",
    "log_every_steps",
    "batch_ramp",
    "schedule.name",
    "schedule.warmup",
    "mesh.data",
    "tensorboard",
    "checkpoint.every_s",
    "eval.every_s",
  ):
    flags.append(f"--config.{key}={_dotted(config, key)}")
  for p, err in _two_processes(flags):
    assert p.returncode == 0, err[-3000:]
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["processes"] == 2 and summary["mesh"] == {"data": 8, "fsdp": 1} and summary["steps"] == 3
  assert np.isfinite(summary["heldout_loss"])  # held-out batches split over the processes too
  two = _losses(tmp_path)  # written by process 0 alone: one row per step
  np.testing.assert_allclose([two[s] for s in (1, 2, 3)], [losses[s] for s in (1, 2, 3)], rtol=2e-6)
  summary = _run(tiny_config, tmp_path, "one", 6, **{"data.eval_path": ""})
  resumed = _losses(tmp_path)
  np.testing.assert_allclose([resumed[s] for s in (4, 5, 6)], [losses[s] for s in (4, 5, 6)], rtol=2e-6)


def _two_processes(flags, signal_at=None, skew_s=0.0):
  """Runs the launcher as two processes of one job; `signal_at`: `(process, "TERM"/"INT", step)` sends that
  process alone the signal when it logs that step; `skew_s`: process 1's budget clock runs that far ahead.
  Returns `(Popen, stderr)` per process."""
  address = f"localhost:{_free_port()}"
  env = {**os.environ, "PYTHONPATH": str(REPO)}
  envs = [dict(env), {**env, "JAX_COORDINATOR_ADDRESS": address, "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"}]
  if signal_at is not None:
    envs[signal_at[0]]["CAME_JAX_TEST_SIGNAL_AT"] = f"{signal_at[1]}:{signal_at[2]}"
  if skew_s:
    envs[1]["CAME_JAX_TEST_CLOCK_SKEW"] = str(skew_s)
  # Process 0 is told by flags, process 1 by the environment.
  process_flags = [
    [
      f"--config.distributed.coordinator_address={address}",
      "--config.distributed.num_processes=2",
      "--config.distributed.process_id=0",
    ],
    [],
  ]
  worker = str(REPO / "tests" / "train" / "multiprocess_worker.py")
  procs = [
    subprocess.Popen(
      [sys.executable, worker, *flags, *extra],
      cwd=REPO,
      env=e,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for e, extra in zip(envs, process_flags)
  ]
  return [(p, p.communicate(timeout=240)[1]) for p in procs]


def test_a_signal_to_one_process_stops_both_after_the_same_step(tiny_config, tmp_path):
  """Preemption of a multi-host job reaches the processes at different moments: here only process 1 gets SIGTERM,
  at step 2. The processes agree at the next log step, both stop after the same step, checkpoint it together
  and exit 143; the same command resumes the job to the end."""
  config = tiny_config("standin", max_steps=6, **{"mesh.data": -1})
  flags = ["--config", "configs/gpt2.py:tiny", "--workdir", str(tmp_path)]
  for key in ("model.name", "data.path", "data.cache_dir", "data.prefetch", "tokenizer_path", "log_every_steps"):
    flags.append(f"--config.{key}={_dotted(config, key)}")
  flags += ["--config.max_steps=6", "--config.mesh.data=-1", "--config.data.eval_path=", "--config.tensorboard=False"]
  stopped = _two_processes(flags, signal_at=(1, "TERM", 2))
  for p, err in stopped:
    assert p.returncode == 143, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("error: Interrupted: stopped by SIGTERM at step 2,"), err[-2000:]
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["stop_reason"] == "SIGTERM" and summary["steps"] == 2 and summary["processes"] == 2
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2"]
  for p, err in _two_processes(flags):
    assert p.returncode == 0, err[-3000:]
  assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 6
  assert sorted(_losses(tmp_path)) == [1, 2, 3, 4, 5, 6]


def test_two_processes_take_time_driven_decisions_alike(tiny_config, tmp_path):
  """Each process has its own budget clock; here process 1's runs 2 s ahead of process 0's. The learning rate
  (budget-cosine), the batch ramp, checkpoints every 4 s and the budget stop follow the budget spent, so the
  processes agree on it at each log step: both log the same rate and batch size at every step, save the same
  checkpoints and stop after the same step (were one to save or stop where the other does not, the other would
  wait forever for its collectives)."""
  config = tiny_config("standin", **{"mesh.data": -1})
  flags = ["--config", "configs/gpt2.py:tiny", "--workdir", str(tmp_path)]
  for key in ("model.name", "data.path", "data.cache_dir", "data.prefetch", "tokenizer_path"):
    flags.append(f"--config.{key}={_dotted(config, key)}")
  flags += ["--config.max_steps=0", "--config.budget=16s", "--config.log_every_steps=2", "--config.mesh.data=-1"]
  flags += ["--config.batch_ramp=0.5", "--config.checkpoint.every_s=4", "--config.checkpoint.max_to_keep=10"]
  flags += ["--config.data.eval_path=", "--config.tensorboard=False"]
  logged, stopped = [], []
  for p, err in _two_processes(flags, skew_s=2.0):
    assert p.returncode == 0, err[-3000:]
    logged.append(re.findall(r"step (\d+) \| loss [\d.]+ \| acc [\d.]+ \| lr (\S+) \| bs (\d+)", err))
    stopped.append(re.search(r"Stopped at step (\d+) \(budget\)", err).group(1))
  assert logged[0] == logged[1] and len(logged[0]) >= 4, logged
  assert {bs for _, _, bs in logged[0]} == {"16", "32"}  # the ramp ran, alike on both
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert stopped[0] == stopped[1] == str(summary["steps"]) and int(stopped[0]) % 2 == 0
  assert len(os.listdir(tmp_path / "checkpoints")) >= 3  # two or more interval checkpoints, and the final one
  # Process 1's clock, 2 s ahead, ended the budget: process 0's says it spent about 14 of the 16 s.
  assert summary["stop_reason"] == "budget" and 13.0 <= summary["elapsed_s"] < 16.0


def _dotted(config, key):
  node = config
  for part in key.split("."):
    node = node[part]
  return node


# ------------------------------------------------------------------------------------------ processes and config
@pytest.mark.parametrize("objective,name", [("mlm", "bert_cramming"), ("causal", "gpt2"), ("span", "t5")])
def test_process_slices_partition_each_global_batch(tiny_config, tmp_path, objective, name):
  """Four simulated processes: their slices of each batch are disjoint and together the one-process batch."""
  config = tiny_config(name)
  assert config.data.objective == objective
  tokenizer = input_pipeline.make_tokenizer(config, str(tmp_path))
  whole = input_pipeline.make_train_iterator(config, tokenizer)
  parts = [input_pipeline.make_train_iterator(config, tokenizer, process_index=i, process_count=4) for i in range(4)]
  rows = config.data.batch_size // 4
  for it in parts:
    shapes = it.batch_shapes()
    assert all(shape[0] == rows for shape, _ in shapes.values())
  for _ in range(3):
    batch = next(whole)
    slices = [next(it) for it in parts]
    for k, v in batch.items():
      np.testing.assert_array_equal(np.concatenate([s[k] for s in slices]), v, err_msg=k)
    # Disjoint: no row of the global batch is handed to two processes (rows are distinct positions of the stream).
    ids = [tuple(r) for s in slices for r in s["input_ids"]]
    assert len(ids) == config.data.batch_size
  for it in [whole, *parts]:
    it.close()
  # Resuming a process's iterator continues its slice; held-out batches are sliced alike.
  resumed = input_pipeline.make_train_iterator(config, tokenizer, process_index=2, process_count=4)
  resumed.set_state({"step": 1})
  np.testing.assert_array_equal(next(resumed)["input_ids"], whole.global_batch_at(1)["input_ids"][2 * rows : 3 * rows])
  whole_eval = input_pipeline.make_eval_batches(config, tokenizer)
  eval_parts = [input_pipeline.make_eval_batches(config, tokenizer, process_index=i, process_count=4) for i in range(4)]
  for b, *slices in zip(whole_eval, *eval_parts):
    for k, v in b.items():
      np.testing.assert_array_equal(np.concatenate([s[k] for s in slices]), v, err_msg=k)


def test_process_rows_and_global_batch():
  mesh = sharding.make_mesh(2, 4)
  shardings = sharding.batch_shardings(mesh, {"x": ((3, 16, 5), np.int32)}, batch_axis=1)
  assert sharding.process_rows(shardings["x"], (3, 16, 5), batch_axis=1) == (0, 16)  # one process: every row
  local = {"x": np.arange(3 * 16 * 5, dtype=np.int32).reshape(3, 16, 5)}
  out = sharding.global_batch(local, shardings, batch_axis=1)
  assert out["x"].sharding == shardings["x"] and len(out["x"].addressable_shards) == 8
  assert out["x"].addressable_shards[1].data.shape == (3, 2, 5)
  np.testing.assert_array_equal(np.asarray(out["x"]), local["x"])


def test_distributed_settings_from_config_and_environment():
  cfg = sharding.distributed_config()
  assert sharding.distributed_args(cfg, environ={}) is None  # one process: jax.distributed is left alone
  env = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "2"}
  assert sharding.distributed_args(cfg, environ=env) == dict(
    coordinator_address="10.0.0.1:1234", num_processes=4, process_id=2
  )
  cfg.update(dict(coordinator_address="host:99", num_processes=2, process_id=1))
  assert sharding.distributed_args(cfg, environ=env) == dict(
    coordinator_address="host:99", num_processes=2, process_id=1
  )
  cfg = sharding.distributed_config()
  cfg.coordinator_address = "host:99"  # the rest from the cluster (SLURM, Open MPI, ...)
  assert sharding.distributed_args(cfg, environ={}) == dict(
    coordinator_address="host:99", num_processes=None, process_id=None
  )
  cfg.update(dict(num_processes=2, process_id=2))
  with pytest.raises(ValueError, match="config.distributed.process_id=2"):
    sharding.distributed_args(cfg, environ={})
  assert sharding.initialize_distributed(sharding.distributed_config()) is False


@pytest.mark.parametrize(
  "mesh,expected", [((-1, 1), (8, 1)), ((1, -1), (1, 8)), ((2, -1), (2, 4)), ((4, 2), (4, 2)), ((1, 1), (1, 1))]
)
def test_mesh_shape(mesh, expected):
  cfg = sharding.mesh_config()
  cfg.data, cfg.fsdp = mesh
  assert sharding.mesh_shape(cfg, 8) == expected


@pytest.mark.parametrize(
  "key,value,message",
  [
    ("mesh.data", 16, r"config.mesh.data x config.mesh.fsdp = 16 x 1 = 16 devices, but only 8"),
    ("mesh.fsdp", 3, r"config.data.batch_size=16: must be divisible by the 3 devices"),
    ("mesh.data", 0, r"config.mesh.data=0"),
    ("mesh.fsdp", -2, r"config.mesh.fsdp=-2"),
  ],
)
def test_bad_mesh_fails_naming_its_key(tiny_config, tmp_path, key, value, message):
  config = tiny_config("standin", **{key: value})
  with pytest.raises(ValueError, match=message):
    trainer.train_and_evaluate(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_configs_default_to_one_device():
  for name in ("bert_cramming", "gpt2", "t5"):
    for variant in ("", "tiny"):
      c = load_config(name, variant)
      assert (c.mesh.data, c.mesh.fsdp) == (1, 1) and sharding.distributed_args(c.distributed, environ={}) is None
