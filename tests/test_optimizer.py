"""Tests for classp_jax.optimizer: the CLASSP rule and its optax integration."""

import functools

import chex
import flax.linen as nn
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from strategies import GRADIENT_VALUES

import classp_jax

# ---------------------------------------------------------------------------
# An independent model of the rule: plain NumPy, element by element, float64.


def _model_element(g, s, lr, threshold, power, eps, include_current=True):
  """One step for one weight: returns (update, new accumulator).

  ``include_current=False`` is the paper's Equation (1): the step is scaled
  by the accumulator before this gradient is added.
  """
  g32 = np.float32(g)
  if g32 * g32 <= np.float32(threshold):  # the mask is decided in float32
    return 0.0, s
  g = float(g)
  s_new = s + abs(g) ** power
  scale = s_new if include_current else s
  if eps + scale == 0.0:  # nothing to scale by: no step, and no NaN
    return 0.0, s_new
  return -lr * g / (eps + scale) ** (1.0 / power), s_new


def model_classp(grads_seq, lr, threshold, power, eps, initial=0.0, include_current=True):
  """Updates for each step and the final accumulator, for a list of trees."""
  leaves0, treedef = jax.tree.flatten(grads_seq[0])
  acc = [np.full(np.shape(leaf), initial, np.float64) for leaf in leaves0]
  all_updates = []
  for grads in grads_seq:
    ups = []
    for i, g in enumerate(jax.tree.leaves(grads)):
      g = np.asarray(g, np.float32)
      u = np.zeros(g.shape, np.float64)
      flat_u, flat_s, flat_g = u.reshape(-1), acc[i].reshape(-1), g.reshape(-1)
      for j in range(flat_g.size):
        flat_u[j], flat_s[j] = _model_element(
          flat_g[j], flat_s[j], lr, threshold, power, eps, include_current
        )
      ups.append(u)
    all_updates.append(jax.tree.unflatten(treedef, ups))
  return all_updates, jax.tree.unflatten(treedef, acc)


TREES = (
  {"w": (3, 2), "b": (2,)},
  {"enc": {"k": (4,), "s": ()}, "empty": (0, 3)},
  [(5,), (1, 1)],
)


@functools.cache
def _injected_step(tree_index, include_current=True):
  del tree_index  # one compiled step per tree structure

  @jax.jit
  def step(grads, state):
    tx = optax.inject_hyperparams(classp_jax.classp)(
      learning_rate=0.1, include_current_gradient=include_current
    )
    return tx.update(grads, state)

  return step


def _injected_init(params, **hps):
  return optax.inject_hyperparams(classp_jax.classp)(**hps).init(params)


@st.composite
def _grads_seq(draw, steps=None):
  tree_index = draw(st.integers(0, len(TREES) - 1))
  shapes = TREES[tree_index]
  if steps is None:
    steps = draw(st.integers(1, 4))
  value = GRADIENT_VALUES

  def leaf(shape):
    n = int(np.prod(shape, dtype=int))
    return np.asarray(draw(st.lists(value, min_size=n, max_size=n)), np.float32).reshape(shape)

  is_shape = lambda x: isinstance(x, tuple)
  seq = [jax.tree.map(leaf, shapes, is_leaf=is_shape) for _ in range(steps)]
  return tree_index, seq


