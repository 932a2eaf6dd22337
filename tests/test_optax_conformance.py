"""The CLASSP and plasticity transforms tested the way optax tests its own optimizers.

optax's own suite (``optax/_src/alias_test.py``) runs every optimizer through
the same checks: it converges on small problems, keeps the params' dtype
(float32, bfloat16, float16, complex64), works under ``inject_hyperparams``,
with a schedule as the learning rate, inside ``MultiSteps``, without
retracing, and with sharded state. Here each transform runs through them;
what ``tests/test_optimizer.py`` already pins for ``classp`` alone (its NumPy
model, ``inject_hyperparams`` equal to a fresh optimizer for the paper's
knobs, ``MultiSteps`` averaging, init on ``ShapeDtypeStruct``) is not repeated.

Also here: the two defects found by running optax's suite against CLASSP
(complex gradients masked by ``Re(g**2)``, float16 ``g**2`` underflowing and
overflowing), the forgetting accumulator (``accumulator_decay``) against a
hand-computed two-step value, and UPGD against hand-computed steps, without
and with noise.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import classp_jax
from classp_jax.methods.registry import (
  OPTIMIZERS,
  MethodSpec,
  build_method,
  resolve_method,
  with_hyperparameter,
)
from classp_jax.plasticity import ScaleByUpgdState, scale_by_upgd, upgd
from classp_jax.results.schema import FAMILIES, PLASTICITY_FAMILY

# name -> (factory of the learning rate, learning rate that converges on the problems below)
TRANSFORMS = {
  "classp": (lambda lr: classp_jax.classp(lr), 1.0),
  "classp_p2": (lambda lr: classp_jax.classp(lr, power=2.0), 1.0),
  "classp_relative": (
    lambda lr: classp_jax.classp(lr, threshold=0.5, relative_threshold=True),
    1.0,
  ),
  "classp_decay": (lambda lr: classp_jax.classp(lr, accumulator_decay=0.99), 0.5),
  "classp_as_released": (lambda lr: classp_jax.classp_as_released(lr, threshold=0.5), 1.0),
  "upgd": (lambda lr: upgd(lr, utility_decay=0.9, sigma=0.0), 0.5),
  "upgd_noisy": (lambda lr: upgd(lr, utility_decay=0.9, sigma=0.01), 0.5),
}
TARGET = np.array([1.0, -2.0, 3.0], np.float32)
_X = np.asarray(jax.random.normal(jax.random.key(0), (20, 3)))


def _run_scan(tx, loss, w0, steps):
  """Final params after ``steps`` steps of ``tx`` on ``loss``, as one compiled scan."""

  def body(carry, _):
    w, state = carry
    updates, state = tx.update(jax.grad(loss)(w), state, w)
    return (optax.apply_updates(w, updates), state), None

  return jax.jit(lambda w: jax.lax.scan(body, (w, tx.init(w)), None, steps)[0][0])(w0)


# --- convergence ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TRANSFORMS)
def test_converges_on_a_parabola_and_a_least_squares_problem(name):
  factory, lr = TRANSFORMS[name]
  x, y = jnp.asarray(_X), jnp.asarray(_X @ TARGET)
  problems = {
    "parabola": lambda w: 0.5 * jnp.sum((w - TARGET) ** 2),
    "least squares": lambda w: 0.5 * jnp.mean((x @ w - y) ** 2),  # solved by TARGET
  }
  tol = 0.05 if name == "upgd_noisy" else 0.01
  for problem, loss in problems.items():
    w = _run_scan(factory(lr), loss, jnp.zeros(3), 1000)
    np.testing.assert_allclose(w, TARGET, atol=tol, err_msg=problem)


# --- dtypes -----------------------------------------------------------------------------------

DTYPES = (jnp.float32, jnp.bfloat16, jnp.float16, jnp.complex64)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: jnp.dtype(d).name)
@pytest.mark.parametrize(
  "name", ["classp", "classp_relative", "classp_decay", "classp_as_released"]
)
def test_updates_keep_the_params_dtype_and_the_accumulator_is_real(name, dtype):
  tx = TRANSFORMS[name][0](0.1)
  params = {"w": jnp.array([[0.5, -1.0], [2.0, 0.25]], dtype), "b": jnp.array([1.0, 0.0], dtype)}
  grads = jax.tree.map(lambda p: (p + 0.3).astype(dtype), params)
  if jnp.issubdtype(dtype, jnp.complexfloating):
    grads = jax.tree.map(lambda g: g * (1 - 2j), grads)
  state = tx.init(params)
  update = jax.jit(tx.update)
  for _ in range(2):
    updates, state = update(grads, state, params)
    chex.assert_trees_all_equal_dtypes(updates, params)
    params = optax.apply_updates(params, updates)
  assert all(p.dtype == dtype for p in jax.tree.leaves(params))  # apply_updates kept it
  assert all(np.all(np.isfinite(np.asarray(u))) for u in jax.tree.leaves(updates))
  assert any(np.any(np.asarray(u) != 0) for u in jax.tree.leaves(updates))
  for s in jax.tree.leaves(state[0].accumulator):
    assert s.dtype == jnp.float32  # real, at least float32


@pytest.mark.parametrize("dtype", DTYPES[:3], ids=lambda d: jnp.dtype(d).name)
def test_upgd_keeps_the_params_dtype_and_refuses_complex(dtype):
  tx = upgd(0.1)
  params = {"w": jnp.array([0.5, -1.0, 2.0], dtype)}
  grads = {"w": jnp.array([0.1, 0.2, -0.3], dtype)}
  state = tx.init(params)
  assert state[0].utility["w"].dtype == jnp.float32
  updates, state = jax.jit(tx.update)(grads, state, params)
  chex.assert_trees_all_equal_dtypes(updates, params)
  with pytest.raises(ValueError, match="real floating-point params; got a complex64"):
    tx.init({"w": jnp.ones(2, jnp.complex64)})


# --- the two defects found by optax's suite -----------------------------------------------------


def test_a_complex_gradient_with_a_larger_imaginary_part_moves_at_threshold_0():
  g = jnp.array([0.1 + 0.5j, 1.0 - 2.0j, 0.0j], jnp.complex64)
  tx = classp_jax.classp(1.0, eps=0.0)
  updates, state = tx.update(g, tx.init(g))
  # Re(g**2) = 0.01 - 0.25 < 0: the old mask g * g <= 0 dropped it.
  np.testing.assert_allclose(updates, -np.asarray(g) / np.abs(np.asarray(g)).clip(1e-30), rtol=1e-6)
  assert state[0].accumulator.dtype == jnp.float32
  np.testing.assert_allclose(state[0].accumulator, np.abs(np.asarray(g)), rtol=1e-6)
  # threshold_mask compares |g|**2 = 0.26 with 0.2, not Re(g**2) = -0.24.
  mask = classp_jax.threshold_mask(0.2)
  masked, _ = mask.update(g, mask.init(g))
  np.testing.assert_array_equal(masked, g)


def test_complex_params_at_power_2_equal_optax_adagrad():
  params = jnp.array([1.0 + 1.0j, -0.5j, 2.0], jnp.complex64)
  grads = [params * (0.3 - 1.1j), params * (0.7 + 0.2j)]
  ours, theirs = classp_jax.classp(0.1, power=2.0), optax.adagrad(0.1, 0.0, 1e-5)
  s1, s2 = ours.init(params), theirs.init(params)
  for g in grads:
    u1, s1 = ours.update(g, s1)
    u2, s2 = theirs.update(g, s2)
    np.testing.assert_allclose(u1, u2, rtol=1e-5)
  np.testing.assert_allclose(s1[0].accumulator, np.real(s2[0].sum_of_squares), rtol=1e-6)


def test_a_tiny_float16_gradient_moves_at_threshold_0():
  g = jnp.array([1e-4, -3e-5, 0.0], jnp.float16)  # g * g underflows to 0 in float16
  tx = classp_jax.classp(1.0)
  updates, _ = tx.update(g, tx.init(g))
  g64 = np.asarray(g, np.float64)
  expected = -g64 / (1e-5 + np.abs(g64))
  np.testing.assert_allclose(np.asarray(updates, np.float64), expected, rtol=2e-3)
  assert updates.dtype == jnp.float16 and float(updates[0]) < -0.9


def test_one_large_float16_entry_does_not_drop_its_tensor_under_a_relative_threshold():
  g = jnp.array([300.0, 1.0, -2.0, 0.5], jnp.float16)  # 300**2 overflows float16
  for tx in (
    classp_jax.classp(1.0, threshold=1.0, relative_threshold=True),
    classp_jax.threshold_mask(1.0, relative=True),
  ):
    updates, _ = tx.update(g, tx.init(g))
    assert np.asarray(updates)[0] != 0  # above the mean of g**2, 22501.3
    np.testing.assert_array_equal(np.asarray(updates)[1:], 0)


# --- the forgetting accumulator ----------------------------------------------------------------


@pytest.mark.parametrize("include_current", [True, False])
def test_accumulator_decay_against_two_hand_computed_steps(include_current):
  beta, lr, eps, power, threshold = 0.5, 0.1, 1e-3, 1.5, 0.04
  g1 = np.array([1.0, -2.0, 0.1, 0.0], np.float32)  # 0.1**2 <= 0.04: masked
  g2 = np.array([0.5, 0.1, 3.0, -1.0], np.float32)
  tx = classp_jax.classp(
    lr, threshold, power, eps, include_current_gradient=include_current, accumulator_decay=beta
  )
  state = tx.init(g1)
  s = np.zeros(4)
  for g in (g1, g2):
    updates, state = tx.update(jnp.asarray(g), state)
    g = g.astype(np.float64)
    passed = g * g > threshold
    s_new = np.where(passed, beta * s + np.abs(g) ** power, s)  # masked entries keep S
    scale = s_new if include_current else s
    with np.errstate(divide="ignore", invalid="ignore"):
      expected = np.where(passed, -lr * g / (eps + scale) ** (1 / power), 0.0)
    np.testing.assert_allclose(updates, expected, rtol=2e-6)
    s = s_new
  np.testing.assert_allclose(state[0].accumulator, s, rtol=2e-6)
  # By hand, weight 0 (include_current): S = 0.5 * 1 + 0.5**1.5.
  assert np.isclose(s[0], 0.5 + 0.5**1.5) and np.isclose(s[2], 3.0**1.5)


def test_accumulator_decay_is_injectable_and_1_gives_the_papers_bits():
  params = {"w": jnp.zeros((3, 4))}
  grads = [
    jax.tree.map(lambda p, k=k: jax.random.normal(k, p.shape), params)
    for k in jax.random.split(jax.random.key(1), 4)
  ]
  tx = optax.inject_hyperparams(classp_jax.classp)(0.1, threshold=0.1)
  state, update = tx.init(params), jax.jit(tx.update)
  assert float(state.hyperparams["accumulator_decay"]) == 1.0
  ref = classp_jax.classp(0.1, threshold=0.1)
  ref_state = ref.init(params)
  for t, g in enumerate(grads):
    beta = 1.0 if t < 2 else 0.9
    state.hyperparams["accumulator_decay"] = jnp.asarray(beta, jnp.float32)
    if t == 2:  # from here on, a fresh optimizer with the decay, carrying S over
      acc = ref_state[0].accumulator
      ref = classp_jax.classp(0.1, threshold=0.1, accumulator_decay=0.9)
      ref_state = (ref.init(params)[0]._replace(accumulator=acc), ref_state[1])
    u, state = update(g, state)
    ru, ref_state = jax.jit(ref.update)(g, ref_state)
    chex.assert_trees_all_equal(u, ru)  # bit for bit, the traced 1.0 included
  assert update._cache_size() == 1


def test_accumulator_decay_outside_0_1_is_refused():
  for bad in (-0.1, 1.5, float("nan")):
    with pytest.raises(ValueError, match="accumulator_decay must be"):
      classp_jax.classp(0.1, accumulator_decay=bad)


def test_accumulator_decay_is_a_hyperparameter_of_the_classp_method():
  spec = with_hyperparameter("classp", MethodSpec("classp"), "accumulator_decay", 0.999)
  method = build_method("classp", spec, num_tasks=2)
  state = method.tx.init({"w": jnp.ones(2)})
  np.testing.assert_allclose(state.hyperparams["accumulator_decay"], 0.999)


# --- UPGD against hand-computed steps ------------------------------------------------------------


def _upgd_numpy(params, grads_seq, lr, beta, wd, noise_seq=None, sigma=0.0):
  """UPGD in float64 NumPy over a list of leaves: the paper's Algorithm 1, global max."""
  traces = [np.zeros_like(p, np.float64) for p in params]
  params = [np.asarray(p, np.float64) for p in params]
  for t, grads in enumerate(grads_seq, start=1):
    grads = [np.asarray(g, np.float64) for g in grads]
    traces = [beta * u + (1 - beta) * (-g * w) for u, g, w in zip(traces, grads, params)]
    eta = max(u.max() for u in traces)
    new = []
    for i, (u, g, w) in enumerate(zip(traces, grads, params)):
      scaled = 1 / (1 + np.exp(-(u / (1 - beta**t)) / eta))
      xi = 0.0 if noise_seq is None else sigma * np.asarray(noise_seq[t - 1][i], np.float64)
      new.append(w * (1 - lr * wd) - lr * (g + xi) * (1 - scaled))
    params = new
  return params, traces


