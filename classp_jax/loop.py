"""The continual-training loop: a task stream, in order, for one method and seed.

For each task the loop trains until a number of epochs or a training-loss
target, lets the method's regularizer consolidate (except after the last task,
where it would serve nothing), and evaluates every task's held-out test split
(and, with ``validation_fraction``, its validation split) in eval mode
(dropout off). That gives the accuracy matrix ``R[i, j]`` (accuracy on task
``j`` after training task ``i``) and the metrics of `classp_jax.metrics`. The
optimizer and regularizer state carry over between tasks (unless the method
sets ``reset_optimizer_state``); per-task hyperparameters are injected into the
optimizer state, so nothing is rebuilt or recompiled.

The pieces: `LoopConfig` (how to train), `run_settings` (what a run is, for
checkpoints and results), `Progress` and `RunRecord` (where a run is and what
it has measured; both go into checkpoints), `Evaluator`, and `ContinualRun`,
which trains task by task. `run_continual` is the entry point.

Runs are deterministic for a given seed and backend: the data order of
(task, epoch) and each step's dropout key are functions of the seed alone, so a
run resumed from a checkpoint ends exactly where an uninterrupted run ends.

A run whose loss or params become non-finite stops at the next epoch end,
evaluation or checkpoint (no per-step host sync is spent on it) and is
recorded as diverged, with the first step whose loss was non-finite.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import time
from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from classp_jax.checkpoint import Checkpointer
from classp_jax.continual_losses import mask_logits
from classp_jax.data import (Split, TaskStream, class_mask, joint_stream, label_class_masks,
                             seen_class_mask, stratified_split)
from classp_jax.memories import ExampleSpec, memory_bytes
from classp_jax.methods import Method, per_task, set_hyperparams
from classp_jax.metric_logs import STEP_METRICS, MetricLogger
from classp_jax.metrics import continual_metrics
from classp_jax.parallel import (DATA, TrainState, data_mesh, make_evaluate, make_train_chunk,
                                 replicate, shard_batch, to_host)
from classp_jax.regularizers import ConsolidationContext


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


# Step metrics averaged over each epoch, for the stopping targets and the results.
EPOCH_METRICS = ("loss", "accuracy")


def _is_int(value: Any) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
  return isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and math.isfinite(value)


def _require(ok: bool, name: str, requirement: str, value: Any) -> None:
  if not ok:
    raise ValueError(f"{name} must be {requirement}, got {value!r}")


def _per_task_values(value: Any) -> list[Any]:
  return list(value) if isinstance(value, (tuple, list)) else [value]


def check_config(config: LoopConfig, stream: TaskStream, num_devices: int,
                 method: Method | None = None) -> None:
  """Raises ValueError, before any training, for settings the run cannot honour."""
  if method is not None and method.memory is not None and config.microbatch_size is not None:
    raise ValueError(f"{method.name}: microbatch_size does not combine with a replay or "
                     "distillation method")
  for name in ("batch_size", "max_epochs", "eval_batch_size", "log_every", "steps_per_call"):
    value = getattr(config, name)
    _require(_is_int(value) and value >= 1, name, "a positive integer", value)
  for name in ("evals_per_task", "checkpoint_every"):
    value = getattr(config, name)
    _require(_is_int(value) and value >= 0, name, "a non-negative integer", value)
  for name in ("unroll", "paper_eval"):
    _require(isinstance(getattr(config, name), bool), name, "true or false", getattr(config, name))
  epochs = _per_task_values(config.epochs)
  _require(bool(epochs) and all(_is_int(e) and e >= 1 for e in epochs), "epochs",
           "a positive integer (or one per task)", config.epochs)
  for target in _per_task_values(config.loss_target):
    _require(target is None or (_is_number(target) and target >= 0), "loss_target",
             "None or a non-negative number (or one per task)", config.loss_target)
  for target in _per_task_values(config.accuracy_target):
    if target is not None and not (_is_number(target) and 0 < target <= 1):
      raise ValueError(f"accuracy_target {target} is not a fraction in (0, 1]")
  fraction = config.validation_fraction
  _require(_is_number(fraction) and 0 <= fraction < 1, "validation_fraction",
           "a number in [0, 1)", fraction)
  if config.batch_size % num_devices:
    raise ValueError(
        f"batch_size {config.batch_size} must be a positive multiple of the "
        f"{num_devices} devices")
  for task in stream.tasks:
    kept = len(task.train.labels) - (round(len(task.train.labels) * fraction) if fraction else 0)
    if kept < config.batch_size:
      raise ValueError(
          f"task {task.name!r} has {kept} training examples"
          f"{' after the validation split' if fraction else ''}, fewer than one batch of "
          f"{config.batch_size}")
  per_device = config.batch_size // num_devices
  if config.microbatch_size is not None:
    _require(_is_int(config.microbatch_size) and config.microbatch_size >= 1,
             "microbatch_size", "None or a positive integer", config.microbatch_size)
    if per_device % config.microbatch_size:
      raise ValueError(
          f"microbatch_size {config.microbatch_size} must divide the per-device batch "
          f"of {per_device} examples")


def tree_bytes(tree: Any) -> int:
  """Bytes held by a pytree's array leaves."""
  return sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


