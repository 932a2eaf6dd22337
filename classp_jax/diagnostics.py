"""Jittable sparsity diagnostics: how many weights a step moves, and how many
have ever moved ("capacity used"); and, on the host, an accumulator method's
effective step size (`effective_step_size`).

CLASSP's point is sparse updates, so these make them visible. Both work inside
``jax.jit`` for any optimizer's updates and state.

References:
  Ludwig, `CLASSP: a Biologically-Inspired Approach to Continual Learning
  through Adjustment Suppression and Sparsity Promotion
  <https://arxiv.org/abs/2405.09637>`_, 2024.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from classp_jax.optimizer import ClasspAsReleasedState, ScaleByGeneralizedAdagradState


class Sparsity(NamedTuple):
  """Fractions of weights, per leaf and overall.

  Attributes:
    per_leaf: a tree shaped like the input tree, with a float32 scalar per
      leaf (0 for zero-size leaves).
    overall: float32 scalar over all elements, so larger leaves weigh more
      (0 if there are no elements).
  """

  per_leaf: Any
  overall: jax.Array


def _fractions(flags_tree) -> Sparsity:
  """Sparsity of a tree of boolean arrays: the fraction of True entries."""
  counts = jax.tree.map(lambda f: jnp.sum(f, dtype=jnp.int32).astype(jnp.float32), flags_tree)
  # Sizes are static, so a zero-size leaf gives 0 rather than 0 / 0.
  per_leaf = jax.tree.map(
    lambda c, f: c / f.size if f.size else jnp.zeros([], jnp.float32),
    counts,
    flags_tree,
  )
  total = sum(f.size for f in jax.tree.leaves(flags_tree))
  count = sum(jax.tree.leaves(counts), jnp.zeros([], jnp.float32))
  overall = count / total if total else jnp.zeros([], jnp.float32)
  return Sparsity(per_leaf=per_leaf, overall=overall)


def update_fraction(updates) -> Sparsity:
  """The fraction of weights with a nonzero update in this step.

  NaN updates count as nonzero.

  Args:
    updates: a tree of updates, as returned by an optax ``update``.

  Returns:
    A :class:`Sparsity` of float32 scalars.

  Examples:
    >>> import jax.numpy as jnp
    >>> import classp_jax
    >>> s = classp_jax.update_fraction({"a": jnp.array([0., 1.]),
    ...                                 "b": jnp.array([1., 1., 0., 0.])})
    >>> print(s.per_leaf["a"], s.per_leaf["b"], s.overall)
    0.5 0.5 0.5
  """
  return _fractions(jax.tree.map(lambda u: u != 0, updates))


def _is_accumulator_state(x) -> bool:
  return isinstance(x, (ScaleByGeneralizedAdagradState, ClasspAsReleasedState))


def capacity_used(opt_state) -> Sparsity | None:
  """The fraction of weights that CLASSP has ever updated.

  Looks for the first :class:`ScaleByGeneralizedAdagradState` or
  :class:`ClasspAsReleasedState` anywhere in ``opt_state`` (inside
  ``optax.chain``, ``inject_hyperparams``, ``MultiSteps``, ``masked``,
  ``multi_transform``, ...). A weight counts as updated once its accumulator
  exceeds its initial value; this needs no memory beyond the accumulator. A
  gradient too small to change ``S`` in floating point (``|g|**p`` below
  ``S``'s rounding step) is not counted.

  Args:
    opt_state: any optax state.

  Returns:
    A :class:`Sparsity` shaped like the accumulator, or None when
    ``opt_state`` holds no such accumulator (decided from its structure, so
    this is static under ``jax.jit``).

  Examples:
    >>> import jax.numpy as jnp, optax
    >>> import classp_jax
    >>> tx = classp_jax.classp(learning_rate=0.1, threshold=0.5)
    >>> w = jnp.zeros(4)
    >>> state = tx.init(w)
    >>> _, state = tx.update(jnp.array([0.1, 2.0, 0.0, -1.0]), state, w)
    >>> print(classp_jax.capacity_used(state).overall)
    0.5
    >>> print(classp_jax.capacity_used(optax.sgd(0.1).init(w)))
    None
  """
  found = [
    x for x in jax.tree.leaves(opt_state, is_leaf=_is_accumulator_state) if _is_accumulator_state(x)
  ]
  if not found:
    return None
  state = found[0]
  if isinstance(state, ScaleByGeneralizedAdagradState):
    initial = state.initial_accumulator_value
  else:
    initial = jnp.zeros([], jnp.float32)
  # Compare in S's dtype: the initial value was rounded to it when stored.
  return _fractions(jax.tree.map(lambda s: s > initial.astype(s.dtype), state.accumulator))


def _is_step_state(x) -> bool:
  return isinstance(x, (ScaleByGeneralizedAdagradState, optax.ScaleByRssState))


def _is_injected(x) -> bool:
  return isinstance(x, (optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState))


def effective_step_size(
  opt_state,
  *,
  learning_rate: float | None = None,
  eps: float | None = None,
  power: float | None = None,
) -> float | None:
  r"""The median over weights of an accumulator method's step size per unit of gradient.

  .. math::

    \operatorname{median}_i \frac{\eta}{(\epsilon + S_i)^{1/p}},

  for CLASSP (``S`` its :class:`ScaleByGeneralizedAdagradState` accumulator, any ``p``)
  and AdaGrad (``optax.ScaleByRssState``'s sum of squares, ``p = 2``): how far a unit
  gradient moves a weight now. CLASSP's ``S`` never forgets, so on a long stream this
  shrinks towards 0 (with ``accumulator_decay < 1`` it can grow again). Weights never
  updated (``S = 0``) count at :math:`\eta / \epsilon^{1/p}`, the step they would take.

  The state is found by its type anywhere in ``opt_state`` (as `capacity_used` does);
  :math:`\eta`, :math:`\epsilon` and :math:`p` are read from the hyperparameters of an
  ``optax.inject_hyperparams`` state around it unless given (``eps`` defaults to CLASSP's
  1e-5 and optax.adagrad's 1e-7, ``power`` to 1 and 2). Runs on the host (NumPy).

  Args:
    opt_state: any optax state.
    learning_rate: :math:`\eta`; None: the injected ``learning_rate``.
    eps: :math:`\epsilon`; None: the injected ``eps``, else the default.
    power: :math:`p`; None: the injected ``power``, else the default.

  Returns:
    The median as a float, or None when ``opt_state`` holds no such accumulator or no
    learning rate is known.

  Examples:
    >>> import jax.numpy as jnp, optax
    >>> import classp_jax
    >>> tx = optax.inject_hyperparams(classp_jax.classp)(learning_rate=0.1, threshold=0.0)
    >>> w = jnp.zeros(3)
    >>> _, state = tx.update(jnp.array([1.0, 3.0, 9.0]), tx.init(w), w)
    >>> round(effective_step_size(state), 4)  # 0.1 / (1e-5 + 3)
    0.0333
    >>> print(effective_step_size(optax.sgd(0.1).init(w)))
    None
  """
  found = [x for x in jax.tree.leaves(opt_state, is_leaf=_is_step_state) if _is_step_state(x)]
  if not found:
    return None
  injected = [x for x in jax.tree.leaves(opt_state, is_leaf=_is_injected) if _is_injected(x)]
  hparams = injected[0].hyperparams if injected else {}
  state = found[0]
  rss = isinstance(state, optax.ScaleByRssState)

  def value(given, name, default):
    if given is not None:
      return float(given)
    if name in hparams:
      return float(np.asarray(hparams[name]))
    return default

  lr = value(learning_rate, "learning_rate", None)
  if lr is None:
    return None
  e = value(eps, "eps", 1e-7 if rss else 1e-5)
  p = 2.0 if rss else value(power, "power", 1.0)
  tree = state.sum_of_squares if rss else state.accumulator
  leaves = [np.asarray(s, np.float64).ravel() for s in jax.tree.leaves(tree)]
  if not leaves or not sum(leaf.size for leaf in leaves):
    return None
  s = np.concatenate(leaves)
  return float(np.median(lr / (e + s) ** (1.0 / p)))
