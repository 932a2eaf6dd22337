"""Scoring params on every task (`Evaluator`), the model's shared jitted functions, and
each task's validation split (`split_validation`)."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from classp_jax.data import Split, TaskStream, stratified_split
from classp_jax.mesh import DATA, replicate
from classp_jax.methods.losses import mask_logits
from classp_jax.training.steps import make_evaluate, make_train_chunk


class ModelFns(NamedTuple):
  """A model's functions, as the engine and the methods call them.

  Attributes:
    train_apply: ``(params, model_state, inputs, rng) -> (logits, model_state)`` in
      train mode: dropout on, BatchNorm on the batch's statistics (over the ``data``
      axis on several devices) and its running statistics updated.
    eval_apply: ``(params, model_state, inputs) -> logits`` in eval mode.
    bound_eval: ``(model_state, mask, params, inputs) -> logits`` in eval mode, masked
      to ``mask`` unless it is None: with its first two arguments bound in a
      `jax.tree_util.Partial`, the consolidation's ``apply_fn``.
    evaluate: `make_evaluate` of ``eval_apply``, taking ``(params, model_state)``.
    evaluate_train_mode: the same in train mode (the paper's protocol).
  """

  train_apply: Callable
  eval_apply: Callable
  bound_eval: Callable
  evaluate: Callable
  evaluate_train_mode: Callable


def data_parallel_model(model: nn.Module, mesh) -> nn.Module:
  """``model`` with its BatchNorm statistics over the ``data`` axis on a mesh of several
  devices: a model with an ``axis_name`` field left None (`classp_jax.models.ResNet18`)
  is cloned with ``axis_name="data"``; any other model is returned as it is."""
  fields = {f.name for f in dataclasses.fields(model)}
  if mesh.shape[DATA] > 1 and "axis_name" in fields and model.axis_name is None:
    return model.clone(axis_name=DATA)
  return model


@functools.lru_cache(maxsize=16)
def model_fns(model: nn.Module, mesh, eval_batch_size: int) -> ModelFns:
  """A model's apply and evaluation functions, shared by all methods and seeds.

  ``model_state`` is the model's variables other than ``params`` (``{}`` or ``()``
  for a stateless model, which is then called exactly as before model state existed).
  """
  model = data_parallel_model(model, mesh)

  def train_apply(params, model_state, inputs, rng):
    rngs = {"dropout": rng}
    if not model_state:
      return model.apply({"params": params}, inputs, train=True, rngs=rngs), model_state
    logits, updated = model.apply(
      {"params": params, **model_state}, inputs, train=True, rngs=rngs, mutable=list(model_state)
    )
    return logits, {**model_state, **updated}

  def eval_apply(params, model_state, inputs, rng=None):
    del rng
    return model.apply({"params": params, **(model_state or {})}, inputs, train=False)

  def bound_eval(model_state, mask, params, inputs):
    logits = eval_apply(params, model_state, inputs)
    return logits if mask is None else mask_logits(logits, mask)

  return ModelFns(
    train_apply,
    eval_apply,
    bound_eval,
    make_evaluate(lambda variables, x, rng: eval_apply(*variables, x), mesh, eval_batch_size),
    make_evaluate(
      lambda variables, x, rng: train_apply(*variables, x, rng)[0], mesh, eval_batch_size
    ),
  )


def consolidation_apply(fns: ModelFns, model_state: Any, mask=None) -> jax.tree_util.Partial:
  """``apply_fn(params, inputs) -> logits`` in eval mode on ``model_state``, masked to
  ``mask`` (the task-incremental scenario) unless None: a `jax.tree_util.Partial`, so
  the Fisher's compiled code is reused from task to task."""
  return jax.tree_util.Partial(fns.bound_eval, model_state, mask)


@functools.lru_cache(maxsize=32)
def cached_train_chunk(
  fns: ModelFns,
  tx,
  regularizer,
  memory,
  mesh,
  unroll: bool,
  microbatch_size: int | None,
  masked: bool,
  augment: Callable | None = None,
  activations_fn: Callable | None = None,
):
  """The jitted training chunk of a method, shared by runs that differ only in seed."""
  return make_train_chunk(
    fns.train_apply,
    tx,
    regularizer,
    mesh,
    unroll=unroll,
    microbatch_size=microbatch_size,
    memory=memory,
    eval_apply_fn=fns.eval_apply,
    masked=masked,
    augment=augment,
    activations_fn=activations_fn,
  )


