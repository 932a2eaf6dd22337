"""Diagonal Fisher information from per-example gradients.

Everything here is one pattern: per example, a few vector-Jacobian products
of the logits with chosen cotangents, and a float32 mean over examples of an
elementwise function (square, or absolute value) of the resulting per-example
gradients. Examples are processed in chunks of ``batch_size`` (``jax.vmap``
inside a chunk, host loops over chunks and cotangent rows), so memory grows
with the chunk, not with the data set. The last chunk is padded and its
padding gets zero cotangents, so it contributes exactly nothing.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

Params = Any

FISHER_KINDS = ("exact", "empirical", "sampled")


def _exact_cotangents(logits, label, key):
  """Rows ``sqrt(p_c) (e_c - p)`` for every class c.

  ``e_c - p`` is the gradient of ``log p_c`` with respect to the logits, so the
  squared VJPs summed over the rows are ``sum_c p_c (grad log p_c)^2``, with p
  held constant (the stop-gradient on the weights).
  """
  del label, key
  probs = jax.nn.softmax(logits)
  return jnp.sqrt(probs)[:, None] * (jnp.eye(probs.shape[0]) - probs)


def _label_cotangent(logits, label):
  return (jax.nn.one_hot(label, logits.shape[0]) - jax.nn.softmax(logits))[None]


def _empirical_cotangents(logits, label, key):
  del key
  return _label_cotangent(logits, label)


def _sampled_cotangents(logits, label, key):
  del label
  return _label_cotangent(logits, jax.random.categorical(key, logits))


def _output_norm_cotangents(logits, label, key):
  """Gradient of ``||logits||_2^2`` with respect to the logits (for MAS)."""
  del label, key
  return (2.0 * logits)[None]


_COTANGENTS = {
    "exact": _exact_cotangents,
    "empirical": _empirical_cotangents,
    "sampled": _sampled_cotangents,
    "output_norm": _output_norm_cotangents,
}
_ELEMENTWISE = {"square": jnp.square, "abs": jnp.abs}


@functools.partial(jax.jit, static_argnames=("apply_fn", "cotangents"))
def _chunk_cotangents(apply_fn, params, inputs, labels, keys, valid, *,
                      cotangents):
  """Logit cotangents (batch, rows, C) of a chunk; zero for padding."""
  logits = apply_fn(params, inputs)
  u = jax.vmap(_COTANGENTS[cotangents])(
      logits.astype(jnp.float32), labels, keys
  )
  return jnp.where(valid[:, None, None], u, 0.0).astype(logits.dtype)


@functools.partial(jax.jit, static_argnames=("apply_fn", "elementwise"))
def _accumulate_row(apply_fn, params, total, inputs, u_row, *, elementwise):
  """Adds ``sum_n elementwise(VJP_n(u_row[n]))`` over a chunk to total."""
  elementwise_fn = _ELEMENTWISE[elementwise]

  def example_grads(x, u):
    _, vjp_fn = jax.vjp(lambda p: apply_fn(p, x[None])[0], params)
    return vjp_fn(u)[0]

  grads = jax.vmap(example_grads)(inputs, u_row)
  return jax.tree.map(
      lambda t, g: t + jnp.sum(elementwise_fn(g.astype(jnp.float32)), 0),
      total, grads,
  )


def mean_per_example_statistic(
    apply_fn: Callable[[Params, jax.Array], jax.Array],
    params: Params,
    inputs: jax.Array,
    *,
    cotangents: str,
    elementwise: str,
    labels: jax.Array | None = None,
    rng: jax.Array | None = None,
    batch_size: int = 32,
) -> Params:
  """Shared engine of `fisher_diagonal` and the MAS importance.

  Args:
    apply_fn: ``apply_fn(params, inputs) -> logits``.
    params: the parameters.
    inputs: array of shape (N, ...).
    cotangents: ``"exact"``, ``"empirical"``, ``"sampled"`` or
      ``"output_norm"``: which logit cotangents to pull back per example.
    elementwise: ``"square"`` or ``"abs"``, applied to each per-example
      gradient before the mean.
    labels: int labels (N,), used by ``"empirical"``.
    rng: PRNG key, used by ``"sampled"``.
    batch_size: examples per chunk (clipped to N).

  Returns:
    float32 pytree shaped like ``params``.
  """
  num_examples = inputs.shape[0]
  if num_examples == 0:
    raise ValueError("inputs holds no examples.")
  if batch_size < 1:
    raise ValueError(f"batch_size must be positive, got {batch_size}.")
  if labels is None:
    labels = jnp.zeros((num_examples,), jnp.int32)
  elif labels.shape != (num_examples,):
    raise ValueError(
        f"labels must have shape ({num_examples},), got {labels.shape}."
    )
  keys = jax.random.split(
      jax.random.key(0) if rng is None else rng, num_examples
  )
  batch_size = min(batch_size, num_examples)
  # A host loop over chunks of one compiled shape (the last chunk is padded
  # by repeating examples, and masked): XLA:CPU ran the same body ~2.5x
  # slower inside a lax.scan.
  padded = np.arange(-(-num_examples // batch_size) * batch_size)
  total = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
  for start in range(0, padded.size, batch_size):
    chunk = padded[start:start + batch_size]
    index = chunk % num_examples
    x = inputs[index]
    u = _chunk_cotangents(
        apply_fn, params, x, labels[index], keys[index], chunk < num_examples,
        cotangents=cotangents,
    )
    # One call per cotangent row (C rows for "exact", redoing the forward
    # pass): inside one compiled function XLA kept all C rows' per-example
    # gradients alive at once (C times the memory), and a lax.scan over rows
    # ran ~3x slower on XLA:CPU.
    for k in range(u.shape[1]):
      total = _accumulate_row(
          apply_fn, params, total, x, u[:, k], elementwise=elementwise
      )
  return jax.tree.map(lambda t: t / num_examples, total)


def fisher_diagonal(
    apply_fn: Callable[[Params, jax.Array], jax.Array],
    params: Params,
    inputs: jax.Array,
    *,
    kind: str = "exact",
    labels: jax.Array | None = None,
    rng: jax.Array | None = None,
    batch_size: int = 32,
) -> Params:
  r"""Diagonal of the Fisher information of a softmax classifier.

  For examples :math:`x_n`, :math:`n = 1..N`, and class probabilities
  :math:`p(c \mid x) = \mathrm{softmax}(\mathrm{apply\_fn}(\theta, x))_c`,

  .. math::

    F = \frac{1}{N} \sum_n \mathbb{E}_{y \sim q_n}
        \left[ (\nabla_\theta \log p(y \mid x_n))^2 \right]

  (squares elementwise), where :math:`q_n` depends on ``kind``:

  * ``"exact"``: the model's own predictive distribution, summed over all
    classes, :math:`\sum_c p(c \mid x_n) (\nabla \log p(c \mid x_n))^2`, with
    the weights :math:`p(c \mid x_n)` held constant (no gradient through them).
    Costs C gradient computations per example (C classes).
  * ``"sampled"``: one label :math:`y_n \sim p(\cdot \mid x_n)`, an unbiased
    one-sample estimate of ``"exact"``.
  * ``"empirical"``: the true label :math:`y_n` (the "empirical Fisher"; not
    the Fisher of the model, see Kunstner et al. 2019).

  The gradients are of the log-likelihood alone, per example (a mean of
  squares, not the square of a mini-batch mean). Pass an eval-mode
  ``apply_fn`` (dropout off). Accumulation is in float32 whatever the dtype of
  ``params``. Peak memory grows with ``batch_size`` times the parameter count,
  independent of N. Compiled once per ``apply_fn`` object and chunk shape:
  pass the same callable each time to reuse the compilation.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> apply_fn = lambda w, x: x @ w
    >>> w = jnp.zeros((3, 2))  # uniform predictions: p = 1/2
    >>> fisher = fisher_diagonal(apply_fn, w, jnp.ones((5, 3)))
    >>> fisher.round(6)  # x^2 p (1 - p) = 1/4
    Array([[0.25, 0.25],
           [0.25, 0.25],
           [0.25, 0.25]], dtype=float32)

  Args:
    apply_fn: ``apply_fn(params, inputs) -> logits`` for a batch of inputs,
      logits of shape (batch, C).
    params: the parameters, a pytree.
    inputs: array of shape (N, ...); all of it is used.
    kind: ``"exact"``, ``"sampled"`` or ``"empirical"``.
    labels: int labels of shape (N,); required for ``"empirical"``.
    rng: PRNG key; required for ``"sampled"``.
    batch_size: examples per chunk (clipped to N); trades memory for speed.

  Returns:
    A float32 pytree shaped like ``params``.

  Raises:
    ValueError: for an unknown ``kind``, a missing ``labels`` or ``rng``, or
      empty ``inputs``.

  References:
    Kirkpatrick et al., 2017, Overcoming catastrophic forgetting in neural
    networks, PNAS, https://arxiv.org/abs/1612.00796.
    Martens, 2020, New insights and perspectives on the natural gradient
    method, JMLR, https://arxiv.org/abs/1412.1193.
    Kunstner, Balles and Hennig, 2019, Limitations of the empirical Fisher
    approximation for natural gradient descent, NeurIPS,
    https://arxiv.org/abs/1905.12558.
  """
  if kind not in FISHER_KINDS:
    raise ValueError(f"kind must be one of {FISHER_KINDS}, got {kind!r}.")
  if kind == "empirical" and labels is None:
    raise ValueError('kind="empirical" needs labels.')
  if kind == "sampled" and rng is None:
    raise ValueError('kind="sampled" needs rng.')
  return mean_per_example_statistic(
      apply_fn, params, inputs, cotangents=kind, elementwise="square",
      labels=labels if kind == "empirical" else None,
      rng=rng if kind == "sampled" else None, batch_size=batch_size,
  )
