"""Data-parallel training and evaluation steps, written with `jax.shard_map`.

This is the pmap-style program: every device of a 1-D ``data`` mesh runs the
same per-device step on its slice of the global batch, gradients are averaged
with ``lax.pmean`` over ``data``, and params, optimizer and regularizer state
are replicated. The mesh spans every device of every process, so the same code
runs on one CPU, N devices, a GPU, or a multi-host TPU/GPU slice.

Data stays on the device: a task's inputs and labels are put there once,
replicated, and a step receives only the global batch's *indices*, sharded over
``data``; each device gathers its own examples. A "chunk" runs several steps in
one call (a `lax.scan`, unrolled on CPU where a rolled scan over conv steps is
slow), so the host neither feeds nor waits on each step.

Model state: a model's non-parameter collections (BatchNorm's ``batch_stats``)
are the run state's ``model_state``. Every train-mode forward pass of a step (its
batch, then a memory's replay batches, then A-GEM's reference batch, in call
order) normalises by its own batch's statistics, computed over the global batch
when the model's BatchNorm names the ``data`` axis, and moves the running
statistics, which the step returns; the optimizer and the methods' penalties see
the params alone. With ``augment``, the step's batch and the replay batches are
augmented on the device, keyed by the run's key and the global step.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import Mesh

from classp_jax.diagnostics import capacity_used, update_fraction
from classp_jax.mesh import DATA, P, compiler_options, shard_batch, to_host
from classp_jax.methods import Memory, Regularizer, StepBatch
from classp_jax.methods.losses import agem_project, mask_logits


class TrainState(NamedTuple):
  """Everything a step updates; one fixed pytree structure for a whole run.

  ``model_state`` holds the model's non-parameter collections, e.g.
  ``{"batch_stats": ...}``; empty for a stateless model.
  """

  params: Any
  opt_state: Any
  reg_state: Any
  memory: Any = ()  # a replay buffer or a kept model (`classp_jax.methods.memories`)
  model_state: Any = ()


class _Forward:
  """A step's train-mode forward passes as ``(params, inputs, rng) -> logits``, threading
  the model state (BatchNorm's running statistics) through them in call order.

  Used inside a differentiated function, whose auxiliary output returns the final
  ``model_state``; for a stateless model the state stays empty and nothing changes.
  A memory's ``observe`` runs no forward pass; any it ran would not move the statistics.
  """

  def __init__(self, apply_fn: Callable, model_state: Any):
    self.apply_fn, self.model_state = apply_fn, model_state

  def __call__(self, params, inputs, rng):
    logits, self.model_state = self.apply_fn(params, self.model_state, inputs, rng)
    return logits


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy against integer labels, in float32."""
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels).mean()