@hypothesis.settings(max_examples=30, deadline=None)
@hypothesis.given(
  data=_grads_seq(),
  lr=st.floats(1e-3, 1.0),
  threshold=st.one_of(st.just(0.0), st.floats(0.0, 2.0)),
  power=st.one_of(st.sampled_from([1.0, 2.0]), st.floats(0.5, 3.0)),
  eps=st.one_of(st.just(0.0), st.floats(1e-6, 1e-2)),
  initial=st.sampled_from([0.0, 0.1]),
  include_current=st.booleans(),
)
def test_classp_matches_numpy_model(data, lr, threshold, power, eps, initial, include_current):
  tree_index, grads_seq = data
  params = jax.tree.map(jnp.zeros_like, grads_seq[0])
  state = _injected_init(
    params,
    learning_rate=lr,
    threshold=threshold,
    power=power,
    eps=eps,
    initial_accumulator_value=initial,
  )
  step = _injected_step(tree_index, include_current)
  expected_updates, expected_acc = model_classp(
    grads_seq,
    lr,
    np.float32(threshold),
    np.float32(power),
    np.float32(eps),
    np.float32(initial),
    include_current,
  )
  for grads, expected in zip(grads_seq, expected_updates):
    updates, state = step(grads, state)
    chex.assert_trees_all_close(updates, expected, rtol=2e-4, atol=1e-6)
  chex.assert_trees_all_close(state.inner_state[0].accumulator, expected_acc, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------
# The relative threshold: a NumPy model of the mask, on random pytrees.


def model_relative_mask(grads, threshold):
  """Per leaf: the expected masked gradient, and where the decision is a tie.

  ``g**2`` is formed in float32 as the optimizer does; the leaf's mean and
  the cutoff in float64. Entries within float32 rounding of the cutoff are
  ties, which the float32 reduction may decide either way.
  """

  def leaf(g):
    g = np.asarray(g, np.float32)
    sq = (g * g).astype(np.float64)
    cutoff = float(threshold) * sq.mean() if g.size else 0.0
    kept = np.where(sq > cutoff, g, np.float32(0))
    tie = np.abs(sq - cutoff) <= 1e-5 * cutoff
    return kept, tie

  pairs = jax.tree.map(leaf, grads)
  is_pair = lambda x: isinstance(x, tuple) and len(x) == 2
  kept = jax.tree.map(lambda p: p[0], pairs, is_leaf=is_pair)
  ties = jax.tree.map(lambda p: p[1], pairs, is_leaf=is_pair)
  return kept, ties


@st.composite
def _grads_with_zero_leaves(draw):
  """A gradient tree of one of `TREES`, some of its leaves all zero."""
  tree_index, (grads,) = draw(_grads_seq(steps=1))
  return jax.tree.map(lambda g: np.zeros_like(g) if draw(st.booleans()) else g, grads)


@jax.jit
def _relative_mask(grads, threshold):
  tx = classp_jax.threshold_mask(threshold, relative=True)
  return tx.update(grads, tx.init(grads))[0]


@hypothesis.settings(max_examples=40, deadline=None)
@hypothesis.given(
  grads=_grads_with_zero_leaves(),
  threshold=st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0.0, 8.0)),
)
def test_relative_mask_matches_numpy_model(grads, threshold):
  out = _relative_mask(grads, np.float32(threshold))  # traced threshold
  expected, ties = model_relative_mask(grads, np.float32(threshold))
  for o, e, tie, g in zip(
    jax.tree.leaves(out), jax.tree.leaves(expected), jax.tree.leaves(ties), jax.tree.leaves(grads)
  ):
    o = np.asarray(o)
    assert not np.isnan(o).any()
    np.testing.assert_array_equal(o[~tie], e[~tie])
    assert np.all((o[tie] == 0) | (o[tie] == g[tie]))  # either decision
    if not np.any(g):  # mean(g**2) = 0: nothing passes
      np.testing.assert_array_equal(o, np.zeros_like(g))


def test_relative_mask_by_hand_zero_nan_and_empty_leaves():
  grads = {
    # mean(g**2) = (0.01 + 0.64 + 4) / 4 = 1.1625; cutoff 0.58125 at 0.5.
    "a": jnp.array([0.1, -0.8, 2.0, 0.0]),
    "zero": jnp.zeros(3),
    "nan": jnp.array([jnp.nan, 0.1, 0.0]),
    "empty": jnp.zeros((0, 2)),
    # Scale-free: 1000x the gradient of "a" keeps the same entries.
    "big": 1000 * jnp.array([0.1, -0.8, 2.0, 0.0]),
  }
  tx = classp_jax.threshold_mask(0.5, relative=True)
  out = tx.update(grads, tx.init(grads))[0]
  np.testing.assert_array_equal(out["a"], np.float32([0, -0.8, 2.0, 0]))
  np.testing.assert_array_equal(out["zero"], np.zeros(3))
  # A NaN makes the leaf's mean NaN: the whole leaf passes, as documented.
  np.testing.assert_array_equal(out["nan"], np.float32([np.nan, 0.1, 0.0]))
  assert out["empty"].shape == (0, 2)
  np.testing.assert_array_equal(out["big"], np.float32([0, -800, 2000, 0]))


@pytest.mark.parametrize(
  "threshold, power, include_current",
  [
    (0.0, 1.0, True),
    (1.0, 1.0, False),
    (1.0, 2.0, True),
    (4.0, 1.3, False),
    (0.5, 1.3, True),
  ],
)
def test_fused_relative_classp_equals_its_chain(threshold, power, include_current):
  chained = optax.chain(
    classp_jax.threshold_mask(threshold, relative=True),
    classp_jax.scale_by_generalized_adagrad(
      power, eps=1e-5, include_current_gradient=include_current
    ),
    optax.scale_by_learning_rate(0.1),
  )
  fused = classp_jax.classp(
    0.1,
    threshold=threshold,
    power=power,
    eps=1e-5,
    relative_threshold=True,
    include_current_gradient=include_current,
  )
  params = {"w": jnp.zeros((5, 4)), "b": jnp.zeros(4), "z": jnp.zeros(3)}
  s1, s2 = chained.init(params), fused.init(params)
  for key in jax.random.split(jax.random.key(7), 3):
    grads = jax.tree.map(lambda p: jax.random.normal(key, p.shape), params)
    grads["z"] = jnp.zeros(3)  # a zero leaf
    u1, s1 = jax.jit(chained.update)(grads, s1)
    u2, s2 = jax.jit(fused.update)(grads, s2)
    chex.assert_trees_all_close(u1, u2, rtol=1e-6, atol=0)
    np.testing.assert_array_equal(u2["z"], np.zeros(3))
  chex.assert_trees_all_close(s1[1].accumulator, s2[0].accumulator, rtol=1e-6)


