"""How each task of a run is trained and evaluated: `LoopConfig`, checked before any
training by `check_config`."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np

from classp_jax.data import TaskStream
from classp_jax.data.stratified import too_small_class
from classp_jax.methods import Method


@dataclasses.dataclass(frozen=True)
class LoopConfig:
  """How each task is trained and evaluated.

  Per-task fields take one value for every task or a tuple with one per task
  (the last value repeats).

  Attributes:
    batch_size: global batch size, split over all devices.
    epochs: epochs per task when no loss target is set.
    loss_target: stop a task once an epoch's mean training loss (the mean of
      its mini-batch losses, dropout on, as the authors measured it) is at or
      below this; None trains for ``epochs``.
    accuracy_target: stop a task once an epoch's mean training accuracy
      (measured the same way) is at or above this. It matches methods at one
      accuracy (the paper's "controlled" comparison): the epoch loss where
      each stopped is its own loss target, which the results record. A task
      with both targets stops at the first one met.
    max_epochs: the most epochs a task trains while chasing a target.
    eval_batch_size: examples per evaluation batch.
    evals_per_task: extra evaluations of all tasks during each task, for the
      accuracy-over-training curves (the end of each task is always evaluated).
    log_every: keep the step metrics of every this many steps.
    steps_per_call: steps run by one jitted call.
    unroll: unroll the steps of a call (fast on XLA:CPU) or keep the scan
      rolled.
    microbatch_size: average the gradients of micro-batches of this size
      within each device's batch (the same gradient; see
      `make_train_chunk`); None: one pass.
    checkpoint_every: also checkpoint every this many steps (0: only after
      each task); needs a checkpoint directory.
    paper_eval: also score each task's training split with dropout on, as the
      authors' code did, so published numbers can be compared.
    validation_fraction: hold out this fraction of each task's training
      data, per class (seeded by the task alone, so every method and seed
      sees the same split), as its validation split; training uses the rest.
      Each run then records ``validation_accuracy_matrix``, on which
      hyperparameters are selected (``classp-jax report --select``). 0: none.
    augment: augment every training batch and replay batch on the device, as the
      CIFAR and Tiny-ImageNet benchmarks do: a random crop of the image padded by
      4 pixels, and a horizontal flip with probability 1/2
      (`classp_jax.training.augment`), keyed by the run's seed and the step.
      Evaluation never augments. Images only.
    eval_tasks_sample: bound each evaluation's cost on a long stream: the end of
      task t (and its mid-task evaluations) scores task t, task t + 1 and a fixed
      sample of this many tasks, drawn once by ``numpy.random.default_rng(0)``
      (`classp_jax.training.plasticity_probe.scored_tasks`), the same for every
      method and seed; the last task scores every task. Unscored entries of the
      accuracy matrices are NaN (null in results.json): ACC, BWT, FWT and the
      learning accuracy stay exact, forgetting takes the best scored accuracy.
      None (the default): every task, every time.
  """

  batch_size: int = 32
  epochs: int | Sequence[int] = 1
  loss_target: float | None | Sequence[float | None] = None
  accuracy_target: float | None | Sequence[float | None] = None
  max_epochs: int = 50
  eval_batch_size: int = 1000
  evals_per_task: int = 4
  log_every: int = 10
  steps_per_call: int = 1
  unroll: bool = True
  microbatch_size: int | None = None
  checkpoint_every: int = 0
  paper_eval: bool = False
  validation_fraction: float = 0.0
  augment: bool = False
  eval_tasks_sample: int | None = None


# Step metrics averaged over each epoch, for the stopping targets and the results.
EPOCH_METRICS = ("loss", "accuracy")


def _is_int(value: Any) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
  return (
    isinstance(value, (int, float, np.number))
    and not isinstance(value, bool)
    and math.isfinite(value)
  )


def _require(ok: bool, name: str, requirement: str, value: Any) -> None:
  if not ok:
    raise ValueError(f"{name} must be {requirement}, got {value!r}")


def _per_task_values(value: Any) -> list[Any]:
  return list(value) if isinstance(value, (tuple, list)) else [value]


def check_config(
  config: LoopConfig, stream: TaskStream, num_devices: int, method: Method | None = None
) -> None:
  """Raises ValueError, before any training, for settings the run cannot honour."""
  if method is not None and method.memory is not None and config.microbatch_size is not None:
    raise ValueError(
      f"{method.name}: microbatch_size does not combine with a replay or distillation method"
    )
  for name in ("batch_size", "max_epochs", "eval_batch_size", "log_every", "steps_per_call"):
    value = getattr(config, name)
    _require(_is_int(value) and value >= 1, name, "a positive integer", value)
  for name in ("evals_per_task", "checkpoint_every"):
    value = getattr(config, name)
    _require(_is_int(value) and value >= 0, name, "a non-negative integer", value)
  for name in ("unroll", "paper_eval", "augment"):
    _require(isinstance(getattr(config, name), bool), name, "true or false", getattr(config, name))
  epochs = _per_task_values(config.epochs)
  _require(
    bool(epochs) and all(_is_int(e) and e >= 1 for e in epochs),
    "epochs",
    "a positive integer (or one per task)",
    config.epochs,
  )
  for target in _per_task_values(config.loss_target):
    _require(
      target is None or (_is_number(target) and target >= 0),
      "loss_target",
      "None or a non-negative number (or one per task)",
      config.loss_target,
    )
  for target in _per_task_values(config.accuracy_target):
    if target is not None and not (_is_number(target) and 0 < target <= 1):
      raise ValueError(f"accuracy_target {target} is not a fraction in (0, 1]")
  sample = config.eval_tasks_sample
  _require(
    sample is None or (_is_int(sample) and sample >= 0),
    "eval_tasks_sample",
    "None or a non-negative integer",
    sample,
  )
  fraction = config.validation_fraction
  _require(
    _is_number(fraction) and 0 <= fraction < 1,
    "validation_fraction",
    "a number in [0, 1)",
    fraction,
  )
  if config.augment and len(stream.input_shape) != 3:
    raise ValueError(
      f"augment crops and flips images (height, width, channels); {stream.name}'s examples "
      f"have shape {tuple(stream.input_shape)}: --set augment=false"
    )
  if config.batch_size % num_devices:
    raise ValueError(
      f"batch_size {config.batch_size} must be a positive multiple of the {num_devices} devices"
    )
  for task in stream.tasks:
    if fraction:
      _check_validation_split(task, fraction)
    kept = len(task.train.labels) - (round(len(task.train.labels) * fraction) if fraction else 0)
    if kept < config.batch_size:
      raise ValueError(
        f"task {task.name!r} has {kept} training examples"
        f"{' after the validation split' if fraction else ''}, fewer than one batch of "
        f"{config.batch_size}"
      )
  per_device = config.batch_size // num_devices
  if config.microbatch_size is not None:
    _require(
      _is_int(config.microbatch_size) and config.microbatch_size >= 1,
      "microbatch_size",
      "None or a positive integer",
      config.microbatch_size,
    )
    if per_device % config.microbatch_size:
      raise ValueError(
        f"microbatch_size {config.microbatch_size} must divide the per-device batch "
        f"of {per_device} examples"
      )


def _check_validation_split(task, fraction: float) -> None:
  """Raises ValueError for a class of ``task`` too small to give examples to both its
  training and its validation split (`classp_jax.data.stratified_split`)."""
  small = too_small_class(task.train.labels, fraction)
  if small is not None:
    raise ValueError(
      f"task {task.name!r}: class {small[0]} has {small[1]} training example(s), too few to "
      f"hold out validation_fraction {fraction} of them: a larger --subsample, or "
      "--set validation_fraction=0"
    )