def _leaves_and_grads():
  params = {"a": jnp.array([1.0, 2.0, -1.0]), "b": jnp.array([[0.5, -0.3], [0.0, 4.0]])}
  grads = [
    {"a": jnp.array([-1.0, 2.0, -1.0]), "b": jnp.array([[0.2, 0.1], [1.0, -0.5]])},
    {"a": jnp.array([0.3, -0.2, 0.5]), "b": jnp.array([[-0.4, 0.6], [0.1, 0.2]])},
  ]
  return params, grads


def test_upgd_two_steps_without_noise_against_numpy():
  params, grads = _leaves_and_grads()
  tx = upgd(0.1, utility_decay=0.9, sigma=0.0, weight_decay=0.01)
  state, w = tx.init(params), params
  for g in grads:
    updates, state = tx.update(g, state, w)
    w = optax.apply_updates(w, updates)
  expected, traces = _upgd_numpy(
    jax.tree.leaves(params), [jax.tree.leaves(g) for g in grads], 0.1, 0.9, 0.01
  )
  for got, want in zip(jax.tree.leaves(w), expected):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
  for got, want in zip(jax.tree.leaves(state[0].utility), traces):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)
  assert int(state[0].count) == 2


def test_upgd_noise_is_reproduced_from_the_seed_as_documented():
  params, grads = _leaves_and_grads()
  sigma, seed = 0.5, 7
  tx = upgd(0.1, utility_decay=0.9, sigma=sigma, seed=seed)
  state, w = tx.init(params), params
  update = jax.jit(tx.update)
  for g in grads:
    updates, state = update(g, state, w)
    w = optax.apply_updates(w, updates)
  # The documented draw: split the key each step; leaf i takes split(sub, n)[i].
  key, noise_seq = jax.random.key(seed), []
  for _ in grads:
    key, sub = jax.random.split(key)
    keys = jax.random.split(sub, 2)
    noise_seq.append(
      [jax.random.normal(k, p.shape, jnp.float32) for k, p in zip(keys, jax.tree.leaves(params))]
    )
  expected, _ = _upgd_numpy(
    jax.tree.leaves(params), [jax.tree.leaves(g) for g in grads], 0.1, 0.9, 0.0, noise_seq, sigma
  )
  for got, want in zip(jax.tree.leaves(w), expected):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(state[0].key, jax.random.key_data(key))
  # Another seed, other noise.
  other = upgd(0.1, utility_decay=0.9, sigma=sigma, seed=seed + 1)
  u_other, _ = other.update(grads[0], other.init(params), params)
  u_first, _ = tx.update(grads[0], tx.init(params), params)
  assert not np.allclose(u_other["a"], u_first["a"])


