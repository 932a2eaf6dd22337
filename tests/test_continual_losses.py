"""ER, DER++, A-GEM and LwF terms against closed forms and hand-computed values."""

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
from hypothesis import given, settings
from strategies import GRADIENT_VALUES

from classp_jax.methods.losses import (
  agem_project,
  derpp_terms,
  lwf_distillation,
  mask_logits,
  masked_cross_entropy,
)

LOG2 = float(np.log(2.0))


def flat(tree) -> np.ndarray:
  return np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])


def test_agem_projects_onto_the_closed_form_across_leaves():
  # g = (2, -3), g_ref = (1, 1): g.g_ref = -1, |g_ref|^2 = 2, so g + (1, 1) / 2.
  grads = {"a": jnp.array([2.0]), "b": jnp.array([-3.0])}
  reference = {"a": jnp.array([1.0]), "b": jnp.array([1.0])}
  projected = agem_project(grads, reference)
  np.testing.assert_allclose(flat(projected), [2.5, -2.5])
  assert flat(projected) @ flat(reference) == 0.0


def test_agem_leaves_a_gradient_that_agrees_with_the_reference_unchanged():
  grads = {"w": jnp.array([[1.0, -2.0]]), "b": jnp.array([0.5])}
  for reference in (
    {"w": jnp.array([[1.0, 0.0]]), "b": jnp.array([0.0])},  # dot 1
    {"w": jnp.array([[2.0, 1.0]]), "b": jnp.array([0.0])},  # dot 0
    jax.tree.map(jnp.zeros_like, grads),
  ):  # an empty buffer's reference
    projected = agem_project(grads, reference)
    jax.tree.map(np.testing.assert_array_equal, projected, grads)


@settings(max_examples=30, deadline=None)
@given(
  st.lists(GRADIENT_VALUES, min_size=6, max_size=6),
  st.lists(GRADIENT_VALUES, min_size=6, max_size=6),
)
def test_agem_projection_never_opposes_the_reference(g, r):
  grads = {"a": jnp.array(g[:4]).reshape(2, 2), "b": jnp.array(g[4:])}
  reference = {"a": jnp.array(r[:4]).reshape(2, 2), "b": jnp.array(r[4:])}
  projected, ref = flat(agem_project(grads, reference)), np.float64(flat(reference))
  scale = np.linalg.norm(flat(grads)) * np.linalg.norm(ref) + 1e-30
  assert projected @ ref >= -1e-6 * scale
  if flat(grads) @ ref < 0:  # the projection removes exactly the opposing component
    expected = flat(grads) - (flat(grads) @ ref) / (ref @ ref) * ref
    np.testing.assert_allclose(projected, expected, rtol=1e-5, atol=1e-6 * scale)


def test_masked_cross_entropy_averages_the_valid_examples():
  logits = jnp.array([[0.0, np.log(3.0)], [5.0, -5.0], [1.0, 1.0]])
  labels = jnp.array([1, 1, 0])
  # -log(3/4) and log 2; the middle example is not valid.
  value = masked_cross_entropy(logits, labels, jnp.array([True, False, True]))
  np.testing.assert_allclose(value, (-np.log(0.75) + LOG2) / 2, rtol=1e-6)
  assert masked_cross_entropy(logits, labels, jnp.zeros(3, bool)) == 0.0


def test_derpp_terms_against_hand_computed_values():
  logits = jnp.array([[1.0, 2.0], [9.0, 9.0]])
  stored = jnp.array([[0.0, 0.0], [3.0, 1.0]])
  ce_logits = jnp.array([[0.0, np.log(3.0)], [9.0, -9.0]])
  labels = jnp.array([1, 1])
  valid = jnp.array([True, False])  # only the first example counts
  # alpha * (1 + 4) / 2 + beta * -log(3/4)
  value = derpp_terms(logits, stored, ce_logits, labels, valid)
  np.testing.assert_allclose(value, 0.1 * 2.5 + 0.5 * -np.log(0.75), rtol=1e-6)
  both = derpp_terms(logits, stored, ce_logits, labels, jnp.array([True, True]), 1.0, 0.0)
  np.testing.assert_allclose(both, (1 + 4 + 36 + 64) / 4, rtol=1e-6)
  assert derpp_terms(logits, stored, ce_logits, labels, jnp.zeros(2, bool)) == 0.0


def test_derpp_gradient_pulls_a_toy_model_towards_the_stored_logits():
  x = jnp.array([[1.0, 0.0], [0.0, 2.0]])  # logits = x @ w
  w = jnp.array([[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
  stored = jnp.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
  valid = jnp.ones(2, bool)
  grad = jax.grad(
    lambda w: derpp_terms(x @ w, stored, x @ w, jnp.zeros(2, int), valid, alpha=1.0, beta=0.0)
  )(w)
  # d/dw mean((xw - z)^2) = 2 x^T (xw - z) / (2 * 3)
  np.testing.assert_allclose(grad, 2 * x.T @ (x @ w - stored) / 6, rtol=1e-6)


def test_lwf_distillation_against_hand_computed_values():
  old = jnp.array([[0.0, 2 * np.log(3.0), 50.0]])  # old / 2 -> softmax (1/4, 3/4) on 0, 1
  new = jnp.array([[0.0, 0.0, -50.0]])  # new / 2 -> (1/2, 1/2) on 0, 1
  seen = jnp.array([True, True, False])  # the third output is no old class
  # T^2 * -(1/4 log 1/2 + 3/4 log 1/2) = 4 log 2
  np.testing.assert_allclose(lwf_distillation(new, old, 2.0, seen), 4 * LOG2, rtol=1e-6)
  # its gradient: T^2 * (q - p) / T on the seen outputs, none to the rest or to the old model
  grad_new, grad_old = jax.grad(lwf_distillation, argnums=(0, 1))(new, old, 2.0, seen)
  np.testing.assert_allclose(grad_new, [[0.5, -0.5, 0.0]], atol=1e-6)
  np.testing.assert_array_equal(grad_old, 0.0)
  # without a mask the softmaxes span all three outputs
  p = np.array([1, 3, np.exp(25.0)]) / (4 + np.exp(25.0))
  q = np.array([1, 1, np.exp(-25.0)]) / (2 + np.exp(-25.0))
  np.testing.assert_allclose(lwf_distillation(new, old, 2.0), -4 * p @ np.log(q), rtol=1e-5)
  # before any old class exists the term is 0, with a finite gradient
  none = jnp.zeros(3, bool)
  assert lwf_distillation(new, old, 2.0, none) == 0.0
  assert np.isfinite(jax.grad(lwf_distillation)(new, old, 2.0, none)).all()


def test_masking_the_logits_is_a_head_per_task():
  logits = jnp.array([[4.0, 1.0, 2.0, 3.0], [0.5, 9.0, -1.0, 0.0]])
  labels = jnp.array([2, 3])
  mask = jnp.array([[False, False, True, True]] * 2)  # the task owning classes 2 and 3
  masked = mask_logits(logits, mask)
  head = optax.softmax_cross_entropy_with_integer_labels(logits[:, 2:], labels - 2).mean()
  np.testing.assert_allclose(
    masked_cross_entropy(masked, labels, jnp.ones(2, bool)), head, rtol=1e-6
  )
  assert masked.argmax(-1).tolist() == [3, 3]
  grad = jax.grad(lambda z: masked_cross_entropy(mask_logits(z, mask), labels, jnp.ones(2, bool)))(
    logits
  )
  np.testing.assert_array_equal(grad[:, :2], 0.0)  # the other tasks' outputs learn nothing
