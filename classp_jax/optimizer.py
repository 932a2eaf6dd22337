"""CLASSP as optax transformations.

CLASSP (Continual Learning through Adjustment Suppression and Sparsity
Promotion) updates a weight only when its gradient is large, and damps the
weights that have already moved a lot. Per weight ``i`` with gradient ``g_i``:

.. math::

  m_i = |g_i|^2 > \\tau, \\qquad
  S_i \\mathrel{+}= m_i |g_i|^p, \\qquad
  u_i = -\\eta \\, m_i \\, g_i / (\\epsilon + S_i)^{1/p}.

Three knobs go beyond the paper's Algorithm 1: ``relative_threshold=True``
compares :math:`|g_i|^2` with :math:`\\tau` times the mean of :math:`|g|^2`
over the weight's own tensor (scale-free); ``include_current_gradient=False``
scales the step by the accumulator before this gradient is added (the paper's
Equation (1)); and ``accumulator_decay=beta < 1`` lets the accumulator forget,
:math:`S_i \\leftarrow \\beta S_i + |g_i|^p` where a weight is updated (this
project's extension, not the paper's: the paper's ``S`` never forgets, which on
a long stream freezes the network).

The mask's arithmetic is done in at least float32 and with :math:`|g|^2`, so
float16 gradients neither underflow nor overflow in it and complex gradients
are masked by their modulus. Complex params are supported, as by
``optax.adagrad``, with a real ``S``.

:func:`classp` is the chain :func:`threshold_mask` ->
:func:`scale_by_generalized_adagrad` -> ``optax.scale_by_learning_rate``, with
the mask computed in the same pass as the accumulation
(``scale_by_generalized_adagrad(..., threshold=...)``).
:func:`classp_as_released` reproduces the authors' released PyTorch code,
which differs from the paper (see its docstring).

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

_REFERENCE = (
  "Ludwig, `CLASSP: a Biologically-Inspired Approach to Continual Learning"
  " through Adjustment Suppression and Sparsity Promotion"
  " <https://arxiv.org/abs/2405.09637>`_, 2024."
)


class ScaleByGeneralizedAdagradState(NamedTuple):
  """State of :func:`scale_by_generalized_adagrad`.

  Attributes:
    accumulator: ``S``, the running sum of ``|g|**p``; one entry per weight,
      same tree as the params.
    initial_accumulator_value: the scalar ``S`` started from; an entry of
      ``accumulator`` above it has been updated at least once (used by
      :func:`classp_jax.capacity_used`).
  """

  accumulator: optax.Updates
  initial_accumulator_value: jax.Array


class ClasspAsReleasedState(NamedTuple):
  """State of :func:`scale_by_classp_as_released`.

  Attributes:
    accumulator: ``S``, the running sum of ``|g|`` over the steps in which the
      weight's tensor was updated; one entry per weight, starts at 0.
  """

  accumulator: optax.Updates


def _concrete_value(value: Any) -> np.ndarray | None:
  """The value as a NumPy array, or None if it is a schedule or traced."""
  if callable(value):
    return None
  try:
    return np.asarray(value, dtype=np.float64)
  except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
    return None


def _check(name: str, value: Any, ok, requirement: str) -> None:
  """Raises ValueError if a concrete ``value`` is non-finite or fails ``ok``.

  Traced values (under ``optax.inject_hyperparams`` in a jitted update) and
  schedules are not checked: branching on them is impossible.
  """
  if isinstance(value, (str, bytes)):  # np.asarray("0.1", float) would accept it
    raise ValueError(f"{name} must be a number, got {value!r}.")
  v = _concrete_value(value)
  if v is None:
    return
  if not np.all(np.isfinite(v)):
    raise ValueError(f"{name} must be finite, got {value!r}.")
  if not np.all(ok(v)):
    raise ValueError(f"{name} must be {requirement}, got {value!r}.")


def _static_float(x: Any) -> float | None:
  """``x`` as a Python float if it is a Python or NumPy scalar, else None.

  Only such values pick a Python-level fast path; jax arrays (what
  ``optax.inject_hyperparams`` passes) always take the general traced path.
  """
  if isinstance(x, (int, float, np.number)) and not isinstance(x, bool):
    return float(x)
  return None


def _general_pow(x: jax.Array, exponent: jax.Array) -> jax.Array:
  """``x ** exponent`` for ``x >= 0``, to a few float32 ulps.

  XLA:CPU's vectorised exp and log make this about 6x faster than
  ``jnp.power``, which made the whole step 11x slower than AdaGrad.
  ``x = 0`` gives ``exp(-inf) = 0`` for a positive exponent.
  """
  return jnp.exp(exponent * jnp.log(x))


def _pow(a: jax.Array, power: Any) -> jax.Array:
  """``a ** power`` for ``a >= 0``, exact and cheap for powers 1 and 2."""
  p = _static_float(power)
  if p == 1.0:
    return a
  if p == 2.0:
    return a * a
  power = jnp.asarray(power, a.dtype)
  if p is not None:
    return _general_pow(a, power)
  # Traced power: select by value, so that p = 1 and p = 2 give the same bits
  # as the static fast paths. The predicate is loop-invariant, so compiled
  # code does not pay for the branches it does not take (measured).
  return jnp.where(power == 1, a, jnp.where(power == 2, a * a, _general_pow(a, power)))


def _scale(g: jax.Array, s_plus_eps: jax.Array, power: Any) -> jax.Array:
  """``g / s_plus_eps ** (1 / power)``, exact and cheap for powers 1 and 2."""
  p = _static_float(power)
  if p == 1.0:
    return g / s_plus_eps
  if p == 2.0:
    return g * jax.lax.rsqrt(s_plus_eps)  # exactly as optax.scale_by_rss
  # The exponent is computed in the array's dtype, as on the traced path, so
  # that injected and fixed hyperparameters give the same bits.
  power = jnp.asarray(power, s_plus_eps.dtype)
  if p is not None:
    return g * _general_pow(s_plus_eps, -1 / power)
  return jnp.where(
    power == 1,
    g / s_plus_eps,
    jnp.where(
      power == 2,
      g * jax.lax.rsqrt(s_plus_eps),
      g * _general_pow(s_plus_eps, -1 / power),
    ),
  )


def _check_accumulator_dtype(accumulator_dtype: Any) -> None:
  """An integer accumulator would truncate ``|g|**p`` (its updates 0 forever): refused."""
  if accumulator_dtype is not None and not jnp.issubdtype(
    jnp.dtype(accumulator_dtype), jnp.floating
  ):
    raise ValueError(f"accumulator_dtype must be a floating dtype, got {accumulator_dtype!r}.")


def _real_dtype(dtype) -> jnp.dtype:
  """The real dtype of ``dtype``, at least float32: where masks and accumulators are computed
  (complex64 -> float32; float16 and bfloat16 -> float32, so ``g**2`` neither underflows nor
  overflows)."""
  if jnp.issubdtype(dtype, jnp.complexfloating):
    dtype = jnp.finfo(dtype).dtype
  return jnp.promote_types(dtype, jnp.float32)


def _accumulator_dtype(param_dtype, accumulator_dtype):
  if not jnp.issubdtype(param_dtype, jnp.inexact):
    raise ValueError(
      f"CLASSP updates floating-point params; got a {jnp.dtype(param_dtype)} param, whose "
      "updates would be 0 (keep integer arrays out of the optimized tree)."
    )
  if accumulator_dtype is not None:
    return jnp.dtype(accumulator_dtype)
  # Real, and float32 or wider, so that bfloat16 params still accumulate precisely.
  return _real_dtype(param_dtype)


def _working(g: jax.Array, s: jax.Array) -> jax.Array:
  """``g`` in the accumulator's precision: ``S``'s dtype, or its complex counterpart for a
  complex ``g`` (so that ``|g|`` and the update keep the imaginary part)."""
  if jnp.issubdtype(g.dtype, jnp.complexfloating):
    return g.astype(jnp.promote_types(s.dtype, jnp.complex64))
  return g.astype(s.dtype)


def _full_like_params(params, value, accumulator_dtype):
  # full_like keeps a concrete array's (or ShapeDtypeStruct's) sharding.
  return jax.tree.map(
    lambda p: jnp.full_like(p, value, dtype=_accumulator_dtype(p.dtype, accumulator_dtype)),
    params,
  )


def _map_pairs(fn, updates, accumulator):
  """Maps ``fn(g, s) -> (u, s)`` over two trees; returns the two trees."""
  if not jax.tree.leaves(updates):  # empty params: nothing to update, as in optax
    return updates, accumulator
  out = jax.tree.map(fn, updates, accumulator)
  return jax.tree.transpose(jax.tree.structure(updates), jax.tree.structure((0, 0)), out)


def _mask_cutoff(g: jax.Array, threshold: Any, relative: bool) -> Any:
  """What ``g**2`` must exceed to pass: ``threshold``, or ``threshold`` times
  the leaf's mean of ``g**2`` (accumulated in at least float32)."""
  if not relative:
    return threshold
  if g.size == 0:  # nothing to mask; avoids the mean of an empty array
    return threshold
  dtype = _real_dtype(g.dtype)
  # The barrier keeps XLA from sharing this g * g with the mask's: shared, it
  # is written to a fresh buffer for the reduction, which made the fused step
  # 2.8x slower than with an absolute threshold at 1e7 params (XLA:CPU).
  h = jax.lax.optimization_barrier(g)
  # No division by the mean: a zero leaf gives a cutoff of 0, which no g**2
  # exceeds, and never NaN.
  return jnp.asarray(threshold, dtype) * jnp.mean(_abs_sq(h), dtype=dtype)


