"""Tests for classp_jax.diagnostics: update fraction and capacity used."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import classp_jax

PARAMS = {"a": jnp.zeros(4), "b": {"c": jnp.zeros((2, 3))}, "e": jnp.zeros((0, 5))}
GRADS = {
  "a": jnp.array([0.1, 2.0, 0.0, -1.0]),
  "b": {"c": jnp.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])},
  "e": jnp.zeros((0, 5)),
}


def test_update_fraction_per_leaf_and_overall():
  s = jax.jit(classp_jax.update_fraction)(GRADS)
  assert s.per_leaf["a"] == pytest.approx(0.75)
  assert s.per_leaf["b"]["c"] == pytest.approx(0.5)
  assert s.per_leaf["e"] == 0.0  # zero-size leaf: 0, not NaN
  assert s.overall == pytest.approx(6 / 10)  # weighted by element count
  assert all(x.dtype == jnp.float32 and x.shape == () for x in jax.tree.leaves(s))


def test_update_fraction_edge_cases():
  s = classp_jax.update_fraction({"e": jnp.zeros(0)})
  assert s.overall == 0.0 and not np.isnan(s.overall)
  s = classp_jax.update_fraction({})
  assert s.overall == 0.0
  s = classp_jax.update_fraction(jnp.array([jnp.nan, 0.0]))
  assert s.overall == 0.5  # NaN counts as an update
  s = classp_jax.update_fraction(jnp.array(3.0, jnp.bfloat16))
  assert s.overall == 1.0


def test_capacity_used_counts_weights_ever_updated():
  tx = classp_jax.classp(0.1, threshold=0.5)
  state = tx.init(PARAMS)
  assert classp_jax.capacity_used(state).overall == 0.0
  _, state = tx.update(GRADS, state)
  s = jax.jit(classp_jax.capacity_used)(state)
  assert s.per_leaf["a"] == pytest.approx(0.5)  # 0.1 is below the threshold
  assert s.per_leaf["b"]["c"] == pytest.approx(0.5)
  assert s.per_leaf["e"] == 0.0
  assert s.overall == pytest.approx(5 / 10)
  # A second step touching other weights grows it; weights never un-count.
  grads = jax.tree.map(jnp.zeros_like, GRADS)
  grads["a"] = jnp.array([1.0, 0.0, 0.0, 0.0])
  _, state = tx.update(grads, state)
  assert classp_jax.capacity_used(state).per_leaf["a"] == pytest.approx(0.75)


@pytest.mark.parametrize("acc_dtype", [None, jnp.bfloat16])
def test_capacity_with_nonzero_initial_accumulator(acc_dtype):
  tx = classp_jax.classp(
    0.1, threshold=0.5, initial_accumulator_value=0.1, accumulator_dtype=acc_dtype
  )
  state = tx.init(PARAMS)
  assert classp_jax.capacity_used(state).overall == 0.0
  _, state = tx.update(GRADS, state)
  assert classp_jax.capacity_used(state).overall == pytest.approx(5 / 10)


def _wrapped_states():
  classp = classp_jax.classp(0.1, threshold=0.5)
  labels = {"a": "c", "b": "s", "e": "s"}
  return {
    "chain": optax.chain(optax.clip_by_global_norm(10.0), classp),
    "inject": optax.inject_hyperparams(classp_jax.classp)(0.1, threshold=0.5),
    "multisteps": optax.MultiSteps(classp, every_k_schedule=1),
    "apply_if_finite": optax.apply_if_finite(classp, 3),
    "masked": optax.masked(classp, {"a": True, "b": True, "e": False}),
    "multi_transform": optax.multi_transform({"c": classp, "s": optax.sgd(0.1)}, labels),
    "released": classp_jax.classp_as_released(0.1, threshold=0.5),
    "generalized_adagrad": classp_jax.scale_by_generalized_adagrad(),
  }


@pytest.mark.parametrize("name", list(_wrapped_states()))
def test_capacity_used_finds_accumulator_in_nested_states(name):
  tx = _wrapped_states()[name]
  state = tx.init(PARAMS)
  _, state = jax.jit(tx.update)(GRADS, state, PARAMS)
  s = jax.jit(classp_jax.capacity_used)(state)
  assert s is not None
  assert 0.0 < float(s.overall) <= 1.0
  if name == "released":
    assert s.per_leaf["a"] == pytest.approx(0.75)  # per-tensor gate
  elif name == "multi_transform":
    assert s.per_leaf["a"] == pytest.approx(0.5)
  elif name == "generalized_adagrad":
    assert s.overall == pytest.approx(0.6)  # no threshold: every nonzero
  else:
    assert s.overall == pytest.approx(0.5)


@pytest.mark.parametrize("tx", [optax.sgd(0.1), optax.adam(1e-3), optax.adagrad(0.1)])
def test_capacity_used_is_none_without_accumulator(tx):
  state = tx.init(PARAMS)
  assert classp_jax.capacity_used(state) is None
  assert jax.jit(classp_jax.capacity_used)(state) is None


def test_diagnostics_under_vmap():
  tx = classp_jax.classp(0.1)
  params = jnp.zeros((2, 4))
  grads = jnp.array([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0]])
  states = jax.vmap(tx.init)(params)
  updates, states = jax.vmap(tx.update)(grads, states)
  frac = jax.vmap(classp_jax.update_fraction)(updates)
  cap = jax.vmap(classp_jax.capacity_used)(states)
  np.testing.assert_allclose(frac.overall, [0.25, 0.75])
  np.testing.assert_allclose(cap.overall, [0.25, 0.75])
