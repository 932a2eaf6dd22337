"""Long streams and CLASSP's plasticity peers: the streams, the metrics, shrink and perturb,
L2 Init, Stable SGD, Continual Backprop, the run seed in the noise, and the loop's records.

Expectations are independent: NumPy re-derivations and hand-computed steps.
"""

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from classp_jax.continual_backprop import continual_backprop, reinit_low_utility_units
from classp_jax.data import Dataset, Split, load_dataset, permuted_stream, subsample_stream
from classp_jax.data.plasticity_streams import (
  label_permuted_stream,
  long_permuted_stream,
  rotated_stream,
)
from classp_jax.diagnostics import effective_step_size
from classp_jax.methods import ConsolidationContext, MethodSpec, build_method, resolve_method
from classp_jax.methods.registry import stable_sgd
from classp_jax.methods.regularizers import l2_init, shrink_perturb_tasks
from classp_jax.metrics import continual_metrics, dormant_fraction, learning_accuracy
from classp_jax.models import MLP
from classp_jax.plasticity import add_shrink_perturb, fold_in_seed, shrink_perturb, upgd
from classp_jax.training import LoopConfig, run_continual, run_settings
from classp_jax.training.plasticity_probe import scored_tasks
from classp_jax.training.settings import method_model


def tiny_dataset(n_train=30, n_test=12, size=4, classes=3, seed=0):
  rng = np.random.default_rng(seed)

  def split(n):
    return Split(
      rng.integers(0, 256, (n, size, size, 1), dtype=np.uint8),
      (np.arange(n) % classes).astype(np.int32),
    )

  return Dataset("tiny", split(n_train), split(n_test), tuple(map(str, range(classes))))


# --- streams ----------------------------------------------------------------------------------


def test_long_permuted_stream_is_permuted_stream_and_subsets_each_task():
  data = tiny_dataset()
  for scenario in ("domain", "task"):
    long = long_permuted_stream(data, 4, seed=3, scenario=scenario)
    short = permuted_stream(data, 4, seed=3, scenario=scenario)
    assert long.num_classes == short.num_classes and long.scenario == scenario
    for a, b in zip(long.tasks, short.tasks):
      np.testing.assert_array_equal(a.train.inputs, b.train.inputs)
      np.testing.assert_array_equal(a.test.labels, b.test.labels)
      assert a.classes == b.classes
  sub = long_permuted_stream(data, 3, train_examples=10, test_examples=5, seed=1)
  rng = np.random.default_rng(1)
  perms = [rng.permutation(16) for _ in range(3)]
  perms[0] = np.arange(16)
  for t, task in enumerate(sub.tasks):
    keep = np.sort(np.random.default_rng([1, t]).permutation(30)[:10])
    expected = (data.train.inputs[keep].reshape(10, 16)[:, perms[t]] / 255).reshape(10, 4, 4, 1)
    np.testing.assert_allclose(task.train.inputs, expected, rtol=1e-6)
    assert len(task.test.labels) == 5


def test_label_permuted_stream_keeps_inputs_and_permutes_labels():
  data = tiny_dataset()
  stream = label_permuted_stream(data, 3, seed=5, scenario="task")
  rng = np.random.default_rng(5)
  maps = [rng.permutation(3) for _ in range(3)]
  maps[0] = np.arange(3)
  assert stream.num_classes == 9 and stream.tasks[2].classes == (6, 7, 8)
  for t, task in enumerate(stream.tasks):
    np.testing.assert_allclose(task.train.inputs, data.train.inputs / 255, rtol=1e-6)
    np.testing.assert_array_equal(task.train.labels, maps[t][data.train.labels] + 3 * t)
  domain = label_permuted_stream(data, 3, seed=5)
  np.testing.assert_array_equal(domain.tasks[0].test.labels, data.test.labels)


def test_rotated_stream_rotates_each_task_by_its_angle():
  data = tiny_dataset(size=5)
  stream = rotated_stream(data, 2, angles=(0, 90))
  x = data.test.inputs / 255
  np.testing.assert_allclose(stream.tasks[0].test.inputs, x, rtol=1e-6)
  # A quarter turn counter-clockwise, exact on the pixel grid.
  np.testing.assert_allclose(stream.tasks[1].test.inputs, np.rot90(x, 1, axes=(1, 2)), atol=1e-5)
  spread = rotated_stream(data, 4, train_examples=8, test_examples=4)
  assert [t.name for t in spread.tasks] == [f"tiny:rot{a}" for a in (0, 45, 90, 135)]
  random = rotated_stream(data, 3, angles="random", seed=2)
  drawn = np.random.default_rng(2).uniform(0, 180, 3)
  assert random.tasks[1].name == f"tiny:rot{drawn[1]:g}"
  with pytest.raises(ValueError, match="2 angles for 3 tasks"):
    rotated_stream(data, 3, angles=(0, 1))


