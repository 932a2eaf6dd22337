"""Quadratic-penalty continual-learning baselines: EWC, SI, MAS and L2; and two plasticity
methods: L2 Init (a penalty towards the initial weights) and shrink and perturb at task
boundaries.

Each factory returns a `classp_jax.methods.base.Regularizer`. States are
NamedTuples of float32 pytrees shaped like the parameters (plus scalars), with
one fixed structure for the whole run, initialised so that every penalty is
exactly 0 before the first consolidation. Importances and anchors are float32
whatever the parameters' dtype; penalties are float32 scalars.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from classp_jax.methods.base import NO_REGULARIZER, ConsolidationContext, Regularizer, keep_state
from classp_jax.methods.fisher import FISHER_KINDS, fisher_diagonal, mean_per_example_statistic

Params = Any
RegState = Any


EWC_MODES = ("separate", "online")


def _f32(tree: Params) -> Params:
  return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), tree)


def _zeros(params: Params) -> Params:
  return jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)


def _weighted_sq_dist(weights: Params, params: Params, anchor: Params):
  """``sum_i w_i (theta_i - anchor_i)^2`` in float32."""
  terms = jax.tree.map(
    lambda w, p, a: jnp.sum(w * jnp.square(p.astype(jnp.float32) - a)),
    weights,
    params,
    anchor,
  )
  return sum(jax.tree.leaves(terms), jnp.zeros((), jnp.float32))


def _subset(ctx: ConsolidationContext, num_examples: int | None, rng):
  """The task's data, or ``num_examples`` of it drawn without replacement."""
  n = ctx.inputs.shape[0]
  if num_examples is None or num_examples >= n:
    return ctx.inputs, ctx.labels
  index = jax.random.choice(rng, n, (num_examples,), replace=False)
  return ctx.inputs[index], ctx.labels[index]


class EwcState(NamedTuple):
  """EWC state: 2x the parameters plus a scalar.

  Attributes:
    importance: ``A = sum_t F_t`` (separate) or the decayed sum (online).
    anchor: ``m = sum_t F_t theta*_t / A`` (separate; the Fisher-weighted mean
      of the task optima) or the last task's optimum (online).
    offset: ``sum_t sum_i F_t,i (theta*_t,i - m_i)^2``, the part of the
      per-task penalties that does not depend on theta (0 for online).
  """

  importance: Params
  anchor: Params
  offset: jax.Array