def test_relative_threshold_needs_a_threshold():
  with pytest.raises(ValueError, match="needs a threshold"):
    classp_jax.scale_by_generalized_adagrad(relative_threshold=True)


# ---------------------------------------------------------------------------
# Equation (1): the step scaled by the accumulator before this gradient.


@pytest.mark.parametrize("power", [1.0, 2.0, 1.5])
def test_equation_1_first_steps_against_numpy(power):
  lr, eps = 0.1, 1e-5
  tx = classp_jax.classp(lr, threshold=0.0, power=power, eps=eps, include_current_gradient=False)
  g1 = np.float32([0.3, -0.02, 0.0, 1.5])
  g2 = np.float32([0.1, 0.4, -0.7, 0.0])
  state = tx.init(jnp.zeros(4))
  u1, state = jax.jit(tx.update)(jnp.asarray(g1), state)
  u2, state = jax.jit(tx.update)(jnp.asarray(g2), state)
  g1, g2 = g1.astype(np.float64), g2.astype(np.float64)
  # First step: S = 0, so g / eps**(1/p): 1e5 g for p = 1.
  np.testing.assert_allclose(u1, -lr * g1 / eps ** (1 / power), rtol=1e-5)
  s1 = np.abs(g1) ** power
  expected_u2 = -lr * g2 / (eps + s1) ** (1 / power)
  np.testing.assert_allclose(u2, expected_u2, rtol=1e-5)
  np.testing.assert_allclose(state[0].accumulator, s1 + np.abs(g2) ** power, rtol=1e-6)


def test_equation_1_with_eps_0_skips_a_weights_first_step():
  tx = classp_jax.classp(1.0, threshold=0.0, eps=0.0, include_current_gradient=False)
  state = tx.init(jnp.zeros(2))
  u, state = tx.update(jnp.array([2.0, 0.0]), state)
  np.testing.assert_array_equal(u, [0.0, 0.0])  # 0, not g / 0
  np.testing.assert_array_equal(state[0].accumulator, [2.0, 0.0])
  u, state = tx.update(jnp.array([2.0, 1.0]), state)
  np.testing.assert_array_equal(u, [-1.0, 0.0])  # 2 / 2; 1 / 0 skipped


@pytest.mark.parametrize("include_current", [True, False])
def test_new_knobs_are_injectable_and_traced_under_jit(include_current):
  params = {"w": jnp.zeros((4, 5)), "b": jnp.zeros(5)}
  grads = _random_grads(jax.random.key(8), params, 3)
  tx = optax.inject_hyperparams(classp_jax.classp)(
    learning_rate=0.1,
    threshold=1.0,
    relative_threshold=True,
    include_current_gradient=include_current,
  )
  state = tx.init(params)
  assert "threshold" in state.hyperparams
  assert "relative_threshold" not in state.hyperparams  # static booleans
  update = jax.jit(tx.update)
  fresh_acc = None
  for threshold, g in zip((1.0, 4.0, 0.0), grads):
    state = _set(state, threshold=threshold)
    fresh = classp_jax.classp(
      0.1, threshold=threshold, relative_threshold=True, include_current_gradient=include_current
    )
    fresh_state = fresh.init(params)
    if fresh_acc is not None:
      fresh_state = (fresh_state[0]._replace(accumulator=fresh_acc), fresh_state[1])
    u, state = update(g, state)
    fu, fresh_state = fresh.update(g, fresh_state)
    chex.assert_trees_all_close(u, fu, rtol=1e-6, atol=0)
    fresh_acc = fresh_state[0].accumulator
  assert update._cache_size() == 1
  # capacity_used still finds the accumulator.
  assert 0 < float(classp_jax.capacity_used(state).overall) <= 1


# ---------------------------------------------------------------------------
# The defaults learn on an ordinary mean-reduced loss.