# --- metrics ----------------------------------------------------------------------------------


def test_learning_accuracy_and_its_trend():
  r = np.full((12, 12), np.nan)
  diagonal = np.linspace(0.9, 0.35, 12)  # falls 0.05 per task
  r[np.arange(12), np.arange(12)] = diagonal
  got = learning_accuracy(r)
  assert got["per_task"] == pytest.approx(diagonal.tolist())
  assert got["slope"] == pytest.approx(-0.05)
  assert got["first"] == pytest.approx(diagonal[:10].mean())
  assert got["last"] == pytest.approx(diagonal[2:].mean()) and got["window"] == 10
  one = learning_accuracy([[0.5]])
  assert one["slope"] == 0.0 and one["first"] == one["last"] == 0.5


def test_dormant_fraction_by_hand_and_forgetting_skips_unscored_entries():
  conv = np.zeros((2, 3, 3, 2))  # two channels: one dead, one active
  conv[..., 1] = 1.0
  dense = np.array([[1.0, 3.0, 0.02], [1.0, 1.0, 0.0]])  # means 1, 2, 0.01 -> scores
  overall, layers = dormant_fraction({"conv": conv, "dense": dense}, tau=0.01)
  # dense: mean of means 3.01 / 3; unit 2's score 0.01 / 1.00333 <= 0.01: dormant
  assert layers == {"conv": 0.5, "dense": pytest.approx(1 / 3)} and overall == 2 / 5
  assert dormant_fraction({"dense": dense}, tau=0.0)[0] == 0.0
  nan = float("nan")
  r = [[0.9, nan, 0.2], [0.5, 0.8, nan], [0.4, 0.6, 0.7]]
  m = continual_metrics(r)
  assert m["forgetting"] == pytest.approx(((0.9 - 0.4) + (0.8 - 0.6)) / 2)
  assert m["bwt"] == pytest.approx(((0.4 - 0.9) + (0.6 - 0.8)) / 2)


def test_effective_step_size_of_adagrad_and_classp():
  w = jnp.zeros(3)
  g = jnp.array([3.0, 4.0, 0.5])
  tx = optax.inject_hyperparams(optax.adagrad)(
    learning_rate=0.1, initial_accumulator_value=0.1, eps=1e-7
  )
  _, state = tx.update(g, tx.init(w), w)
  expected = np.median(0.1 / np.sqrt(1e-7 + 0.1 + np.array([9.0, 16.0, 0.25])))
  assert effective_step_size(state) == pytest.approx(expected, rel=1e-6)
  from classp_jax import classp

  tx = optax.inject_hyperparams(classp)(learning_rate=0.2, threshold=0.0, power=2.0, eps=1e-3)
  _, state = tx.update(g, tx.init(w), w)
  _, state = tx.update(g, state, w)
  expected = np.median(0.2 / (1e-3 + 2 * np.array([9.0, 16.0, 0.25])) ** 0.5)
  assert effective_step_size(state) == pytest.approx(expected, rel=1e-5)
  assert effective_step_size(optax.adam(0.1).init(w)) is None


def test_scored_tasks_always_cover_the_diagonal_the_next_task_and_the_last_row():
  fixed = set(np.random.default_rng(0).permutation(30)[:5].tolist())
  for t in range(29):
    assert set(scored_tasks(30, t, 5)) == fixed | {t, t + 1}
  assert scored_tasks(30, 29, 5) is None and scored_tasks(30, 3, None) is None


# --- methods: hand-computed steps ---------------------------------------------------------------


