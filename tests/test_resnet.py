"""ResNet-18, model state (BatchNorm) through the engine and every method, and augmentation.

Tiny sizes throughout: a one-convolution BatchNorm model on 8x8 images for the methods and
the engine (BatchNorm's mechanics are the ResNet's), ResNet-18 itself at width 4.
"""

import dataclasses
import itertools
import json

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_data_cifar import write_cifar
from test_loop import tiny_stream

from classp_jax.cli import main
from classp_jax.data import Dataset, Split, label_class_masks, split_stream
from classp_jax.experiments import get_experiment
from classp_jax.mesh import data_mesh, replicate, shard_batch
from classp_jax.methods import ExampleSpec, MethodSpec, build_method, resolve_method
from classp_jax.models import MLP, ResNet18
from classp_jax.planning import apply_overrides
from classp_jax.training import ContinualRun, LoopConfig, TrainState, make_train_chunk
from classp_jax.training.augment import crop_flip, random_crop_flip
from classp_jax.training.evaluation import model_fns


class TinyBN(nn.Module):
  """conv 3x3 -> BatchNorm -> relu -> global average pool -> dense; BatchNorm as in ResNet18."""

  num_classes: int
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x, *, train):
    x = nn.Conv(4, (3, 3), use_bias=False)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, axis_name=self.axis_name)(x)
    return nn.Dense(self.num_classes)(nn.relu(x).mean((1, 2)))


def image_stream(scenario="class", per_class=24, num_classes=4, seed=0):
  """2 tasks of 2 classes of 8x8 RGB images whose mean brightness depends on the class."""
  rng = np.random.default_rng(seed)

  def split(n):
    labels = np.arange(n * num_classes, dtype=np.int32) % num_classes
    noise = rng.integers(0, 120, (len(labels), 8, 8, 3))
    return Split((noise + 40 * labels[:, None, None, None]).astype(np.uint8), labels)

  dataset = Dataset("shapes", split(per_class), split(8), tuple("abcd"[:num_classes]))
  return split_stream(dataset, 2, scenario=scenario)


CONFIG = LoopConfig(batch_size=8, epochs=1, evals_per_task=0, log_every=1, augment=True)
SGD = {"sgd": MethodSpec("sgd", {"learning_rate": 0.05})}


def build(name):
  spec = resolve_method(name, SGD)
  if spec.memory in ("er", "derpp", "agem"):
    spec = dataclasses.replace(spec, memory_hparams={**spec.memory_hparams, "buffer_size": 16})
  if spec.regularizer in ("ewc", "mas"):
    spec = dataclasses.replace(spec, reg_hparams={**spec.reg_hparams, "num_examples": 16})
  return build_method(name, spec, 2)


def continual_run(stream, name, config=CONFIG, model=None, **kwargs):
  model = model or TinyBN(stream.num_classes)
  options = dict(seed=0, checkpoint_dir=None, progress=False, on_step=None, loggers=())
  return ContinualRun(model, stream, build(name), config, **{**options, **kwargs})


# --- the model ----------------------------------------------------------------------------------


def expected_resnet18_params(width, num_classes, channels=3):
  """Counted by hand: 3x3 convolutions without bias, BatchNorm scale and shift, 1x1 shortcuts."""
  count = 9 * channels * width + 2 * width  # stem conv and its BatchNorm
  inputs = width
  for features in (width, 2 * width, 4 * width, 8 * width):
    for _ in range(2):
      count += 9 * inputs * features + 9 * features * features + 4 * features
      if inputs != features:  # the shortcut's 1x1 convolution and BatchNorm
        count += inputs * features + 2 * features
      inputs = features
  return count + inputs * num_classes + num_classes


@pytest.mark.parametrize("width, num_classes", [(64, 10), (20, 100), (4, 200)])
def test_resnet18_has_the_cifar_resnets_parameters_and_batch_statistics(width, num_classes):
  model = ResNet18(num_classes, width=width)
  variables = jax.eval_shape(
    lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
  )
  count = lambda tree: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))  # noqa: E731
  assert count(variables["params"]) == expected_resnet18_params(width, num_classes)
  if (width, num_classes) == (64, 10):
    assert count(variables["params"]) == 11_173_962  # the CIFAR ResNet-18's published count
  # A mean and a variance per channel of the 20 BatchNorm layers: w + 4 w + 10 w + 20 w + 40 w.
  assert count(variables["batch_stats"]) == 2 * 75 * width


