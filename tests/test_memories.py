"""Replay and distillation baselines in the loop: scenarios, resume, data parallelism."""

import dataclasses

import chex
import jax
import numpy as np
import pytest
from test_loop import CONFIG, MODEL, tiny_stream

from classp_jax.data import digits_stream, label_class_masks
from classp_jax.mesh import data_mesh, replicate, shard_batch
from classp_jax.methods import ExampleSpec, MethodSpec, build_method, resolve_method
from classp_jax.models import MLP
from classp_jax.training import LoopConfig, TrainState, make_train_chunk, run_continual

DIGITS_MODEL = MLP(num_classes=10, hidden=(64,))
DIGITS_CONFIG = LoopConfig(batch_size=32, epochs=3, evals_per_task=0, eval_batch_size=512)


def method(name, **memory_hparams):
  spec = resolve_method(name, {"sgd": MethodSpec("sgd", {"learning_rate": 0.1})})
  spec = dataclasses.replace(spec, memory_hparams={**spec.memory_hparams, **memory_hparams})
  return build_method(name, spec, 5)


@pytest.mark.slow
def test_class_incremental_digits_replay_beats_finetuning_and_joint_beats_all():
  stream = digits_stream("class")
  acc = {
    name: run_continual(DIGITS_MODEL, stream, method(name), DIGITS_CONFIG, progress=False)["acc"]
    for name in ("finetune", "er", "derpp", "joint")
  }
  # Fine-tuned, a class-incremental learner forgets almost everything: ACC near 1/T.
  assert acc["finetune"] < 0.3
  assert acc["er"] > acc["finetune"] + 0.25 and acc["derpp"] > acc["finetune"] + 0.25
  assert acc["joint"] > max(acc["er"], acc["derpp"])


@pytest.mark.slow
def test_task_incremental_digits_finetuning_keeps_most_of_each_task():
  result = run_continual(
    DIGITS_MODEL, digits_stream("task"), method("finetune"), DIGITS_CONFIG, progress=False
  )
  # With the task's identity, each task is a 2-way choice that later tasks barely disturb.
  assert result["acc"] > 0.85
  assert result["scenario"] == "task"


def test_replay_resumes_exactly(tmp_path):
  config = dataclasses.replace(CONFIG, checkpoint_every=3)
  er = build_method(
    "er",
    MethodSpec("sgd", {"learning_rate": 0.1}, memory="er", memory_hparams={"buffer_size": 16}),
    2,
  )
  full = run_continual(MODEL, tiny_stream(), er, config, progress=False)

  class Killed(Exception):
    pass

  def kill_at(step):
    if step >= 11:
      raise Killed

  with pytest.raises(Killed):
    run_continual(
      MODEL,
      tiny_stream(),
      er,
      config,
      checkpoint_dir=str(tmp_path),
      progress=False,
      on_step=kill_at,
    )
  resumed = run_continual(
    MODEL, tiny_stream(), er, config, checkpoint_dir=str(tmp_path), progress=False
  )
  for key in ("accuracy_matrix", "logs", "history"):
    assert resumed[key] == full[key], key
  assert full["buffer_bytes"] == 16 * 6 + 16  # float32 features kept as is, uint8 labels


def _steps_with_replay(devices, name):
  stream = tiny_stream()
  mesh = data_mesh(devices)
  m = build_method(
    name,
    MethodSpec("sgd", {"learning_rate": 0.1}, memory=name, memory_hparams={"buffer_size": 8}),
    2,
  )
  params = MODEL.init(jax.random.key(0), np.zeros((1, 6), np.float32), train=False)["params"]
  memory = m.memory.init(params, ExampleSpec((6,), np.float32, 2))
  state = replicate(TrainState(params, m.tx.init(params), m.regularizer.init(params), memory), mesh)
  apply = lambda p, s, x, r: (MODEL.apply({"params": p}, x, train=True), s)  # noqa: E731
  chunk = make_train_chunk(
    apply,
    m.tx,
    m.regularizer,
    mesh,
    memory=m.memory,
    eval_apply_fn=lambda p, s, x: MODEL.apply({"params": p}, x, train=False),
  )
  task = stream.tasks[0]
  x, y = replicate((task.train.inputs, task.train.labels), mesh)
  indices = np.arange(6 * 8).reshape(6, 8) % len(y)
  state, metrics = chunk(
    state,
    x,
    y,
    shard_batch(indices, mesh),
    jax.random.key(1),
    np.int32(0),
    replicate(label_class_masks(stream), mesh),
    np.int32(1),
  )
  return jax.device_get(state), jax.device_get(metrics["penalty"])


@pytest.mark.parametrize("name", ["er", "agem"])  # derpp shares er's buffer path
def test_replay_on_four_devices_matches_one_device(name):
  state_1, penalty_1 = _steps_with_replay(jax.devices()[:1], name)
  state_4, penalty_4 = _steps_with_replay(jax.devices()[:4], name)
  chex.assert_trees_all_close(state_1.params, state_4.params, rtol=1e-5, atol=1e-6)
  chex.assert_trees_all_equal(state_1.memory.labels, state_4.memory.labels)
  chex.assert_trees_all_close(state_1.memory.inputs, state_4.memory.inputs)
  np.testing.assert_allclose(penalty_1, penalty_4, rtol=1e-4, atol=1e-6)
  assert int(state_1.memory.num_seen) == 6 * 8
  if name != "agem":
    assert np.any(penalty_1[1:] != 0)  # replay is active once the buffer holds examples


def test_method_names_resolve_as_the_field_names_them():
  specs = {"sgd": MethodSpec("sgd", {"learning_rate": 0.1})}
  assert resolve_method("finetune", specs) == specs["sgd"]
  assert resolve_method("joint", specs).joint
  assert resolve_method("classp+er", specs).memory == "er"
  assert resolve_method("adam+joint", specs).optimizer == "adam"
  with pytest.raises(ValueError, match="must be a regularizer, a memory or joint"):
    resolve_method("classp+adam", specs)
  with pytest.raises(ValueError, match="buffer_size must be a positive integer"):
    build_method(
      "er", dataclasses.replace(resolve_method("er", specs), memory_hparams={"buffer_size": 0}), 2
    )