def test_upgd_with_every_weight_zero_gives_half_gated_steps_not_nan():
  params = {"w": jnp.zeros(3)}  # every utility -g * w is 0: the max is 0
  g = {"w": jnp.array([1.0, -2.0, 0.5])}
  updates, _ = scale_by_upgd(sigma=0.0).update(g, scale_by_upgd(sigma=0.0).init(params), params)
  np.testing.assert_allclose(updates["w"], 0.5 * g["w"])


def test_upgd_needs_params_and_checks_its_hyperparameters():
  tx = upgd(0.1)
  state = tx.init({"w": jnp.ones(2)})
  assert isinstance(state[0], ScaleByUpgdState)
  with pytest.raises(ValueError, match="needs the params"):
    tx.update({"w": jnp.ones(2)}, state)
  for kwargs, match in (
    ({"utility_decay": 1.0}, "utility_decay must be in"),
    ({"sigma": -1.0}, "sigma must be"),
    ({"weight_decay": float("inf")}, "weight_decay must be finite"),
    ({"seed": 0.5}, "seed must be an integer"),
  ):
    with pytest.raises(ValueError, match=match):
      upgd(0.1, **kwargs)


def test_upgd_is_registered_in_the_plasticity_family():
  assert PLASTICITY_FAMILY in FAMILIES
  assert OPTIMIZERS["upgd"].info.family == PLASTICITY_FAMILY
  assert "2404.00781" in OPTIMIZERS["upgd"].info.reference
  spec = with_hyperparameter("upgd", resolve_method("upgd+ewc", {}), "sigma", 0.01)
  method = build_method("upgd+ewc", spec, num_tasks=2)
  assert method.spec.regularizer == "ewc"
  assert float(method.tx.init({"w": jnp.ones(2)}).hyperparams["sigma"]) == pytest.approx(0.01)