def test_resnet18_normalises_its_inputs_before_its_first_convolution():
  x = jax.random.uniform(jax.random.key(1), (4, 8, 8, 3))
  mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
  model = ResNet18(3, width=4, mean=mean, std=std)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  variables = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

  class Seen(Exception):
    pass

  def first_conv(next_fun, args, kwargs, context):
    if isinstance(context.module, nn.Conv):
      raise Seen(args[0])  # the stem's input; the rest of the network never runs
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(first_conv), pytest.raises(Seen) as seen:
    model.apply(variables, x, train=False)
  expected = (np.asarray(x) - np.array(mean)) / np.array(std)
  np.testing.assert_allclose(seen.value.args[0], expected, rtol=1e-6, atol=1e-6)


# --- augmentation -------------------------------------------------------------------------------


def test_augmentation_is_a_padded_crop_or_its_mirror_deterministic_for_a_key():
  images = jax.random.uniform(jax.random.key(0), (16, 6, 6, 2))
  out = random_crop_flip(images, jax.random.key(1), padding=2)
  np.testing.assert_array_equal(out, random_crop_flip(images, jax.random.key(1), padding=2))
  assert not np.array_equal(out, random_crop_flip(images, jax.random.key(2), padding=2))
  padded = np.pad(np.asarray(images), ((0, 0), (2, 2), (2, 2), (0, 0)))
  for image, augmented in zip(padded, np.asarray(out)):
    crops = [image[i : i + 6, j : j + 6] for i, j in itertools.product(range(5), range(5))]
    assert any(np.array_equal(augmented, c) or np.array_equal(augmented, c[:, ::-1]) for c in crops)
  assert len({tuple(np.asarray(o).ravel()) for o in out}) == 16


def test_augmentation_draws_for_the_global_batch_whatever_the_device_count():
  images = jax.random.uniform(jax.random.key(0), (8, 8, 8, 3))
  key = jax.random.key(3)
  mesh = data_mesh(jax.devices()[:4])
  sharded = jax.shard_map(
    crop_flip, mesh=mesh, in_specs=(jax.P("data"), jax.P()), out_specs=jax.P("data")
  )(images, key)
  np.testing.assert_array_equal(sharded, random_crop_flip(images, key))


def _chunk(
  mesh, model, memory_name=None, augment=crop_flip, learning_rate=0.05, steps=6, one_batch=False
):
  """``steps`` training steps of ``model`` on the first task's batch-8 batches (or its first
  batch, repeated), as a task 2."""
  stream = image_stream()
  fns = model_fns(model, mesh, 64)
  spec = MethodSpec("sgd", {"learning_rate": learning_rate}, memory=memory_name)
  if memory_name:
    spec = dataclasses.replace(spec, memory_hparams={"buffer_size": 16})
  method = build_method("m", spec, 2)
  x0 = np.zeros((1, 8, 8, 3), np.float32)
  variables = model.init(jax.random.key(0), x0, train=False)
  params, model_state = variables["params"], {"batch_stats": variables["batch_stats"]}
  memory = (
    ()
    if method.memory is None
    else method.memory.init(
      params, ExampleSpec((8, 8, 3), np.float32, stream.num_classes, model_state)
    )
  )
  state = TrainState(
    params, method.tx.init(params), method.regularizer.init(params), memory, model_state
  )
  chunk = make_train_chunk(
    fns.train_apply,
    method.tx,
    method.regularizer,
    mesh,
    memory=method.memory,
    eval_apply_fn=fns.eval_apply,
    augment=augment,
  )
  task = stream.tasks[0]
  indices = np.arange(steps * 8).reshape(steps, 8) % (8 if one_batch else len(task.train.labels))
  state, metrics = chunk(
    replicate(state, mesh),
    *replicate((task.train.inputs, task.train.labels), mesh),
    shard_batch(indices, mesh),
    jax.random.key(1),
    np.int32(0),
    replicate(label_class_masks(stream), mesh),
    np.int32(1),
  )
  return jax.device_get(state), jax.device_get(metrics)


def test_augmentation_differs_across_steps_and_is_a_function_of_the_step():
  mesh = data_mesh(jax.devices()[:1])
  model = TinyBN(4)
  # Learning rate 0 and one batch repeated: the losses differ only if the inputs do.
  _, still = _chunk(mesh, model, augment=None, learning_rate=0.0, steps=3, one_batch=True)
  np.testing.assert_allclose(still["loss"], still["loss"][0], rtol=1e-6)
  _, moved = _chunk(mesh, model, learning_rate=0.0, steps=3, one_batch=True)
  assert len(set(np.round(moved["loss"], 6))) == 3
  _, again = _chunk(mesh, model, learning_rate=0.0, steps=3, one_batch=True)
  np.testing.assert_array_equal(moved["loss"], again["loss"])