def _blobs(rng, n):
  """4 classes in 16 dims, inputs in [0, 1] like pixels."""
  labels = rng.integers(0, 4, n)
  centres = np.eye(4, 16) * 0.8 + 0.1
  inputs = centres[labels] + 0.15 * rng.normal(size=(n, 16))
  return np.clip(inputs, 0, 1).astype(np.float32), labels.astype(np.int32)


def _mlp(params, x):
  return jax.nn.relu(x @ params["w1"] + params["b1"]) @ params["w2"] + params["b2"]


def _train_mlp(tx, seed, steps=150, batch=32):
  """Test accuracy of a 16-32-4 MLP after ``steps`` steps of ``tx``."""
  rng = np.random.default_rng(seed)
  x_train, y_train = _blobs(rng, steps * batch)
  x_test, y_test = _blobs(rng, 1000)
  params = {
    "w1": rng.normal(size=(16, 32)) / 4,
    "b1": np.zeros(32),
    "w2": rng.normal(size=(32, 4)) / 32**0.5,
    "b2": np.zeros(4),
  }
  params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)

  def loss(p, x, y):  # an ordinary mean-reduced loss
    return optax.softmax_cross_entropy_with_integer_labels(_mlp(p, x), y).mean()

  def step(carry, xy):
    p, s = carry
    u, s = tx.update(jax.grad(loss)(p, *xy), s, p)
    return (optax.apply_updates(p, u), s), None

  batches = (x_train.reshape(steps, batch, 16), y_train.reshape(steps, batch))
  train = jax.jit(lambda p: jax.lax.scan(step, (p, tx.init(p)), batches)[0][0])
  params = train(params)
  return float(np.mean(np.argmax(_mlp(params, x_test), -1) == y_test))


def test_defaults_learn_on_a_mean_reduced_loss_and_the_papers_do_not():
  assert _train_mlp(classp_jax.classp(0.05), seed=0) > 0.9
  # The paper's vision threshold, absolute: no g**2 of a mean loss reaches 0.5.
  assert _train_mlp(classp_jax.classp(0.05, threshold=0.5), seed=0) < 0.5
  relative = classp_jax.classp(0.05, threshold=1.0, relative_threshold=True)
  assert _train_mlp(relative, seed=0) > 0.9


# ---------------------------------------------------------------------------
# The rule, on hand-made examples.


def test_threshold_mask_zeroes_at_or_below_threshold():
  tx = classp_jax.threshold_mask(0.25)
  g = jnp.array([0.5, -0.5, 0.51, -2.0, 0.0, 0.1])
  updates, _ = tx.update(g, tx.init(g))
  np.testing.assert_array_equal(updates, np.float32([0.0, 0.0, 0.51, -2.0, 0.0, 0.0]))


def test_accumulates_before_scaling():
  tx = classp_jax.classp(learning_rate=1.0, threshold=0.0, power=1.0, eps=0.0)
  w = jnp.zeros(1)
  state = tx.init(w)
  u1, state = tx.update(jnp.array([2.0]), state)
  u2, state = tx.update(jnp.array([2.0]), state)
  np.testing.assert_allclose(u1, [-1.0])  # 2 / 2: the current gradient counts
  np.testing.assert_allclose(u2, [-0.5])  # 2 / 4
  np.testing.assert_allclose(state[0].accumulator, [4.0])


@pytest.mark.parametrize("eps", [0.0, 1e-5])
@pytest.mark.parametrize("power", [1.0, 2.0, 1.5])
def test_zero_gradient_and_zero_accumulator_give_zero_not_nan(eps, power):
  tx = classp_jax.classp(1.0, threshold=0.0, power=power, eps=eps)
  w = jnp.zeros(3)
  state = tx.init(w)
  for _ in range(2):
    updates, state = jax.jit(tx.update)(jnp.zeros(3), state)
    np.testing.assert_array_equal(updates, np.zeros(3))
    np.testing.assert_array_equal(state[0].accumulator, np.zeros(3))
  # Also with an injected (traced) power.
  itx = optax.inject_hyperparams(classp_jax.classp)(1.0, 0.0, power, eps)
  updates, _ = jax.jit(itx.update)(jnp.zeros(3), itx.init(w))
  np.testing.assert_array_equal(updates, np.zeros(3))