# --- inject_hyperparams, schedules, MultiSteps, retracing ----------------------------------------


def test_upgd_injected_equals_fresh_and_its_knobs_change_without_recompiling():
  params, grads = _leaves_and_grads()
  tx = optax.inject_hyperparams(upgd)(0.1, utility_decay=0.9, sigma=0.1, weight_decay=0.0)
  state, update = tx.init(params), jax.jit(tx.update)
  ref = upgd(0.1, utility_decay=0.9, sigma=0.1)
  ref_state = ref.init(params)
  for t, g in enumerate(grads):
    if t == 1:
      state.hyperparams["weight_decay"] = jnp.asarray(0.01, jnp.float32)
      ref = upgd(0.1, utility_decay=0.9, sigma=0.1, weight_decay=0.01)
    u, state = update(g, state, params)
    ru, ref_state = ref.update(g, ref_state, params)
    chex.assert_trees_all_close(u, ru, rtol=1e-6, atol=1e-8)
  assert update._cache_size() == 1


@pytest.mark.parametrize("name", ["classp", "classp_decay", "classp_as_released", "upgd_noisy"])
def test_a_schedule_as_the_learning_rate_scales_each_step(name):
  factory, _ = TRANSFORMS[name]
  schedule = optax.exponential_decay(0.2, transition_steps=1, decay_rate=0.5)
  params, grads = _leaves_and_grads()
  scheduled, constant = factory(schedule), factory(1.0)
  s1, s2 = scheduled.init(params), constant.init(params)
  for t, g in enumerate(grads):
    u1, s1 = scheduled.update(g, s1, params)
    u2, s2 = constant.update(g, s2, params)
    chex.assert_trees_all_close(u1, jax.tree.map(lambda u: u * schedule(t), u2), rtol=1e-6)


