"""The continual loop: metrics, data parallelism, stopping, determinism, checkpoints."""

import contextlib
import dataclasses
import json
import shutil
import time
from pathlib import Path

import chex
import jax
import numpy as np
import pytest

from classp_jax.data import Split, Task, TaskStream
from classp_jax.mesh import compiler_options, data_mesh, replicate, shard_batch
from classp_jax.methods import MethodSpec, build_method
from classp_jax.metrics import continual_metrics
from classp_jax.models import MLP
from classp_jax.results import strict_json
from classp_jax.training import (
  CheckpointError,
  LoopConfig,
  SettingsMismatchError,
  TrainState,
  make_evaluate,
  make_train_chunk,
  run_continual,
  split_validation,
  tree_bytes,
)
from classp_jax.training.metric_logs import CsvLogger


def tiny_stream(num_tasks=2, n=64, dim=6, seed=0) -> TaskStream:
  """Linearly separable 2-class tasks whose decision directions differ, so they interfere."""
  rng = np.random.default_rng(seed)
  tasks = []
  for t in range(num_tasks):
    direction = rng.normal(size=dim)

    def split(m):
      x = rng.normal(size=(m, dim)).astype(np.float32)
      return Split(x, (x @ direction > 0).astype(np.int32))

    tasks.append(Task(f"t{t}", split(n), split(32), num_classes=2))
  return TaskStream("tiny", tuple(tasks), num_classes=2, input_shape=(dim,))


MODEL = MLP(num_classes=2, hidden=(8,))
CONFIG = LoopConfig(batch_size=8, epochs=2, evals_per_task=1, log_every=1)


def sgd(**hparams):
  return build_method("sgd", MethodSpec("sgd", {"learning_rate": 0.1, **hparams}), 2)


# --- metrics against hand-computed values --------------------------------------------------


def test_metrics_three_tasks():
  r = np.array([[0.9, 0.2, 0.1], [0.7, 0.8, 0.3], [0.5, 0.6, 0.9]])
  m = continual_metrics(r, baseline=np.array([0.1, 0.1, 0.2]))
  assert m["acc"] == pytest.approx((0.5 + 0.6 + 0.9) / 3)
  assert m["bwt"] == pytest.approx(((0.5 - 0.9) + (0.6 - 0.8)) / 2)
  assert m["forgetting"] == pytest.approx(((0.9 - 0.5) + (0.8 - 0.6)) / 2)
  assert m["fwt"] == pytest.approx(((0.2 - 0.1) + (0.3 - 0.2)) / 2)


def test_metrics_reject_non_square():
  with pytest.raises(ValueError, match="square"):
    continual_metrics(np.zeros((2, 3)))


# --- compilation --------------------------------------------------------------------------

BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"


def _compilations(stream: TaskStream) -> int:
  """XLA compilations of one SGD run over ``stream``, from cold caches."""
  jax.clear_caches()
  compiled = []

  def listener(event, duration, **kwargs):
    del duration, kwargs
    if event == BACKEND_COMPILE:
      compiled.append(event)

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    config = dataclasses.replace(CONFIG, validation_fraction=0.25, paper_eval=True)
    run_continual(
      MODEL,
      stream,
      build_method("sgd", MethodSpec("sgd", {"learning_rate": 0.1}), len(stream.tasks)),
      config,
      progress=False,
    )
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  return len(compiled)


def test_tasks_of_different_sizes_share_their_compiled_steps():
  # The training step and the evaluation take a whole split, so each new split length
  # would compile them again: in a long study that is time, and memory mappings.
  equal = tiny_stream(num_tasks=3)
  unequal = dataclasses.replace(
    equal,
    tasks=tuple(
      dataclasses.replace(
        task,
        train=Split(task.train.inputs[:n], task.train.labels[:n]),
        test=Split(task.test.inputs[:m], task.test.labels[:m]),
      )
      for task, n, m in zip(equal.tasks, (64, 48, 40), (32, 24, 20))
    ),
  )
  _compilations(equal)  # what a process compiles once
  once = _compilations(equal)
  assert once > 0  # the listener sees compilations
  assert _compilations(unequal) == once


