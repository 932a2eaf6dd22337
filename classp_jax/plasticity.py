"""Plasticity methods as optax transformations: UPGD, shrink and perturb.

CLASSP's accumulator only grows, so on a long stream its steps shrink towards
zero: the loss of plasticity that the continual-learning literature studies.
The methods here are CLASSP's optimizer-level peers, written as optax
transformations so that they drop into any training loop. Their family in the
results is ``plasticity`` (`classp_jax.results.schema.PLASTICITY_FAMILY`).

* :func:`upgd` (:func:`scale_by_upgd` and the learning rate): utility-gated
  perturbed gradient descent (Elsayed and Mahmood, ICLR 2024), which protects
  useful weights and perturbs the others.
* :func:`shrink_perturb` (:func:`add_shrink_perturb` after SGD): shrink and
  perturb every step (Ash and Adams, NeurIPS 2020), as the plasticity literature
  runs it; its task-boundary form is a regularizer's consolidation
  (`classp_jax.methods.regularizers.shrink_perturb_tasks`).
* Continual Backprop lives in `classp_jax.continual_backprop` (it needs the
  activations); :func:`fold_in_seed` gives each run its own noise in all of them.

CLASSP with an accumulator that forgets is :func:`classp_jax.classp` with
``accumulator_decay < 1``.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from classp_jax.optimizer import _check, _static_float

_UPGD_REFERENCE = (
  "Elsayed and Mahmood, `Addressing Loss of Plasticity and Catastrophic"
  " Forgetting in Continual Learning <https://arxiv.org/abs/2404.00781>`_,"
  " ICLR 2024; their code: https://github.com/mohmdelsayed/upgd."
)


class ScaleByUpgdState(NamedTuple):
  """State of :func:`scale_by_upgd`.

  Attributes:
    count: the number of steps taken (int32): the bias correction's ``t``.
    key: the PRNG key the next step's noise is drawn from, as raw key data
      (``jax.random.key_data``: plain uint32, so that the state converts to
      NumPy, replicates and checkpoints like any other array).
    utility: the exponential moving average of the utility ``-g * w``, not
      bias-corrected; one entry per weight (at least float32).
  """

  count: jax.Array
  key: jax.Array
  utility: optax.Updates


def _utility_dtype(param_dtype) -> jnp.dtype:
  """float32 or wider, so that bfloat16 and float16 params trace the utility precisely."""
  if not jnp.issubdtype(param_dtype, jnp.floating):
    raise ValueError(
      f"UPGD updates real floating-point params; got a {jnp.dtype(param_dtype)} param (its "
      "utility -g * w is not defined for complex or integer params)."
    )
  return jnp.promote_types(param_dtype, jnp.float32)


def _check_seed(seed: Any) -> None:
  if isinstance(seed, bool) or not jnp.issubdtype(jnp.asarray(seed).dtype, jnp.integer):
    raise ValueError(f"seed must be an integer, got {seed!r}.")


def _global_max(leaves: list[jax.Array]) -> jax.Array:
  """The largest entry over every non-empty leaf (0 if there is none)."""
  maxima = [jnp.max(leaf) for leaf in leaves if leaf.size]
  if not maxima:
    return jnp.zeros([], jnp.float32)
  return functools.reduce(jnp.maximum, maxima)


def scale_by_upgd(
  utility_decay: float | jax.Array = 0.999,
  sigma: float | jax.Array = 0.001,
  weight_decay: float | jax.Array = 0.0,
  seed: int | jax.Array = 0,
) -> optax.GradientTransformationExtraArgs:
  r"""The utility-gated, perturbed direction of UPGD, before the learning rate.

  Per weight :math:`w_i` with gradient :math:`g_i`, at step :math:`t`:

  .. math::

    \bar u_i \leftarrow \beta \bar u_i + (1 - \beta)(-g_i w_i), \qquad
    \eta = \max_j \bar u_j, \qquad
    s_i = \sigma_{\text{sig}}\!\left(\frac{\bar u_i / (1 - \beta^t)}{\eta}\right), \\
    d_i = (g_i + \xi_i)(1 - s_i) + \lambda w_i, \qquad
    \xi_i \sim \mathcal{N}(0, \sigma^2).

  :math:`-g_i w_i` is the first-order utility of the weight (the loss increase
  when it is set to 0, to first order); :math:`\bar u` is its moving average,
  and the maximum :math:`\eta` is taken over every weight of the tree (the
  paper's global UPGD), of the trace before its bias correction, exactly as in
  the paper's Algorithm 1 and the authors' code (so the bias correction does not
  cancel: early on the ratio is large and the gate nearly closed for weights of
  positive utility). A weight of high utility gets a gate :math:`1 - s_i`
  near 0 and is protected; one of low or negative utility gets the full
  gradient step plus noise, which keeps it plastic. The weight decay
  :math:`\lambda w_i` is the authors' ``w <- (1 - lr * wd) w``.

  Where :math:`\eta = 0` (for example at a first step where every weight is
  0) the authors' code divides by zero; here the ratio is 0 instead (gate
  1/2). A negative :math:`\eta` (every weight of negative utility) flips the
  ratio's sign, as in their code. A NaN or infinite gradient makes every
  update NaN (the maximum is global); ``optax.apply_if_finite`` skips such
  steps.

  **Noise.** Each step splits the state's key:
  ``key, sub = jax.random.split(jax.random.wrap_key_data(state.key))``; leaf
  ``i`` of ``jax.tree.leaves(updates)`` draws
  ``sigma * jax.random.normal(jax.random.split(sub, n_leaves)[i], shape, dtype)``
  in the utility's dtype. A static ``sigma=0`` draws nothing (the key still
  advances).

  Args:
    utility_decay: :math:`\beta \in [0, 1)`, the moving average's decay.
      May be traced.
    sigma: :math:`\sigma \ge 0`, the noise's standard deviation. May be
      traced.
    weight_decay: :math:`\lambda \ge 0`. May be traced.
    seed: an integer seeding the noise; read only by ``init`` (under
      ``optax.inject_hyperparams`` changing it later has no effect).

  Returns:
    A :class:`optax.GradientTransformationExtraArgs` whose state is a
    :class:`ScaleByUpgdState`. ``update`` needs ``params``. Updates keep the
    incoming updates' dtype.

  Raises:
    ValueError: for concrete non-finite values, ``utility_decay`` outside
      ``[0, 1)``, ``sigma < 0``, ``weight_decay < 0``, a seed that is not an
      integer; at ``init``, params that are not real floating point; at
      ``update``, no ``params``.

  Examples:
    >>> import jax.numpy as jnp, numpy as np
    >>> from classp_jax.plasticity import scale_by_upgd
    >>> tx = scale_by_upgd(utility_decay=0.0, sigma=0.0)
    >>> w, g = jnp.array([1.0, 2.0, -1.0]), jnp.array([-1.0, 2.0, -1.0])
    >>> d, state = tx.update(g, tx.init(w), w)  # utilities -g * w: [1, -4, -1]
    >>> print(np.float64(d).round(4))  # g * (1 - sigmoid([1, -4, -1] / 1))
    [-0.2689  1.964  -0.7311]

  References:
    {reference}
  """
  _check("utility_decay", utility_decay, lambda v: (v >= 0) & (v < 1), "in [0, 1)")
  _check("sigma", sigma, lambda v: v >= 0, ">= 0")
  _check("weight_decay", weight_decay, lambda v: v >= 0, ">= 0")
  _check_seed(seed)
  no_noise = _static_float(sigma) == 0.0
  no_decay = _static_float(weight_decay) == 0.0

  def init_fn(params):
    utility = jax.tree.map(lambda p: jnp.zeros_like(p, dtype=_utility_dtype(p.dtype)), params)
    return ScaleByUpgdState(
      count=jnp.zeros([], jnp.int32),
      key=jax.random.key_data(jax.random.key(seed)),
      utility=utility,
    )

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    if params is None:
      raise ValueError("UPGD needs the params: call update(updates, state, params).")
    count = optax.safe_int32_increment(state.count)
    grads, treedef = jax.tree.flatten(updates)
    weights = treedef.flatten_up_to(params)
    traces = treedef.flatten_up_to(state.utility)

    def trace(g, w, u):
      beta = jnp.asarray(utility_decay, u.dtype)
      return beta * u + (1 - beta) * (-g.astype(u.dtype) * w.astype(u.dtype))

    traces = [trace(g, w, u) for g, w, u in zip(grads, weights, traces)]
    eta = _global_max(traces)
    beta = jnp.asarray(utility_decay, eta.dtype)
    scaled_max = (1 - beta ** count.astype(eta.dtype)) * eta
    inverse = jnp.where(scaled_max == 0, 0, 1 / jnp.where(scaled_max == 0, 1, scaled_max))
    key, sub = jax.random.split(jax.random.wrap_key_data(state.key))
    noise_keys = jax.random.split(sub, max(len(grads), 1))

    def direction(g, w, u, noise_key):
      gate = jax.nn.sigmoid(-(u * inverse.astype(u.dtype)))  # 1 - sigmoid(ratio)
      g = g.astype(u.dtype)
      if not no_noise:
        g = g + jnp.asarray(sigma, u.dtype) * jax.random.normal(noise_key, g.shape, u.dtype)
      d = g * gate
      if not no_decay:
        d = d + jnp.asarray(weight_decay, u.dtype) * w.astype(u.dtype)
      return d

    out = [direction(*args) for args in zip(grads, weights, traces, noise_keys)]
    out = [d.astype(g.dtype) for d, g in zip(out, grads)]
    new_state = ScaleByUpgdState(
      count=count, key=jax.random.key_data(key), utility=treedef.unflatten(traces)
    )
    return treedef.unflatten(out), new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def upgd(
  learning_rate: optax.ScalarOrSchedule,
  utility_decay: float | jax.Array = 0.999,
  sigma: float | jax.Array = 0.001,
  weight_decay: float | jax.Array = 0.0,
  seed: int | jax.Array = 0,
) -> optax.GradientTransformationExtraArgs:
  r"""UPGD: utility-gated perturbed gradient descent (Elsayed and Mahmood, 2024).

  Per weight, with the utility trace :math:`\bar u_i` of
  :math:`-g_i w_i` and the gate of :func:`scale_by_upgd`:

  .. math::

    w_i \leftarrow w_i - \alpha \left[(g_i + \xi_i)
      \left(1 - \sigma_{\text{sig}}\!\left(\frac{\bar u_i / (1 - \beta^t)}
      {\max_j \bar u_j}\right)\right) + \lambda w_i\right], \qquad
    \xi_i \sim \mathcal{N}(0, \sigma^2).

  Useful weights (high utility) are protected from change, which fights
  catastrophic forgetting; the others take noisy gradient steps, which keeps
  them plastic. This is the paper's first-order, global, weight-wise UPGD (the
  variant whose utility gates both the gradient and the noise), with the step
  ``-lr * (...)`` of the authors' optimizers (their README's snippet steps by
  ``2 * lr``).

  All of ``learning_rate``, ``utility_decay``, ``sigma`` and ``weight_decay``
  may be injected with ``optax.inject_hyperparams(upgd)``; the utility trace
  and the key carry over. ``inject_hyperparams`` stores them in the params'
  dtype: for bfloat16 params pass ``hyperparam_dtype=jnp.float32``, since
  0.999 rounds to 0.996 in bfloat16.

  Args:
    learning_rate: :math:`\alpha`, a scalar or an ``optax`` schedule.
    utility_decay: :math:`\beta \in [0, 1)` (the paper's :math:`\beta_u`).
    sigma: the noise's standard deviation, ``>= 0``.
    weight_decay: :math:`\lambda \ge 0`.
    seed: an integer seeding the noise (see :func:`scale_by_upgd`).

  Returns:
    ``scale_by_upgd -> scale_by_learning_rate`` as an
    :class:`optax.GradientTransformationExtraArgs`. ``update`` needs
    ``params``.

  Raises:
    ValueError: as :func:`scale_by_upgd`, or for a concrete non-finite
      ``learning_rate``.

  Examples:
    >>> import jax, jax.numpy as jnp, numpy as np, optax
    >>> from classp_jax.plasticity import upgd
    >>> def loss(w): return jnp.sum((w - jnp.array([2.0, 0.0, 0.0])) ** 2) / 2
    >>> tx = upgd(learning_rate=0.1, utility_decay=0.0, sigma=0.0)
    >>> w = jnp.array([1.0, 2.0, -1.0])
    >>> state = tx.init(w)
    >>> updates, state = tx.update(jax.grad(loss)(w), state, w)
    >>> print(np.float64(optax.apply_updates(w, updates)).round(4))
    [ 1.0269  1.8036 -0.9269]

  References:
    {reference}
  """
  _check("learning_rate", learning_rate, lambda v: True, "finite")
  return optax.chain(
    scale_by_upgd(utility_decay, sigma, weight_decay, seed),
    optax.scale_by_learning_rate(learning_rate),
  )


for _f in (scale_by_upgd, upgd):
  _f.__doc__ = _f.__doc__.replace("{reference}", _UPGD_REFERENCE)
del _f


class ShrinkPerturbState(NamedTuple):
  """State of :func:`add_shrink_perturb`.

  Attributes:
    key: the PRNG key the next step's noise is drawn from, as raw key data (uint32).
  """

  key: jax.Array


def add_shrink_perturb(
  shrink: float | jax.Array = 0.9999,
  sigma: float | jax.Array = 1e-4,
  seed: int | jax.Array = 0,
) -> optax.GradientTransformationExtraArgs:
  r"""Shrinks the params towards 0 and perturbs them with noise, after any update.

  .. math::

    u_i \leftarrow u_i - (1 - \lambda) w_i + \sigma \xi_i, \qquad
    \xi_i \sim \mathcal{N}(0, 1),

  so that ``optax.apply_updates`` gives :math:`w_i \leftarrow \lambda w_i + u_i + \sigma
  \xi_i`: the incoming step, from shrunk weights, plus noise. Applied every step this is
  shrink and perturb as the plasticity literature runs it (Dohare et al. 2024: decoupled
  weight decay :math:`1 - \lambda` and Gaussian noise each step); at task boundaries only,
  Ash and Adams' original, see `classp_jax.methods.regularizers.shrink_perturb_tasks`.

  **Noise.** As :func:`scale_by_upgd`'s: each step splits the state's key, and leaf ``i``
  of ``jax.tree.leaves(updates)`` draws ``jax.random.normal(jax.random.split(sub,
  n_leaves)[i], shape, dtype)`` in the update's dtype.

  Args:
    shrink: :math:`\lambda \in [0, 1]`, what a weight is multiplied by per step (1: none).
      May be traced.
    sigma: :math:`\sigma \ge 0`, the noise's standard deviation. May be traced.
    seed: an integer seeding the noise (read by ``init`` only).

  Returns:
    A :class:`optax.GradientTransformationExtraArgs` with a :class:`ShrinkPerturbState`;
    ``update`` needs ``params``.

  Raises:
    ValueError: for concrete ``shrink`` outside ``[0, 1]``, ``sigma < 0``, a seed that is
      not an integer; at ``update``, no ``params``.

  Examples:
    >>> import jax.numpy as jnp, numpy as np
    >>> from classp_jax.plasticity import add_shrink_perturb
    >>> tx = add_shrink_perturb(shrink=0.5, sigma=0.0)
    >>> w = jnp.array([2.0, -4.0])
    >>> u, _ = tx.update(jnp.array([0.1, 0.1]), tx.init(w), w)
    >>> print(np.asarray(w + u).round(6))  # 0.5 * w + 0.1
    [ 1.1 -1.9]

  References:
    Ash and Adams, `On Warm-Starting Neural Network Training
    <https://arxiv.org/abs/1910.08475>`_, NeurIPS 2020.
    Dohare et al., `Loss of plasticity in deep continual learning
    <https://www.nature.com/articles/s41586-024-07711-7>`_, Nature 632, 2024.
  """
  _check("shrink", shrink, lambda v: (v >= 0) & (v <= 1), "in [0, 1]")
  _check("sigma", sigma, lambda v: v >= 0, ">= 0")
  _check_seed(seed)
  no_noise = _static_float(sigma) == 0.0

  def init_fn(params):
    del params
    return ShrinkPerturbState(jax.random.key_data(jax.random.key(seed)))

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    if params is None:
      raise ValueError("shrink and perturb needs the params: call update(updates, state, params).")
    leaves, treedef = jax.tree.flatten(updates)
    weights = treedef.flatten_up_to(params)
    key, sub = jax.random.split(jax.random.wrap_key_data(state.key))
    keys = jax.random.split(sub, max(len(leaves), 1))

    def one(u, w, k):
      u = u - (1 - jnp.asarray(shrink, u.dtype)) * w.astype(u.dtype)
      if not no_noise:
        u = u + jnp.asarray(sigma, u.dtype) * jax.random.normal(k, u.shape, u.dtype)
      return u

    out = [one(*args) for args in zip(leaves, weights, keys)]
    return treedef.unflatten(out), ShrinkPerturbState(jax.random.key_data(key))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def shrink_perturb(
  learning_rate: optax.ScalarOrSchedule,
  shrink: float | jax.Array = 0.9999,
  sigma: float | jax.Array = 1e-4,
  seed: int | jax.Array = 0,
) -> optax.GradientTransformationExtraArgs:
  r"""SGD with shrink and perturb every step (Ash and Adams 2020, as Dohare et al. 2024 run it).

  .. math::

    w_i \leftarrow \lambda w_i - \alpha g_i + \sigma \xi_i, \qquad \xi_i \sim \mathcal{N}(0, 1).

  ``optax.sgd(learning_rate)`` then :func:`add_shrink_perturb`. The defaults (a
  weight decay of 1e-4 per step, noise 1e-4) are a starting point for MNIST-sized MLPs,
  not tuned values; Dohare et al.'s permuted MNIST used SGD's weight decay 1e-4 at step
  size 0.003 (:math:`1 - \lambda = 3 \cdot 10^{-7}`) and noise 1e-6 to 1e-4 over 800 tasks.

  Args:
    learning_rate: :math:`\alpha`, a scalar or a schedule.
    shrink: :math:`\lambda \in [0, 1]` per step.
    sigma: the noise's standard deviation.
    seed: an integer seeding the noise.

  Returns:
    The chain, an :class:`optax.GradientTransformationExtraArgs`; ``update`` needs
    ``params``.

  Examples:
    >>> import jax.numpy as jnp, numpy as np
    >>> from classp_jax.plasticity import shrink_perturb
    >>> tx = shrink_perturb(learning_rate=0.1, shrink=0.9, sigma=0.0)
    >>> w = jnp.array([1.0, -2.0])
    >>> u, _ = tx.update(jnp.array([1.0, 1.0]), tx.init(w), w)
    >>> print(np.asarray(w + u).round(6))  # 0.9 * w - 0.1 * g
    [ 0.8 -1.9]

  References:
    Ash and Adams, `On Warm-Starting Neural Network Training
    <https://arxiv.org/abs/1910.08475>`_, NeurIPS 2020.
  """
  _check("learning_rate", learning_rate, lambda v: True, "finite")
  return optax.chain(optax.sgd(learning_rate), add_shrink_perturb(shrink, sigma, seed))


def fold_in_seed(opt_state: Any, seed: int) -> Any:
  """``opt_state`` with the run's seed folded into every noise key of this module's and
  Continual Backprop's states.

  UPGD, shrink and perturb and Continual Backprop seed their noise with a ``seed``
  hyperparameter, the same for every run of a method; the training engine folds each
  run's seed in (``jax.random.fold_in``), so that seeds draw different noise while the
  compiled step is shared. States are found by their type (`ScaleByUpgdState`,
  `ShrinkPerturbState`, `classp_jax.continual_backprop.ContinualBackpropState`) anywhere
  in ``opt_state``; other states are returned as they are.

  Args:
    opt_state: any optax state, on the host or on devices.
    seed: a non-negative integer (the run's seed).

  Returns:
    The state with each such ``key`` replaced by ``fold_in(key, seed)``'s key data.

  Examples:
    >>> import jax, jax.numpy as jnp, numpy as np
    >>> from classp_jax.plasticity import fold_in_seed, upgd
    >>> state = upgd(0.1).init(jnp.zeros(2))
    >>> a, b = fold_in_seed(state, 0), fold_in_seed(state, 1)
    >>> bool((np.asarray(a[0].key) != np.asarray(b[0].key)).any())
    True
  """
  from classp_jax.continual_backprop import ContinualBackpropState

  keyed = (ScaleByUpgdState, ShrinkPerturbState, ContinualBackpropState)

  def fold(x):
    if not isinstance(x, keyed):
      return x
    key = jax.random.fold_in(jax.random.wrap_key_data(jnp.asarray(x.key)), seed)
    return x._replace(key=jax.random.key_data(key))

  return jax.tree.map(fold, opt_state, is_leaf=lambda x: isinstance(x, keyed))