def padded_split(split: Split, rows: int) -> tuple[np.ndarray, np.ndarray]:
  """``split``'s inputs and labels with zero rows appended up to ``rows``.

  Tasks rarely have the same number of examples, and a jitted function that
  takes a whole split compiles once per length: padded, every task shares one
  compilation. Only the real rows are ever indexed, so results are unchanged.
  """

  def pad(x):
    if len(x) == rows:  # the longest split: no copy
      return x
    return np.concatenate([x, np.zeros((rows - len(x), *x.shape[1:]), x.dtype)])

  return pad(split.inputs), pad(split.labels)


class Evaluator:
  """Accuracy of params on every task, in eval mode: test, validation and the paper's protocol.

  Args:
    fns: the model's functions.
    tests: every task's test split.
    validations: every task's validation split, or None.
    trains: every task's training split (for the paper's protocol).
    mesh: the data mesh.
  """

  def __init__(
    self,
    fns: ModelFns,
    tests: Sequence[Split],
    validations: Sequence[Split] | None,
    trains: Sequence[Split],
    masks: Sequence[np.ndarray | None],
    mesh,
  ):
    self._fns, self._mesh, self._trains = fns, mesh, trains
    self._masks = [None if m is None else replicate(m, mesh) for m in masks]
    self._tests = self._on_devices(tests)
    self._validations = None if validations is None else self._on_devices(validations)

  def _on_devices(self, splits: Sequence[Split]) -> list[tuple[jax.Array, jax.Array, int]]:
    rows = max(len(s.labels) for s in splits)
    return [(*replicate(padded_split(s, rows), self._mesh), len(s.labels)) for s in splits]

  def _accuracies(self, evaluate: Callable, params, splits, tasks=None, **kwargs) -> list[float]:
    """Each split's accuracy; with ``tasks``, NaN for the tasks not in it (not scored)."""
    return [
      evaluate(params, x, y, mask=m, size=n, **kwargs)
      if tasks is None or j in tasks
      else float("nan")
      for j, ((x, y, n), m) in enumerate(zip(splits, self._masks))
    ]

  def test(self, params, model_state=(), tasks=None) -> list[float]:
    """Test accuracy on every task (eval mode: BatchNorm on ``model_state``'s running
    statistics); with ``tasks``, on those only (NaN elsewhere)."""
    return self._accuracies(self._fns.evaluate, (params, model_state), self._tests, tasks)

  def validation(self, params, model_state=(), tasks=None) -> list[float] | None:
    if self._validations is None:
      return None
    return self._accuracies(self._fns.evaluate, (params, model_state), self._validations, tasks)

  def paper_protocol(self, params, rng, model_state=()) -> list[float]:
    """Training-split accuracy with dropout on, as the authors scored it (BatchNorm, if
    any, on each evaluation batch's statistics; the running ones are not moved)."""
    return self._accuracies(
      self._fns.evaluate_train_mode,
      (params, model_state),
      self._on_devices(self._trains),
      rng=rng,
    )


@jax.jit
def all_finite(tree) -> jax.Array:
  leaves = [
    jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)
  ]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def split_validation(stream: TaskStream, fraction: float) -> tuple[TaskStream, list[Split] | None]:
  """Each task's training split minus a stratified, seeded ``fraction`` held out for validation.

  Seeded by the task's index alone, so every method and seed sees the same
  split. Returns the stream with the smaller training splits and the
  validation splits (None when ``fraction`` is 0).
  """
  if not fraction:
    return stream, None
  tasks, validations = [], []
  for t, task in enumerate(stream.tasks):
    train, validation = stratified_split(
      task.train.inputs, task.train.labels, test_fraction=fraction, seed=t
    )
    tasks.append(dataclasses.replace(task, train=train))
    validations.append(validation)
  return dataclasses.replace(stream, tasks=tuple(tasks)), validations