@pytest.mark.parametrize("initial", [0.0, 0.1])
def test_equals_optax_adagrad_for_power_2_threshold_0(initial):
  eps = 1e-7
  ours = classp_jax.classp(
    0.3, threshold=0.0, power=2.0, eps=eps, initial_accumulator_value=initial
  )
  ref = optax.adagrad(0.3, initial_accumulator_value=initial, eps=eps)
  keys = jax.random.split(jax.random.key(0), 5)
  params = {"a": jnp.ones((4, 3)), "b": jnp.zeros(2)}
  p1, s1 = params, ours.init(params)
  p2, s2 = params, ref.init(params)
  ours_update, ref_update = jax.jit(ours.update), jax.jit(ref.update)
  for key in keys:
    grads = jax.tree.map(
      lambda x: jax.random.normal(key, x.shape) * (jnp.arange(x.size) % 3 > 0).reshape(x.shape),
      params,
    )
    u1, s1 = ours_update(grads, s1, p1)
    u2, s2 = ref_update(grads, s2, p2)
    # Same formula; the compiled fusions may round the last bit differently.
    chex.assert_trees_all_close(u1, u2, rtol=1e-6, atol=0)
    p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)
  chex.assert_trees_all_close(s1[0].accumulator, s2[0].sum_of_squares, rtol=1e-6)


@pytest.mark.parametrize("threshold", [0.0, 0.5])
@pytest.mark.parametrize("power", [1.0, 2.0, 1.3])
def test_fused_mask_equals_chained_threshold_mask(threshold, power):
  chained = optax.chain(
    classp_jax.threshold_mask(threshold),
    classp_jax.scale_by_generalized_adagrad(power, eps=1e-5),
    optax.scale_by_learning_rate(0.1),
  )
  fused = classp_jax.classp(0.1, threshold=threshold, power=power, eps=1e-5)
  grads = jnp.array([0.0, 0.3, -0.8, 1.5, -2.0, 0.7072])
  s1, s2 = chained.init(grads), fused.init(grads)
  for _ in range(3):
    u1, s1 = chained.update(grads, s1)
    u2, s2 = fused.update(grads, s2)
    chex.assert_trees_all_close(u1, u2, rtol=1e-6, atol=0)
  chex.assert_trees_all_close(s1[1].accumulator, s2[0].accumulator, rtol=1e-6)


def test_state_is_one_accumulator_per_weight():
  params = {"a": jnp.ones((10, 10)), "b": jnp.ones(7, jnp.bfloat16)}
  state = classp_jax.classp(0.1).init(params)
  arrays = [x for x in jax.tree.leaves(state) if x.ndim > 0]
  assert sum(x.size for x in arrays) == 107
  assert all(x.ndim == 0 for x in jax.tree.leaves(state) if x.size == 1)
  acc = state[0].accumulator
  assert jax.tree.structure(acc) == jax.tree.structure(params)
  assert acc["b"].dtype == jnp.float32  # low-precision params: float32 S


# ---------------------------------------------------------------------------
# Bad input.


@pytest.mark.parametrize(
  "kwargs, match",
  [
    (dict(threshold=-0.1), "threshold"),
    (dict(power=0.0), "power"),
    (dict(power=-1.0), "power"),
    (dict(eps=-1e-8), "eps"),
    (dict(threshold=float("nan")), "finite"),
    (dict(power=float("inf")), "finite"),
    (dict(eps=float("inf")), "finite"),
    (dict(initial_accumulator_value=-1.0), "initial_accumulator_value"),
  ],
)
def test_bad_hyperparameters_raise(kwargs, match):
  with pytest.raises(ValueError, match=match):
    classp_jax.classp(0.1, **kwargs)


def test_bad_learning_rate_value_and_injected_bad_value_raise():
  with pytest.raises(ValueError, match="learning_rate"):
    classp_jax.classp(float("nan"))
  with pytest.raises(ValueError, match="threshold"):
    optax.inject_hyperparams(classp_jax.classp)(0.1, threshold=-1.0).init(jnp.zeros(2))
  with pytest.raises(ValueError, match="threshold"):
    classp_jax.threshold_mask(jnp.array(-1.0))


def test_schedules_and_traced_values_are_not_validated():
  tx = classp_jax.classp(optax.linear_schedule(0.1, 0.0, 10))
  state = tx.init(jnp.zeros(2))
  tx.update(jnp.ones(2), state)
  jax.jit(lambda t: classp_jax.classp(0.1, threshold=t).init(jnp.zeros(2)))(jnp.float32(-1.0))


def test_nan_and_inf_gradients_and_the_apply_if_finite_recipe():
  tx = classp_jax.classp(1.0, threshold=0.5)
  w = jnp.zeros(3)
  bad = jnp.array([jnp.nan, jnp.inf, 1.0])
  updates, state = tx.update(bad, tx.init(w))
  # Documented: NaN passes the mask; an infinite gradient poisons S.
  assert np.isnan(updates[0]) and np.isnan(updates[1])
  assert np.isnan(state[0].accumulator[0])
  assert np.isinf(state[0].accumulator[1])

  safe = optax.apply_if_finite(tx, max_consecutive_errors=5)
  state = safe.init(w)
  updates, state = safe.update(bad, state, w)
  np.testing.assert_array_equal(updates, np.zeros(3))
  np.testing.assert_array_equal(state.inner_state[0].accumulator, np.zeros(3))
  assert int(state.notfinite_count) == 1
  updates, state = safe.update(jnp.array([2.0, 0.1, -1.0]), state, w)
  np.testing.assert_allclose(updates, [-1.0, 0.0, 1.0], rtol=1e-4)


