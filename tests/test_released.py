"""Tests for classp_jax.classp_as_released: the authors' released code."""

import functools

import chex
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from strategies import GRADIENT_VALUES

import classp_jax


def model_released(grads_seq, lr, threshold, power, eps, scaling_seq):
  """NumPy float64 model of the released code, tensor by tensor."""
  acc = [np.zeros(np.shape(g)) for g in grads_seq[0]]
  out = []
  for grads, scaling in zip(grads_seq, scaling_seq):
    ups = []
    for i, g in enumerate(grads):
      g = np.asarray(g, np.float64)
      if (g != 0).any() and 1 > threshold:
        acc[i] = acc[i] + np.abs(g)  # the released code drops the power
        if scaling:
          denom = (acc[i] + eps) ** (1.0 / power)
          scaled = np.divide(g, denom, out=np.zeros_like(g), where=denom != 0)
          ups.append(-lr * scaled)
        else:
          ups.append(-lr * g)
      else:
        ups.append(np.zeros_like(g))
    out.append(ups)
  return out, acc


@functools.cache
def _step():
  tx = optax.inject_hyperparams(classp_jax.classp_as_released)(learning_rate=0.1, apply_scaling=1.0)
  return jax.jit(tx.update)


@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(
  grads_seq=st.lists(
    st.tuples(*[st.lists(GRADIENT_VALUES, min_size=n, max_size=n) for n in (3, 2)]),
    min_size=1,
    max_size=4,
  ),
  lr=st.floats(1e-3, 1.0),
  threshold=st.floats(0.0, 1.5),
  power=st.one_of(st.sampled_from([1.0, 2.0]), st.floats(0.5, 3.0)),
  eps=st.one_of(st.just(0.0), st.floats(1e-6, 1e-2)),
  scaling=st.lists(st.booleans(), min_size=4, max_size=4),
)
def test_matches_numpy_model(grads_seq, lr, threshold, power, eps, scaling):
  grads_seq = [tuple(np.float32(g) for g in gs) for gs in grads_seq]
  params = tuple(jnp.zeros(len(g)) for g in grads_seq[0])
  tx = optax.inject_hyperparams(classp_jax.classp_as_released)(
    lr, threshold, power, eps, apply_scaling=1.0
  )
  state = tx.init(params)
  expected, expected_acc = model_released(
    grads_seq, lr, np.float32(threshold), np.float32(power), np.float32(eps), scaling
  )
  for grads, scale, exp in zip(grads_seq, scaling, expected):
    state.hyperparams["apply_scaling"] = jnp.float32(scale)
    updates, state = _step()(grads, state)
    chex.assert_trees_all_close(updates, tuple(exp), rtol=2e-4, atol=1e-6)
  chex.assert_trees_all_close(
    state.inner_state[0].accumulator, tuple(expected_acc), rtol=1e-5, atol=1e-6
  )


def test_paper_example_moves_every_nonzero_element_by_about_one():
  tx = classp_jax.classp_as_released(learning_rate=1.0, threshold=0.5)
  w = jnp.zeros(4)
  updates, state = tx.update(jnp.array([0.1, 0.2, 2.0, 0.0]), tx.init(w), w)
  np.testing.assert_allclose(updates, [-1.0, -1.0, -1.0, 0.0], atol=1e-3)
  np.testing.assert_allclose(state[0].accumulator, [0.1, 0.2, 2.0, 0.0])


def test_power_is_dropped_from_the_accumulator():
  tx = classp_jax.classp_as_released(learning_rate=1.0, power=2.0, eps=0.0)
  w = jnp.zeros(1)
  state = tx.init(w)
  _, state = tx.update(jnp.array([3.0]), state)
  updates, state = tx.update(jnp.array([4.0]), state)
  np.testing.assert_allclose(state[0].accumulator, [7.0])  # not 25
  np.testing.assert_allclose(updates, [-4.0 / np.sqrt(7.0)], rtol=1e-6)