def test_shrink_perturb_step_by_hand_and_its_noise():
  w = {"a": jnp.array([1.0, -2.0]), "b": jnp.array([4.0])}
  g = {"a": jnp.array([1.0, 1.0]), "b": jnp.array([2.0])}
  tx = shrink_perturb(learning_rate=0.1, shrink=0.9, sigma=0.0)
  u, _ = tx.update(g, tx.init(w), w)
  np.testing.assert_allclose(u["a"], [0.9 * 1 - 0.1 - 1, 0.9 * -2 - 0.1 + 2], rtol=1e-6)
  np.testing.assert_allclose(u["b"], [0.9 * 4 - 0.2 - 4], rtol=1e-6)
  tx = add_shrink_perturb(shrink=1.0, sigma=0.5, seed=7)
  state = tx.init(w)
  zeros = jax.tree.map(jnp.zeros_like, w)
  u, state2 = tx.update(zeros, state, w)
  _, sub = jax.random.split(jax.random.wrap_key_data(state.key))
  keys = jax.random.split(sub, 2)
  np.testing.assert_allclose(u["a"], 0.5 * jax.random.normal(keys[0], (2,)), rtol=1e-6)
  np.testing.assert_allclose(u["b"], 0.5 * jax.random.normal(keys[1], (1,)), rtol=1e-6)
  assert not np.array_equal(state.key, state2.key)


def test_shrink_perturb_at_task_boundaries_and_l2_init_by_hand():
  reg = shrink_perturb_tasks(shrink=0.5, sigma=0.1)
  params = {"w": jnp.array([2.0, -1.0])}
  ctx = ConsolidationContext(None, None, None, jax.random.key(3))
  new = reg.boundary_params((), params, ctx)
  noise = jax.random.normal(jax.random.split(jax.random.key(3), 1)[0], (2,))
  np.testing.assert_allclose(new["w"], 0.5 * params["w"] + 0.1 * noise, rtol=1e-6)
  assert float(reg.penalty((), params)) == 0.0
  reg = l2_init(0.25)
  state = reg.init({"w": jnp.array([1.0, 2.0])})
  theta = {"w": jnp.array([3.0, -2.0])}
  assert float(reg.penalty(state, theta)) == pytest.approx(0.25 * (4 + 16))
  grad = jax.grad(lambda p: reg.penalty(state, p))(theta)
  np.testing.assert_allclose(grad["w"], [0.25 * 2 * 2, 0.25 * 2 * -4])
  assert reg.consolidate(state, theta, ctx) is state  # the anchor never moves


def test_stable_sgd_is_a_preset_of_per_task_rates_and_dropout():
  spec = stable_sgd(0.1, decay=0.8, dropout=0.25)
  rates = [max(0.1 * 0.8**t, 5e-5) for t in range(40)]
  method = build_method("stable_sgd", spec, 40)
  hparams = [h.get("learning_rate") for h in method.task_hparams]
  np.testing.assert_allclose(hparams, rates, rtol=1e-5)
  assert resolve_method("stable_sgd", {}).info.family == "plasticity"
  model = method_model(MLP(num_classes=2, hidden=(4,)), method)
  assert model.dropout == 0.25
  plain = build_method("sgd", MethodSpec("sgd"), 2)
  assert method_model(MLP(num_classes=2), plain) == MLP(num_classes=2)


def _cbp_params():
  return {
    "Dense_0": {"kernel": jnp.array([[1.0, -1.0, 2.0], [0.5, 1.0, -1.0]]), "bias": jnp.ones(3)},
    "Dense_1": {"kernel": jnp.array([[1.0, 2.0], [-1.0, 0.0], [0.5, 0.5]]), "bias": jnp.zeros(2)},
  }


def test_continual_backprop_step_by_hand():
  params, lr = _cbp_params(), 0.1
  grads = jax.tree.map(lambda p: jnp.full_like(p, 0.2), params)
  h = jnp.array([[1.0, 0.1, 0.0], [3.0, 0.1, 2.0]])  # mean |h|: 2, 0.1, 1
  tx = continual_backprop(lr, replacement_rate=0.5, maturity_threshold=0, utility_decay=0.9)
  state = tx.init(params)
  u, state = jax.jit(tx.update)(grads, state, params, activations={"Dense_0": h})
  stepped = jax.tree.map(lambda p, g: p - lr * g, params, grads)
  out = np.abs(np.asarray(stepped["Dense_1"]["kernel"])).sum(1)  # |w'| summed per unit
  utility = 0.1 * np.array([2.0, 0.1, 1.0]) * out  # (1 - 0.9) * contribution, from 0
  cbp = state[1]
  np.testing.assert_allclose(cbp.utility["Dense_0"], [*utility[:1], 0.0, utility[2]], rtol=1e-6)
  # 3 mature units * 0.5 = 1.5 owed: unit 1 (the lowest utility) is replaced, 0.5 stays owed.
  assert cbp.age["Dense_0"].tolist() == [1, 0, 1]
  assert float(cbp.owed["Dense_0"]) == pytest.approx(0.5)
  new = jax.tree.map(lambda p, d: p + d, params, u)
  np.testing.assert_allclose(new["Dense_1"]["kernel"][1], [0.0, 0.0])  # outgoing zeroed
  assert float(new["Dense_0"]["bias"][1]) == 0.0
  assert not np.allclose(new["Dense_0"]["kernel"][:, 1], stepped["Dense_0"]["kernel"][:, 1])
  for layer in ("Dense_0", "Dense_1"):  # every other weight took SGD's step exactly
    keep = np.ones(new[layer]["kernel"].shape, bool)
    keep[(slice(None), 1) if layer == "Dense_0" else (1, slice(None))] = False
    np.testing.assert_array_equal(
      np.asarray(u[layer]["kernel"])[keep], np.asarray(-lr * grads[layer]["kernel"])[keep]
    )