def ewc(
  strength: float = 100.0,
  *,
  kind: str = "exact",
  mode: str = "separate",
  gamma: float = 1.0,
  num_examples: int | None = None,
  batch_size: int = 32,
) -> Regularizer:
  r"""Elastic weight consolidation.

  After each task t, the diagonal Fisher :math:`F_t` is computed at the task's
  final parameters :math:`\theta^*_t` on that task's training data (see
  `classp_jax.fisher_diagonal`). With ``mode="separate"`` the penalty is
  Kirkpatrick et al.'s sum of one penalty per task,

  .. math::

    \frac{\lambda}{2} \sum_t \sum_i F_{t,i} (\theta_i - \theta^*_{t,i})^2
    = \frac{\lambda}{2} \Big[\sum_i A_i (\theta_i - m_i)^2 + R\Big],

  stored exactly, in 2x the parameters whatever the number of tasks, as
  :math:`A = \sum_t F_t`, the Fisher-weighted mean anchor
  :math:`m = \sum_t F_t \theta^*_t / A` and the constant
  :math:`R = \sum_{t,i} F_{t,i} (\theta^*_{t,i} - m_i)^2` (updated with the
  parallel-axis theorem, a sum of nonnegative terms, so the logged value
  suffers no float32 cancellation). Its gradient is
  :math:`\lambda \sum_t F_t (\theta - \theta^*_t)`.

  With ``mode="online"`` (Schwarz et al. 2018; Huszár 2018) there is one
  penalty: :math:`F \leftarrow \gamma F + F_t` and the anchor is the last
  task's :math:`\theta^*_t`.

  Examples:
    >>> import jax.numpy as jnp
    >>> reg = ewc(2.0)
    >>> state = reg.init({"w": jnp.ones(3)})
    >>> float(reg.penalty(state, {"w": jnp.zeros(3)}))  # before any task
    0.0

  Args:
    strength: :math:`\lambda`; the default is a starting point, not a tuned
      value (it depends on the data, the model and the Fisher's scale).
    kind: Fisher estimator, ``"exact"``, ``"sampled"`` or ``"empirical"``.
    mode: ``"separate"`` (one penalty per task) or ``"online"``.
    gamma: online decay of the old Fisher; ``mode="online"`` only.
    num_examples: Fisher on this many training examples of the task, drawn
      without replacement; ``None`` uses all of them.
    batch_size: chunk size of the per-example gradients (memory vs speed).

  Returns:
    A `Regularizer` with `EwcState`.

  References:
    Kirkpatrick et al., 2017, Overcoming catastrophic forgetting in neural
    networks, PNAS, https://arxiv.org/abs/1612.00796.
    Schwarz et al., 2018, Progress & compress: A scalable framework for
    continual learning, ICML, https://arxiv.org/abs/1805.06370.
    Huszár, 2018, Note on the quadratic penalties in elastic weight
    consolidation, PNAS, https://arxiv.org/abs/1712.03847.
  """
  if kind not in FISHER_KINDS:
    raise ValueError(f"kind must be one of {FISHER_KINDS}, got {kind!r}.")
  if mode not in EWC_MODES:
    raise ValueError(f"mode must be one of {EWC_MODES}, got {mode!r}.")
  if mode == "separate" and gamma != 1.0:
    raise ValueError('gamma applies to mode="online" only.')

  def init(params):
    return EwcState(_zeros(params), _zeros(params), jnp.zeros((), jnp.float32))

  def penalty(state, params):
    return (
      0.5 * strength * (_weighted_sq_dist(state.importance, params, state.anchor) + state.offset)
    )

  def consolidate(state, params, ctx):
    subset_rng, fisher_rng = jax.random.split(ctx.rng)
    inputs, labels = _subset(ctx, num_examples, subset_rng)
    fisher = fisher_diagonal(
      ctx.apply_fn,
      params,
      inputs,
      kind=kind,
      labels=labels,
      rng=fisher_rng,
      batch_size=batch_size,
    )
    return _EWC_UPDATES[mode](state, fisher, _f32(params), gamma)

  return Regularizer(init, penalty, keep_state, consolidate)


@jax.jit
def _ewc_separate_update(state, fisher, optimum, gamma):
  del gamma
  importance = jax.tree.map(jnp.add, state.importance, fisher)

  def running_mean(m, f, a, t):
    # m' = m + F / A' (theta* - m); where A' = 0 any anchor works: theta*.
    share = jnp.where(a > 0, f / jnp.where(a > 0, a, 1.0), 1.0)
    return m + share * (t - m)

  anchor = jax.tree.map(running_mean, state.anchor, fisher, importance, optimum)
  old = _weighted_sq_dist(state.importance, anchor, state.anchor)
  new = _weighted_sq_dist(fisher, anchor, optimum)
  return EwcState(importance, anchor, state.offset + old + new)


@jax.jit
def _ewc_online_update(state, fisher, optimum, gamma):
  importance = jax.tree.map(lambda old, f: gamma * old + f, state.importance, fisher)
  return EwcState(importance, optimum, state.offset)


_EWC_UPDATES = {"separate": _ewc_separate_update, "online": _ewc_online_update}


