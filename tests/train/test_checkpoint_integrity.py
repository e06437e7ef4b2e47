"""Damaged checkpoints, damaged as a user would find them: a file deleted, truncated, overwritten with random bytes,
one bit flipped, non-finite values saved. `Checkpointer.restore_latest` finds the damage (checksums, orbax's reading,
finiteness), says so in one line, moves the checkpoint to `WORKDIR/checkpoints_damaged` and restores the one before;
a state of another structure is still refused as a different run, and a run whose every checkpoint is damaged stops.
"""

import gc
import json
import logging
import os
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from came_jax.train import checkpoint as ckpt_lib


def _state(step, nan=False):
  """A TrainState-like pytree: ~1.2 MB of float32 params in three arrays, and an int32 step."""
  rng = np.random.default_rng(step)
  params = {
    "w": rng.standard_normal((256, 512), np.float32),
    "b": rng.standard_normal((300, 200), np.float32),
    "emb": rng.standard_normal((128, 128), np.float32),
  }
  if nan:
    params["b"][7, 3] = np.nan
  return {"params": jax.tree.map(jnp.asarray, params), "step": jnp.asarray(step, jnp.int32)}


def _save(checkpointer, step, state=None):
  checkpointer.save(
    step,
    _state(step) if state is None else state,
    elapsed_s=float(step),
    data_state={"position": step, "rng": np.random.default_rng(step).bit_generator.state},
    extra={"tokens_seen": 1000 * step},
  )


def _assert_state(restored, step):
  expected = _state(step)
  for name, value in expected["params"].items():
    np.testing.assert_array_equal(np.asarray(restored["params"][name]), np.asarray(value))
  assert int(restored["step"]) == step


def _assert_meta(meta, step):
  assert meta["step"] == step and meta["elapsed_s"] == float(step) and meta["tokens_seen"] == 1000 * step
  assert meta["data_state"] == {"position": step, "rng": np.random.default_rng(step).bit_generator.state}


@pytest.fixture
def workdir(tmp_path):
  """A workdir holding checkpoints 60 and 80 (max_to_keep=2), saved as the trainer saves them."""
  checkpointer = ckpt_lib.Checkpointer(str(tmp_path), max_to_keep=2)
  for step in (40, 60, 80):
    _save(checkpointer, step)
  checkpointer.close()
  return tmp_path


def _step_dir(workdir, step):
  return pathlib.Path(workdir, "checkpoints", str(step))


def _largest_state_file(workdir, step):
  files = [p for p in _step_dir(workdir, step).joinpath("state").rglob("*") if p.is_file()]
  return max(files, key=lambda p: p.stat().st_size)


def _rel(workdir, step, path):
  return path.relative_to(_step_dir(workdir, step)).as_posix()


def _restore_latest(workdir):
  checkpointer = ckpt_lib.Checkpointer(str(workdir), max_to_keep=2)  # as a restarted run opens it
  try:
    return checkpointer.restore_latest(_state(0))
  finally:
    checkpointer.close()


def _warnings(caplog):
  return [r.getMessage() for r in caplog.records if r.name == ckpt_lib.__name__ and r.levelno >= logging.WARNING]


def _delete(path):
  path.unlink()
  return "missing"