# --- what a run is ---------------------------------------------------------------------------

_STREAM_DIGESTS: dict[int, tuple[TaskStream, str]] = {}


def stream_digest(stream: TaskStream) -> str:
  """A digest of every example and label of a stream (cached per stream object)."""
  cached = _STREAM_DIGESTS.get(id(stream))
  if cached is not None and cached[0] is stream:
    return cached[1]
  digest = hashlib.blake2b(digest_size=16)
  for task in stream.tasks:
    for split in (task.train, task.test):
      for array in (split.inputs, split.labels):
        array = np.asarray(array)
        digest.update(f"{task.name}{array.dtype}{array.shape}".encode())
        if array.dtype == object:  # raw text
          digest.update("\0".join(map(str, array.ravel())).encode())
        else:
          digest.update(np.ascontiguousarray(array).tobytes())
  _STREAM_DIGESTS[id(stream)] = (stream, digest.hexdigest())
  return digest.hexdigest()


def _json_ready(value: Any) -> Any:
  return json.loads(json.dumps(value, sort_keys=True, default=str))


def run_settings(model: nn.Module, stream: TaskStream, method: Method, config: LoopConfig,
                 seed: int) -> dict[str, Any]:
  """The full resolved settings of a run, JSON-ready: what its checkpoints and results are of.

  The stream is identified by its tasks, sizes and a digest of its data, the
  model by its repr (its class and every field), the method by its spec with
  every hyperparameter, and the loop by all of `LoopConfig`.
  """
  return _json_ready({
      "stream": {"name": stream.name, "scenario": stream.scenario,
                 "num_classes": stream.num_classes,
                 "input_shape": stream.input_shape,
                 "tasks": [{"name": t.name, "train": len(t.train), "test": len(t.test)}
                           for t in stream.tasks],
                 "digest": stream_digest(stream)},
      "model": repr(model),
      "method": {"name": method.name, **dataclasses.asdict(method.spec)},
      "loop": dataclasses.asdict(config),
      "seed": seed,
  })


def settings_id(settings: dict[str, Any]) -> str:
  """A short digest of a run's settings without its seed: runs over seeds share it."""
  rest = {k: v for k, v in settings.items() if k != "seed"}
  return hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()[:12]


# --- where a run is, and what it has measured ------------------------------------------------

@dataclasses.dataclass
class Progress:
  """Where a run is; saved in checkpoints."""

  task: int = 0
  epoch: int = 0
  step_in_epoch: int = 0
  global_step: int = 0
  task_start_step: int = 0
  epoch_sums: dict[str, float] = dataclasses.field(
      default_factory=lambda: dict.fromkeys(EPOCH_METRICS, 0.0))
  finished: bool = False

  def next_task(self) -> None:
    self.task += 1
    self.epoch = self.step_in_epoch = 0
    self.epoch_sums = dict.fromkeys(EPOCH_METRICS, 0.0)
    self.task_start_step = self.global_step