def _train_step_fn(
  apply_fn: Callable[..., tuple[jax.Array, Any]],
  tx: optax.GradientTransformation,
  regularizer: Regularizer,
  *,
  microbatch_size: int | None,
  memory: Memory | None,
  eval_apply_fn: Callable[..., jax.Array] | None,
  masked: bool,
  num_devices: int,
  augment: Callable[[jax.Array, jax.Array], jax.Array] | None,
  activations_fn: Callable | None = None,
) -> Callable:
  """The per-device training step of `make_train_chunk` (see its arguments)."""

  def train_step(
    state: TrainState,
    batch: tuple[jax.Array, jax.Array],
    rng: jax.Array,
    label_masks: jax.Array,
    task_index: jax.Array,
  ):
    """One step on this device's slice of the batch: pure in (state, batch, rng)."""
    raw_x, y = batch
    shared_key = jax.random.fold_in(rng, 1 << 30)  # the same on every device: the buffer's
    rng = jax.random.fold_in(rng, lax.axis_index(DATA))  # own dropout per device
    x = raw_x if augment is None else augment(raw_x, jax.random.fold_in(shared_key, 2))

    def step_batch(forward, logits, task_loss, rng):
      return StepBatch(
        forward,
        eval_apply_fn,
        x,
        y,
        logits,
        task_loss,
        label_masks,
        jax.random.fold_in(rng, 1),
        shared_key,
        DATA,
        task_index,
        state.model_state,
        raw_x,
        augment,
      )

    # pmap semantics (check_vma=False below): each device differentiates its own
    # slice, and the gradients are averaged explicitly.
    def objective(params, model_state, x, y, rng):
      forward = _Forward(apply_fn, model_state)
      acts = None
      if activations_fn is None:
        logits = forward(params, x, rng)
      else:  # the same forward pass, with the hidden activations (Continual Backprop's)
        logits, forward.model_state, acts = activations_fn(params, model_state, x, rng)
      scored = mask_logits(logits, label_masks[y]) if masked else logits
      task_loss = cross_entropy(scored, y)
      accuracy = jnp.mean(jnp.argmax(scored, -1) == y, dtype=jnp.float32)
      extra = (
        jnp.zeros((), jnp.float32)
        if memory is None
        else memory.loss(state.memory, params, step_batch(forward, logits, task_loss, rng))
      )
      return task_loss + extra, (task_loss, accuracy, extra, logits, forward.model_state, acts)

    task_loss, accuracy, extra, logits, model_state, acts, grads = _task_gradients(
      objective, state, x, y, rng, microbatch_size
    )
    if num_devices > 1:  # over one device the all-reduce is an identity XLA:CPU still pays for
      task_loss, accuracy, extra, grads = lax.pmean((task_loss, accuracy, extra, grads), DATA)
    if memory is not None and memory.reference_loss is not None:

      def reference(params):
        forward = _Forward(apply_fn, model_state)
        batch = step_batch(forward, logits, task_loss, rng)
        return memory.reference_loss(state.memory, params, batch), forward.model_state

      reference_grads, model_state = jax.grad(reference, has_aux=True)(state.params)
      if num_devices > 1:
        reference_grads = lax.pmean(reference_grads, DATA)
      grads = agem_project(grads, reference_grads)
    params, opt_state, reg_state, updates, penalty = _update(
      tx, regularizer, state, grads, acts, num_devices
    )
    memory_state = state.memory
    if memory is not None:
      memory_state = memory.observe(
        memory_state,
        step_batch(_Forward(apply_fn, model_state), lax.stop_gradient(logits), task_loss, rng),
      )
    metrics = {
      "loss": task_loss,
      "accuracy": accuracy,
      "penalty": penalty + extra,
      "update_fraction": update_fraction(updates).overall,
    }
    capacity = capacity_used(opt_state)
    if capacity is not None:  # a static fact about the optimizer's state structure
      metrics["capacity_used"] = capacity.overall
    return TrainState(params, opt_state, reg_state, memory_state, model_state), metrics

  return train_step


def _update(
  tx: optax.GradientTransformation,
  regularizer: Regularizer,
  state: TrainState,
  task_grads,
  acts,
  num_devices: int,
):
  """The optimizer's step on the task gradients plus the penalty's (with the hidden
  activations, for an optimizer that takes them), and the regularizer's accumulation of
  the task gradients alone.

  Returns:
    ``(params, opt_state, reg_state, updates, penalty)``.
  """
  penalty, penalty_grads = jax.value_and_grad(regularizer.penalty, argnums=1)(
    state.reg_state, state.params
  )
  grads = jax.tree.map(jnp.add, task_grads, penalty_grads)
  if acts is None:
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
  else:  # every device sees the global batch's activations, so the params stay replicated
    if num_devices > 1:
      acts = jax.tree.map(lambda a: lax.all_gather(a, DATA, tiled=True), acts)
    updates, opt_state = tx.update(grads, state.opt_state, state.params, activations=acts)
  params = optax.apply_updates(state.params, updates)
  reg_state = regularizer.accumulate(state.reg_state, state.params, params, task_grads)
  return params, opt_state, reg_state, updates, penalty


def _task_gradients(objective: Callable, state: TrainState, x, y, rng, microbatch_size):
  """``objective``'s values and gradients in one pass or averaged over equal micro-batches.

  Returns:
    ``(task_loss, accuracy, extra, logits, model_state, activations, grads)``; ``logits``
    is None with micro-batches, and ``activations`` (None unless asked for) are the
    micro-batches' concatenated.
  """
  value_and_grads = jax.value_and_grad(objective, has_aux=True)
  if microbatch_size is None or microbatch_size >= y.shape[0]:
    (_, (task_loss, accuracy, extra, logits, model_state, acts)), grads = value_and_grads(
      state.params, state.model_state, x, y, rng
    )
    return task_loss, accuracy, extra, logits, model_state, acts, grads
  if jax.tree.leaves(state.model_state):
    raise ValueError(
      "microbatch_size does not combine with a model with state (BatchNorm): its "
      "statistics would be each micro-batch's, another gradient than one pass's"
    )
  m = microbatch_size
  parts = [
    value_and_grads(
      state.params, state.model_state, x[k : k + m], y[k : k + m], jax.random.fold_in(rng, k)
    )
    for k in range(0, y.shape[0], m)
  ]
  (task_loss, accuracy, extra), grads = jax.tree.map(
    lambda *v: sum(v) / len(parts), *[((a[0], a[1], a[2]), g) for (_, a), g in parts]
  )
  acts = jax.tree.map(lambda *a: jnp.concatenate(a), *[a[5] for (_, a), _ in parts])
  return task_loss, accuracy, extra, None, state.model_state, acts, grads


