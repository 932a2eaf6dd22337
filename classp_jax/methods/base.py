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
    apply_fn: ``apply_fn(params, inputs) -> logits`` in eval mode (dropout off).
    inputs: the finished task's training inputs.
    labels: the finished task's training labels.
    rng: a PRNG key for this consolidation.
    task_index: index of the finished task, from 0.
    seen_classes: bool (C,), the head outputs the tasks so far trained (None: all).
  """

  apply_fn: Callable[[Params, jax.Array], jax.Array]
  inputs: jax.Array
  labels: jax.Array
  rng: jax.Array
  task_index: int = 0
  seen_classes: jax.Array | None = None


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
  """

  init: Callable[[Params], RegState]
  penalty: Callable[[RegState, Params], jax.Array]
  accumulate: Callable[[RegState, Params, Params, Any], RegState]
  consolidate: Callable[[RegState, Params, ConsolidationContext], RegState]


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
  """What a memory needs to know of the stream to size its state."""

  shape: tuple[int, ...]
  dtype: Any
  num_classes: int


class StepBatch(NamedTuple):
  """What a memory sees of a training step, on one device.

  Attributes:
    apply_fn: ``apply_fn(params, inputs, rng) -> logits`` in train mode.
    eval_apply_fn: ``eval_apply_fn(params, inputs) -> logits`` in eval mode.
    inputs: this device's slice of the batch.
    labels: its labels.
    logits: the model's raw (unmasked) logits on it, in train mode.
    task_loss: the step's cross-entropy on it (masked in the task-incremental scenario).
    label_masks: bool (C, C): the head outputs an example of each label may use (all
      True except in the task-incremental scenario).
    rng: this device's dropout key for the memory's own forward passes.
    key: a key shared by every device (buffer sampling and insertion).
    axis_name: the data axis.
    task_index: int32 (), the task being trained (replay starts after the first).
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