def test_continual_backprop_replaces_nothing_before_maturity_or_at_rate_zero():
  params = _cbp_params()
  grads = jax.tree.map(jnp.ones_like, params)
  h = {"Dense_0": jnp.ones((4, 3))}
  sgd_u, _ = optax.sgd(0.1).update(grads, optax.sgd(0.1).init(params))
  for tx in (continual_backprop(0.1), continual_backprop(0.1, 0.0, maturity_threshold=0)):
    u, _ = tx.update(grads, tx.init(params), params, activations=h)
    jax.tree.map(np.testing.assert_array_equal, u, sgd_u)
  with pytest.raises(ValueError, match="activations of Dense_0"):
    reinit_low_utility_units().update(grads, reinit_low_utility_units().init(params), params)


def test_the_run_seed_is_folded_into_every_noise_key():
  params = _cbp_params()
  for tx in (upgd(0.1), shrink_perturb(0.1), continual_backprop(0.1)):
    state = tx.init(params)
    keys = [jax.tree.leaves(fold_in_seed(state, s)) for s in (0, 1, 0)]
    assert any(not np.array_equal(a, b) for a, b in zip(keys[0], keys[1]))
    assert all(np.array_equal(a, b) for a, b in zip(keys[0], keys[2]))
  sgd = optax.sgd(0.1).init(params)
  assert fold_in_seed(sgd, 3) == sgd


# --- the loop -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def long_stream():
  return subsample_stream(label_permuted_stream(load_dataset("digits"), 4), 96, 40)


def _run(stream, name, spec=None, **config):
  config = LoopConfig(batch_size=16, epochs=1, evals_per_task=0, **config)
  model = MLP(num_classes=stream.num_classes, hidden=(16, 16))
  method = build_method(name, spec or resolve_method(name, {}), len(stream.tasks))
  return run_continual(model, stream, method, config, seed=0, progress=False)


def test_a_run_records_the_plasticity_metrics(long_stream):
  cbp = MethodSpec("cbp", {"learning_rate": 0.1, "replacement_rate": 0.0})
  run = _run(long_stream, "cbp", cbp, eval_tasks_sample=1)
  sgd = _run(long_stream, "sgd", MethodSpec("sgd", {"learning_rate": 0.1}), eval_tasks_sample=1)
  # Continual Backprop replacing nothing is SGD, through the engine's activations path.
  np.testing.assert_array_equal(
    np.array(run["accuracy_matrix"], dtype=np.float64),
    np.array(sgd["accuracy_matrix"], dtype=np.float64),
  )
  matrix = np.array(run["accuracy_matrix"], dtype=np.float64)
  scored = [scored_tasks(4, t, 1) or range(4) for t in range(4)]
  for t, row in enumerate(matrix):
    assert {j for j in range(4) if np.isfinite(row[j])} == set(scored[t])
  assert run["learning_accuracy"]["per_task"] == np.diag(matrix).tolist()
  assert run["online_accuracy"] == run["epoch_accuracy"]  # one pass per task
  dormant = run["dormant_units"]
  assert len(dormant["per_task"]) == 4 and set(dormant["layers"]) == {"Dense_0", "Dense_1"}
  assert all(0 <= d <= f <= 1 for d, f in zip(dormant["dead"], dormant["per_task"]))
  assert "effective_step_size" not in run and math.isfinite(run["acc"])  # no accumulator