# ---------------------------------------------------------------------------
# Transformations, pytrees and dtypes.


def _random_grads(key, params, steps):
  keys = jax.random.split(key, steps)
  return [jax.tree.map(lambda p: 2 * jax.random.normal(k, p.shape, p.dtype), params) for k in keys]


PARAMS = {
  "dense": {"kernel": jnp.ones((3, 4)), "bias": jnp.zeros(4)},
  "scalar": jnp.array(1.0),
  "empty": jnp.zeros((0, 2)),
}


def _run(tx, params, grads_seq):
  state = tx.init(params)
  update = jax.jit(tx.update)
  out = []
  for g in grads_seq:
    u, state = update(g, state, params)
    params = optax.apply_updates(params, u)
    out.append(u)
  return params, state, out


def test_jit_and_no_recompilation_on_second_update():
  tx = classp_jax.classp(0.1)
  update = jax.jit(tx.update)
  grads = _random_grads(jax.random.key(1), PARAMS, 3)
  state = tx.init(PARAMS)
  for g in grads:
    u, state = update(g, state, PARAMS)
  assert update._cache_size() == 1
  _, _, expected = _run(tx, PARAMS, grads)
  # Params are fixed in the jitted loop, and classp ignores them.
  chex.assert_trees_all_close(u, expected[-1], rtol=1e-6)


def test_extra_args_are_accepted():
  for tx in (
    classp_jax.classp(0.1),
    classp_jax.classp_as_released(0.1),
    classp_jax.threshold_mask(0.5),
    classp_jax.scale_by_generalized_adagrad(),
  ):
    state = tx.init(PARAMS)
    tx.update(PARAMS, state, PARAMS, value=jnp.array(1.0), unknown_arg=3)


def test_scan_equals_python_loop():
  tx = classp_jax.classp(0.1, power=1.5)
  grads = _random_grads(jax.random.key(2), PARAMS, 4)
  stacked = jax.tree.map(lambda *x: jnp.stack(x), *grads)

  def body(carry, g):
    params, state = carry
    u, state = tx.update(g, state, params)
    return (optax.apply_updates(params, u), state), u

  (params, state), _ = jax.lax.scan(body, (PARAMS, tx.init(PARAMS)), stacked)
  ref_params, ref_state, _ = _run(tx, PARAMS, grads)
  chex.assert_trees_all_close(params, ref_params, rtol=1e-6)
  chex.assert_trees_all_close(state, ref_state, rtol=1e-6)


def test_vmap_over_independent_states():
  tx = classp_jax.classp(0.1)
  params = {"w": jnp.ones(5)}
  grads = [
    {"w": jnp.array([0.1, 1.0, -2.0, 0.0, 0.8])},
    {"w": jnp.array([3.0, -0.2, 0.9, 1.0, 0.0])},
  ]
  stacked = jax.tree.map(lambda *x: jnp.stack(x), *grads)
  states = jax.vmap(tx.init)(jax.tree.map(lambda x: jnp.stack([x, x]), params))
  updates, states = jax.vmap(tx.update)(stacked, states)
  for i, g in enumerate(grads):
    u, s = tx.update(g, tx.init(params))
    chex.assert_trees_all_close(jax.tree.map(lambda x: x[i], updates), u)
    chex.assert_trees_all_close(jax.tree.map(lambda x: x[i], states), s)


def test_chain_with_clipping_and_weight_decay():
  tx = optax.chain(
    optax.clip_by_global_norm(1.0),
    optax.add_decayed_weights(0.01),
    classp_jax.classp(0.1, threshold=0.01),
  )
  params = {"w": jnp.array([1.0, -2.0, 0.5])}
  grads = {"w": jnp.array([3.0, 0.0, -4.0])}
  updates, _ = tx.update(grads, tx.init(params), params)
  clipped = grads["w"] / 5.0 + 0.01 * params["w"]
  expected = np.where(clipped**2 > 0.01, -0.1 * clipped / (1e-5 + abs(clipped)), 0.0)
  np.testing.assert_allclose(updates["w"], expected, rtol=1e-5)