class SiState(NamedTuple):
  """SI state: 3x the parameters.

  Attributes:
    path_integral: ``omega``, the running ``sum -g * delta_theta`` of the
      current task.
    importance: ``Omega``, accumulated over the finished tasks.
    anchor: the parameters at the end of the previous task (at init before
      the first), i.e. where the current task started.
  """

  path_integral: Params
  importance: Params
  anchor: Params


def si(strength: float = 1.0, *, damping: float = 1e-3) -> Regularizer:
  r"""Synaptic intelligence.

  During task :math:`\mu`, every step adds
  :math:`-g_k (\theta_k^{new} - \theta_k^{old})` to the path integral
  :math:`\omega^\mu_k`, where :math:`g` is the gradient of the task loss alone
  (no penalty), as in Zenke et al.'s reference implementation
  (``unreg_grads``). At the end of the task, with
  :math:`\Delta^\mu_k = \theta_k(t^\mu) - \theta_k(t^{\mu-1})` the task's total
  displacement,

  .. math::

    \Omega_k \leftarrow \max\!\Big(0, \Omega_k
        + \frac{\omega^\mu_k}{(\Delta^\mu_k)^2 + \xi}\Big),
    \qquad
    \text{penalty} = c \sum_k \Omega_k (\theta_k - \tilde\theta_k)^2,

  where :math:`\tilde\theta` is the parameters at the end of the previous
  task. The clipping at 0 follows the reference implementation (it keeps the
  penalty convex). The penalty has no 1/2, as in the paper.

  Examples:
    >>> import jax.numpy as jnp
    >>> reg = si(1.0)
    >>> state = reg.init({"w": jnp.ones(3)})
    >>> float(reg.penalty(state, {"w": jnp.zeros(3)}))  # before any task
    0.0

  Args:
    strength: :math:`c`; the default is a starting point, not a tuned value.
    damping: :math:`\xi`; the default 1e-3 is the reference code's split
      CIFAR-10/100 value (its permuted MNIST run used 0.1).

  Returns:
    A `Regularizer` with `SiState`; its ``accumulate`` must be called after
    every optimizer step with the task-loss gradients.

  References:
    Zenke, Poole and Ganguli, 2017, Continual learning through synaptic
    intelligence, ICML, https://arxiv.org/abs/1703.04200; reference code
    https://github.com/ganguli-lab/pathint.
  """

  def init(params):
    return SiState(_zeros(params), _zeros(params), _f32(params))

  def penalty(state, params):
    return strength * _weighted_sq_dist(state.importance, params, state.anchor)

  def accumulate(state, old_params, new_params, grads):
    path_integral = jax.tree.map(
      lambda w, g, new, old: (
        w - g.astype(jnp.float32) * (new.astype(jnp.float32) - old.astype(jnp.float32))
      ),
      state.path_integral,
      grads,
      new_params,
      old_params,
    )
    return state._replace(path_integral=path_integral)

  def consolidate(state, params, ctx):
    del ctx
    return _si_consolidate(state, _f32(params), damping)

  return Regularizer(init, penalty, accumulate, consolidate)


@jax.jit
def _si_consolidate(state, params, damping):
  importance = jax.tree.map(
    lambda big, w, p, a: jnp.maximum(0.0, big + w / (jnp.square(p - a) + damping)),
    state.importance,
    state.path_integral,
    params,
    state.anchor,
  )
  return SiState(_zeros(params), importance, params)


class AnchoredState(NamedTuple):
  """State of a penalty ``sum_i importance_i (theta_i - anchor_i)^2``.

  Attributes:
    importance: per-parameter weights (2x the parameters with the anchor), or
      a scalar.
    anchor: the parameters at the last consolidation.
  """

  importance: Params | jax.Array
  anchor: Params