def test_accumulator_runs_record_their_step_size_and_settings_keep_their_id(long_stream):
  run = _run(long_stream, "adagrad", MethodSpec("adagrad", {"learning_rate": 0.05}))
  steps = run["effective_step_size"]
  assert len(steps) == 4 and all(a >= b for a, b in zip(steps, steps[1:]))  # S only grows
  assert np.isfinite(np.array(run["accuracy_matrix"], dtype=np.float64)).all()
  model = MLP(num_classes=2)
  method = build_method("sgd", MethodSpec("sgd"), 4)
  settings = run_settings(model, long_stream, method, LoopConfig(), 0)
  assert "eval_tasks_sample" not in settings["loop"] and "dropout" not in settings["method"]
  stable = build_method("stable_sgd", stable_sgd(), 4)
  settings = run_settings(model, long_stream, stable, LoopConfig(eval_tasks_sample=2), 0)
  assert settings["loop"]["eval_tasks_sample"] == 2 and "dropout = 0.25" in settings["model"]
  assert dataclasses.replace(stable.spec, dropout=None).dropout is None


def test_the_long_stream_experiments_run_quick_and_summarise(tmp_path, monkeypatch, capsys):
  from data_fixtures import write_idx_folder

  from classp_jax.cli import main
  from classp_jax.data import CACHE_DIR_ENV
  from classp_jax.experiments import DataOptions, experiments, studies

  monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
  root = tmp_path / "data"
  write_idx_folder(root / "mnist-10k", n_train=60, n_test=40, size=28, seed=1)
  write_idx_folder(root / "fashion-mnist", n_train=60, n_test=40, size=28, seed=2)
  names = ("long_permuted_mnist", "label_permuted_mnist", "label_permuted_fashion_mnist")
  for name in (*names, "rotated_mnist"):
    experiment = experiments()[name]
    assert experiment.loop.evals_per_task == 0 and experiment.loop.epochs == 1
    quick = experiment.quick(experiment).stream(DataOptions(data_dir=str(root)))
    assert len(quick.tasks) == 5 and len(quick.tasks[4].test.labels) == 40
  assert experiments()["long_permuted_mnist"].loop.eval_tasks_sample == 10
  assert {"long_permuted_mnist", "label_permuted_mnist", "rotated_mnist"} <= set(studies())
  assert "upgd" in studies()["rotated_mnist"].methods
  out = tmp_path / "out"
  args = ["run", "rotated_mnist", "--quick", "--no-progress", "--data-dir", str(root)]
  assert main([*args, "--methods", "classp_decay", "--out", str(out)]) == 0
  import json

  (run,) = json.loads((out / "results.json").read_text())["runs"]
  assert run["method_info"]["family"] == "CLASSP" and run["method_info"]["ablation_of"] == "classp"
  assert "not the paper's" in run["method_info"]["changes"]
  assert len(run["dormant_units"]["per_task"]) == 5 and len(run["effective_step_size"]) == 5
  assert run["settings"]["method"]["hparams"]["accumulator_decay"] == 0.999
  printed = capsys.readouterr().out
  assert "plasticity (learning accuracy" in printed and "eff. step" in printed


def test_num_tasks_sets_a_long_streams_length_and_quick_caps_it(tmp_path, monkeypatch):
  from data_fixtures import write_idx_folder

  from classp_jax.data import CACHE_DIR_ENV
  from classp_jax.experiments import DataOptions
  from classp_jax.planning import plan_runs

  monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
  root = tmp_path / "data"
  write_idx_folder(root / "mnist-10k", n_train=60, n_test=40, size=28, seed=1)
  data = DataOptions(data_dir=str(root))

  def tasks(name, *overrides, quick=True):
    plan = plan_runs(name, methods=["sgd"], overrides=overrides, quick=quick, data=data)
    return [t.name for t in plan.stream.tasks], plan

  names, plan = tasks("long_permuted_mnist", "num_tasks=3", "scenario=task")
  assert names == ["mnist:perm0", "mnist:perm1", "mnist:perm2"]
  assert plan.stream.scenario == "task" and "over 3 tasks" in plan.experiment.description
  assert len(tasks("rotated_mnist", "num_tasks=9")[0]) == 5  # --quick: at most 5
  assert len(tasks("label_permuted_mnist", "num_tasks=2", "num_tasks=4")[0]) == 4  # the last
  assert (
    tasks("long_permuted_mnist", "num_tasks=3")[1].runs[0].settings["stream"]["tasks"][2]["name"]
    == "mnist:perm2"
  )
  with pytest.raises(ValueError, match="digits has a fixed number of tasks; these take"):
    tasks("digits", "num_tasks=3")
  for bad in ("1", "2.5", "true", "'3'"):
    with pytest.raises(ValueError, match="num_tasks takes an integer of at least 2"):
      tasks("rotated_mnist", f"num_tasks={bad}")