def _truncate(path):
  os.truncate(path, path.stat().st_size // 2)
  return "size"


def _random_bytes(path):
  with open(path, "r+b") as f:
    f.seek(path.stat().st_size // 2 - 2048)
    f.write(np.random.default_rng(0).bytes(4096))
  return "checksum mismatch"


def _flip_bit(path):
  with open(path, "r+b") as f:
    f.seek(path.stat().st_size // 2)
    byte = f.read(1)[0]
    f.seek(path.stat().st_size // 2)
    f.write(bytes([byte ^ 0x10]))
  return "checksum mismatch"


def test_checksums_are_recorded_and_orbax_ignores_them(workdir):
  """Every file of a checkpoint is listed; orbax lists, restores and (max_to_keep) deletes steps as before."""
  assert sorted(p.name for p in pathlib.Path(workdir, "checkpoints").iterdir()) == ["60", "80"]  # 40 was deleted
  for step in (60, 80):
    step_dir = _step_dir(workdir, step)
    assert ckpt_lib.has_checksums(str(step_dir)) and ckpt_lib.verify(str(step_dir)) is None
    listed = set(json.loads((step_dir / ckpt_lib.CHECKSUMS).read_text())["files"])
    on_disk = {p.relative_to(step_dir).as_posix() for p in step_dir.rglob("*") if p.is_file()}
    assert listed == on_disk - {ckpt_lib.CHECKSUMS} and "meta/metadata" in listed
  checkpointer = ckpt_lib.Checkpointer(str(workdir), max_to_keep=2)
  assert checkpointer.latest_step() == 80 and list(checkpointer.manager.all_steps()) == [60, 80]
  state, meta = checkpointer.restore(_state(0), step=60)
  _assert_state(state, 60)
  _assert_meta(meta, 60)
  checkpointer.close()
  assert ckpt_lib.verify(str(_step_dir(workdir, 60))) is None  # (restoring changed nothing)


@pytest.mark.parametrize(
  "damage",
  [_delete, _truncate, _random_bytes, _flip_bit],
  ids=["deleted", "truncated", "random_4kib", "bit_flip"],
)
def test_damaged_state_file_falls_back(workdir, caplog, damage):
  path = _largest_state_file(workdir, 80)
  assert "ocdbt.process_0/d/" in _rel(workdir, 80, path)
  why = damage(path)
  state, meta, step = _restore_latest(workdir)
  assert step == 60
  _assert_state(state, 60)
  _assert_meta(meta, 60)
  [warning] = _warnings(caplog)
  assert "\n" not in warning
  assert warning.startswith(f"checkpoint 80 in {pathlib.Path(workdir, 'checkpoints')} is damaged ")
  assert f"({_rel(workdir, 80, path)}: {why}" in warning
  assert warning.endswith(f"moved it to {pathlib.Path(workdir, 'checkpoints_damaged', '80')}")
  assert not _step_dir(workdir, 80).exists() and pathlib.Path(workdir, "checkpoints_damaged", "80", "state").is_dir()
  assert sorted(p.name for p in pathlib.Path(workdir, "checkpoints").iterdir()) == ["60"]


def test_deleted_meta_falls_back(workdir, caplog):
  (_step_dir(workdir, 80) / "meta" / "metadata").unlink()
  state, meta, step = _restore_latest(workdir)
  assert step == 60
  _assert_state(state, 60)
  _assert_meta(meta, 60)
  [warning] = _warnings(caplog)
  assert "checkpoint 80 " in warning and "(meta/metadata: missing)" in warning
  assert pathlib.Path(workdir, "checkpoints_damaged", "80").is_dir()


def test_non_finite_checkpoint_falls_back(tmp_path, caplog):
  checkpointer = ckpt_lib.Checkpointer(str(tmp_path), max_to_keep=2)
  _save(checkpointer, 60)
  _save(checkpointer, 80, _state(80, nan=True))
  checkpointer.close()
  assert ckpt_lib.verify(str(_step_dir(tmp_path, 80))) is None  # intact files, NaN in them
  state, meta, step = _restore_latest(tmp_path)
  assert step == 60
  _assert_state(state, 60)
  [warning] = _warnings(caplog)
  assert "checkpoint 80 " in warning and "(non-finite values in the state)" in warning
  assert pathlib.Path(tmp_path, "checkpoints_damaged", "80").is_dir()


def test_checkpoint_without_checksums_restores_unverified(workdir, caplog):
  """A checkpoint saved before checksums existed (or killed before they were written) is not damaged."""
  (_step_dir(workdir, 80) / ckpt_lib.CHECKSUMS).unlink()
  state, meta, step = _restore_latest(workdir)
  assert step == 80
  _assert_state(state, 80)
  _assert_meta(meta, 80)
  [warning] = _warnings(caplog)
  assert (
    warning == f"checkpoint 80 in {pathlib.Path(workdir, 'checkpoints')} has no checksums.json; restoring it unverified"
  )
  assert _step_dir(workdir, 80).is_dir() and not pathlib.Path(workdir, "checkpoints_damaged").exists()


def test_damage_without_checksums_is_found_by_orbax_in_one_line(workdir, caplog, capfd, monkeypatch):
  """Without checksums, orbax's failure to read is the damage; its TensorStore spec and the tracebacks of the
  abandoned reads (coroutines raising when collected: "Exception ignored in ...") do not reach the user."""
  unraisable = []
  monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
  (_step_dir(workdir, 80) / ckpt_lib.CHECKSUMS).unlink()
  path = _largest_state_file(workdir, 80)
  _truncate(path)
  state, meta, step = _restore_latest(workdir)
  assert step == 60
  _assert_state(state, 60)
  _assert_meta(meta, 60)
  unverified, damaged = _warnings(caplog)
  assert "has no checksums.json" in unverified
  assert "\n" not in damaged and "checkpoint 80 " in damaged and "OUT_OF_RANGE" in damaged, damaged
  gc.collect()
  err = capfd.readouterr().err
  assert not unraisable and "Traceback" not in err and "TensorStore" not in err, (unraisable, err)


def test_every_checkpoint_damaged_raises_and_moves_nothing(workdir, caplog):
  _flip_bit(_largest_state_file(workdir, 80))
  (_step_dir(workdir, 60) / "meta" / "metadata").unlink()
  for _ in range(2):  # (a restarted run fails the same way: it never starts over from step 0)
    with pytest.raises(ckpt_lib.DamagedCheckpointError) as e:
      _restore_latest(workdir)
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(f"every checkpoint in {pathlib.Path(workdir, 'checkpoints')} is damaged: 80 (state/")
    assert ": checksum mismatch); 60 (meta/metadata: missing). Nothing was moved" in message
    assert e.value.__cause__ is None and e.value.__context__ is None
  assert sorted(p.name for p in pathlib.Path(workdir, "checkpoints").iterdir()) == ["60", "80"]
  assert not pathlib.Path(workdir, "checkpoints_damaged").exists() and not _warnings(caplog)


def test_saving_again_after_falling_back(workdir, caplog):
  """The manager forgets the damaged step: its number can be saved again (and damaged again: `80.1`)."""
  _delete(_largest_state_file(workdir, 80))
  checkpointer = ckpt_lib.Checkpointer(str(workdir), max_to_keep=2)
  state, _, step = checkpointer.restore_latest(_state(0))
  assert step == 60 and list(checkpointer.manager.all_steps()) == [60] and checkpointer.latest_step() == 60
  _assert_state(state, 60)
  _save(checkpointer, 70)
  _save(checkpointer, 80)
  assert list(checkpointer.manager.all_steps()) == [70, 80]
  state, meta, step = checkpointer.restore_latest(_state(0))
  assert step == 80
  _assert_state(state, 80)
  _assert_meta(meta, 80)
  checkpointer.close()
  _flip_bit(_largest_state_file(workdir, 80))
  state, _, step = _restore_latest(workdir)
  assert step == 70
  _assert_state(state, 70)
  assert sorted(p.name for p in pathlib.Path(workdir, "checkpoints_damaged").iterdir()) == ["80", "80.1"]
  assert _warnings(caplog)[-1].endswith(f"moved it to {pathlib.Path(workdir, 'checkpoints_damaged', '80.1')}")


@pytest.mark.parametrize(
  "change",
  [
    lambda s: {**s, "params": {**s["params"], "extra": jnp.zeros(3)}},
    lambda s: {**s, "params": {k: v for k, v in s["params"].items() if k != "emb"}},
    lambda s: {**s, "params": {**s["params"], "b": jnp.zeros((300, 201))}},
  ],
  ids=["extra_leaf", "missing_leaf", "other_shape"],
)
def test_other_structure_is_incompatible_not_damaged(workdir, caplog, change):
  before = {p: p.stat().st_mtime_ns for p in pathlib.Path(workdir).rglob("*")}
  checkpointer = ckpt_lib.Checkpointer(str(workdir), max_to_keep=2)
  for restore in (checkpointer.restore_latest, checkpointer.restore):
    with pytest.raises(ckpt_lib.IncompatibleWorkdirError, match="checkpoint 80 .* does not fit") as e:
      restore(change(_state(0)))
    assert "\n" not in str(e.value)
    assert any(s in str(e.value) for s in ("params.extra: not in", "params.emb: in the checkpoint", "(300, 201)"))
  checkpointer.close()
  assert {p: p.stat().st_mtime_ns for p in pathlib.Path(workdir).rglob("*")} == before and not _warnings(caplog)


@pytest.mark.parametrize(
  "error, expected",
  [
    (Exception("Encountered error while reading\n{'spec': ...}"), RuntimeError),
    (ValueError("tree structures do not match:\nparams.x: ..."), ckpt_lib.IncompatibleWorkdirError),
  ],
  ids=["read_error", "value_error"],
)
def test_intact_checkpoint_that_orbax_fails_on_is_not_moved(workdir, caplog, error, expected):
  """Files as their checksums say are not damage, whatever orbax makes of them: that error is raised, in one line."""
  checkpointer = ckpt_lib.Checkpointer(str(workdir), max_to_keep=2)

  def fail(*args, **kwargs):
    raise error

  checkpointer.manager.restore = fail
  with pytest.raises(expected, match=r"^[^\n]*checkpoint 80 in [^\n]*$") as e:
    checkpointer.restore_latest(_state(0))
  assert str(e.value).endswith(str(error).splitlines()[0]) and e.value.__cause__ is error
  checkpointer.close()
  assert sorted(p.name for p in pathlib.Path(workdir, "checkpoints").iterdir()) == ["60", "80"] and not _warnings(
    caplog
  )


def test_restore_of_a_given_step(workdir):
  """`restore(…, step)` neither falls back nor moves: a damaged step raises, the others restore."""
  _random_bytes(_largest_state_file(workdir, 80))
  checkpointer = ckpt_lib.Checkpointer(str(workdir), max_to_keep=2)
  with pytest.raises(ckpt_lib.DamagedCheckpointError, match=r"^checkpoint 80 in .* is damaged \(state/.*: checksum"):
    checkpointer.restore(_state(0))
  state, meta = checkpointer.restore(_state(0), step=60)
  _assert_state(state, 60)
  _assert_meta(meta, 60)
  with pytest.raises(FileNotFoundError, match="no checkpoint 40 in"):
    checkpointer.restore(_state(0), step=40)
  checkpointer.close()
  assert _step_dir(workdir, 80).is_dir()


def test_all_finite_is_one_reduction():
  tree = {"a": jnp.ones((4, 4)), "b": jnp.arange(3), "c": jnp.ones(2, jnp.bfloat16), "n": 3}
  assert ckpt_lib.all_finite(tree) and ckpt_lib.all_finite({"i": jnp.arange(3)}) and ckpt_lib.all_finite({})
  for bad in (jnp.nan, jnp.inf, -jnp.inf):
    assert not ckpt_lib.all_finite({**tree, "c": tree["c"].at[1].set(bad)})


def test_a_train_state_restores_and_another_optimizer_is_incompatible(tmp_path):
  """The trainer's real `TrainState`: optax's empty nodes (`EmptyState`, `None`) and injected hyperparameters are
  matched against the checkpoint's tree; a state of another optimizer is refused, not taken for damage."""
  import optax  # pylint: disable=import-outside-toplevel

  from came_jax import came  # pylint: disable=import-outside-toplevel
  from came_jax.train import step as step_lib  # pylint: disable=import-outside-toplevel

  params = {"w": jnp.arange(12.0).reshape(4, 3), "b": jnp.ones(3)}

  def state(tx):
    return step_lib.TrainState.create(params, tx, jax.random.PRNGKey(0))

  adamw = optax.chain(optax.clip_by_global_norm(1.0), optax.inject_hyperparams(optax.adamw)(learning_rate=1e-3))
  checkpointer = ckpt_lib.Checkpointer(str(tmp_path))
  _save(checkpointer, 3, state(adamw))
  restored, meta, step = checkpointer.restore_latest(state(adamw))
  assert step == 3 and meta["step"] == 3
  jax.tree.map(np.testing.assert_array_equal, restored, state(adamw))
  with pytest.raises(ckpt_lib.IncompatibleWorkdirError, match="does not fit this run's model/optimizer state"):
    checkpointer.restore_latest(state(came(learning_rate=1e-3)))
  assert os.listdir(tmp_path / "checkpoints") == ["3"]
  checkpointer.close()