def test_evaluate_scores_only_the_first_size_rows_of_a_padded_split():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(21, 3)).astype(np.float32)
  labels = rng.integers(0, 3, 21).astype(np.int32)
  expected = np.mean(logits.argmax(1) == labels)
  # Padding rows that every prediction gets wrong: counted, they would lower the score.
  padded_logits = np.concatenate([logits, np.tile([[9, 0, 0]], (11, 1)).astype(np.float32)])
  padded_labels = np.concatenate([labels, np.full(11, 2, np.int32)])
  mesh = data_mesh(jax.devices()[:4])
  evaluate = make_evaluate(lambda params, x, rng: x, mesh, batch_size=8)  # inputs are logits
  x, y = replicate((padded_logits, padded_labels), mesh)
  assert evaluate(None, x, y, size=21) == pytest.approx(expected)
  assert evaluate(None, *replicate((logits, labels), mesh)) == pytest.approx(expected)
  for size in (0, 33):
    with pytest.raises(ValueError, match=f"cannot evaluate {size} examples of a split of 32"):
      evaluate(None, x, y, size=size)


# --- data parallelism -------------------------------------------------------------------


def _train_params(devices, steps=4, batch=8):
  stream = tiny_stream()
  mesh = data_mesh(devices)
  method = sgd()
  params = MODEL.init(jax.random.key(0), np.zeros((1, 6), np.float32), train=False)["params"]
  state = replicate(
    TrainState(params, method.tx.init(params), method.regularizer.init(params)), mesh
  )
  chunk = make_train_chunk(
    lambda p, s, x, r: (MODEL.apply({"params": p}, x, train=True, rngs={"dropout": r}), s),
    method.tx,
    method.regularizer,
    mesh,
  )
  task = stream.tasks[0]
  x, y = replicate((task.train.inputs, task.train.labels), mesh)
  indices = np.arange(steps * batch).reshape(steps, batch) % len(y)
  state, metrics = chunk(
    state,
    x,
    y,
    shard_batch(indices, mesh),
    jax.random.key(1),
    np.int32(0),
    replicate(np.ones((2, 2), bool), mesh),
    np.int32(0),
  )
  return jax.device_get(state.params), jax.device_get(metrics["loss"])