def make_train_chunk(
  apply_fn: Callable[..., tuple[jax.Array, Any]],
  tx: optax.GradientTransformation,
  regularizer: Regularizer,
  mesh: Mesh,
  *,
  unroll: bool = True,
  microbatch_size: int | None = None,
  memory: Memory | None = None,
  eval_apply_fn: Callable[..., jax.Array] | None = None,
  masked: bool = False,
  augment: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
  activations_fn: Callable | None = None,
) -> Callable[..., tuple[TrainState, dict[str, jax.Array]]]:
  """Builds the jitted, data-parallel function that runs a chunk of steps.

  Args:
    apply_fn: ``apply_fn(params, model_state, inputs, rng) -> (logits,
      model_state)`` in train mode (dropout on, driven by ``rng``; BatchNorm on the
      batch's statistics, returning the updated running ones), e.g.
      `classp_jax.training.evaluation.model_fns`'s ``train_apply``. A stateless
      model returns its (empty) ``model_state`` as it is.
    tx: the method's optimizer.
    regularizer: the method's regularizer.
    mesh: a ``data`` mesh (`data_mesh`).
    unroll: unroll the scan over the chunk's steps (fast on CPU) or keep it
      rolled (one loop body; fewer kernels to compile on GPU/TPU).
    microbatch_size: split each device's batch into micro-batches of this
      size and average their gradients (the same gradient: the micro-batches
      are equal). It bounds activation memory; on XLA:CPU with YNNPACK on
      it also made batch-256 steps of the paper CNN 2.6x faster, but without
      YNNPACK (`CPU_COMPILER_OPTIONS`) one pass is as fast.
      Each micro-batch draws its own dropout. None: one pass. Not with a memory,
      nor with a model with state (BatchNorm).
    memory: the method's replay or distillation memory, or None.
    eval_apply_fn: ``eval_apply_fn(params, model_state, inputs) -> logits`` in
      eval mode (for a memory's kept model, with its own state).
    masked: mask each example's logits to its label's outputs (``label_masks``:
      the task-incremental scenario).
    augment: ``augment(inputs, key) -> inputs``, run on each device's slice of the
      batch (and on replay batches) with a key shared by every device, e.g.
      `classp_jax.training.augment.crop_flip`; None: no augmentation.
    activations_fn: for an optimizer whose ``update`` takes the hidden activations
      (Continual Backprop), ``(params, model_state, inputs, rng) -> (logits,
      model_state, activations)``, the train-mode pass in place of ``apply_fn``
      (`classp_jax.training.plasticity_probe.activations_apply`); the step then calls
      ``tx.update(..., activations=...)`` with the global batch's activations.

  Returns:
    ``chunk(state, inputs, labels, indices, rng, step, label_masks, task_index)
    -> (state, metrics)``.
    ``inputs``/``labels`` are the task's replicated training data,
    ``indices`` int32 ``(K, global_batch)`` sharded over ``data`` (see
    `shard_batch`), ``step`` the global index of the chunk's first step, which
    with ``rng`` seeds each step's dropout and augmentation, ``label_masks`` bool ``(C, C)``
    (`classp_jax.data.label_class_masks`), ``task_index`` the task trained
    (int32). ``state`` is donated. ``metrics``
    holds per-step ``(K,)`` arrays: ``loss`` (task loss), ``accuracy`` (on
    the training batch, dropout on), ``penalty`` (every term added to the task
    loss), ``update_fraction`` and, for CLASSP-style optimizers, ``capacity_used``.
  """
  if memory is not None and microbatch_size is not None:
    raise ValueError("microbatch_size does not combine with a replay or distillation method")
  num_devices = mesh.shape[DATA]

  train_step = _train_step_fn(
    apply_fn,
    tx,
    regularizer,
    microbatch_size=microbatch_size,
    memory=memory,
    eval_apply_fn=eval_apply_fn,
    masked=masked,
    num_devices=num_devices,
    augment=augment,
    activations_fn=activations_fn,
  )

  def per_device_chunk(state, inputs, labels, indices, rng, step, label_masks, task_index):
    def body(state, xs):
      local_indices, step = xs
      batch = (inputs[local_indices], labels[local_indices])
      return train_step(state, batch, jax.random.fold_in(rng, step), label_masks, task_index)

    steps = step + jnp.arange(indices.shape[0])
    if not unroll:
      return lax.scan(body, state, (indices, steps))
    # Unrolled in Python: XLA:CPU runs a step inside a while loop about 20x slower,
    # and lax.scan keeps a while loop for a single step even with unroll=True.
    metrics = []
    for k in range(indices.shape[0]):
      state, step_metrics = body(state, (indices[k], steps[k]))
      metrics.append(step_metrics)
    return state, jax.tree.map(lambda *m: jnp.stack(m), *metrics)

  # check_vma=False: gradients w.r.t. the replicated params stay per-device (as in
  # pmap) instead of being summed by the transpose; measured on XLA:CPU, the pmean
  # or psum over one device cost 14% of a batch-32 CNN step.
  chunk = jax.shard_map(
    per_device_chunk,
    mesh=mesh,
    in_specs=(P(), P(), P(), P(None, DATA), P(), P(), P(), P()),
    out_specs=(P(), P()),
    check_vma=False,
  )
  return jax.jit(chunk, donate_argnums=0, compiler_options=compiler_options(mesh))