@pytest.mark.parametrize("name", ["classp_decay", "classp_as_released", "upgd_noisy"])
def test_multisteps_applies_the_mean_gradient_every_k_steps(name):
  factory, _ = TRANSFORMS[name]
  params, grads = _leaves_and_grads()
  tx = optax.MultiSteps(factory(0.1), every_k_schedule=2)
  state = tx.init(params)
  u, state = tx.update(grads[0], state, params)
  assert all(np.all(np.asarray(x) == 0) for x in jax.tree.leaves(u))
  u, state = tx.update(grads[1], state, params)
  ref = factory(0.1)
  mean = jax.tree.map(lambda a, b: (a + b) / 2, *grads)
  expected, _ = ref.update(mean, ref.init(params), params)
  chex.assert_trees_all_close(u, expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(
  "make",
  [
    lambda: optax.inject_hyperparams(classp_jax.classp)(0.1, accumulator_decay=0.99),
    lambda: optax.inject_hyperparams(upgd)(0.1),
    lambda: classp_jax.classp_as_released(0.1),
  ],
  ids=["classp_injected", "upgd_injected", "classp_as_released"],
)
def test_no_retracing_over_steps(make):
  tx, traces = make(), []
  params, grads = _leaves_and_grads()

  @jax.jit
  def step(w, state, g):
    traces.append(1)  # runs once per trace
    updates, state = tx.update(g, state, w)
    return optax.apply_updates(w, updates), state

  w, state = params, tx.init(params)
  for t in range(4):
    if hasattr(state, "hyperparams"):
      state.hyperparams["learning_rate"] = jnp.asarray(0.1 / (t + 1), jnp.float32)
    w, state = step(w, state, grads[t % 2])
  assert len(traces) == 1


# --- sharded state -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["classp_decay", "classp_relative", "upgd_noisy"])
def test_sharded_params_keep_sharded_state_and_the_same_values(name):
  n = jax.device_count()
  if n < 2:
    pytest.skip("needs several devices (tests/conftest.py simulates 4)")
  mesh = jax.make_mesh((n,), ("data",), axis_types=(jax.sharding.AxisType.Explicit,))
  sharded = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  key_p, key_g = jax.random.split(jax.random.key(3))
  params = {"w": jax.random.normal(key_p, (2 * n, 3)), "b": jnp.ones(3)}
  grads = {"w": jax.random.normal(key_g, (2 * n, 3)), "b": jnp.array([0.5, -1.0, 2.0])}
  tx = TRANSFORMS[name][0](0.1)
  put = lambda tree: {**tree, "w": jax.device_put(tree["w"], sharded)}
  state = tx.init(put(params))
  leaf = lambda s: s[0].utility["w"] if name.startswith("upgd") else s[0].accumulator["w"]
  assert leaf(state).sharding.is_equivalent_to(sharded, 2)
  update = jax.jit(tx.update)
  u_sharded, state = update(put(grads), state, put(params))
  assert leaf(state).sharding.is_equivalent_to(sharded, 2)
  u_single, _ = jax.jit(tx.update)(grads, tx.init(params), params)
  chex.assert_trees_all_close(u_sharded, u_single, rtol=1e-6, atol=1e-8)
