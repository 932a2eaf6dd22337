"""Replay and distillation baselines: ER, DER++, A-GEM and LwF as `Memory`s.

A `Memory` is what a method keeps of past tasks' *data* (a replay buffer) or
*model* (the previous task's params), and how each training step uses it: an
extra loss term inside the gradient (ER, DER++, LwF), a reference loss whose
gradient the step's gradient is projected against (A-GEM), an observation of
every training batch (reservoir insertion), and a consolidation at each task's
end (LwF keeps the model). Its state is part of the run state: jitted,
replicated over the data mesh, checkpointed and resumed exactly.

Every function but ``consolidate`` runs inside the per-device step of
`classp_jax.training.steps.make_train_chunk` (under `jax.shard_map` over the
``data`` axis): ``batch`` is this device's slice, and the buffer functions
gather or slice over ``axis_name`` so that the replicated buffers stay
identical on every device (see `classp_jax.methods.replay`).

Any memory combines with any optimizer: ``classp+er``, ``adam+derpp``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from classp_jax.methods.base import ExampleSpec, Memory, StepBatch
from classp_jax.methods.losses import (
  derpp_terms,
  lwf_distillation,
  mask_logits,
  masked_cross_entropy,
)
from classp_jax.methods.replay import Buffer, buffer_bytes, init_buffer, reservoir_add, sample

Params = Any
MemoryState = Any


def memory_bytes(state: MemoryState) -> int:
  """Bytes of a memory's replay buffer (examples, labels, logits); 0 without one."""
  buffers = [
    x
    for x in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, Buffer))
    if isinstance(x, Buffer)
  ]
  return sum(buffer_bytes(b) for b in buffers)


def _check_buffer_size(buffer_size: int) -> None:
  if not isinstance(buffer_size, (int, np.integer)) or buffer_size < 1:
    raise ValueError(f"buffer_size must be a positive integer, got {buffer_size!r}")


def _replay(state: Buffer, batch: StepBatch) -> tuple[Any, jax.Array]:
  """An equal-sized replay batch (this device's share; valid from the second task on),
  augmented as the step's batch is, and the logit masks of its examples."""
  size = batch.labels.shape[0] * jax.lax.axis_size(batch.axis_name)
  replay = sample(state, batch.key, size, axis_name=batch.axis_name)
  replay = replay._replace(valid=replay.valid & (batch.task_index > 0))
  if batch.augment is not None:
    replay = replay._replace(inputs=batch.augment(replay.inputs, jax.random.fold_in(batch.key, 3)))
  return replay, batch.label_masks[replay.labels]


def _replay_cross_entropy(state: Buffer, params, batch: StepBatch) -> jax.Array:
  """The model's cross-entropy on a replay batch (0 before the second task)."""
  replay, masks = _replay(state, batch)
  logits = mask_logits(batch.apply_fn(params, replay.inputs, batch.rng), masks)
  return masked_cross_entropy(logits, replay.labels, replay.valid)


def _buffer_init(buffer_size: int, store_logits: bool) -> Callable[[Params, ExampleSpec], Buffer]:
  def init(params, spec):
    del params
    return init_buffer(buffer_size, spec.shape, spec.dtype, spec.num_classes, store_logits)

  return init


def _observe(state: Buffer, batch: StepBatch, store_logits: bool) -> Buffer:
  """Offers the step's batch to the buffer: its examples before augmentation (replay
  augments them afresh, as Mammoth's buffers do) and, for DER++, the logits the model
  gave them as it saw them."""
  return reservoir_add(
    state,
    batch.inputs if batch.raw_inputs is None else batch.raw_inputs,
    batch.labels,
    batch.logits.astype(jnp.float32) if store_logits else None,
    jax.random.fold_in(batch.key, 1),
    axis_name=batch.axis_name,
  )


def er(buffer_size: int = 200) -> Memory:
  r"""Experience replay with a reservoir buffer.

  Every training batch is offered to a ``buffer_size`` buffer filled by
  reservoir sampling over the whole stream (every example seen so far is kept
  with the same probability). From the second task on, each batch is mixed
  with an equal-sized batch drawn from it, and the loss is the mean
  cross-entropy over the combined batch:
  :math:`\tfrac12 (\mathrm{CE}_{\text{batch}} + \mathrm{CE}_{\text{replay}})`.

  Examples:
    >>> memory = er(buffer_size=50)
    >>> state = memory.init({}, ExampleSpec((28, 28, 1), np.float32, 10))
    >>> state.inputs.shape, state.inputs.dtype, int(state.num_seen)
    ((50, 28, 28, 1), dtype('uint8'), 0)

  Args:
    buffer_size: examples kept (images as uint8: 200 MNIST images are 0.16 MB).

  Returns:
    A `Memory` whose state is a `classp_jax.methods.replay.Buffer`.

  References:
    Chaudhry et al., 2019, On Tiny Episodic Memories in Continual Learning,
    https://arxiv.org/abs/1902.10486.
  """
  _check_buffer_size(buffer_size)

  def loss(state, params, batch):
    replaying = (batch.task_index > 0) & (state.num_seen > 0)
    # The combined batch's mean CE minus the task loss the step already counts.
    return jnp.where(
      replaying, 0.5 * (_replay_cross_entropy(state, params, batch) - batch.task_loss), 0.0
    )

  return Memory(
    _buffer_init(buffer_size, False),
    loss,
    observe=lambda state, batch: _observe(state, batch, False),
  )