def _abs_sq(g: jax.Array) -> jax.Array:
  """``|g|**2`` in at least float32 (`_real_dtype`): for complex ``g`` not ``g * g``, whose
  real part is ``Re(g)**2 - Im(g)**2``; for float16 neither underflowing below about 1.7e-4
  nor overflowing above 256. A no-op cast for float32."""
  dtype = _real_dtype(g.dtype)
  if jnp.issubdtype(g.dtype, jnp.complexfloating):
    re, im = jnp.real(g).astype(dtype), jnp.imag(g).astype(dtype)
    return re * re + im * im
  g = g.astype(dtype)
  return g * g


def _masked(g: jax.Array, cutoff: Any) -> jax.Array:
  """Where ``g`` is dropped: ``|g|**2 <= cutoff``, so NaN is never dropped."""
  return _abs_sq(g) <= cutoff


def threshold_mask(
  threshold: float | jax.Array = 0.5,
  *,
  relative: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""Zeroes the updates whose square is at or below a threshold.

  .. math::

    u_i = g_i \text{ if not } (g_i^2 \le c) \text{ else } 0, \qquad
    c = \begin{cases}
      \tau & \text{absolute (default)} \\
      \tau \cdot \operatorname{mean}_{j \in \text{leaf}} g_j^2
        & \text{relative.} \end{cases}

  The test is written as "not at or below" so that NaN gradients pass through
  (and show up downstream) instead of being silently dropped. The square is
  :math:`|g_i|^2`, computed in at least float32: a complex gradient is
  masked by its modulus (``g * g`` would compare :math:`\operatorname{Re}(g^2)`),
  and a float16 one neither underflows to 0 nor overflows to infinity.

  With ``relative=True`` the threshold is a scale-free multiple of each
  leaf's (tensor's) mean squared gradient, so it does not depend on the loss
  scale, the batch size or the layer: ``1.0`` keeps the entries whose square
  is above their tensor's average, ``0.0`` keeps every nonzero one. A leaf
  whose gradient is all zero (mean 0) passes nothing, without NaN. A NaN
  anywhere in a leaf makes its mean NaN, so that whole leaf passes the mask
  (its finite entries too) and the NaN shows up downstream. An infinite entry
  makes the mean infinite: with ``threshold > 0`` the whole leaf, the
  infinite entry included, is then dropped (``optax.apply_if_finite`` around
  the optimizer sees the raw gradient and skips such steps); with
  ``threshold = 0`` the cutoff is NaN and the whole leaf passes.

  Args:
    threshold: :math:`\tau \ge 0`. May be traced (``optax.inject_hyperparams``).
    relative: compare with ``threshold`` times the leaf's mean of ``g**2``
      instead of ``threshold`` itself. Static (a Python bool).

  Returns:
    A stateless :class:`optax.GradientTransformationExtraArgs`.

  Raises:
    ValueError: if ``threshold`` is concrete and negative or non-finite.

  Examples:
    >>> import jax.numpy as jnp
    >>> import classp_jax
    >>> tx = classp_jax.threshold_mask(0.5)
    >>> g = jnp.array([0.1, -0.8, 2.0, 0.0])
    >>> updates, _ = tx.update(g, tx.init(g))
    >>> print(updates)
    [ 0.  -0.8  2.   0. ]
    >>> # mean(g**2) = 1.1625: only 2.0**2 is above it.
    >>> tx = classp_jax.threshold_mask(1.0, relative=True)
    >>> updates, _ = tx.update(g, tx.init(g))
    >>> print(updates)
    [0. 0. 2. 0.]

  References:
    {reference}
  """
  _check("threshold", threshold, lambda v: v >= 0, ">= 0")

  def init_fn(params):
    del params
    return optax.EmptyState()

  def leaf_update(g):
    dropped = _masked(g, _mask_cutoff(g, threshold, relative))
    return jnp.where(dropped, jnp.zeros_like(g), g)

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    return jax.tree.map(leaf_update, updates), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def scale_by_generalized_adagrad(
  power: float | jax.Array = 1.0,
  eps: float | jax.Array = 1e-5,
  initial_accumulator_value: float | jax.Array = 0.0,
  accumulator_dtype: Any = None,
  threshold: float | jax.Array | None = None,
  relative_threshold: bool = False,
  include_current_gradient: bool = True,
  accumulator_decay: float | jax.Array = 1.0,
) -> optax.GradientTransformationExtraArgs:
  r"""AdaGrad with the ``p``-th power and root in place of square and sqrt.

  By default, accumulate first, then scale (the current gradient is included,
  as in AdaGrad and in the paper's Algorithm 1):

  .. math::

    S_i \leftarrow \beta S_i + |g_i|^p, \qquad
    u_i = \frac{g_i}{(\epsilon + S_i)^{1/p}} \text{ if } S_i > 0
          \text{ else } 0,

  with :math:`\beta = 1` (``accumulator_decay``, the default) AdaGrad's and
  the paper's never-forgetting sum. :math:`\beta < 1` is this project's
  extension, not the paper's: an accumulator that forgets, so that a weight's
  step can grow again on a long stream. Where a ``threshold`` masks a weight,
  its ``S`` is neither increased nor decayed; without a threshold every entry
  is updated, so every entry decays.

  With ``include_current_gradient=False``, scale by the accumulator as it was
  before this gradient, then add the gradient (the paper's Equation (1), whose
  sum runs to :math:`t - 1`):

  .. math::

    u_i = \frac{g_i}{(\epsilon + S_i)^{1/p}} \text{ if } \epsilon + S_i > 0
          \text{ else } 0, \qquad
    S_i \leftarrow S_i + |g_i|^p.

  The first step of a weight then sees :math:`S_i = 0` (with the default
  ``initial_accumulator_value``) and is :math:`g_i / \epsilon^{1/p}`: with
  :math:`\epsilon = 10^{-5}` and ``p = 1`` that is :math:`10^5 g_i`, a huge
  step, where the default form's first step is :math:`g_i / (\epsilon +
  |g_i|^p)^{1/p} \approx \operatorname{sign}(g_i)`. Raise ``eps`` or
  ``initial_accumulator_value`` to tame it. With :math:`\epsilon = 0` the
  first step would divide by zero; it is 0 instead (the gradient still enters
  :math:`S_i`, so the weight moves from its second update on).

  Where :math:`S_i = 0` (so :math:`g_i = 0`) the default form's update is
  exactly 0, never NaN, even with :math:`\epsilon = 0`. With ``p = 2`` the
  default form is ``optax.scale_by_rss(initial_accumulator_value, eps)``:
  both compute ``g * rsqrt(S + eps)``, eps inside the root, and give 0 where
  ``S = 0`` (the same bits op by op; compiled, XLA may round the last bit
  differently). Elements that arrive as 0 (for example from
  :func:`threshold_mask`) add nothing to ``S``.

  A NaN gradient makes its update and ``S`` NaN; an infinite one makes ``S``
  infinite and the update NaN, and ``S`` stays so for good. Wrap the optimizer
  in ``optax.apply_if_finite`` to skip such steps.

  Args:
    power: :math:`p > 0`. Powers 1 and 2 have fast paths. May be traced.
    eps: :math:`\epsilon \ge 0`, added to ``S`` inside the root. May be traced.
    initial_accumulator_value: the value ``S`` starts from, ``>= 0``.
    accumulator_dtype: dtype of ``S``; by default the params' dtype promoted
      to at least float32. Under ``optax.inject_hyperparams`` give it as a
      string (``"float32"``) or list it in ``static_args``, since dtypes such
      as ``jnp.float32`` are callable and would be taken for schedules.
    threshold: if given, the same as chaining :func:`threshold_mask` with this
      threshold first, computed in the same pass. :func:`classp` uses this
      because XLA:CPU does not fuse a separately masked gradient into both the
      accumulator and the update: it writes the masked gradient to a fresh
      buffer each step, which made the step about 3x slower at 1e7 params.
      May be traced.
    relative_threshold: with ``threshold``, the same as
      ``threshold_mask(threshold, relative=True)``: compare ``g**2`` with
      ``threshold`` times its leaf's mean of ``g**2``. Static (a Python bool).
    include_current_gradient: True (the default, Algorithm 1) adds ``|g|**p``
      to ``S`` before scaling; False (Equation (1)) scales by ``S`` before
      adding it. Static (a Python bool).
    accumulator_decay: :math:`\beta \in [0, 1]`, what ``S`` is multiplied by
      before ``|g|**p`` is added (this project's extension; 1, the default,
      is the paper's rule and leaves the computation exactly as without it).
      May be traced. With ``initial_accumulator_value > 0``, ``S`` may decay
      below its start, where :func:`classp_jax.capacity_used` counts the
      weight as never updated.

  Returns:
    A :class:`optax.GradientTransformationExtraArgs` whose state is a
    :class:`ScaleByGeneralizedAdagradState`: one accumulator per weight and
    one scalar. Updates keep the incoming updates' dtype; ``S`` is real (the
    real dtype of complex params), at least float32 by default.

  Raises:
    ValueError: for concrete non-finite values, ``power <= 0``, ``eps < 0``,
      ``initial_accumulator_value < 0``, ``threshold < 0``,
      ``accumulator_decay`` outside ``[0, 1]``, or ``relative_threshold=True``
      without a ``threshold``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import classp_jax
    >>> tx = classp_jax.scale_by_generalized_adagrad(power=1.0, eps=0.0)
    >>> g = jnp.array([2.0, 0.0, -1.0])
    >>> state = tx.init(g)
    >>> updates, state = tx.update(g, state)
    >>> print(updates, state.accumulator)
    [ 1.  0. -1.] [2. 0. 1.]
    >>> updates, state = tx.update(g, state)
    >>> print(updates, state.accumulator)
    [ 0.5  0.  -0.5] [4. 0. 2.]

    Equation (1): the step is scaled by ``S`` before this gradient is added.

    >>> tx = classp_jax.scale_by_generalized_adagrad(
    ...     power=1.0, eps=2.0, include_current_gradient=False)
    >>> g = jnp.array([2.0, 0.0, -2.0])
    >>> state = tx.init(g)
    >>> updates, state = tx.update(g, state)  # g / eps
    >>> print(updates, state.accumulator)
    [ 1.  0. -1.] [2. 0. 2.]
    >>> updates, state = tx.update(g, state)  # g / (eps + |g|)
    >>> print(updates, state.accumulator)
    [ 0.5  0.  -0.5] [4. 0. 4.]

  References:
    {reference}
  """
  _check("power", power, lambda v: v > 0, "> 0")
  _check("eps", eps, lambda v: v >= 0, ">= 0")
  if threshold is not None:
    _check("threshold", threshold, lambda v: v >= 0, ">= 0")
  elif relative_threshold:
    raise ValueError("relative_threshold=True needs a threshold.")
  _check(
    "initial_accumulator_value",
    initial_accumulator_value,
    lambda v: v >= 0,
    ">= 0",
  )

  _check("accumulator_decay", accumulator_decay, lambda v: (v >= 0) & (v <= 1), "in [0, 1]")
  _check_accumulator_dtype(accumulator_dtype)

  def init_fn(params):
    return ScaleByGeneralizedAdagradState(
      accumulator=_full_like_params(params, initial_accumulator_value, accumulator_dtype),
      # A copy: sharing the hyperparameter's buffer (inject_hyperparams)
      # would make donating the whole state fail.
      initial_accumulator_value=jnp.array(initial_accumulator_value, jnp.float32, copy=True),
    )

  def leaf_update(g, s):
    g_acc = _working(g, s)
    increment = _pow(jnp.abs(g_acc), power)
    eps_s = jnp.asarray(eps, s.dtype)
    # The paper's S + |g|**p is kept op for op when the decay is a static 1 (the default).
    decayed = (
      s if _static_float(accumulator_decay) == 1.0 else jnp.asarray(accumulator_decay, s.dtype) * s
    )
    if threshold is None:
      masked = None
      s_new = decayed + increment
    else:
      # Exactly as threshold_mask decides.
      masked = _masked(g, _mask_cutoff(g, threshold, relative_threshold))
      s_new = jnp.where(masked, s, decayed + increment)
    if include_current_gradient:
      u = _scale(g_acc, s_new + eps_s, power)
      skip = s_new == 0
    else:
      u = _scale(g_acc, s + eps_s, power)
      skip = s + eps_s == 0  # eps = 0 and a first update: 0, not g / 0
    if masked is not None:
      skip = masked | skip
    u = jnp.where(skip, jnp.zeros_like(u), u)
    return u.astype(g.dtype), s_new

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    new_updates, accumulator = _map_pairs(leaf_update, updates, state.accumulator)
    return new_updates, state._replace(accumulator=accumulator)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def classp(
  learning_rate: optax.ScalarOrSchedule,
  threshold: float | jax.Array = 0.0,
  power: float | jax.Array = 1.0,
  eps: float | jax.Array = 1e-5,
  initial_accumulator_value: float | jax.Array = 0.0,
  accumulator_dtype: Any = None,
  relative_threshold: bool = False,
  include_current_gradient: bool = True,
  accumulator_decay: float | jax.Array = 1.0,
) -> optax.GradientTransformationExtraArgs:
  r"""The CLASSP optimizer.

  Per weight, with gradient :math:`g_i`:

  .. math::

    m_i = |g_i|^2 > \tau, \qquad
    S_i \leftarrow S_i + m_i \left((\beta - 1) S_i + |g_i|^p\right), \qquad
    w_i \leftarrow w_i - \eta \, m_i \, \frac{g_i}{(\epsilon + S_i)^{1/p}},

  with :math:`\beta = 1` (the default, the paper's rule: ``S`` only grows).

  Small gradients are suppressed (sparsity), and weights that have moved a lot
  move less (adjustment suppression). With ``threshold=0`` and ``power=2`` it
  equals ``optax.adagrad(learning_rate, initial_accumulator_value, eps)``.

  **Thresholds.** The default, ``threshold=0``, updates every weight with a
  nonzero gradient: adjustment suppression alone, which trains on any loss.
  The paper's absolute thresholds (``threshold=0.5`` for vision, ``0.99`` for
  sentiment) compare :math:`g_i^2` with a fixed number, so they depend on the
  loss scale, the batch size and the layer. On a mean-reduced loss (the
  usual ``mean`` over the batch) per-weight gradients are far smaller than
  :math:`\sqrt{0.5} \approx 0.7`, so at those values almost no weight ever
  passes the mask and the network does not learn (a digits MLP stays at
  chance). They are one argument away: ``classp(lr, threshold=0.5)``. For
  sparse updates whose meaning does not depend on the loss scale, use
  ``relative_threshold=True``: a weight is then updated where
  :math:`g_i^2 > \tau \cdot \operatorname{mean}(g^2)` over its own tensor, so
  ``threshold=1.0`` updates the above-average entries of each tensor (see
  :func:`threshold_mask`).

  **The accumulator.** By default it includes the current gradient before it
  scales the step (the paper's Algorithm 1, as AdaGrad);
  ``include_current_gradient=False`` scales by the accumulator before this
  gradient is added (the paper's Equation (1)), whose first step is
  :math:`g_i / \epsilon^{1/p}`, huge for a small ``eps`` (see
  :func:`scale_by_generalized_adagrad`).

  **An accumulator that forgets** (this project's extension, not the
  paper's). ``accumulator_decay=beta < 1`` updates
  :math:`S_i \leftarrow \beta S_i + |g_i|^p` where the weight passes the mask
  (a masked weight's ``S`` stays), so ``S`` tracks about the last
  :math:`1 / (1 - \beta)` updates and a weight's step can grow again: the
  paper's ``S`` never forgets, which should freeze the network on a long
  stream (loss of plasticity). ``1.0``, the default, computes exactly what it
  computed without the knob.

  **dtypes.** Complex params are supported as in ``optax.adagrad``: the mask
  compares :math:`|g_i|^2`, ``S`` is real, the update complex. For float16
  and bfloat16 the mask is computed in float32 (a float16 ``g**2`` would
  underflow to 0 below about 1.7e-4 and overflow above 256); updates keep
  the params' dtype.

  All of ``learning_rate``, ``threshold``, ``power``, ``eps`` and
  ``accumulator_decay`` may be
  injected with ``optax.inject_hyperparams(classp)`` and changed between steps
  or tasks without recompiling; the accumulator carries over. The two
  booleans are static. ``inject_hyperparams`` stores hyperparameters in the
  params' dtype, so for bfloat16 params they are rounded to bfloat16; with
  ``hyperparam_dtype=jnp.float32`` they are exact, but the learning-rate
  scaling then returns float32 updates (``optax.apply_updates`` still keeps
  the params' dtype).

  NaN gradients pass the mask and make the update and ``S`` NaN (with a
  relative threshold, a NaN unmasks its whole tensor for that step); infinite
  ones make ``S`` infinite and the update NaN (with a relative threshold
  above 0 an infinite entry masks its whole tensor instead).
  ``optax.apply_if_finite(classp(...), max_consecutive_errors)`` skips such
  steps and leaves the state untouched.

  Args:
    learning_rate: :math:`\eta`, a scalar or an ``optax`` schedule.
    threshold: :math:`\tau \ge 0`; a weight is updated only if
      :math:`g_i^2 > \tau` (or :math:`> \tau \operatorname{mean}(g^2)` with
      ``relative_threshold``). The paper uses 0.5 (vision) and 0.99
      (sentiment), absolute.
    power: :math:`p > 0`.
    eps: :math:`\epsilon \ge 0`.
    initial_accumulator_value: the value ``S`` starts from, ``>= 0``.
    accumulator_dtype: dtype of ``S``; see
      :func:`scale_by_generalized_adagrad`.
    relative_threshold: compare with ``threshold`` times each tensor's mean
      of ``g**2``.
    include_current_gradient: False for the paper's Equation (1).
    accumulator_decay: :math:`\beta \in [0, 1]`; below 1, an accumulator
      that forgets (this project's extension, not the paper's).

  Raises:
    ValueError: for concrete non-finite values, ``threshold < 0``,
      ``power <= 0``, ``eps < 0``, ``initial_accumulator_value < 0`` or
      ``accumulator_decay`` outside ``[0, 1]``.

  Returns:
    ``threshold_mask -> scale_by_generalized_adagrad -> scale_by_learning_rate``
    as an :class:`optax.GradientTransformationExtraArgs`, with the mask
    computed inside the accumulation (``scale_by_generalized_adagrad(...,
    threshold=threshold)``, same results) so that XLA fuses the step as well
    as ``optax.adagrad``'s.

  Examples:
    >>> import jax, jax.numpy as jnp, optax
    >>> import classp_jax
    >>> def f(w): return jnp.sum(w ** 2)
    >>> tx = classp_jax.classp(learning_rate=0.5, threshold=0.5)
    >>> w = jnp.array([0.1, 1.0, 2.0])
    >>> state = tx.init(w)
    >>> for _ in range(3):
    ...   updates, state = tx.update(jax.grad(f)(w), state, w)
    ...   w = optax.apply_updates(w, updates)
    >>> print(jnp.round(w, 3))
    [0.1   0.333 1.151]

  References:
    {reference}
  """
  _check("learning_rate", learning_rate, lambda v: True, "finite")
  return optax.chain(
    scale_by_generalized_adagrad(
      power,
      eps,
      initial_accumulator_value,
      accumulator_dtype,
      threshold,
      relative_threshold,
      include_current_gradient,
      accumulator_decay,
    ),
    optax.scale_by_learning_rate(learning_rate),
  )


def scale_by_classp_as_released(
  threshold: float | jax.Array = 0.5,
  power: float | jax.Array = 1.0,
  eps: float | jax.Array = 1e-5,
  apply_scaling: bool | float | jax.Array = True,
  accumulator_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""The scaling step of the authors' released CLASSP code.

  Per parameter tensor :math:`W` with gradient :math:`G` (see
  :func:`classp_as_released` for how this differs from the paper):

  .. math::

    \text{gate} = \operatorname{any}(G \ne 0) \wedge (1 > \tau), \qquad
    S \leftarrow S + \text{gate} \cdot |G|, \\
    U = \text{gate} \cdot \begin{cases}
      G / (S + \epsilon)^{1/p} & \text{if apply\_scaling} \\
      G & \text{otherwise.} \end{cases}

  Args:
    threshold: :math:`\tau`; the tensor is never updated if it is 1 or more.
    power: :math:`p > 0`, used only in the root.
    eps: :math:`\epsilon \ge 0`.
    apply_scaling: whether to divide by the root of ``S``. ``S`` grows either
      way. A Python bool is static under ``optax.inject_hyperparams``; pass a
      float (1.0 / 0.0) to make it injectable.
    accumulator_dtype: dtype of ``S``; by default the params' dtype promoted
      to at least float32.

  Returns:
    A :class:`optax.GradientTransformationExtraArgs` with a
    :class:`ClasspAsReleasedState`.

  Raises:
    ValueError: for concrete non-finite values, ``threshold < 0``,
      ``power <= 0``, ``eps < 0``, or ``apply_scaling`` other than 0 or 1.

  Examples:
    >>> import jax.numpy as jnp
    >>> import classp_jax
    >>> tx = classp_jax.scale_by_classp_as_released(power=2.0, eps=0.0)
    >>> state = tx.init(jnp.zeros(1))
    >>> _, state = tx.update(jnp.array([3.0]), state)
    >>> updates, state = tx.update(jnp.array([4.0]), state)
    >>> print(state.accumulator, jnp.round(updates, 4))
    [7.] [1.5119]

  References:
    {reference}
  """
  _check("threshold", threshold, lambda v: v >= 0, ">= 0")
  _check("power", power, lambda v: v > 0, "> 0")
  _check("eps", eps, lambda v: v >= 0, ">= 0")
  _check("apply_scaling", apply_scaling, lambda v: (v == 0) | (v == 1), "a bool or 0/1")

  def init_fn(params):
    return ClasspAsReleasedState(accumulator=_full_like_params(params, 0.0, accumulator_dtype))

  def leaf_update(g, s):
    # The released code compares the boolean "any gradient is nonzero" with
    # the threshold, so the gate is per tensor and 1 > threshold is needed.
    gate = jnp.any(g != 0) & (1 > jnp.asarray(threshold, jnp.float32))
    g_acc = _working(g, s)
    s = jnp.where(gate, s + jnp.abs(g_acc), s)  # the `** p` is discarded
    scaled = _scale(g_acc, s + jnp.asarray(eps, s.dtype), power)
    # Where S + eps == 0 (so G == 0) the released code gives NaN; we give 0.
    scaled = jnp.where(s + eps == 0, jnp.zeros_like(scaled), scaled)
    u = jnp.where(jnp.asarray(apply_scaling) != 0, scaled, g_acc)
    u = jnp.where(gate, u, jnp.zeros_like(u))
    return u.astype(g.dtype), s

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    new_updates, accumulator = _map_pairs(leaf_update, updates, state.accumulator)
    return new_updates, ClasspAsReleasedState(accumulator=accumulator)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def classp_as_released(
  learning_rate: optax.ScalarOrSchedule,
  threshold: float | jax.Array = 0.5,
  power: float | jax.Array = 1.0,
  eps: float | jax.Array = 1e-5,
  apply_scaling: bool | float | jax.Array = True,
  accumulator_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""CLASSP exactly as the authors' released PyTorch code runs it.

  Use :func:`classp` for the method as the paper describes it. This
  reproduces the released code faithfully so that the published numbers can
  be compared. It differs from the paper in three ways:

  * **The gate is per tensor, not per weight, and ignores the threshold's
    value.** The code compares the boolean "some gradient is nonzero" with the
    threshold, so a tensor is updated in full iff any element of its gradient
    is nonzero and ``1 > threshold``; with ``threshold >= 1`` nothing ever
    moves, and for ``threshold < 1`` there is no sparsity within a tensor.
  * **The accumulator adds** :math:`|G|`, **not** :math:`|G|^p`: the power is
    discarded, and ``p`` is used only in the root. With ``p = 2`` and
    gradients 3 then 4, ``S = 7``, not 25.
  * **Scaling can be switched off** (``apply_scaling=False``: plain SGD steps
    :math:`W \leftarrow W - \eta G`) while ``S`` still grows; the authors'
    vision protocol trains task 1 without and task 2 with scaling.

  Per tensor:

  .. math::

    \text{gate} = \operatorname{any}(G \ne 0) \wedge (1 > \tau), \quad
    S \leftarrow S + \text{gate}\,|G|, \quad
    W \leftarrow W - \eta\, \text{gate}\, G / (S + \epsilon)^{1/p}.

  One deliberate deviation: where ``S + eps == 0`` (possible only with
  ``eps = 0`` and a zero gradient) the released code divides 0 by 0 and
  gives NaN; this gives 0.

  To change ``apply_scaling`` between tasks while ``S`` carries over, build it
  with ``optax.inject_hyperparams(classp_as_released)(..., apply_scaling=0.0)``
  (a float: ``inject_hyperparams`` keeps Python bools static) and set
  ``state.hyperparams["apply_scaling"] = 1.0`` for the next task.

  Args:
    learning_rate: :math:`\eta`, a scalar or an ``optax`` schedule.
    threshold: :math:`\tau \ge 0`.
    power: :math:`p > 0`.
    eps: :math:`\epsilon \ge 0`.
    apply_scaling: True/1.0 to divide by :math:`(S + \epsilon)^{1/p}`.
    accumulator_dtype: dtype of ``S``.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`.

  Raises:
    ValueError: as :func:`scale_by_classp_as_released`, or for a concrete
      non-finite ``learning_rate``.

  Examples:
    >>> import jax.numpy as jnp, optax
    >>> import classp_jax
    >>> tx = classp_jax.classp_as_released(learning_rate=1.0, threshold=0.5)
    >>> w = jnp.zeros(4)
    >>> updates, _ = tx.update(jnp.array([0.1, 0.2, 2.0, 0.0]), tx.init(w), w)
    >>> print(jnp.round(optax.apply_updates(w, updates), 3))
    [-1. -1. -1.  0.]

  References:
    {reference}
  """
  _check("learning_rate", learning_rate, lambda v: True, "finite")
  return optax.chain(
    scale_by_classp_as_released(threshold, power, eps, apply_scaling, accumulator_dtype),
    optax.scale_by_learning_rate(learning_rate),
  )


for _f in (
  threshold_mask,
  scale_by_generalized_adagrad,
  classp,
  scale_by_classp_as_released,
  classp_as_released,
):
  _f.__doc__ = _f.__doc__.replace("{reference}", _REFERENCE)
del _f