def _history() -> dict[str, list]:
  return {"step": [], "task": [], "accuracy": []}


@dataclasses.dataclass
class RunRecord:
  """What a run has measured so far; saved in checkpoints, the result at the end."""

  baseline: list[float] | None = None
  rows: list[list[float]] = dataclasses.field(default_factory=list)
  validation_rows: list[list[float]] = dataclasses.field(default_factory=list)
  paper_rows: list[list[float]] = dataclasses.field(default_factory=list)
  steps: list[int] = dataclasses.field(default_factory=list)
  epochs: list[int] = dataclasses.field(default_factory=list)
  epoch_loss: list[float | None] = dataclasses.field(default_factory=list)
  epoch_accuracy: list[float | None] = dataclasses.field(default_factory=list)
  targets_met: list[bool | None] = dataclasses.field(default_factory=list)
  history: dict[str, list] = dataclasses.field(default_factory=_history)
  validation_history: dict[str, list] = dataclasses.field(default_factory=_history)
  logs: dict[str, list] = dataclasses.field(
      default_factory=lambda: {"step": [], "task": [], **{m: [] for m in STEP_METRICS}})
  diverged_at: dict[str, int] | None = None
  wall_time_s: float = 0.0
  cpu_time_s: float = 0.0  # this process's CPU time, all its threads


class _Clock(NamedTuple):
  """When a run (re)started, in wall and process CPU seconds."""

  wall: float
  cpu: float

  @classmethod
  def start(cls) -> _Clock:
    return cls(time.perf_counter(), time.process_time())

  def add_elapsed(self, record: RunRecord) -> RunRecord:
    """``record`` with the time since the start added to its times."""
    return dataclasses.replace(
        record, wall_time_s=record.wall_time_s + time.perf_counter() - self.wall,
        cpu_time_s=record.cpu_time_s + time.process_time() - self.cpu)


def _finite_or_none(value: float) -> float | None:
  return value if math.isfinite(value) else None


# --- evaluation -------------------------------------------------------------------------------

class _ModelFns(NamedTuple):
  train_apply: Callable
  eval_apply: Callable
  evaluate: Callable
  evaluate_train_mode: Callable


@functools.lru_cache(maxsize=16)
def _model_fns(model: nn.Module, mesh, eval_batch_size: int) -> _ModelFns:
  """A model's apply and evaluation functions, shared by all methods and seeds."""

  def train_apply(params, inputs, rng):
    return model.apply({"params": params}, inputs, train=True, rngs={"dropout": rng})

  def eval_apply(params, inputs, rng=None):
    del rng
    return model.apply({"params": params}, inputs, train=False)

  return _ModelFns(train_apply, eval_apply, make_evaluate(eval_apply, mesh, eval_batch_size),
                   make_evaluate(train_apply, mesh, eval_batch_size))


@functools.lru_cache(maxsize=32)
def _train_chunk(model_fns: _ModelFns, tx, regularizer, memory, mesh, unroll: bool,
                 microbatch_size: int | None, masked: bool):
  """The jitted training chunk of a method, shared by runs that differ only in seed."""
  return make_train_chunk(model_fns.train_apply, tx, regularizer, mesh, unroll=unroll,
                          microbatch_size=microbatch_size, memory=memory,
                          eval_apply_fn=model_fns.eval_apply, masked=masked)