# --- model state through the engine -------------------------------------------------------------


def test_batchnorm_on_four_devices_matches_one_device(memory_name="derpp"):
  results = [_chunk(data_mesh(jax.devices()[:n]), TinyBN(4), memory_name) for n in (1, 4)]
  (one, metrics_1), (four, metrics_4) = results
  chex.assert_trees_all_close(one.params, four.params, rtol=1e-4, atol=1e-5)
  chex.assert_trees_all_close(one.model_state, four.model_state, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(metrics_1["loss"], metrics_4["loss"], rtol=1e-4)
  np.testing.assert_allclose(metrics_1["penalty"], metrics_4["penalty"], rtol=1e-4, atol=1e-6)
  chex.assert_trees_all_equal(one.memory.inputs, four.memory.inputs)
  assert np.any(metrics_1["penalty"][1:] != 0)  # replay is on
  # The buffer keeps the examples before augmentation: each stored image is a training one.
  stored = {tuple(row.ravel()) for row in one.memory.inputs}
  train = {
    tuple(np.round(row * 255).astype(np.uint8).ravel())
    for row in image_stream().tasks[0].train.inputs
  }
  assert stored <= train
  # The running statistics moved from their init (mean 0, variance 1), once per forward pass.
  assert np.abs(one.model_state["batch_stats"]["BatchNorm_0"]["mean"]).max() > 1e-3


class NoAxisBN(nn.Module):
  """A BatchNorm model the engine cannot make data-parallel: no ``axis_name`` field."""

  @nn.compact
  def __call__(self, x, *, train):
    x = nn.BatchNorm(use_running_average=not train)(x.reshape(x.shape[0], -1))
    return nn.Dense(4)(x)


def test_a_batchnorm_model_without_an_axis_name_is_refused_on_several_devices():
  assert jax.device_count() >= 4, "tests/conftest.py simulates 4 CPU devices"
  with pytest.raises(ValueError, match="has state \\(batch_stats\\) but no axis_name field"):
    continual_run(image_stream(), "sgd", model=NoAxisBN())


def test_microbatches_are_refused_with_batchnorm():
  mesh = data_mesh(jax.devices()[:1])
  fns = model_fns(TinyBN(4), mesh, 64)
  method = build("sgd")
  variables = TinyBN(4).init(jax.random.key(0), np.zeros((1, 8, 8, 3), np.float32), train=False)
  params = variables["params"]
  state = TrainState(
    params, method.tx.init(params), (), (), {"batch_stats": variables["batch_stats"]}
  )
  chunk = make_train_chunk(fns.train_apply, method.tx, method.regularizer, mesh, microbatch_size=2)
  with pytest.raises(ValueError, match="microbatch_size does not combine with a model with state"):
    chunk(
      replicate(state, mesh),
      *replicate((np.zeros((8, 8, 8, 3), np.float32), np.zeros(8, np.int32)), mesh),
      shard_batch(np.arange(8)[None], mesh),
      jax.random.key(0),
      np.int32(0),
      replicate(np.ones((4, 4), bool), mesh),
      np.int32(0),
    )


# Every component kind: the penalties (EWC and MAS with their importances in eval mode, SI),
# the memories (ER, DER++, A-GEM, LwF), joint training, CLASSP (seeing only the params), and
# the plasticity peers' kinds: an optimizer of the params' utility (UPGD), a penalty towards
# the initial params (L2 Init), and params replaced at task boundaries (shrink and perturb).
# Continual Backprop needs sown ReLU units, which no BatchNorm model here has: refused.
METHODS = (
  "ewc", "si", "mas", "er", "derpp", "agem", "lwf", "joint", "classp+er", "upgd", "l2_init",
  "shrink_perturb_tasks",
)  # fmt: skip
# Where the scenario changes what a method does with the model: the task-incremental masks
# in the Fisher, replay's per-example masks, LwF's seen classes; the domain head's size.
SCENARIO_METHODS = ("ewc", "derpp", "agem", "lwf")


@pytest.mark.parametrize(
  "scenario, methods",
  [
    ("class", METHODS),
    pytest.param("task", SCENARIO_METHODS, marks=pytest.mark.slow),  # ~15 s each, unloaded
    pytest.param("domain", SCENARIO_METHODS, marks=pytest.mark.slow),
  ],
)
def test_every_method_trains_a_batchnorm_model_in_every_scenario(scenario, methods):
  stream = image_stream(scenario, per_class=12)
  for name in methods:
    run = continual_run(stream, name)
    result = run.run()
    assert np.isfinite(result["accuracy_matrix"]).all() and not result["diverged"], name
    stats = run.state.model_state["batch_stats"]["BatchNorm_0"]
    assert np.abs(jax.device_get(stats["mean"])).max() > 1e-3, name  # trained statistics
    assert result["model_state_bytes"] == 2 * 4 * 4, name  # a mean and a variance per channel
    if name == "lwf":  # the kept model carries its own statistics
      kept = run.state.memory.old_model_state["batch_stats"]["BatchNorm_0"]["mean"]
      assert np.abs(jax.device_get(kept)).max() > 0


def test_continual_backprop_is_refused_on_a_model_that_sows_no_relu_units():
  from classp_jax.training.plasticity_probe import check_sows_activations

  stream = image_stream("class", per_class=12)
  with pytest.raises(ValueError, match="cbp replaces hidden ReLU units, and ResNet18 exposes"):
    check_sows_activations(ResNet18(stream.num_classes, width=4), stream, "cbp")
  with pytest.raises(ValueError, match="exposes none"):
    continual_run(stream, "cbp")  # the engine refuses it too, before training
  check_sows_activations(MLP(stream.num_classes, hidden=(8,)), stream, "cbp")


def test_evaluation_is_in_eval_mode_on_the_running_statistics_without_augmentation():
  stream = image_stream("class")
  run = continual_run(stream, "derpp")
  result = run.run()
  state = jax.device_get(run.state)
  model = TinyBN(stream.num_classes)
  variables = {"params": state.params, **state.model_state}
  for task, accuracy in zip(stream.tasks, result["accuracy_matrix"][-1]):
    logits = model.apply(variables, task.test.inputs, train=False)
    assert accuracy == pytest.approx(np.mean(np.argmax(logits, -1) == task.test.labels))


def test_a_resumed_batchnorm_run_with_replay_and_augmentation_is_exact(tmp_path):
  stream = image_stream("class")
  config = dataclasses.replace(CONFIG, checkpoint_every=2, epochs=2)
  full = continual_run(stream, "derpp", config).run()

  class Killed(Exception):
    pass

  def kill_at(step):
    if step >= 9:
      raise Killed

  with pytest.raises(Killed):
    continual_run(stream, "derpp", config, checkpoint_dir=str(tmp_path), on_step=kill_at).run()
  resumed = continual_run(stream, "derpp", config, checkpoint_dir=str(tmp_path)).run()
  for key in ("accuracy_matrix", "logs", "history", "settings_id"):
    assert resumed[key] == full[key], key


def test_augment_is_a_setting_only_when_on_and_refused_for_non_images():
  experiment = get_experiment("split_cifar10")
  assert experiment.loop.augment and experiment.loop.batch_size == 32
  off, _ = apply_overrides(experiment, ["augment=false"])
  assert off.loop.augment is False
  stream = image_stream()
  with_augment = continual_run(stream, "sgd").settings["loop"]
  without = continual_run(stream, "sgd", dataclasses.replace(CONFIG, augment=False)).settings
  assert with_augment["augment"] is True and "augment" not in without["loop"]
  with pytest.raises(ValueError, match="augment crops and flips images"):
    continual_run(tiny_stream(), "sgd", model=MLP(num_classes=2))


@pytest.mark.slow  # a ResNet-18 (width 4) compiled for training and evaluation: ~30 s
def test_split_cifar10_quick_runs_on_a_fixture_in_the_public_format(tmp_path, monkeypatch):
  monkeypatch.setenv("CLASSP_JAX_CACHE_DIR", str(tmp_path / "cache"))
  write_cifar(tmp_path / "data" / "cifar-10", "cifar10", "binary", per_file=100)
  out = tmp_path / "out"
  args = ["run", "split_cifar10", "--quick", "--no-progress", "--data-dir", str(tmp_path / "data")]
  assert main([*args, "--methods", "er_200", "--out", str(out)]) == 0
  (run,) = json.loads((out / "results.json").read_text())["runs"]
  assert run["scenario"] == "class" and len(run["accuracy_matrix"]) == 5
  assert run["settings"]["loop"]["augment"] is True and "width=4" in run["settings"][
    "model"
  ].replace(" ", "")
  assert run["model_state_bytes"] == 2 * 75 * 4 * 4  # float32 mean and variance per channel
  assert run["buffer_bytes"] == 200 * 32 * 32 * 3 + 200  # uint8 images and labels
