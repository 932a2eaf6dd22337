"""The interfaces every continual-learning method is built from, and nothing else.

A method (`classp_jax.methods.registry`) is an optax optimizer plus an optional
`Regularizer` (a penalty on the params, consolidated at each task's end: EWC,
SI, MAS, L2) or `Memory` (past data or the past model, used in every step:
ER, DER++, A-GEM, LwF). What they see of a run is typed here:
`ConsolidationContext` at a task's end, `StepBatch` in a training step, and
`ExampleSpec` to size a buffer. A user's own training loop needs only these
and the factories; the training engine (`classp_jax.training`) calls them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

Params = Any
RegState = Any
MemoryState = Any


@dataclasses.dataclass(frozen=True)
class ConsolidationContext:
  """What a regularizer sees when a task ends.

  Attributes:
    apply_fn: ``apply_fn(params, inputs) -> logits`` in eval mode (dropout off,
      BatchNorm on its running statistics, which it holds: the training engine
      passes a `jax.tree_util.Partial` of them, so jitted code that takes it as an
      argument does not recompile when they change).
    inputs: the finished task's training inputs.
    labels: the finished task's training labels.
    rng: a PRNG key for this consolidation.
    task_index: index of the finished task, from 0.
    seen_classes: bool (C,), the head outputs the tasks so far trained (None: all).
    model_state: the model's non-parameter collections at the task's end
      (BatchNorm's ``{"batch_stats": ...}``; empty for a stateless model), which
      ``apply_fn`` uses: what a memory keeps of the model besides its params (LwF).
  """

  apply_fn: Callable[[Params, jax.Array], jax.Array]
  inputs: jax.Array
  labels: jax.Array
  rng: jax.Array
  task_index: int = 0
  seen_classes: jax.Array | None = None
  model_state: Any = ()


class Regularizer(NamedTuple):
  """A loss penalty with state, updated during and after each task.

  The state keeps one fixed pytree structure for the whole run, so a
  checkpoint restores into ``init``'s structure and the step never recompiles.

  Attributes:
    init: ``init(params) -> state``.
    penalty: ``penalty(state, params) -> scalar`` added to the task loss;
      jittable.
    accumulate: ``accumulate(state, old_params, new_params, grads) -> state``,
      called inside the jitted step after every update with the gradients of
      the task loss alone (no penalty); jittable.
    consolidate: ``consolidate(state, params, ctx) -> state``, called on the
      host after each task with a `ConsolidationContext`.
    boundary_params: None, or ``boundary_params(state, params, ctx) -> params``,
      called on the host after ``consolidate`` (with its new state) at each task
      end but the last: the params the next task starts from (shrink and perturb
      at task boundaries); the optimizer state carries over.
  """

  init: Callable[[Params], RegState]
  penalty: Callable[[RegState, Params], jax.Array]
  accumulate: Callable[[RegState, Params, Params, Any], RegState]
  consolidate: Callable[[RegState, Params, ConsolidationContext], RegState]
  boundary_params: Callable[[RegState, Params, ConsolidationContext], Params] | None = None


def keep_state(state: RegState, *unused_args: Any) -> RegState:
  """An ``accumulate`` or ``consolidate`` that leaves the state as it is."""
  return state


NO_REGULARIZER = Regularizer(
  init=lambda params: (),
  penalty=lambda state, params: jnp.zeros((), jnp.float32),
  accumulate=keep_state,
  consolidate=keep_state,
)


@dataclasses.dataclass(frozen=True)
class ExampleSpec:
  """What a memory needs to know of the stream (and the model) to size its state.

  Attributes:
    shape: one example's shape.
    dtype: the examples' dtype.
    num_classes: the head size.
    model_state: the model's non-parameter collections at init (BatchNorm's
      ``{"batch_stats": ...}``; empty for a stateless model), for a memory that
      keeps a copy of the model (LwF) in a fixed structure.
  """

  shape: tuple[int, ...]
  dtype: Any
  num_classes: int
  model_state: Any = dataclasses.field(default=(), compare=False)


class StepBatch(NamedTuple):
  """What a memory sees of a training step, on one device.

  Attributes:
    apply_fn: ``apply_fn(params, inputs, rng) -> logits`` in train mode, for the
      memory's own forward passes (replay batches): BatchNorm normalises each
      pass by its own batch's statistics, and the engine moves the running
      statistics with every pass, in call order, as PyTorch's train mode does.
    eval_apply_fn: ``eval_apply_fn(params, model_state, inputs) -> logits`` in eval
      mode, for a kept model with its own statistics (LwF's previous model).
    inputs: this device's slice of the batch, as the model saw it (augmented).
    labels: its labels.
    logits: the model's raw (unmasked) logits on it, in train mode.
    task_loss: the step's cross-entropy on it (masked in the task-incremental scenario).
    label_masks: bool (C, C): the head outputs an example of each label may use (all
      True except in the task-incremental scenario).
    rng: this device's dropout key for the memory's own forward passes.
    key: a key shared by every device (buffer sampling and insertion).
    axis_name: the data axis.
    task_index: int32 (), the task being trained (replay starts after the first).
    model_state: the model's non-parameter collections before the step (empty for
      a stateless model).
    raw_inputs: the batch before augmentation, what a buffer stores (None: ``inputs``).
    augment: ``augment(inputs, key) -> inputs``, the step's training augmentation,
      to apply to replay batches (a key shared by every device, e.g. one folded
      from ``key``); None: no augmentation.
  """

  apply_fn: Callable
  eval_apply_fn: Callable
  inputs: jax.Array
  labels: jax.Array
  logits: jax.Array
  task_loss: jax.Array
  label_masks: jax.Array
  rng: jax.Array
  key: jax.Array
  axis_name: str
  task_index: jax.Array
  model_state: Any = ()
  raw_inputs: jax.Array | None = None
  augment: Callable[[jax.Array, jax.Array], jax.Array] | None = None


def _no_loss(state, params, batch):
  del state, params, batch
  return jnp.zeros((), jnp.float32)


def _keep(state, *unused):
  return state


class Memory(NamedTuple):
  """A replay or distillation memory (see the module docstring).

  Attributes:
    init: ``init(params, spec: ExampleSpec) -> state``, a fixed-structure pytree.
    loss: ``loss(state, params, batch: StepBatch) -> scalar`` added to the task loss,
      inside the gradient.
    reference_loss: ``reference_loss(state, params, batch) -> scalar`` or None: the
      step's gradient is projected against this loss's gradient (A-GEM).
    observe: ``observe(state, batch) -> state`` after every step (buffer insertion).
    consolidate: ``consolidate(state, params, ctx) -> state`` on the host at a task end.
  """

  init: Callable[[Params, ExampleSpec], MemoryState]
  loss: Callable[[MemoryState, Params, StepBatch], jax.Array] = _no_loss
  reference_loss: Callable[[MemoryState, Params, StepBatch], jax.Array] | None = None
  observe: Callable[[MemoryState, StepBatch], MemoryState] = _keep
  consolidate: Callable[[MemoryState, Params, ConsolidationContext], MemoryState] = _keep