def test_a_class_too_small_for_the_validation_split_is_refused_before_training():
  from classp_jax.data import TaskStream
  from classp_jax.data.containers import Task
  from classp_jax.training import check_config

  labels = np.array([0] * 40 + [1] * 3, np.int32)  # round(3 * 0.1) = 0: class 1 has none
  split = Split(np.zeros((43, 2), np.float32), labels)
  stream = TaskStream("s", (Task("t0", split, split, 2, (0, 1)),), 2, (2,))
  config = LoopConfig(batch_size=8, validation_fraction=0.1)
  with pytest.raises(ValueError, match="task 't0': class 1 has 3 training example"):
    check_config(config, stream, 1)
  check_config(dataclasses.replace(config, validation_fraction=0.4), stream, 1)  # 1 of 3 held out


class TinyCNN(nn.Module):
  """The paper's CNN in miniature: conv1 -> conv2 -> pool -> fc1 -> fc2, ReLUs sown."""

  @nn.compact
  def __call__(self, x, *, train: bool):
    from classp_jax.models import max_pool_2x2, sow_relu

    for name in ("conv1", "conv2"):
      conv = nn.Conv(4, (3, 3), padding="VALID", name=name)
      x = sow_relu(self, conv, nn.relu(conv(x)))
    x = max_pool_2x2(x).reshape(x.shape[0], -1)
    fc1 = nn.Dense(16, name="fc1")
    x = sow_relu(self, fc1, nn.relu(fc1(x)))
    return nn.Dense(3, name="fc2")(x)


def test_continual_backprop_on_a_cnn_replaces_channels_and_their_outgoing_weights():
  from classp_jax.models import ACTIVATIONS, unit_activations

  model, x = TinyCNN(), jnp.asarray(np.random.default_rng(0).random((2, 8, 8, 1)))
  params = jax.jit(lambda k: model.init(k, x, train=False))(jax.random.key(0))["params"]
  _, sown = model.apply({"params": params}, x, train=False, mutable=[ACTIVATIONS])
  acts = unit_activations(sown[ACTIVATIONS])
  tx = reinit_low_utility_units(replacement_rate=0.25, maturity_threshold=0)
  zero = jax.tree.map(jnp.zeros_like, params)
  u, state = jax.jit(tx.update)(zero, tx.init(params), params, activations=acts)
  new = jax.tree.map(jnp.add, params, u)
  # A channel's contribution: its mean |h| over batch and positions times the sum of |w| of
  # its outgoing weights: conv2's input channel, or fc1's rows of the flattened (h, w, c).
  outgoing = {
    "conv1": np.abs(np.asarray(params["conv2"]["kernel"])).sum((0, 1, 3)),
    "conv2": np.abs(np.asarray(params["fc1"]["kernel"])).reshape(-1, 4, 16).sum((0, 2)),
  }
  for layer, following in (("conv1", "conv2"), ("conv2", "fc1")):
    contribution = np.abs(np.asarray(acts[layer])).mean((0, 1, 2)) * outgoing[layer]
    age = np.asarray(state.age[layer])
    np.testing.assert_allclose(
      np.asarray(state.utility[layer])[age > 0], 0.01 * contribution[age > 0], rtol=1e-5
    )
    (replaced,) = np.flatnonzero(age == 0)  # 4 channels x 0.25: one
    assert contribution[replaced] == contribution.min()
    kernel = np.asarray(new[following]["kernel"])
    kernel = kernel.reshape(-1, 4, kernel.shape[-1])
    fresh = np.asarray(state.age.get(following, np.ones(kernel.shape[-1]))) == 0
    np.testing.assert_array_equal(kernel[:, replaced][:, ~fresh], 0.0)  # (but for new units)
    assert float(new[layer]["bias"][replaced]) == 0.0
  # fc1: 16 x 0.25 = 4 owed, at most 1 + 16 // 100 = 1 a step: 1 replaced, 3 still owed.
  assert np.asarray(state.age["fc1"]).tolist().count(0) == 1
  assert float(state.owed["fc1"]) == pytest.approx(3.0)