def test_multisteps_averages_gradients():
  tx = optax.MultiSteps(classp_jax.classp(0.1, threshold=0.2), every_k_schedule=2)
  params = {"w": jnp.zeros(3)}
  g1 = {"w": jnp.array([1.0, 0.2, -1.0])}
  g2 = {"w": jnp.array([0.0, 0.6, -2.0])}
  state = tx.init(params)
  u, state = jax.jit(tx.update)(g1, state, params)
  np.testing.assert_array_equal(u["w"], np.zeros(3))
  u, state = jax.jit(tx.update)(g2, state, params)
  mean = jax.tree.map(lambda a, b: (a + b) / 2, g1, g2)
  ref = classp_jax.classp(0.1, threshold=0.2)
  expected, _ = ref.update(mean, ref.init(params))
  chex.assert_trees_all_close(u, expected, rtol=1e-6)


def test_masked_and_multi_transform():
  params = {"a": jnp.zeros(3), "b": jnp.zeros(3)}
  grads = {"a": jnp.array([0.1, 1.0, -2.0]), "b": jnp.array([0.1, 1.0, -2.0])}
  tx = optax.multi_transform(
    {"classp": classp_jax.classp(0.5, threshold=0.5), "sgd": optax.sgd(0.5)},
    {"a": "classp", "b": "sgd"},
  )
  updates, state = jax.jit(tx.update)(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["a"], [0.0, -0.5, 0.5], rtol=1e-4)
  np.testing.assert_allclose(updates["b"], -0.5 * grads["b"])

  masked = optax.masked(classp_jax.classp(0.5, threshold=0.5), {"a": True, "b": False})
  updates, _ = jax.jit(masked.update)(grads, masked.init(params), params)
  np.testing.assert_allclose(updates["a"], [0.0, -0.5, 0.5], rtol=1e-4)
  np.testing.assert_array_equal(updates["b"], grads["b"])  # passed through


class _MLP(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(2)(nn.relu(nn.Dense(3)(x)))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_flax_params_and_dtypes(dtype):
  params = _MLP().init(jax.random.key(0), jnp.ones((1, 4)))["params"]
  params = jax.tree.map(lambda x: x.astype(dtype), params)
  params = {**params, "scalar": jnp.array(0.5, dtype), "empty": jnp.zeros((0,), dtype)}
  grads = _random_grads(jax.random.key(3), params, 2)
  tx = classp_jax.classp(0.1)
  new_params, state, updates = _run(tx, params, grads)
  chex.assert_trees_all_equal_dtypes(updates[-1], params)
  chex.assert_trees_all_equal_dtypes(new_params, params)
  for acc in jax.tree.leaves(state[0].accumulator):
    assert acc.dtype == jnp.float32
  # Same as float32 maths on the same (upcast) gradients, up to rounding.
  grads32 = jax.tree.map(lambda g: g.astype(jnp.float32), grads)
  params32 = jax.tree.map(lambda p: p.astype(jnp.float32), params)
  _, _, updates32 = _run(tx, params32, grads32)
  tol = 1e-2 if dtype == jnp.bfloat16 else 1e-6
  chex.assert_trees_all_close(
    jax.tree.map(lambda u: u.astype(jnp.float32), updates[-1]), updates32[-1], rtol=tol, atol=tol
  )


def test_accumulator_dtype_argument():
  tx = classp_jax.classp(0.1, accumulator_dtype=jnp.bfloat16)
  state = tx.init({"w": jnp.ones(3)})
  assert state[0].accumulator["w"].dtype == jnp.bfloat16
  updates, state = tx.update({"w": jnp.ones(3)}, state)
  assert updates["w"].dtype == jnp.float32
  assert state[0].accumulator["w"].dtype == jnp.bfloat16
  itx = optax.inject_hyperparams(classp_jax.classp)(0.1, accumulator_dtype="bfloat16")
  assert itx.init({"w": jnp.ones(3)}).inner_state[0].accumulator["w"].dtype == jnp.bfloat16


def test_init_on_shape_dtype_structs_and_sharding():
  if jax.device_count() < 2:
    pytest.skip("needs several devices (tests/conftest.py simulates 4)")
  n = jax.device_count()
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
  P = jax.sharding.PartitionSpec
  sharding = jax.sharding.NamedSharding(mesh, P("data"))
  replicated = jax.sharding.NamedSharding(mesh, P())
  params = {
    "w": jax.device_put(jnp.ones((2 * n, 3)), sharding),
    "b": jax.device_put(jnp.ones(3, jnp.bfloat16), replicated),
  }
  tx = classp_jax.classp(0.1)

  shapes = jax.eval_shape(tx.init, params)
  assert shapes[0].accumulator["w"].shape == (2 * n, 3)
  assert shapes[0].accumulator["b"].dtype == jnp.float32

  sds = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), params)
  for state in (tx.init(params), tx.init(sds)):
    assert state[0].accumulator["w"].sharding == sharding
    assert state[0].accumulator["b"].sharding == replicated

  state = tx.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  _, state = jax.jit(tx.update)(grads, state, params)
  assert state[0].accumulator["w"].sharding.is_equivalent_to(sharding, 2)