def _padded_split(split: Split, rows: int) -> tuple[np.ndarray, np.ndarray]:
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

  def __init__(self, fns: _ModelFns, tests: Sequence[Split], validations: Sequence[Split] | None,
               trains: Sequence[Split], masks: Sequence[np.ndarray | None], mesh):
    self._fns, self._mesh, self._trains = fns, mesh, trains
    self._masks = [None if m is None else replicate(m, mesh) for m in masks]
    self._tests = self._on_devices(tests)
    self._validations = None if validations is None else self._on_devices(validations)

  def _on_devices(self, splits: Sequence[Split]) -> list[tuple[jax.Array, jax.Array, int]]:
    rows = max(len(s.labels) for s in splits)
    return [(*replicate(_padded_split(s, rows), self._mesh), len(s.labels)) for s in splits]

  def _accuracies(self, evaluate: Callable, params, splits, **kwargs) -> list[float]:
    return [evaluate(params, x, y, mask=m, size=n, **kwargs)
            for (x, y, n), m in zip(splits, self._masks)]

  def test(self, params) -> list[float]:
    return self._accuracies(self._fns.evaluate, params, self._tests)

  def validation(self, params) -> list[float] | None:
    if self._validations is None:
      return None
    return self._accuracies(self._fns.evaluate, params, self._validations)

  def paper_protocol(self, params, rng) -> list[float]:
    """Training-split accuracy with dropout on, as the authors scored it."""
    return self._accuracies(self._fns.evaluate_train_mode, params,
                            self._on_devices(self._trains), rng=rng)


@jax.jit
def _all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
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
    train, validation = stratified_split(task.train.inputs, task.train.labels,
                                         test_fraction=fraction, seed=t)
    tasks.append(dataclasses.replace(task, train=train))
    validations.append(validation)
  return dataclasses.replace(stream, tasks=tuple(tasks)), validations


def _masked_apply(apply_fn: Callable, mask: np.ndarray, params, inputs) -> jax.Array:
  """``apply_fn`` with the logits masked to a task's outputs (task-incremental consolidation)."""
  return mask_logits(apply_fn(params, inputs), mask)


# --- the run ----------------------------------------------------------------------------------