def derpp(buffer_size: int = 200, alpha: float = 0.1, beta: float = 0.5) -> Memory:
  r"""DER++: replay of stored logits and labels.

  The buffer (reservoir sampling) keeps each example's label and the logits the
  model gave it when it was inserted. From the second task on, the loss adds, on a buffer
  batch,
  :math:`\alpha\,\mathrm{MSE}(h(x'), z') + \beta\,\mathrm{CE}(h(x''), y'')`
  (`classp_jax.methods.losses.derpp_terms`; one buffer batch serves both terms).

  Examples:
    >>> state = derpp(buffer_size=10).init({}, ExampleSpec((8,), np.float32, 3))
    >>> state.logits.shape
    (10, 3)

  Args:
    buffer_size: examples kept, with their logits (float32).
    alpha: the logit-matching weight (0.1, the paper's default).
    beta: the cross-entropy weight (0.5).

  Returns:
    A `Memory` whose state is a `classp_jax.methods.replay.Buffer` with logits.

  References:
    Buzzega et al., 2020, Dark Experience for General Continual Learning: a Strong,
    Simple Baseline, NeurIPS, https://arxiv.org/abs/2004.07211.
  """
  _check_buffer_size(buffer_size)
  if alpha < 0 or beta < 0:
    raise ValueError(f"alpha and beta must be non-negative, got {alpha}, {beta}")

  def loss(state, params, batch):
    replay, masks = _replay(state, batch)
    logits = batch.apply_fn(params, replay.inputs, batch.rng)
    return derpp_terms(
      logits,
      replay.logits,
      mask_logits(logits, masks),
      replay.labels,
      replay.valid,
      alpha=alpha,
      beta=beta,
    )

  return Memory(
    _buffer_init(buffer_size, True), loss, observe=lambda state, batch: _observe(state, batch, True)
  )


def agem(buffer_size: int = 200) -> Memory:
  r"""Averaged GEM: the gradient is projected so that it does not raise the loss on the memory.

  From the second task on, a reference gradient :math:`g_{ref}` of the
  cross-entropy on a buffer batch (as large as the training batch) is computed
  at every step; if
  :math:`g^\top g_{ref} < 0` the step uses
  :math:`g - \frac{g^\top g_{ref}}{g_{ref}^\top g_{ref}} g_{ref}`
  (`classp_jax.methods.losses.agem_project`). The buffer is filled by
  reservoir sampling over the whole stream.

  Examples:
    >>> agem(buffer_size=20).reference_loss is not None
    True

  Args:
    buffer_size: examples kept.

  Returns:
    A `Memory` with a reference loss.

  References:
    Chaudhry et al., 2019, Efficient Lifelong Learning with A-GEM, ICLR,
    https://arxiv.org/abs/1812.00420.
  """
  _check_buffer_size(buffer_size)
  return Memory(
    _buffer_init(buffer_size, False),
    reference_loss=_replay_cross_entropy,
    observe=lambda state, batch: _observe(state, batch, False),
  )


class LwfState(NamedTuple):
  """LwF's state: 1x the parameters (and the model's state).

  Attributes:
    old_params: the params at the end of the previous task (float32).
    seen: bool (C,): the head outputs the previous tasks trained.
    active: float32 (): 0 until the first task ends, then 1.
    old_model_state: the model's non-parameter collections at the end of the
      previous task (BatchNorm's running statistics, with which the kept model
      runs in eval mode); empty for a stateless model.
  """

  old_params: Params
  seen: jax.Array
  active: jax.Array
  old_model_state: Any = ()


def lwf(alpha: float = 1.0, temperature: float = 2.0) -> Memory:
  r"""Learning without Forgetting: distillation from the previous task's model.

  At each task's end the model is kept: its params and its BatchNorm
  statistics, if it has any. During later tasks the loss adds
  :math:`\alpha` times the temperature-softened cross-entropy between the
  kept model's outputs (eval mode, on its own statistics) and the current
  model's, on the current inputs, over the outputs the earlier tasks trained
  (`classp_jax.methods.losses.lwf_distillation`, scaled by :math:`T^2`).

  Examples:
    >>> state = lwf().init({"w": jnp.ones(3)}, ExampleSpec((3,), np.float32, 2))
    >>> float(state.active)
    0.0

  Args:
    alpha: the distillation weight.
    temperature: T (Li and Hoiem use 2).

  Returns:
    A `Memory` with `LwfState`.

  References:
    Li and Hoiem, 2017, Learning without Forgetting, IEEE TPAMI,
    https://arxiv.org/abs/1606.09282.
  """
  if alpha < 0 or temperature <= 0:
    raise ValueError(f"alpha must be >= 0 and temperature > 0, got {alpha}, {temperature}")

  def init(params, spec):
    return LwfState(
      jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params),
      jnp.zeros((spec.num_classes,), bool),
      jnp.zeros((), jnp.float32),
      jax.tree.map(jnp.asarray, spec.model_state),
    )

  def loss(state, params, batch):
    old_logits = batch.eval_apply_fn(state.old_params, state.old_model_state, batch.inputs)
    distill = lwf_distillation(batch.logits, old_logits, temperature, state.seen)
    return state.active * alpha * distill

  def consolidate(state, params, ctx):
    seen = ctx.seen_classes if ctx.seen_classes is not None else jnp.ones_like(state.seen)
    return LwfState(
      jax.tree.map(lambda p: jnp.asarray(p, jnp.float32), params),
      jnp.asarray(seen, bool),
      jnp.ones((), jnp.float32),
      jax.tree.map(jnp.asarray, ctx.model_state),
    )

  return Memory(init, loss, consolidate=consolidate)