def mas(
  strength: float = 1.0,
  *,
  num_examples: int | None = None,
  batch_size: int = 32,
) -> Regularizer:
  r"""Memory aware synapses.

  After each task, at its final parameters :math:`\theta^*` and on its
  training inputs (labels unused), the importance of each parameter is the
  mean over examples of the absolute per-example gradient of the squared L2
  norm of the network's output, here the logits :math:`f`:

  .. math::

    \Omega_k \leftarrow \Omega_k + \frac{1}{N} \sum_n
        \Big| \frac{\partial \lVert f(x_n; \theta^*) \rVert_2^2}
                   {\partial \theta_k} \Big|,
    \qquad
    \text{penalty} = \lambda \sum_k \Omega_k (\theta_k - \theta^*_k)^2.

  Importances are summed over tasks as in the reference implementation, and
  the anchor is the last task's :math:`\theta^*`. The penalty has no 1/2, as
  in the paper.

  Examples:
    >>> import jax.numpy as jnp
    >>> reg = mas(1.0)
    >>> state = reg.init({"w": jnp.ones(3)})
    >>> float(reg.penalty(state, {"w": jnp.zeros(3)}))  # before any task
    0.0

  Args:
    strength: :math:`\lambda`; the default is a starting point, not a tuned
      value.
    num_examples: importance on this many training examples of the task, drawn
      without replacement; ``None`` uses all of them.
    batch_size: chunk size of the per-example gradients (memory vs speed).

  Returns:
    A `Regularizer` with `AnchoredState`.

  References:
    Aljundi et al., 2018, Memory aware synapses: Learning what (not) to
    forget, ECCV, https://arxiv.org/abs/1711.09601; reference code
    https://github.com/rahafaljundi/MAS-Memory-Aware-Synapses.
  """

  def init(params):
    return AnchoredState(_zeros(params), _zeros(params))

  def penalty(state, params):
    return strength * _weighted_sq_dist(state.importance, params, state.anchor)

  def consolidate(state, params, ctx):
    inputs, _ = _subset(ctx, num_examples, ctx.rng)
    new = mean_per_example_statistic(
      ctx.apply_fn,
      params,
      inputs,
      cotangents="output_norm",
      elementwise="abs",
      batch_size=batch_size,
    )
    return AnchoredState(jax.tree.map(jnp.add, state.importance, new), _f32(params))

  return Regularizer(init, penalty, keep_state, consolidate)


def l2(strength: float = 1.0) -> Regularizer:
  r"""A penalty towards the previous task's final parameters.

  .. math::

    \text{penalty} = \frac{\lambda}{2} \lVert \theta - \theta^* \rVert_2^2,

  with :math:`\theta^*` the parameters at the end of the previous task, and 0
  during the first task (the state's scalar importance is 0 until the first
  consolidation, then 1).

  Examples:
    >>> import jax.numpy as jnp
    >>> reg = l2(2.0)
    >>> state = reg.init({"w": jnp.ones(3)})
    >>> float(reg.penalty(state, {"w": jnp.zeros(3)}))  # before any task
    0.0

  Args:
    strength: :math:`\lambda`; the default is a starting point, not a tuned
      value.

  Returns:
    A `Regularizer` with `AnchoredState` (scalar importance; 1x the
    parameters).
  """

  def init(params):
    return AnchoredState(jnp.zeros((), jnp.float32), _zeros(params))

  def penalty(state, params):
    ones = jax.tree.map(lambda _: state.importance, state.anchor)
    return 0.5 * strength * _weighted_sq_dist(ones, params, state.anchor)

  def consolidate(state, params, ctx):
    del ctx
    return AnchoredState(jnp.ones_like(state.importance), _f32(params))

  return Regularizer(init, penalty, keep_state, consolidate)