@pytest.mark.parametrize("threshold", [1.0, 1.5, 10.0])
def test_threshold_of_one_or_more_never_moves(threshold):
  tx = classp_jax.classp_as_released(1.0, threshold=threshold)
  w = jnp.zeros(3)
  state = tx.init(w)
  for g in ([5.0, -3.0, 0.1], [100.0, 0.0, 1.0]):
    updates, state = tx.update(jnp.array(g), state)
    np.testing.assert_array_equal(updates, np.zeros(3))
  np.testing.assert_array_equal(state[0].accumulator, np.zeros(3))


def test_gate_is_per_tensor():
  tx = classp_jax.classp_as_released(1.0, threshold=0.9, eps=0.0)
  grads = {"zero": jnp.zeros(2), "tiny": jnp.array([1e-3, 0.0])}
  updates, state = tx.update(grads, tx.init(grads))
  np.testing.assert_array_equal(updates["zero"], np.zeros(2))
  # The tiny gradient is far below the threshold, yet its tensor moves.
  np.testing.assert_allclose(updates["tiny"], [-1.0, 0.0], rtol=1e-6)
  assert not np.isnan(np.asarray(updates["tiny"])).any()  # eps = 0, 0/0


def test_without_scaling_is_sgd_and_still_accumulates():
  tx = classp_jax.classp_as_released(0.1, apply_scaling=False)
  g = jnp.array([2.0, -1.0, 0.0])
  state = tx.init(g)
  for _ in range(2):
    updates, state = tx.update(g, state)
    np.testing.assert_allclose(updates, -0.1 * g)
  np.testing.assert_allclose(state[0].accumulator, [4.0, 2.0, 0.0])


def test_switch_apply_scaling_between_tasks_without_recompiling():
  g = {"w": jnp.array([2.0, -1.0, 0.5])}
  tx = optax.inject_hyperparams(classp_jax.classp_as_released)(
    0.1, threshold=0.5, apply_scaling=0.0
  )
  update = jax.jit(tx.update)
  state = tx.init(g)
  for _ in range(2):  # task 1: no scaling
    u, state = update(g, state)
    chex.assert_trees_all_close(u, jax.tree.map(lambda x: -0.1 * x, g))
  state.hyperparams["apply_scaling"] = jnp.float32(1.0)  # task 2
  u, state = update(g, state)
  assert update._cache_size() == 1

  fresh = classp_jax.classp_as_released(0.1, threshold=0.5, apply_scaling=True)
  fresh_state = (
    classp_jax.ClasspAsReleasedState(accumulator={"w": 2 * jnp.abs(g["w"])}),
    fresh.init(g)[1],
  )
  fu, fresh_state = fresh.update(g, fresh_state)
  chex.assert_trees_all_close(u, fu, rtol=1e-6)
  chex.assert_trees_all_close(state.inner_state[0].accumulator, {"w": 3 * jnp.abs(g["w"])})


def test_bool_apply_scaling_is_static_under_inject_hyperparams():
  tx = optax.inject_hyperparams(classp_jax.classp_as_released)(0.1, apply_scaling=False)
  state = tx.init(jnp.zeros(2))
  assert "apply_scaling" not in state.hyperparams
  u, _ = tx.update(jnp.array([1.0, 2.0]), state)
  np.testing.assert_allclose(u, [-0.1, -0.2])


@pytest.mark.parametrize(
  "kwargs",
  [
    dict(threshold=-1.0),
    dict(power=0.0),
    dict(eps=-1.0),
    dict(apply_scaling=0.5),
    dict(threshold=float("nan")),
  ],
)
def test_bad_hyperparameters_raise(kwargs):
  with pytest.raises(ValueError):
    classp_jax.classp_as_released(0.1, **kwargs)


def test_dtypes_jit_and_extra_args():
  params = {
    "w": jnp.zeros(3, jnp.bfloat16),
    "s": jnp.zeros((), jnp.float32),
    "e": jnp.zeros((0, 2)),
  }
  tx = classp_jax.classp_as_released(0.1)
  state = tx.init(params)
  assert state[0].accumulator["w"].dtype == jnp.float32
  grads = jax.tree.map(jnp.ones_like, params)
  update = jax.jit(tx.update)
  for _ in range(2):
    u, state = update(grads, state, params, unknown=1)
  assert update._cache_size() == 1
  chex.assert_trees_all_equal_dtypes(u, params)
