"""Loss terms and gradient surgery of the replay and distillation baselines (ER, DER++, A-GEM, LwF).

Pure, jittable functions of logits and gradient pytrees, computed in float32. The training
step composes them (see each function); `mask_logits` applies the task-incremental scenario's
logit masks (`classp_jax.data.class_mask`, `label_class_masks`).

References:
    Chaudhry et al., "On Tiny Episodic Memories in Continual Learning", arXiv 1902.10486,
    2019 (ER).
    Buzzega et al., "Dark Experience for General Continual Learning: a Strong, Simple
    Baseline", NeurIPS 2020 (DER++).
    Chaudhry et al., "Efficient Lifelong Learning with A-GEM", ICLR 2019.
    Li and Hoiem, "Learning without Forgetting", IEEE TPAMI 40(12), 2017 (LwF).
    Hinton, Vinyals and Dean, "Distilling the Knowledge in a Neural Network", arXiv
    1503.02531, 2015.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

# A masked logit: exp() of it is 0 next to any real logit, and it stays finite, so a row with
# every output masked gives no NaN (its terms are zeroed instead).
MASKED_LOGIT = -1e30


def mask_logits(logits: jax.Array, mask: jax.Array) -> jax.Array:
  """Logits restricted to the outputs in ``mask``: the others get `MASKED_LOGIT`.

  The task-incremental scenario's head per task: a masked output is never predicted and
  gets no gradient (``jnp.where`` passes none to it).

  Args:
    logits: (..., num_classes).
    mask: bool, broadcastable to ``logits``: (num_classes,) for one task, or
      (batch, num_classes) per example (``label_class_masks(stream)[labels]``).

  Returns:
    float32 logits, same shape.

  Examples:
    >>> mask_logits(jnp.array([[3.0, 1.0, 2.0]]), jnp.array([False, True, True])).argmax(-1)
    Array([2], dtype=int32)
  """
  return jnp.where(mask, logits.astype(jnp.float32), MASKED_LOGIT)


def masked_cross_entropy(logits: jax.Array, labels: jax.Array, valid: jax.Array) -> jax.Array:
  r"""Mean softmax cross-entropy over the valid examples; 0 when none is valid.

  .. math:: \frac{\sum_i v_i\, \mathrm{CE}(z_i, y_i)}{\max(1, \sum_i v_i)}

  ER's loss on a batch of stream examples concatenated with a replay batch (valid: all True
  for the stream part, `ReplayBatch.valid` for the replay part), and DER++'s CE term.

  Args:
    logits: (batch, num_classes).
    labels: int (batch,).
    valid: bool (batch,).

  Returns:
    A float32 scalar.

  Examples:
    >>> logits = jnp.array([[0.0, 0.0], [100.0, 0.0]])
    >>> masked_cross_entropy(logits, jnp.array([0, 1]), jnp.array([True, False]))  # log 2
    Array(0.6931472, dtype=float32)
  """
  losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
  return jnp.sum(jnp.where(valid, losses, 0.0)) / jnp.maximum(jnp.sum(valid), 1)


def derpp_terms(
  logits: jax.Array,
  stored_logits: jax.Array,
  ce_logits: jax.Array,
  ce_labels: jax.Array,
  valid: jax.Array,
  alpha: float = 0.1,
  beta: float = 0.5,
) -> jax.Array:
  r"""DER++'s replay terms: logit matching plus cross-entropy on buffer examples.

  .. math:: \alpha\, \frac{1}{|V| C} \sum_{i \in V} \lVert h(x'_i) - z'_i \rVert^2
      \;+\; \beta\, \frac{1}{|V''|} \sum_{i \in V''} \mathrm{CE}(h(x''_i), y''_i)

  with ``z'`` the logits stored when ``x'`` was inserted, ``C`` the number of outputs
  (the mean squared error over all entries, as PyTorch's ``mse_loss``) and ``V`` the valid
  examples. The paper draws ``(x', z')`` and ``(x'', y'')`` as two independent buffer
  batches; passing one batch for both saves a forward pass. The MSE compares the whole
  head's raw logits (what was stored); in the task-incremental scenario pass
  ``ce_logits`` already masked (`mask_logits`).

  Args:
    logits: (batch, C) the current model's logits on the buffer inputs ``x'``.
    stored_logits: (batch, C) their logits at insertion (`ReplayBatch.logits`).
    ce_logits: (batch, C) the current model's logits on the buffer inputs ``x''``.
    ce_labels: int (batch,) their labels.
    valid: bool (batch,) `ReplayBatch.valid` (both batches come from the same buffer, so
      their masks agree: all False exactly when it is empty).
    alpha: the logit-matching weight (the paper's default 0.1 here; it tunes it per
      benchmark).
    beta: the cross-entropy weight (0.5).

  Returns:
    A float32 scalar, 0 when no example is valid.

  Examples:
    >>> derpp_terms(jnp.array([[1.0, 2.0]]), jnp.array([[0.0, 0.0]]),  # MSE (1 + 4) / 2
    ...             jnp.array([[0.0, 0.0]]), jnp.array([1]), jnp.array([True]),
    ...             alpha=1.0, beta=0.0)
    Array(2.5, dtype=float32)

  References:
    Buzzega et al., "Dark Experience for General Continual Learning: a Strong, Simple
    Baseline", NeurIPS 2020, Algorithm 1 and eq. 6.
  """
  squared = jnp.square(logits.astype(jnp.float32) - stored_logits.astype(jnp.float32))
  mse = jnp.sum(jnp.where(valid[:, None], squared, 0.0)) / (
    jnp.maximum(jnp.sum(valid), 1) * logits.shape[-1]
  )
  return alpha * mse + beta * masked_cross_entropy(ce_logits, ce_labels, valid)


def lwf_distillation(
  logits: jax.Array,
  old_logits: jax.Array,
  temperature: float = 2.0,
  mask: jax.Array | None = None,
) -> jax.Array:
  r"""Learning without Forgetting's distillation loss against the previous model's outputs.

  .. math:: T^2 \cdot \frac{1}{B} \sum_i \Bigl(-\sum_{c \in M}
      \mathrm{softmax}_M(z^{old}_i / T)_c \, \log \mathrm{softmax}_M(z_i / T)_c\Bigr)

  the cross-entropy of the temperature-softened outputs (Li and Hoiem's eq. 2, with their
  T = 2 as the default), times ``T**2`` (Hinton et al. 2015) so that its gradients keep
  their scale as T changes: at T = 2 it is 4x Li and Hoiem's loss, which the caller's
  weight absorbs. The cross-entropy differs from the KL divergence by the old outputs'
  entropy, a constant: same gradients.

  Both softmaxes run over the outputs ``M`` the old model was trained on, the classes of
  the tasks seen so far (`classp_jax.data.seen_class_mask`): the other outputs of the old
  model are untrained, and distilling them would only pin their logits. This is one
  softmax over all old classes, as FACIL does for LwF with one head per task (Masana et
  al. 2022); in the domain-incremental scenario ``M`` is the whole shared head.

  Args:
    logits: (batch, C) the model's logits on the current inputs.
    old_logits: (batch, C) the previous task's model's logits on the same inputs (no
      gradient flows into them).
    temperature: T.
    mask: bool (C,) the outputs ``M``; None: all. With no output in ``M`` the loss is 0.

  Returns:
    A float32 scalar.

  Examples:
    >>> lwf_distillation(jnp.zeros((1, 2)), jnp.zeros((1, 2)), temperature=1.0)  # log 2
    Array(0.6931472, dtype=float32)

  References:
    Li and Hoiem, "Learning without Forgetting", IEEE TPAMI 40(12), 2017.
    Hinton, Vinyals and Dean, "Distilling the Knowledge in a Neural Network", 2015.
    Masana et al., "Class-Incremental Learning: Survey and Performance Evaluation on Image
    Classification", IEEE TPAMI 45(5), 2022.
  """
  if mask is None:
    mask = jnp.ones(logits.shape[-1], bool)
  old = mask_logits(jax.lax.stop_gradient(old_logits).astype(jnp.float32) / temperature, mask)
  new = mask_logits(logits.astype(jnp.float32) / temperature, mask)
  terms = jax.nn.softmax(old) * jax.nn.log_softmax(new)
  return -(temperature**2) * jnp.mean(jnp.sum(jnp.where(mask, terms, 0.0), -1))


def _tree_dot(a: Any, b: Any) -> jax.Array:
  return sum(
    jnp.vdot(x.astype(jnp.float32), y.astype(jnp.float32))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
  )


def agem_project(grads: Any, reference_grads: Any) -> Any:
  r"""A-GEM's projection of a gradient that would raise the loss on the memory.

  .. math:: \tilde g = \begin{cases} g & g^\top g_{ref} \ge 0 \\
      g - \dfrac{g^\top g_{ref}}{g_{ref}^\top g_{ref}}\, g_{ref} & \text{otherwise}
      \end{cases}

  with the dot products over the whole pytree (all parameters as one vector), so that
  ``g~ . g_ref >= 0``. A zero reference (an empty buffer) leaves ``g`` unchanged.

  Args:
    grads: the gradient of the loss on the current batch (the data-parallel mean).
    reference_grads: the gradient of the loss on a buffer batch, same structure.

  Returns:
    The projected gradient, same structure and dtypes as ``grads``.

  Examples:
    >>> agem_project({"w": jnp.array([1.0, -1.0])}, {"w": jnp.array([0.0, 1.0])})
    {'w': Array([1., 0.], dtype=float32)}

  References:
    Chaudhry, Ranzato, Rohrbach and Elhoseiny, "Efficient Lifelong Learning with A-GEM",
    ICLR 2019, eq. 11.
  """
  dot = _tree_dot(grads, reference_grads)
  reference_norm = _tree_dot(reference_grads, reference_grads)
  scale = jnp.where(dot < 0, dot / jnp.where(reference_norm > 0, reference_norm, 1.0), 0.0)
  return jax.tree.map(
    lambda g, r: (g - scale * r.astype(jnp.float32)).astype(g.dtype), grads, reference_grads
  )