# ---------------------------------------------------------------------------
# inject_hyperparams: change hyperparameters between steps or tasks.


def _set(state, **values):
  for name, value in values.items():
    old = state.hyperparams[name]
    state.hyperparams[name] = jnp.asarray(value, old.dtype)
  return state


def test_inject_hyperparams_equals_fresh_optimizer_and_does_not_recompile():
  params = {"w": jnp.zeros((4, 5))}
  grads = _random_grads(jax.random.key(4), params, 6)
  tx = optax.inject_hyperparams(classp_jax.classp)(
    learning_rate=0.1, threshold=0.5, power=1.0, eps=1e-5
  )
  update = jax.jit(tx.update)
  state = tx.init(params)
  # Three "tasks", each with its own hyperparameters; S carries over.
  tasks = [
    dict(learning_rate=0.1, threshold=0.5, power=1.0, eps=1e-5),
    dict(learning_rate=0.05, threshold=0.2, power=2.0, eps=1e-3),
    dict(learning_rate=0.2, threshold=1.0, power=1.7, eps=0.0),
  ]
  fresh_acc = None
  for t, hps in enumerate(tasks):
    state = _set(state, **hps)
    fresh = classp_jax.classp(**hps)
    fresh_state = fresh.init(params)
    if fresh_acc is not None:
      fresh_state = (fresh_state[0]._replace(accumulator=fresh_acc), fresh_state[1])
    for g in grads[2 * t : 2 * t + 2]:
      u, state = update(g, state, params)
      fu, fresh_state = jax.jit(fresh.update)(g, fresh_state, params)
      chex.assert_trees_all_equal(u, fu)
    fresh_acc = fresh_state[0].accumulator
    chex.assert_trees_all_equal(state.inner_state[0].accumulator, fresh_acc)
  assert update._cache_size() == 1


def test_inject_hyperparams_with_learning_rate_schedule():
  sched = optax.linear_schedule(0.2, 0.0, 4)
  tx = optax.inject_hyperparams(classp_jax.classp)(learning_rate=sched)
  ref = classp_jax.classp(sched)
  params = {"w": jnp.zeros(3)}
  grads = _random_grads(jax.random.key(5), params, 3)
  _, _, u1 = _run(tx, params, grads)
  _, _, u2 = _run(ref, params, grads)
  chex.assert_trees_all_close(u1, u2, rtol=1e-6)


def test_bfloat16_params_with_float32_hyperparams():
  params = {"w": jnp.zeros(4, jnp.bfloat16)}
  tx = optax.inject_hyperparams(classp_jax.classp, hyperparam_dtype=jnp.float32)(0.1, eps=1e-5)
  g = {"w": jnp.array([0.1, 1.0, -2.0, 3.0], jnp.bfloat16)}
  u, state = jax.jit(tx.update)(g, tx.init(params), params)
  # optax.scale_by_learning_rate promotes to the float32 learning rate ...
  assert u["w"].dtype == jnp.float32
  # ... and apply_updates casts back to the params' dtype.
  assert optax.apply_updates(params, u)["w"].dtype == jnp.bfloat16
  ref = classp_jax.classp(0.1)
  ru, _ = ref.update(g, ref.init(params))
  assert ru["w"].dtype == jnp.bfloat16
  chex.assert_trees_all_close(u, jax.tree.map(lambda x: x.astype(jnp.float32), ru), rtol=1e-2)


# --- inputs that cannot give a meaningful result (reliability, round 2) ---------------------


def test_a_learning_rate_given_as_text_is_refused():
  with pytest.raises(ValueError, match="learning_rate must be a number, got '0.1'"):
    classp_jax.classp("0.1")


def test_an_integer_accumulator_is_refused():
  # It would truncate |g|**p: every update 0, forever.
  with pytest.raises(ValueError, match="accumulator_dtype must be a floating dtype"):
    classp_jax.classp(0.1, accumulator_dtype=jnp.int32)


def test_integer_params_are_refused_at_init():
  tx = classp_jax.classp(0.1)
  with pytest.raises(ValueError, match="floating-point params; got a int32 param"):
    tx.init({"w": jnp.ones(3, jnp.int32)})


def test_empty_params_update_to_empty_as_optax_adagrad_does():
  tx = classp_jax.classp(0.1)
  state = tx.init({})
  updates, _ = jax.jit(tx.update)({}, state, {})
  expected, _ = optax.adagrad(0.1).update({}, optax.adagrad(0.1).init({}), {})
  assert updates == expected == {}