def make_evaluate(
  apply_fn: Callable[..., jax.Array], mesh: Mesh, batch_size: int = 1000
) -> Callable[..., float]:
  """Builds ``evaluate(params, inputs, labels, rng=None, mask=None) -> accuracy``.

  The split is processed in batches of ``batch_size`` (rounded up to a multiple
  of the device count), each split over ``data``; the last batch is padded and
  masked. Only the final count crosses to the host.

  Args:
    apply_fn: ``apply_fn(params, inputs, rng)`` -> logits; ``rng`` is None in
      eval mode. Pass a train-mode function and an rng to reproduce the
      paper's protocol of scoring with dropout on. ``params`` is whatever
      ``evaluate`` is given, replicated: the model's functions
      (`classp_jax.training.evaluation.model_fns`) pass ``(params, model_state)``.
    mesh: a ``data`` mesh.
    batch_size: examples per evaluation batch.

  Returns:
    A function of ``(params, inputs, labels, rng=None, mask=None, size=None)``,
    with ``inputs`` and ``labels`` replicated device arrays (as the loop holds
    them), returning the accuracy as a Python float. ``mask``, bool ``(C,)``,
    restricts the predictions to those outputs (the task-incremental
    scenario's task identity). ``size`` scores only the first ``size``
    examples (default all): splits padded to one length share one compiled
    function.
  """
  n = mesh.shape[DATA]
  batch_size = -(-batch_size // n) * n

  def per_device(params, inputs, labels, indices, valid, rng, mask):
    if rng is not None:
      rng = jax.random.fold_in(rng, lax.axis_index(DATA))
    logits = apply_fn(params, inputs[indices], rng)
    if mask is not None:
      logits = mask_logits(logits, mask)
    predictions = jnp.argmax(logits, axis=-1)
    correct = jnp.sum((predictions == labels[indices]) & valid)
    return lax.psum(correct, DATA)

  count = jax.jit(
    jax.shard_map(
      per_device, mesh=mesh, in_specs=(P(), P(), P(), P(DATA), P(DATA), P(), P()), out_specs=P()
    ),
    compiler_options=compiler_options(mesh),
  )

  def evaluate(params, inputs, labels, rng=None, mask=None, size=None) -> float:
    size = labels.shape[0] if size is None else size
    if not 0 < size <= labels.shape[0]:
      raise ValueError(f"cannot evaluate {size} examples of a split of {labels.shape[0]}")
    counts = []  # device scalars; read once at the end, not per batch
    for start in range(0, size, batch_size):
      indices = np.arange(start, start + batch_size)
      valid = indices < size
      batch_rng = None if rng is None else jax.random.fold_in(rng, start)
      counts.append(
        count(
          params,
          inputs,
          labels,
          shard_batch(np.minimum(indices, size - 1), mesh),
          shard_batch(valid, mesh),
          batch_rng,
          mask,
        )
      )
    return sum(int(to_host(c)) for c in counts) / size

  return evaluate
