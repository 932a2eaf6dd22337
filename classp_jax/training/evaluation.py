"""Scoring params on every task (`Evaluator`), the model's shared jitted functions, and
each task's validation split (`split_validation`)."""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from classp_jax.data import Split, TaskStream, stratified_split
from classp_jax.mesh import replicate
from classp_jax.methods.losses import mask_logits
from classp_jax.training.steps import make_evaluate, make_train_chunk


class ModelFns(NamedTuple):
  train_apply: Callable
  eval_apply: Callable
  evaluate: Callable
  evaluate_train_mode: Callable


@functools.lru_cache(maxsize=16)
def model_fns(model: nn.Module, mesh, eval_batch_size: int) -> ModelFns:
  """A model's apply and evaluation functions, shared by all methods and seeds."""

  def train_apply(params, inputs, rng):
    return model.apply({"params": params}, inputs, train=True, rngs={"dropout": rng})

  def eval_apply(params, inputs, rng=None):
    del rng
    return model.apply({"params": params}, inputs, train=False)

  return ModelFns(
    train_apply,
    eval_apply,
    make_evaluate(eval_apply, mesh, eval_batch_size),
    make_evaluate(train_apply, mesh, eval_batch_size),
  )


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

  def _accuracies(self, evaluate: Callable, params, splits, **kwargs) -> list[float]:
    return [
      evaluate(params, x, y, mask=m, size=n, **kwargs) for (x, y, n), m in zip(splits, self._masks)
    ]

  def test(self, params) -> list[float]:
    return self._accuracies(self._fns.evaluate, params, self._tests)

  def validation(self, params) -> list[float] | None:
    if self._validations is None:
      return None
    return self._accuracies(self._fns.evaluate, params, self._validations)

  def paper_protocol(self, params, rng) -> list[float]:
    """Training-split accuracy with dropout on, as the authors scored it."""
    return self._accuracies(
      self._fns.evaluate_train_mode, params, self._on_devices(self._trains), rng=rng
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


def masked_apply(apply_fn: Callable, mask: np.ndarray, params, inputs) -> jax.Array:
  """``apply_fn`` with the logits masked to a task's outputs (task-incremental consolidation)."""
  return mask_logits(apply_fn(params, inputs), mask)