def l2_init(strength: float = 0.01) -> Regularizer:
  r"""L2 Init: a penalty towards the initial parameters (regenerative regularization).

  .. math::

    \text{penalty} = \lambda \lVert \theta - \theta_0 \rVert_2^2,

  with :math:`\theta_0` the parameters at initialisation (what ``init`` is given), for the
  whole stream. Unlike weight decay towards 0 it keeps the weights near a trainable
  point, which keeps a network plastic on a long stream; unlike `l2` it never moves its
  anchor. No 1/2, as in the paper.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> reg = l2_init(0.5)
    >>> state = reg.init({"w": jnp.ones(2)})
    >>> float(reg.penalty(state, {"w": jnp.array([3.0, 1.0])}))  # 0.5 * (2 ** 2 + 0)
    2.0
    >>> print(jax.grad(lambda p: reg.penalty(state, p))({"w": jnp.array([3.0, 1.0])})["w"])
    [2. 0.]

  Args:
    strength: :math:`\lambda \ge 0`; the default is a starting point, not a tuned value.

  Returns:
    A `Regularizer` with `AnchoredState` (scalar importance 1; 1x the parameters).

  References:
    Kumar, Marklund and Van Roy, Maintaining Plasticity in Continual Learning via
    Regenerative Regularization, CoLLAs 2024, https://arxiv.org/abs/2308.11958.
  """

  def init(params):
    return AnchoredState(jnp.ones((), jnp.float32), _f32(params))

  def penalty(state, params):
    ones = jax.tree.map(lambda _: state.importance, state.anchor)
    return strength * _weighted_sq_dist(ones, params, state.anchor)

  return Regularizer(init, penalty, keep_state, keep_state)


@jax.jit
def _shrink_and_perturb(params, rng, shrink, sigma):
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(rng, max(len(leaves), 1))
  out = [
    (shrink * p + sigma * jax.random.normal(k, p.shape, jnp.float32)).astype(p.dtype)
    for p, k in zip(leaves, keys)
  ]
  return treedef.unflatten(out)


def shrink_perturb_tasks(shrink: float = 0.5, sigma: float = 0.01) -> Regularizer:
  r"""Shrink and perturb at task boundaries (Ash and Adams 2020): no penalty, and at the end
  of each task but the last

  .. math::

    \theta \leftarrow \lambda \theta + \sigma \xi, \qquad \xi \sim \mathcal{N}(0, 1),

  the params the next task starts from (`Regularizer.boundary_params`; the optimizer
  state carries over). The noise is drawn from the consolidation's key: leaf ``i`` of
  ``jax.tree.leaves(params)`` from ``jax.random.split(ctx.rng, n_leaves)[i]``, in
  float32. For the per-step form see `classp_jax.plasticity.shrink_perturb`.

  Examples:
    >>> import jax, jax.numpy as jnp, numpy as np
    >>> from classp_jax.methods.base import ConsolidationContext
    >>> reg = shrink_perturb_tasks(shrink=0.5, sigma=0.0)
    >>> ctx = ConsolidationContext(None, None, None, jax.random.key(0))
    >>> print(np.asarray(reg.boundary_params((), {"w": jnp.array([2.0, -1.0])}, ctx)["w"]))
    [ 1.  -0.5]

  Args:
    shrink: :math:`\lambda \in [0, 1]` (Ash and Adams: 0.3 to 0.6 on CIFAR).
    sigma: the noise's standard deviation, ``>= 0`` (theirs: 1e-4 to 0.01, as a scale
      of a fresh initialisation; here a plain Gaussian).

  Returns:
    A `Regularizer` with an empty state and ``boundary_params``.

  References:
    Ash and Adams, On Warm-Starting Neural Network Training, NeurIPS 2020,
    https://arxiv.org/abs/1910.08475.
  """
  if not 0 <= shrink <= 1:
    raise ValueError(f"shrink must be in [0, 1], got {shrink!r}.")
  if sigma < 0:
    raise ValueError(f"sigma must be >= 0, got {sigma!r}.")

  def boundary_params(state, params, ctx):
    del state
    return _shrink_and_perturb(params, ctx.rng, jnp.float32(shrink), jnp.float32(sigma))

  return NO_REGULARIZER._replace(boundary_params=boundary_params)