class ContinualRun:
  """One method and seed over a stream: set-up, then `run`. See `run_continual`."""

  def __init__(self, model: nn.Module, stream: TaskStream, method: Method, config: LoopConfig, *,
               seed: int, checkpoint_dir: str | None, progress: bool,
               on_step: Callable[[int], None] | None, loggers: Sequence[MetricLogger]):
    self.mesh = data_mesh()
    check_config(config, stream, self.mesh.shape[DATA], method)
    self.settings = run_settings(model, stream, method, config, seed)
    self.stream, validations = split_validation(stream, config.validation_fraction)
    # The upper bound trains on the union of the tasks so far; it is evaluated like the others.
    self.train_stream = joint_stream(self.stream) if method.spec.joint else self.stream
    self.train_rows = max(len(t.train.labels) for t in self.train_stream.tasks)
    self.method, self.config, self.seed = method, config, seed
    self.show_progress, self.on_step, self.loggers = progress, on_step, list(loggers)
    self.fns = _model_fns(model, self.mesh, config.eval_batch_size)
    # Task identity (the task-incremental scenario): logits masked to the task's outputs.
    self.masked = stream.scenario == "task"
    self.train_chunk = _train_chunk(self.fns, method.tx, method.regularizer, method.memory,
                                    self.mesh, config.unroll, config.microbatch_size, self.masked)
    self.label_masks = replicate(label_class_masks(stream), self.mesh)
    (init_key, self.dropout_key, self.consolidate_key,
     self.paper_key) = jax.random.split(jax.random.key(seed), 4)
    tasks = self.stream.tasks
    self.task_masks = [class_mask(stream, t) if self.masked else None for t in range(len(tasks))]
    self.evaluator = Evaluator(self.fns, [t.test for t in tasks], validations,
                               [t.train for t in tasks], self.task_masks, self.mesh)
    dummy = np.zeros((1, *stream.input_shape), tasks[0].train.inputs.dtype)
    # Jitted: run eagerly, init compiles each of its ops apart (seconds before step one).
    params = jax.jit(lambda key, x: model.init({"params": key}, x, train=False)["params"])(
        init_key, dummy)
    memory = () if method.memory is None else method.memory.init(params, ExampleSpec(
        stream.input_shape, tasks[0].train.inputs.dtype, stream.num_classes))
    self.state = replicate(TrainState(params, method.tx.init(params),
                                      method.regularizer.init(params), memory), self.mesh)
    self.progress, self.record = Progress(), RunRecord()
    self.checkpointer = (None if checkpoint_dir is None else
                         Checkpointer(checkpoint_dir, self.settings))
    self.pending_metrics: list[tuple[int, int, dict[str, jax.Array]]] = []
    self.reused_checkpoint = False

  # -- persistence --

  def _restore(self) -> None:
    if self.checkpointer is None:
      return
    state, meta = self.checkpointer.restore(self.state)
    if meta is None:
      return
    self.record = RunRecord(**meta["record"])
    self.progress = Progress(**meta["progress"])
    self.reused_checkpoint = self.progress.finished
    if state is not None:
      self.state = state

  def _save(self, started: _Clock) -> None:
    if self.checkpointer is None:
      return
    record = started.add_elapsed(self.record)
    self.checkpointer.save(self.progress.global_step, self.state, {
        "record": _json_ready(dataclasses.asdict(record)),
        "progress": dataclasses.asdict(self.progress)})

  # -- bookkeeping --

  def _flush_metrics(self) -> int | None:
    """Moves the pending step metrics to the record and the loggers.

    Returns:
      The first step whose loss was non-finite, if any.
    """
    first_bad = None
    logs, kept_steps, kept_tasks = self.record.logs, [], []
    kept = {m: [] for m in STEP_METRICS}
    for first_step, task, metrics in self.pending_metrics:
      metrics = jax.tree.map(to_host, metrics)
      bad = np.flatnonzero(~np.isfinite(metrics["loss"]))
      if first_bad is None and bad.size:
        first_bad = first_step + int(bad[0])
      for i in range(len(metrics["loss"])):
        if (first_step + i) % self.config.log_every:
          continue
        kept_steps.append(first_step + i)
        kept_tasks.append(task)
        for name in STEP_METRICS:
          kept[name].append(_finite_or_none(float(metrics[name][i])) if name in metrics else None)
    self.pending_metrics.clear()
    logs["step"] += kept_steps
    logs["task"] += kept_tasks
    for name in STEP_METRICS:
      logs[name] += kept[name]
    for logger in self.loggers:
      logger.log_steps(kept_steps, kept_tasks, kept)
    return first_bad

  def _evaluate(self, t: int) -> list[float]:
    row = self.evaluator.test(self.state.params)
    for key, value in (("step", self.progress.global_step), ("task", t), ("accuracy", row)):
      self.record.history[key].append(value)
    for logger in self.loggers:
      logger.log_evaluation(self.progress.global_step, t, "test", row)
    return row

  def _diverged(self, epoch_loss: float | None = None) -> bool:
    """Whether the run has diverged (host sync: call at epoch ends, evaluations and saves)."""
    finite = bool(to_host(_all_finite(self.state.params)))
    return not finite or (epoch_loss is not None and not math.isfinite(epoch_loss))

  def _mark_diverged(self, t: int) -> None:
    first_bad = self._flush_metrics()
    self.record.diverged_at = {"task": t, "step": first_bad if first_bad is not None
                               else self.progress.global_step}

  # -- training --

  def _start_task(self, t: int) -> None:
    """Injects the task's hyperparameters (and resets the optimizer state if asked)."""
    state = self.state
    fresh = self.progress.epoch == 0 and self.progress.step_in_epoch == 0
    if self.method.spec.reset_optimizer_state and t > 0 and fresh:
      params = jax.tree.map(to_host, state.params)
      state = state._replace(opt_state=replicate(self.method.tx.init(params), self.mesh))
    self.state = state._replace(opt_state=set_hyperparams(
        state.opt_state, self.method.task_hparams[t], lambda v: replicate(v, self.mesh)))

  def _train_task(self, t: int, started: _Clock) -> dict[str, float] | None:
    """Trains task ``t`` to its end; returns its last epoch's means, or None if it diverged."""
    config, progress, task = self.config, self.progress, self.train_stream.tasks[t]
    inputs, labels = replicate(_padded_split(task.train, self.train_rows), self.mesh)
    num_examples = len(task.train.labels)
    steps_per_epoch = num_examples // config.batch_size
    loss_target, accuracy_target = self._targets(t)
    chasing = loss_target is not None or accuracy_target is not None
    max_epochs = config.max_epochs if chasing else per_task(config.epochs, t)
    eval_steps = set() if chasing else {
        steps_per_epoch * max_epochs * (k + 1) // (config.evals_per_task + 1)
        for k in range(config.evals_per_task)}
    bar = tqdm(total=steps_per_epoch * max_epochs,
               initial=progress.global_step - progress.task_start_step,
               desc=f"{self.method.name} seed {self.seed} task {t + 1}/{len(self.stream.tasks)} "
                    f"({task.name})", disable=not self.show_progress, leave=False, unit="step")
    means = dict(progress.epoch_sums)
    try:
      while progress.epoch < max_epochs:
        order = np.random.default_rng([self.seed, t, progress.epoch]).permutation(num_examples)
        order = order[: steps_per_epoch * config.batch_size].reshape(
            steps_per_epoch, config.batch_size)
        sums = dict(progress.epoch_sums)  # host floats until the first chunk's sums arrive
        while progress.step_in_epoch < steps_per_epoch:
          first = progress.step_in_epoch
          # Chunks stay aligned to multiples of steps_per_call within the epoch, so a
          # resumed run makes exactly the same calls as an uninterrupted one.
          last = min(first - first % config.steps_per_call + config.steps_per_call,
                     steps_per_epoch)
          self.state, metrics = self.train_chunk(
              self.state, inputs, labels, shard_batch(order[first:last], self.mesh),
              self.dropout_key, jnp.int32(progress.global_step), self.label_masks, jnp.int32(t))
          # Summed on one device, without a sync. An eager op on the replicated metrics
          # would launch on every device, and such launches between the chunks'
          # all-reduces made XLA:CPU abort (a collective's rendezvous stuck) on an
          # oversubscribed CPU.
          sums = {k: v + metrics[k].addressable_data(0).sum() for k, v in sums.items()}
          self.pending_metrics.append((progress.global_step, t, metrics))
          progress.global_step += last - first
          progress.step_in_epoch = last
          bar.update(last - first)
          if self.on_step is not None:
            self.on_step(progress.global_step)
          task_step = progress.global_step - progress.task_start_step
          if any(task_step - (last - first) < s <= task_step for s in eval_steps):
            if self._diverged():
              return None
            self._evaluate(t)
          if config.checkpoint_every and (
              progress.global_step // config.checkpoint_every
              > (progress.global_step - (last - first)) // config.checkpoint_every):
            if self._diverged():
              return None
            self._flush_metrics()
            progress.epoch_sums = {k: float(v) for k, v in sums.items()}
            self._save(started)
        means = {k: float(v) / steps_per_epoch for k, v in sums.items()}
        progress.epoch += 1
        progress.step_in_epoch = 0
        progress.epoch_sums = dict.fromkeys(EPOCH_METRICS, 0.0)
        if self._diverged(means["loss"]):
          return None
        if self._targets_met(t, means):
          break
      return means
    finally:
      bar.close()

  def _targets(self, t: int) -> tuple[float | None, float | None]:
    """Task ``t``'s loss and accuracy targets (None: not chased); a method's own loss
    targets replace both."""
    config = self.config
    if self.method.loss_targets is not None:
      return per_task(self.method.loss_targets, t), None
    return per_task(config.loss_target, t), per_task(config.accuracy_target, t)

  def _targets_met(self, t: int, means: dict[str, float]) -> bool | None:
    """Whether an epoch's means meet task ``t``'s targets (the first one met stops it), or
    None when the task chases none."""
    loss_target, accuracy_target = self._targets(t)
    if loss_target is None and accuracy_target is None:
      return None
    return bool((loss_target is not None and means["loss"] <= loss_target)
                or (accuracy_target is not None and means["accuracy"] >= accuracy_target))

  def _consolidate(self, t: int) -> None:
    """The regularizer's and the memory's consolidation at the end of task ``t``."""
    task = self.train_stream.tasks[t]
    inputs, labels = replicate((task.train.inputs, task.train.labels), self.mesh)
    apply_fn = self.fns.eval_apply
    if self.masked:
      mask = self.task_masks[t]
      apply_fn = functools.partial(_masked_apply, apply_fn, mask)
    context = ConsolidationContext(
        apply_fn=apply_fn, inputs=inputs, labels=labels,
        rng=jax.random.fold_in(self.consolidate_key, t), task_index=t,
        seen_classes=seen_class_mask(self.stream, t + 1))
    state = self.state
    reg_state = self.method.regularizer.consolidate(state.reg_state, state.params, context)
    memory = state.memory
    if self.method.memory is not None:
      memory = self.method.memory.consolidate(memory, state.params, context)
    # A copy: consolidation may keep the params themselves (an anchor), and the step
    # donates params and method state, which must not share a buffer.
    self.state = state._replace(reg_state=jax.tree.map(jnp.copy, reg_state),
                                memory=replicate(jax.tree.map(to_host, memory), self.mesh))

  def _end_task(self, t: int, means: dict[str, float]) -> None:
    """Consolidation, the task-end evaluations, and the record of where the task stopped."""
    tasks, progress, record = self.stream.tasks, self.progress, self.record
    self._flush_metrics()
    if t + 1 < len(tasks):  # after the last task it would serve no task (EWC's Fisher is costly)
      self._consolidate(t)
    record.rows.append(self._evaluate(t))
    validation = self.evaluator.validation(self.state.params)
    if validation is not None:
      record.validation_rows.append(validation)
      for key, value in (("step", progress.global_step), ("task", t), ("accuracy", validation)):
        record.validation_history[key].append(value)
      for logger in self.loggers:
        logger.log_evaluation(progress.global_step, t, "validation", validation)
    record.steps.append(progress.global_step - progress.task_start_step)
    record.epochs.append(progress.epoch)
    record.epoch_loss.append(_finite_or_none(means["loss"]))
    record.epoch_accuracy.append(_finite_or_none(means["accuracy"]))
    record.targets_met.append(self._targets_met(t, means))
    if self.config.paper_eval:
      record.paper_rows.append(self.evaluator.paper_protocol(
          self.state.params, jax.random.fold_in(self.paper_key, t)))

  def run(self) -> dict[str, Any]:
    """Trains every remaining task; returns the result (see `run_continual`)."""
    started = _Clock.start()
    self._restore()
    for logger in self.loggers:
      logger.start(dataclasses.asdict(self.record))
    if self.record.baseline is None:
      self.record.baseline = self.evaluator.test(self.state.params)
      for key, value in (("step", 0), ("task", 0), ("accuracy", self.record.baseline)):
        self.record.history[key].append(value)
    while not self.progress.finished:
      t = self.progress.task
      self._start_task(t)
      means = self._train_task(t, started)
      if means is None:
        self._mark_diverged(t)
        self.progress.finished = True
      else:
        self._end_task(t, means)
        self.progress.next_task()
        self.progress.finished = self.progress.task == len(self.stream.tasks)
      self._save(started)
    self.record = started.add_elapsed(self.record)
    return self.result()

  def result(self) -> dict[str, Any]:
    record, state = self.record, self.state
    diverged = record.diverged_at is not None
    buffer_bytes = memory_bytes(state.memory)
    metrics = (dict.fromkeys(("acc", "bwt", "forgetting", "fwt")) if diverged else
               continual_metrics(np.array(record.rows), np.array(record.baseline)))
    result = {
        "method": self.method.name,
        "seed": self.seed,
        "settings": self.settings,
        "settings_id": settings_id(self.settings),
        "diverged": diverged,
        "diverged_at": record.diverged_at,
        "accuracy_matrix": record.rows,
        "baseline": record.baseline,
        **metrics,
        "param_count": int(sum(np.prod(x.shape) for x in jax.tree.leaves(state.params))),
        "scenario": self.stream.scenario,
        "state_bytes": tree_bytes((state.opt_state, state.reg_state, state.memory)) - buffer_bytes,
        "buffer_bytes": buffer_bytes,
        "steps": record.steps,
        "epochs": record.epochs,
        "epoch_loss": record.epoch_loss,
        "epoch_accuracy": record.epoch_accuracy,
        "targets_met": record.targets_met,
        "wall_time_s": record.wall_time_s,
        "cpu_time_s": record.cpu_time_s,
        "history": record.history,
        "logs": record.logs,
        "reused_checkpoint": self.reused_checkpoint,
    }
    if self.config.validation_fraction:
      result["validation_accuracy_matrix"] = record.validation_rows
    if self.config.paper_eval:
      result["paper_protocol"] = {"accuracy_matrix": record.paper_rows, **(
          dict.fromkeys(("acc", "bwt", "forgetting")) if diverged
          else continual_metrics(np.array(record.paper_rows)))}
    return result


def run_continual(
    model: nn.Module,
    stream: TaskStream,
    method: Method,
    config: LoopConfig,
    *,
    seed: int = 0,
    checkpoint_dir: str | None = None,
    progress: bool = True,
    on_step: Callable[[int], None] | None = None,
    loggers: Sequence[MetricLogger] = (),
) -> dict[str, Any]:
  """Trains ``model`` on ``stream``'s tasks in order with ``method``.

  Args:
    model: a Flax Linen module called as ``model(inputs, train=...)``.
    stream: the tasks, in order.
    method: the optimizer and regularizer (`classp_jax.methods.build_method`).
    config: training and evaluation settings.
    seed: seeds the init, the data order and dropout.
    checkpoint_dir: where to checkpoint after each task (and every
      ``config.checkpoint_every`` steps); a run finding a sound checkpoint of
      the same settings there resumes from it (a finished one is reused), and
      one of other settings is an error (`classp_jax.checkpoint`).
    progress: show progress bars.
    on_step: called with the global step count after each jitted call.
    loggers: experiment logs to write (`classp_jax.metric_logs`).

  Returns:
    A JSON-ready dict: ``method``, ``seed``, ``settings`` (`run_settings`) and
    ``settings_id``, ``diverged`` and ``diverged_at`` (the task and first
    non-finite step, or None), ``accuracy_matrix`` (``R[i][j]``; only the
    finished tasks' rows if it diverged), ``baseline`` (random-init accuracy
    per task), the metrics ``acc``, ``bwt``, ``forgetting``, ``fwt`` (None
    if it diverged), ``param_count``, ``state_bytes``, ``steps``, ``epochs``
    and the last epoch's mean training ``epoch_loss`` and ``epoch_accuracy``
    per task, ``targets_met`` (per task, whether it stopped at its loss or
    accuracy target, False at ``max_epochs``, None without a target),
    ``wall_time_s`` and ``cpu_time_s`` (the process's CPU time, all its
    threads; a resumed run adds the saved parts), ``history`` (test accuracy on
    every task over training), ``logs`` (step metrics), ``reused_checkpoint``, and with the
    config's options ``validation_accuracy_matrix`` and ``paper_protocol``
    (training splits with dropout on). Non-finite values are None.
  """
  run = ContinualRun(model, stream, method, config, seed=seed, checkpoint_dir=checkpoint_dir,
                     progress=progress, on_step=on_step, loggers=loggers)
  try:
    return run.run()
  finally:
    for logger in loggers:
      logger.close()
    if run.checkpointer is not None:
      run.checkpointer.close()