def test_four_devices_match_one_device():
  assert jax.device_count() >= 4, "tests/conftest.py simulates 4 CPU devices"
  params_1, loss_1 = _train_params(jax.devices()[:1])
  params_4, loss_4 = _train_params(jax.devices()[:4])
  chex.assert_trees_all_close(params_1, params_4, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(loss_1, loss_4, rtol=1e-5)


def test_cpu_steps_keep_dots_and_convolutions_off_ynnpack():
  mesh = data_mesh(jax.devices()[:1])
  assert compiler_options(mesh) == {
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_REDUCE"
  }
  model, method = MLP(num_classes=2, hidden=(64,)), sgd()
  x, y = np.zeros((8, 32), np.float32), np.zeros(8, np.int32)
  params = model.init(jax.random.key(0), x, train=False)["params"]
  apply = lambda p, s, x, r: (model.apply({"params": p}, x, train=True), s)  # noqa: E731
  # XLA's own default hands these dots to YNNPACK; our steps must not.
  assert "__ynn_fusion" in jax.jit(apply).lower(params, (), x, None).compile().as_text()
  state = replicate(
    TrainState(params, method.tx.init(params), method.regularizer.init(params)), mesh
  )
  chunk = make_train_chunk(apply, method.tx, method.regularizer, mesh)
  args = (
    state,
    *replicate((x, y), mesh),
    shard_batch(np.zeros((1, 8), np.int32), mesh),
    jax.random.key(0),
    np.int32(0),
    replicate(np.ones((2, 2), bool), mesh),
    np.int32(0),
  )
  assert "__ynn_fusion" not in chunk.lower(*args).compile().as_text()


def test_batch_not_divisible_by_devices_is_a_clear_error():
  mesh = data_mesh(jax.devices()[:4])
  with pytest.raises(ValueError, match="not divisible by the 4 devices"):
    shard_batch(np.zeros((1, 6), np.int32), mesh)
  with pytest.raises(ValueError, match="multiple of the 4 devices"):
    run_continual(
      MODEL, tiny_stream(), sgd(), dataclasses.replace(CONFIG, batch_size=6), progress=False
    )


# --- the loop ---------------------------------------------------------------------------


def test_run_result_shape_and_memory_accounting():
  result = run_continual(MODEL, tiny_stream(), sgd(), CONFIG, progress=False)
  r = np.array(result["accuracy_matrix"])
  assert r.shape == (2, 2) and ((0 <= r) & (r <= 1)).all()
  assert result["acc"] == pytest.approx(r[-1].mean())
  assert result["steps"] == [2 * 64 // 8] * 2 and result["epochs"] == [2, 2]
  assert result["param_count"] == 6 * 8 + 8 + 8 * 2 + 2
  # SGD without momentum keeps no per-weight state: only the injected hyperparameters.
  assert result["state_bytes"] < 64
  assert result["logs"]["step"] == list(range(32))
  # evaluated at init, mid-task and at the end of each task
  assert result["history"]["step"] == [0, 8, 16, 24, 32]
  assert result["history"]["accuracy"][0] == result["baseline"]


def test_state_bytes_counts_optimizer_and_regularizer_state():
  adam = build_method("adam", MethodSpec("adam"), 2)
  result = run_continual(MODEL, tiny_stream(), adam, CONFIG, progress=False)
  params = MODEL.init(jax.random.key(0), np.zeros((1, 6), np.float32), train=False)["params"]
  # mu and nu, one float32 each per weight, plus a few scalars
  assert 2 * tree_bytes(params) <= result["state_bytes"] < 2 * tree_bytes(params) + 64


def test_same_seed_same_results_different_seed_differs():
  a = run_continual(MODEL, tiny_stream(), sgd(), CONFIG, seed=3, progress=False)
  b = run_continual(MODEL, tiny_stream(), sgd(), CONFIG, seed=3, progress=False)
  c = run_continual(MODEL, tiny_stream(), sgd(), CONFIG, seed=4, progress=False)
  assert a["logs"]["loss"] == b["logs"]["loss"]
  assert a["accuracy_matrix"] == b["accuracy_matrix"]
  assert a["logs"]["loss"] != c["logs"]["loss"]


def test_loss_target_stops_a_task_early():
  config = dataclasses.replace(CONFIG, loss_target=(0.45, None), max_epochs=30, epochs=1)
  result = run_continual(MODEL, tiny_stream(), sgd(learning_rate=0.5), config, progress=False)
  first_epochs = result["epochs"][0]
  assert 1 <= first_epochs < 30
  per_epoch = 64 // 8
  losses = np.array(result["logs"]["loss"][: first_epochs * per_epoch]).reshape(
    first_epochs, per_epoch
  )
  assert losses[-1].mean() <= 0.45 < losses[:-1].mean(axis=1).min()
  assert result["epochs"][1] == 1


def test_accuracy_target_stops_a_task_at_a_matched_accuracy():
  config = dataclasses.replace(CONFIG, accuracy_target=(None, 0.9), max_epochs=30, epochs=1)
  result = run_continual(MODEL, tiny_stream(), sgd(learning_rate=0.5), config, progress=False)
  assert result["epochs"][0] == 1  # no target on task 1: its epochs
  per_epoch = 64 // 8
  task2 = np.array(result["logs"]["accuracy"][per_epoch:])
  epochs = result["epochs"][1]
  assert 1 <= epochs < 30 and len(task2) == epochs * per_epoch
  assert np.all(task2 * 8 == np.round(task2 * 8))  # a fraction of each batch of 8
  by_epoch = task2.reshape(epochs, per_epoch).mean(axis=1)
  assert by_epoch[-1] >= 0.9 and np.all(by_epoch[:-1] < 0.9)
  assert result["epoch_accuracy"][1] == pytest.approx(by_epoch[-1])
  losses = np.array(result["logs"]["loss"][per_epoch:]).reshape(epochs, per_epoch)
  assert result["epoch_loss"][1] == pytest.approx(losses[-1].mean())  # its loss target
  assert result["targets_met"] == [None, True]


def test_a_task_that_misses_its_target_stops_at_the_cap_and_says_so():
  # With a learning rate of 0 nothing is learned, so no epoch reaches 90% accuracy.
  config = dataclasses.replace(CONFIG, accuracy_target=(None, 0.9), max_epochs=3, epochs=1)
  result = run_continual(MODEL, tiny_stream(), sgd(learning_rate=0.0), config, progress=False)
  assert result["epochs"] == [1, 3]
  assert result["epoch_accuracy"][1] < 0.9
  assert result["targets_met"] == [None, False]


def test_accuracy_target_must_be_a_fraction():
  with pytest.raises(ValueError, match="accuracy_target 85 is not a fraction"):
    run_continual(
      MODEL, tiny_stream(), sgd(), dataclasses.replace(CONFIG, accuracy_target=85), progress=False
    )


def test_per_task_hyperparameters_change_without_rebuilding():
  # lr 0 on task 2 must freeze the weights there: task-1 accuracy cannot change.
  method = build_method("sgd", MethodSpec("sgd", {"learning_rate": (0.3, 0.0)}), 2)
  result = run_continual(MODEL, tiny_stream(), method, CONFIG, progress=False)
  r = result["accuracy_matrix"]
  assert r[1][0] == r[0][0] and r[1][1] == r[0][1]


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path):
  config = dataclasses.replace(CONFIG, checkpoint_every=3, steps_per_call=2)
  full = run_continual(MODEL, tiny_stream(), sgd(), config, progress=False)

  class Killed(Exception):
    pass

  def kill_at(step):
    if step >= 11:  # mid-task 1, after the checkpoint at step 9 (3 is not a chunk boundary)
      raise Killed

  with pytest.raises(Killed):
    run_continual(
      MODEL,
      tiny_stream(),
      sgd(),
      config,
      checkpoint_dir=str(tmp_path / "ckpt"),
      progress=False,
      on_step=kill_at,
    )
  resumed = run_continual(
    MODEL, tiny_stream(), sgd(), config, checkpoint_dir=str(tmp_path / "ckpt"), progress=False
  )
  for key in (
    "accuracy_matrix",
    "baseline",
    "steps",
    "epochs",
    "epoch_loss",
    "epoch_accuracy",
    "history",
    "logs",
  ):
    assert resumed[key] == full[key], key


def test_a_run_records_its_wall_and_cpu_time():
  calls = []

  def busy_then_asleep(step):  # 20 ms of this process's CPU, then 20 ms asleep
    calls.append(step)
    end = time.process_time() + 0.02
    while time.process_time() < end:
      pass
    time.sleep(0.02)

  result = run_continual(
    MODEL, tiny_stream(), sgd(), CONFIG, progress=False, on_step=busy_then_asleep
  )
  assert result["cpu_time_s"] >= 0.02 * len(calls)
  assert result["wall_time_s"] >= 0.04 * len(calls)


def test_microbatches_give_the_full_batch_gradient():
  # 16 examples over 4 devices = 4 per device, split into 2 micro-batches of 2
  # (the MLP has no dropout, so the split changes nothing but the arithmetic).
  config = dataclasses.replace(CONFIG, batch_size=16)
  whole = run_continual(MODEL, tiny_stream(), sgd(), config, progress=False)
  split = run_continual(
    MODEL, tiny_stream(), sgd(), dataclasses.replace(config, microbatch_size=2), progress=False
  )
  np.testing.assert_allclose(split["logs"]["loss"], whole["logs"]["loss"], rtol=1e-5)
  assert split["accuracy_matrix"] == whole["accuracy_matrix"]
  with pytest.raises(ValueError, match="must divide the per-device batch of 4"):
    run_continual(
      MODEL, tiny_stream(), sgd(), dataclasses.replace(config, microbatch_size=3), progress=False
    )


# --- trust: checkpoints of other settings, damaged checkpoints, divergence -----------------


def test_resume_under_changed_settings_is_refused_and_a_finished_run_is_reused(tmp_path):
  ckpt = str(tmp_path / "ckpt")
  first = run_continual(MODEL, tiny_stream(), sgd(), CONFIG, checkpoint_dir=ckpt, progress=False)
  assert not first["reused_checkpoint"]
  with pytest.raises(SettingsMismatchError, match="learning_rate: checkpoint 0.1, now 0.5"):
    run_continual(
      MODEL, tiny_stream(), sgd(learning_rate=0.5), CONFIG, checkpoint_dir=ckpt, progress=False
    )
  with pytest.raises(SettingsMismatchError, match="loop.epochs: checkpoint 2, now 5"):
    run_continual(
      MODEL,
      tiny_stream(),
      sgd(),
      dataclasses.replace(CONFIG, epochs=5),
      checkpoint_dir=ckpt,
      progress=False,
    )
  with pytest.raises(SettingsMismatchError, match="stream.digest"):
    run_continual(MODEL, tiny_stream(seed=1), sgd(), CONFIG, checkpoint_dir=ckpt, progress=False)
  again = run_continual(MODEL, tiny_stream(), sgd(), CONFIG, checkpoint_dir=ckpt, progress=False)
  assert again["reused_checkpoint"]
  for key in ("accuracy_matrix", "history", "logs", "settings_id"):
    assert again[key] == first[key], key


def _interrupted_run(ckpt, config, kill_step):
  class Killed(Exception):
    pass

  def kill_at(step):
    if step >= kill_step:
      raise Killed

  with pytest.raises(Killed):
    run_continual(
      MODEL, tiny_stream(), sgd(), config, checkpoint_dir=ckpt, progress=False, on_step=kill_at
    )


def _flip_bytes(step_dir):
  """Flips bytes in the middle of every stored array file of one checkpoint step."""
  files = [
    p for p in step_dir.rglob("*") if p.is_file() and "state" in p.parts and p.stat().st_size > 64
  ]
  assert files, f"no state files under {step_dir}"
  for path in files:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    path.write_bytes(bytes(data))


def test_a_damaged_checkpoint_falls_back_to_the_previous_step(tmp_path):
  config = dataclasses.replace(CONFIG, checkpoint_every=3, steps_per_call=1)
  full = run_continual(MODEL, tiny_stream(), sgd(), config, progress=False)
  ckpt = tmp_path / "ckpt"
  _interrupted_run(str(ckpt), config, kill_step=13)  # kept: steps 9 and 12
  steps = sorted(int(p.name) for p in ckpt.iterdir() if p.name.isdigit())
  assert steps == [9, 12]
  _flip_bytes(ckpt / "12")
  resumed = run_continual(
    MODEL, tiny_stream(), sgd(), config, checkpoint_dir=str(ckpt), progress=False
  )
  for key in ("accuracy_matrix", "history", "logs"):
    assert resumed[key] == full[key], key


def test_no_sound_checkpoint_is_a_clear_error(tmp_path):
  config = dataclasses.replace(CONFIG, checkpoint_every=3, steps_per_call=1)
  ckpt = tmp_path / "ckpt"
  _interrupted_run(str(ckpt), config, kill_step=13)
  for step in ("9", "12"):
    _flip_bytes(ckpt / step)
  with pytest.raises(CheckpointError, match="no sound checkpoint .* --restart"):
    run_continual(MODEL, tiny_stream(), sgd(), config, checkpoint_dir=str(ckpt), progress=False)


def test_an_interrupted_checkpoint_deletion_leaves_only_whole_steps(tmp_path, monkeypatch):
  config = dataclasses.replace(CONFIG, checkpoint_every=3, steps_per_call=1)
  full = run_continual(MODEL, tiny_stream(), sgd(), config, progress=False)
  ckpt = tmp_path / "ckpt"
  real_rmtree = shutil.rmtree

  def terminated_halfway(path, *args, **kwargs):  # SIGTERM while a dropped step is deleted
    files = sorted(p for p in Path(path).rglob("*") if p.is_file())
    if not files:
      return real_rmtree(path, *args, **kwargs)
    for file in files[: len(files) // 2]:
      file.unlink()
    raise KeyboardInterrupt

  with monkeypatch.context() as patched:
    patched.setattr(shutil, "rmtree", terminated_halfway)
    with pytest.raises(KeyboardInterrupt):
      run_continual(MODEL, tiny_stream(), sgd(), config, checkpoint_dir=str(ckpt), progress=False)
  steps = sorted(p for p in ckpt.iterdir() if p.name.isdigit())
  assert steps
  for step in steps:  # each kept step is whole
    for part in ("_CHECKPOINT_METADATA", "meta/metadata", "state/manifest.ocdbt"):
      assert (step / part).is_file(), (step.name, part)
  # An incomplete step folder, as an interrupted deletion of an earlier version left one,
  # is skipped on resume.
  incomplete = ckpt / "99"
  shutil.copytree(steps[-1], incomplete)
  files = sorted(p for p in incomplete.rglob("*") if p.is_file())
  for file in files[: len(files) // 2]:
    file.unlink()
  resumed = run_continual(
    MODEL, tiny_stream(), sgd(), config, checkpoint_dir=str(ckpt), progress=False
  )
  for key in ("accuracy_matrix", "history", "logs"):
    assert resumed[key] == full[key], key
  assert sorted(p.name for p in ckpt.iterdir() if not p.name.isdigit()) == []  # nothing left


def test_a_resumed_runs_csv_logs_are_an_uninterrupted_runs(tmp_path):
  config = dataclasses.replace(
    CONFIG, checkpoint_every=3, steps_per_call=2, validation_fraction=0.25
  )  # 12 steps a task; a test evaluation mid-task, test and validation ones at its end
  names = [t.name for t in tiny_stream().tasks]
  run_continual(
    MODEL,
    tiny_stream(),
    sgd(),
    config,
    progress=False,
    loggers=[CsvLogger(tmp_path / "full", names)],
  )

  class Killed(Exception):
    pass

  def kill_in_task_2(step):
    if step > 12:
      raise Killed

  for on_step in (kill_in_task_2, None):  # interrupted after the first task, then resumed
    with pytest.raises(Killed) if on_step else contextlib.nullcontext():
      run_continual(
        MODEL,
        tiny_stream(),
        sgd(),
        config,
        checkpoint_dir=str(tmp_path / "ckpt"),
        progress=False,
        on_step=on_step,
        loggers=[CsvLogger(tmp_path / "resumed", names)],
      )
  for name in ("steps.csv", "evaluations.csv"):
    assert (tmp_path / "resumed" / name).read_text() == (tmp_path / "full" / name).read_text()


def test_a_diverging_run_is_stopped_and_recorded_as_diverged():
  config = dataclasses.replace(CONFIG, loss_target=0.01, max_epochs=30)
  result = run_continual(MODEL, tiny_stream(), sgd(learning_rate=1e8), config, progress=False)
  assert result["diverged"]
  assert result["diverged_at"]["task"] == 0
  # stopped at the end of the first epoch (8 steps), not after 30 epochs of NaN
  assert result["diverged_at"]["step"] < 8 and len(result["logs"]["step"]) == 8
  assert result["accuracy_matrix"] == [] and result["epochs"] == []
  assert all(result[m] is None for m in ("acc", "bwt", "forgetting", "fwt"))
  json.dumps(strict_json(result), allow_nan=False)  # strict JSON: null, never NaN


def test_reset_optimizer_state_restarts_the_capacity_used_at_each_task():
  spec = MethodSpec("classp", {"learning_rate": 0.1, "threshold": 1e-4})
  first_of_task_2 = 2 * 64 // 8
  kept = run_continual(
    MODEL, tiny_stream(), build_method("classp", spec, 2), CONFIG, progress=False
  )["logs"]
  reset = run_continual(
    MODEL,
    tiny_stream(),
    build_method("classp", dataclasses.replace(spec, reset_optimizer_state=True), 2),
    CONFIG,
    progress=False,
  )["logs"]
  assert kept["capacity_used"][:first_of_task_2] == reset["capacity_used"][:first_of_task_2]
  end_of_task_1 = kept["capacity_used"][first_of_task_2 - 1]
  # Carried over, the accumulator only grows. Reset, it starts from zero: after the first
  # step of task 2 the weights ever updated are exactly those that step updated.
  assert kept["capacity_used"][first_of_task_2] >= end_of_task_1
  assert reset["capacity_used"][first_of_task_2] == reset["update_fraction"][first_of_task_2]
  assert reset["capacity_used"][first_of_task_2] < end_of_task_1


def test_validation_split_is_stratified_disjoint_and_deterministic():
  stream = tiny_stream(n=200)
  reduced, validation = split_validation(stream, 0.25)
  again, validation_again = split_validation(stream, 0.25)
  for t, task in enumerate(stream.tasks):
    train, held = reduced.tasks[t].train, validation[t]
    assert len(train) + len(held) == len(task.train)
    np.testing.assert_array_equal(held.inputs, validation_again[t].inputs)
    rows = {tuple(x) for x in train.inputs}
    assert not rows & {tuple(x) for x in held.inputs}
    assert not {tuple(x) for x in task.test.inputs} & {tuple(x) for x in held.inputs}
    # each class keeps its share: round(n_c / 4) of each class held out
    for c in (0, 1):
      n_c = int(np.sum(task.train.labels == c))
      assert int(np.sum(held.labels == c)) == round(n_c * 0.25)
  result = run_continual(
    MODEL, stream, sgd(), dataclasses.replace(CONFIG, validation_fraction=0.25), progress=False
  )
  assert np.array(result["validation_accuracy_matrix"]).shape == (2, 2)


def test_the_stream_digest_cache_keeps_no_stream_alive():
  """A study worker builds a new stream for every run: the digest's cache must not keep them
  (it once held every one, 64 MB a split MNIST run)."""
  import gc
  import weakref

  from classp_jax.training.settings import _STREAM_DIGESTS, stream_digest

  stream = tiny_stream()
  digest = stream_digest(stream)
  assert stream_digest(stream) == digest == stream_digest(tiny_stream())  # same data, same digest
  alive = weakref.ref(stream)
  key = id(stream)
  del stream
  gc.collect()
  assert alive() is None and key not in _STREAM_DIGESTS
