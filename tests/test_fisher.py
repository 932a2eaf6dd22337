"""fisher_diagonal against closed forms and hand-computed per-example grads."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from classp_jax import fisher_diagonal

N, D, C = 7, 4, 3


def linear(p, x):
  return x @ p["w"] + p["b"]


@pytest.fixture(name="problem")
def _problem():
  rng = np.random.default_rng(0)
  params = {
      "w": jnp.asarray(rng.normal(size=(D, C)), jnp.float32),
      "b": jnp.asarray(rng.normal(size=(C,)), jnp.float32),
  }
  inputs = jnp.asarray(rng.normal(size=(N, D)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, C, size=N), jnp.int32)
  return params, inputs, labels


def _per_example_grads(params, inputs, labels):
  """Gradients of log p(y_n | x_n), one example at a time (no vmap)."""
  grads = []
  for x, y in zip(inputs, labels):
    grads.append(jax.grad(
        lambda p: jax.nn.log_softmax(linear(p, x[None])[0])[y])(params))
  return grads


def test_exact_matches_closed_form(problem):
  params, inputs, _ = problem
  fisher = fisher_diagonal(linear, params, inputs, kind="exact", batch_size=3)
  p = jax.nn.softmax(linear(params, inputs))
  var = p * (1 - p)
  np.testing.assert_allclose(
      fisher["w"], np.mean(inputs[:, :, None] ** 2 * var[:, None, :], 0),
      rtol=1e-5)
  np.testing.assert_allclose(fisher["b"], np.mean(var, 0), rtol=1e-5)


def test_empirical_is_mean_of_squares_not_square_of_mean(problem):
  params, inputs, labels = problem
  fisher = fisher_diagonal(linear, params, inputs, kind="empirical",
                           labels=labels, batch_size=2)
  grads = _per_example_grads(params, inputs, labels)
  for name in params:
    per_example = np.stack([g[name] for g in grads])
    np.testing.assert_allclose(fisher[name], np.mean(per_example**2, 0),
                               rtol=1e-5)
    assert not np.allclose(fisher[name], np.mean(per_example, 0) ** 2)


def test_sampled_averages_to_exact(problem):
  params, inputs, _ = problem
  many = jnp.tile(inputs, (3000, 1))  # 3000 label draws per example
  sampled = fisher_diagonal(linear, params, many, kind="sampled",
                            rng=jax.random.key(1), batch_size=7000)
  exact = fisher_diagonal(linear, params, inputs, kind="exact")
  for name in params:
    np.testing.assert_allclose(sampled[name], exact[name], rtol=0.1)


@pytest.mark.parametrize("kind", ["exact", "empirical", "sampled"])
@pytest.mark.parametrize("batch_size", [3, 100])
def test_chunking_does_not_change_the_result(problem, kind, batch_size):
  params, inputs, labels = problem
  kwargs = dict(kind=kind, labels=labels, rng=jax.random.key(2))
  whole = fisher_diagonal(linear, params, inputs, batch_size=N, **kwargs)
  chunked = fisher_diagonal(linear, params, inputs, batch_size=batch_size,
                            **kwargs)
  for name in params:
    np.testing.assert_allclose(chunked[name], whole[name], rtol=1e-5)


def test_bfloat16_params_accumulate_in_float32(problem):
  params, inputs, _ = problem
  fisher = fisher_diagonal(linear, jax.tree.map(
      lambda p: p.astype(jnp.bfloat16), params), inputs.astype(jnp.bfloat16))
  assert all(f.dtype == jnp.float32 for f in jax.tree.leaves(fisher))
  exact = fisher_diagonal(linear, params, inputs)
  np.testing.assert_allclose(fisher["b"], exact["b"], rtol=0.1)


@pytest.mark.parametrize("kwargs, match", [
    (dict(kind="diagonal"), "kind must be one of"),
    (dict(kind="empirical"), "labels"),
    (dict(kind="sampled"), "rng"),
])
def test_invalid_arguments(problem, kwargs, match):
  params, inputs, _ = problem
  with pytest.raises(ValueError, match=match):
    fisher_diagonal(linear, params, inputs, **kwargs)


def test_empty_inputs(problem):
  params, _, _ = problem
  with pytest.raises(ValueError, match="no examples"):
    fisher_diagonal(linear, params, jnp.zeros((0, D)))
