"""EWC, SI, MAS and L2 against independently computed expectations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from classp_jax import ewc, fisher_diagonal, l2, mas, si
from classp_jax.methods import ConsolidationContext

D, C = 4, 3


def linear(p, x):
  return x @ p["w"] + p["b"]


def _params(seed):
  rng = np.random.default_rng(seed)
  return {
    "w": jnp.asarray(rng.normal(size=(D, C)), jnp.float32),
    "b": jnp.asarray(rng.normal(size=(C,)), jnp.float32),
  }


def _ctx(seed, n=6, task_index=0):
  rng = np.random.default_rng(100 + seed)
  return ConsolidationContext(
    apply_fn=linear,
    inputs=jnp.asarray(rng.normal(size=(n, D)), jnp.float32),
    labels=jnp.asarray(rng.integers(0, C, size=n), jnp.int32),
    rng=jax.random.key(seed),
    task_index=task_index,
  )


def _sum(tree):
  return sum(float(jnp.sum(x)) for x in jax.tree.leaves(tree))


def _assert_trees_close(actual, expected, rtol=1e-5, atol=1e-6):
  jax.tree.map(
    lambda a, e: np.testing.assert_allclose(a, e, rtol=rtol, atol=atol), actual, expected
  )


ALL = {
  "ewc": lambda: ewc(3.0),
  "ewc_online": lambda: ewc(3.0, mode="online"),
  "si": lambda: si(3.0),
  "mas": lambda: mas(3.0),
  "l2": lambda: l2(3.0),
}


@pytest.mark.parametrize("name", ALL)
def test_zero_before_first_consolidation_and_fixed_structure(name):
  reg = ALL[name]()
  params = _params(0)
  state = reg.init(params)
  assert float(jax.jit(reg.penalty)(state, _params(1))) == 0.0
  stepped = reg.accumulate(state, params, _params(1), _params(2))
  consolidated = reg.consolidate(stepped, _params(1), _ctx(0))
  for other in (stepped, consolidated):
    assert jax.tree.structure(other) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(other), jax.tree.leaves(state)):
      assert a.shape == b.shape and a.dtype == b.dtype
  assert float(reg.penalty(consolidated, _params(2))) > 0.0


@pytest.mark.parametrize("mode", ["separate", "online"])
def test_ewc_gradient_is_strength_fisher_displacement(mode):
  strength, optimum, ctx = 3.0, _params(1), _ctx(0)
  reg = ewc(strength, mode=mode)
  state = reg.consolidate(reg.init(_params(0)), optimum, ctx)
  fisher = fisher_diagonal(linear, optimum, ctx.inputs)
  theta = _params(2)
  _assert_trees_close(
    jax.grad(reg.penalty, argnums=1)(state, theta),
    jax.tree.map(lambda f, t, o: strength * f * (t - o), fisher, theta, optimum),
  )


def test_ewc_separate_equals_sum_of_per_task_penalties():
  strength = 3.0
  reg = ewc(strength, kind="empirical", num_examples=5)
  state = reg.init(_params(0))
  tasks = []
  for t in range(2):
    optimum, ctx = _params(10 + t), _ctx(t, n=8, task_index=t)
    state = reg.consolidate(state, optimum, ctx)
    # The same subset the regularizer draws from the context's rng.
    index = jax.random.choice(jax.random.split(ctx.rng)[0], 8, (5,), replace=False)
    tasks.append(
      (
        optimum,
        fisher_diagonal(
          linear, optimum, ctx.inputs[index], kind="empirical", labels=ctx.labels[index]
        ),
      )
    )

  def naive(theta):
    return sum(
      strength
      / 2
      * sum(
        jnp.sum(f * (p - o) ** 2)
        for f, p, o in zip(
          jax.tree.leaves(fisher), jax.tree.leaves(theta), jax.tree.leaves(optimum)
        )
      )
      for optimum, fisher in tasks
    )

  for theta in (_params(3), tasks[1][0]):
    np.testing.assert_allclose(reg.penalty(state, theta), naive(theta), rtol=1e-5)
    _assert_trees_close(jax.grad(reg.penalty, argnums=1)(state, theta), jax.grad(naive)(theta))


def test_online_ewc_update():
  gamma, reg = 0.7, ewc(1.0, mode="online", gamma=0.7, kind="exact")
  state = reg.init(_params(0))
  fishers = []
  for t in range(2):
    optimum, ctx = _params(10 + t), _ctx(t)
    state = reg.consolidate(state, optimum, ctx)
    fishers.append(fisher_diagonal(linear, optimum, ctx.inputs))
  _assert_trees_close(state.importance, jax.tree.map(lambda f1, f2: gamma * f1 + f2, *fishers))
  _assert_trees_close(state.anchor, _params(11))


@pytest.mark.parametrize("kwargs", [dict(kind="fisher"), dict(mode="batch"), dict(gamma=0.9)])
def test_ewc_rejects_bad_arguments(kwargs):
  with pytest.raises(ValueError):
    ewc(1.0, **kwargs)


def test_si_matches_the_analytic_path_integral():
  # Gradient descent on L = sum_k h_k / 2 (theta_k - c_k)^2 from theta_0:
  # d_t = theta_t - c = r^t d_0 with r = 1 - lr h, and the path integral
  # sum_t -g_t (theta_{t+1} - theta_t) = lr h^2 d_0^2 (1 - r^(2T)) / (1 - r^2),
  # which tends to h / 2 (d_0^2 - d_T^2), the loss decrease, as lr -> 0.
  h = jnp.array([0.5, 1.0, 2.0])
  c = jnp.array([1.0, -2.0, 0.5])
  start = {"x": jnp.array([3.0, 0.0, -1.0])}
  lr, steps, damping, strength = 0.01, 200, 0.1, 2.0
  reg = si(strength, damping=damping)
  state, theta = reg.init(start), start
  step = jax.jit(
    lambda s, p: (lambda g, new: (reg.accumulate(s, p, new, g), new))(
      {"x": h * (p["x"] - c)}, {"x": p["x"] - lr * h * (p["x"] - c)}
    )
  )
  for _ in range(steps):
    state, theta = step(state, theta)
  d0 = start["x"] - c
  r = 1 - lr * h
  omega = lr * h**2 * d0**2 * (1 - r ** (2 * steps)) / (1 - r**2)
  np.testing.assert_allclose(state.path_integral["x"], omega, rtol=1e-4)
  d_end = theta["x"] - c
  np.testing.assert_allclose(omega, h / 2 * (d0**2 - d_end**2), rtol=0.02)

  state = reg.consolidate(state, theta, _ctx(0))
  delta = theta["x"] - start["x"]
  importance = omega / (delta**2 + damping)
  np.testing.assert_allclose(state.importance["x"], importance, rtol=1e-4)
  np.testing.assert_allclose(state.anchor["x"], theta["x"])
  assert _sum(state.path_integral) == 0.0
  probe = {"x": jnp.zeros(3)}
  np.testing.assert_allclose(
    reg.penalty(state, probe), strength * jnp.sum(importance * theta["x"] ** 2), rtol=1e-4
  )


def test_si_importance_is_clipped_at_zero():
  reg = si(1.0)
  state = reg.init({"x": jnp.zeros(2)})
  # A step against the gradient accumulates a negative path integral.
  state = reg.accumulate(
    state, {"x": jnp.zeros(2)}, {"x": jnp.ones(2)}, {"x": jnp.array([1.0, -1.0])}
  )
  state = reg.consolidate(state, {"x": jnp.ones(2)}, _ctx(0))
  np.testing.assert_allclose(state.importance["x"], [0.0, 1 / 1.001], rtol=1e-6)


def test_mas_matches_closed_form_on_a_linear_model():
  # ||x W + b||^2 has gradient 2 f_c x_i for W[i, c] and 2 f_c for b[c].
  strength, reg = 3.0, mas(3.0, batch_size=4)
  state = reg.init(_params(0))
  expected = jax.tree.map(jnp.zeros_like, _params(0))
  for t in range(2):
    optimum, ctx = _params(10 + t), _ctx(t)
    state = reg.consolidate(state, optimum, ctx)
    f = linear(optimum, ctx.inputs)
    expected = jax.tree.map(
      jnp.add,
      expected,
      {
        "w": jnp.mean(jnp.abs(2 * ctx.inputs[:, :, None] * f[:, None, :]), 0),
        "b": jnp.mean(jnp.abs(2 * f), 0),
      },
    )
  _assert_trees_close(state.importance, expected)
  _assert_trees_close(state.anchor, _params(11))
  theta = _params(3)
  np.testing.assert_allclose(
    reg.penalty(state, theta),
    strength * _sum(jax.tree.map(lambda o, p, a: o * (p - a) ** 2, expected, theta, _params(11))),
    rtol=1e-5,
  )


def test_l2_pulls_towards_the_previous_task():
  reg = l2(3.0)
  state = reg.consolidate(reg.init(_params(0)), _params(1), _ctx(0))
  theta = _params(2)
  np.testing.assert_allclose(
    reg.penalty(state, theta),
    1.5 * _sum(jax.tree.map(lambda p, a: (p - a) ** 2, theta, _params(1))),
    rtol=1e-5,
  )
  _assert_trees_close(
    jax.grad(reg.penalty, argnums=1)(state, theta),
    jax.tree.map(lambda p, a: 3.0 * (p - a), theta, _params(1)),
  )


def test_ewc_separate_value_has_no_float32_cancellation():
  # Large weights, small displacements: expanding sum F (theta - theta*)^2
  # into A theta^2 - 2 B theta + C would lose every digit in float32.
  reg = ewc(1.0, kind="exact")
  state = reg.init(_params(0))
  optima = [jax.tree.map(lambda p: 1e3 + p, _params(10 + t)) for t in range(2)]
  fishers = []
  for t, optimum in enumerate(optima):
    ctx = _ctx(t)
    state = reg.consolidate(state, optimum, ctx)
    fishers.append(fisher_diagonal(linear, optimum, ctx.inputs))
  theta = jax.tree.map(lambda p: p + 1e-2, optima[1])
  naive = sum(
    0.5
    * np.sum(
      np.asarray(f, np.float64) * (np.asarray(p, np.float64) - np.asarray(o, np.float64)) ** 2
    )
    for fisher, optimum in zip(fishers, optima)
    for f, p, o in zip(jax.tree.leaves(fisher), jax.tree.leaves(theta), jax.tree.leaves(optimum))
  )
  np.testing.assert_allclose(reg.penalty(state, theta), naive, rtol=1e-3)
