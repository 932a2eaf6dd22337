"""The continual-training loop: a task stream, in order, for one method and seed.

For each task the loop trains until a number of epochs or a training-loss
target, lets the method's regularizer consolidate (except after the last task,
where it would serve nothing), and evaluates every task's held-out test split
(and, with ``validation_fraction``, its validation split) in eval mode
(dropout off, BatchNorm on its running statistics). That gives the accuracy matrix ``R[i, j]`` (accuracy on task
``j`` after training task ``i``) and the metrics of `classp_jax.metrics`. The
optimizer and regularizer state carry over between tasks (unless the method
sets ``reset_optimizer_state``); per-task hyperparameters are injected into the
optimizer state, so nothing is rebuilt or recompiled.

The pieces: `LoopConfig` (how to train), `run_settings` (what a run is, for
checkpoints and results), `Progress` and `RunRecord` (where a run is and what
it has measured; both go into checkpoints), `Evaluator`, and `ContinualRun`,
which trains task by task. `run_continual` is the entry point.

Runs are deterministic for a given seed and backend: the data order of
(task, epoch) and each step's dropout and augmentation keys are functions of the
seed and the step alone, so a run resumed from a checkpoint ends exactly where an
uninterrupted run ends. The model's state (BatchNorm's running statistics) is part
of the run state: trained, checkpointed and evaluated with the params.

A run whose loss or params become non-finite stops at the next epoch end,
evaluation or checkpoint (no per-step host sync is spent on it) and is
recorded as diverged, with the first step whose loss was non-finite.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from classp_jax.data import TaskStream, class_mask, joint_stream, label_class_masks, seen_class_mask
from classp_jax.mesh import DATA, data_mesh, replicate, shard_batch, to_host
from classp_jax.methods import (
  ConsolidationContext,
  ExampleSpec,
  Method,
  memory_bytes,
  per_task,
  set_hyperparams,
)
from classp_jax.metrics import continual_metrics
from classp_jax.plasticity import fold_in_seed
from classp_jax.results import RunEntry
from classp_jax.training.augment import crop_flip
from classp_jax.training.checkpoint import Checkpointer
from classp_jax.training.config import EPOCH_METRICS, LoopConfig, check_config
from classp_jax.training.evaluation import (
  Evaluator,
  all_finite,
  cached_train_chunk,
  consolidation_apply,
  model_fns,
  padded_split,
  split_validation,
)
from classp_jax.training.metric_logs import STEP_METRICS, MetricLogger
from classp_jax.training.plasticity_probe import (
  PlasticityProbe,
  activations_apply,
  check_sows_activations,
  new_plasticity_record,
  plasticity_entry,
  record_task_end,
  scored_tasks,
)
from classp_jax.training.settings import (
  json_ready,
  method_model,
  run_settings,
  settings_id,
  tree_bytes,
)
from classp_jax.training.steps import TrainState

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
    default_factory=lambda: dict.fromkeys(EPOCH_METRICS, 0.0)
  )
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
    default_factory=lambda: {"step": [], "task": [], **{m: [] for m in STEP_METRICS}}
  )
  diverged_at: dict[str, int] | None = None
  wall_time_s: float = 0.0
  cpu_time_s: float = 0.0  # this process's CPU time, all its threads
  plasticity: dict[str, list] = dataclasses.field(default_factory=new_plasticity_record)


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
      record,
      wall_time_s=record.wall_time_s + time.perf_counter() - self.wall,
      cpu_time_s=record.cpu_time_s + time.process_time() - self.cpu,
    )


def _finite_or_none(value: float) -> float | None:
  return value if math.isfinite(value) else None


# --- the run ----------------------------------------------------------------------------------


class ContinualRun:
  """One method and seed over a stream: set-up, then `run`. See `run_continual`."""

  def __init__(
    self,
    model: nn.Module,
    stream: TaskStream,
    method: Method,
    config: LoopConfig,
    *,
    seed: int,
    checkpoint_dir: str | None,
    progress: bool,
    on_step: Callable[[int], None] | None,
    loggers: Sequence[MetricLogger],
    settings: dict[str, Any] | None = None,
  ):
    self.mesh = data_mesh()
    if settings is None:  # else planned, and its config checked, already
      check_config(config, stream, self.mesh.shape[DATA], method)
    self.settings = settings or run_settings(model, stream, method, config, seed)
    model = method_model(model, method)  # with the method's dropout (Stable SGD), if any
    if method.activations:
      check_sows_activations(model, stream, method.name)
    self.stream, validations = split_validation(stream, config.validation_fraction)
    # The upper bound trains on the union of the tasks so far; it is evaluated like the others.
    self.train_stream = joint_stream(self.stream) if method.spec.joint else self.stream
    self.train_rows = max(len(t.train.labels) for t in self.train_stream.tasks)
    self.method, self.config, self.seed = method, config, seed
    self.show_progress, self.on_step, self.loggers = progress, on_step, list(loggers)
    self.fns = model_fns(model, self.mesh, config.eval_batch_size)
    # Task identity (the task-incremental scenario): logits masked to the task's outputs.
    self.masked = stream.scenario == "task"
    self.train_chunk = cached_train_chunk(
      self.fns,
      method.tx,
      method.regularizer,
      method.memory,
      self.mesh,
      config.unroll,
      config.microbatch_size,
      self.masked,
      crop_flip if config.augment else None,
      activations_apply(model, self.mesh) if method.activations else None,
    )
    self.label_masks = replicate(label_class_masks(stream), self.mesh)
    (init_key, self.dropout_key, self.consolidate_key, self.paper_key) = jax.random.split(
      jax.random.key(seed), 4
    )
    tasks = self.stream.tasks
    self.task_masks = [class_mask(stream, t) if self.masked else None for t in range(len(tasks))]
    self.evaluator = Evaluator(
      self.fns,
      [t.test for t in tasks],
      validations,
      [t.train for t in tasks],
      self.task_masks,
      self.mesh,
    )
    self.probe = PlasticityProbe(model, self.stream)
    self.state = replicate(self._initial_state(model, init_key), self.mesh)
    self.progress, self.record = Progress(), RunRecord()
    self.checkpointer = (
      None if checkpoint_dir is None else Checkpointer(checkpoint_dir, self.settings)
    )
    self.pending_metrics: list[tuple[int, int, dict[str, jax.Array]]] = []
    self.reused_checkpoint = False
    self.next_params = None  # set by a regularizer's boundary_params at a task's end

  def _initial_state(self, model: nn.Module, init_key: jax.Array) -> TrainState:
    """The run state at init: the params, the model's other collections (its state,
    e.g. BatchNorm's ``batch_stats``; ``{}`` for most models), and the method's state."""
    stream, method = self.stream, self.method
    dtype = stream.tasks[0].train.inputs.dtype
    dummy = np.zeros((1, *stream.input_shape), dtype)
    # Jitted: run eagerly, init compiles each of its ops apart (seconds before step one).
    variables = jax.jit(lambda key, x: model.init({"params": key}, x, train=False))(init_key, dummy)
    params = variables["params"]
    model_state = {k: v for k, v in variables.items() if k != "params"}
    fields = {f.name for f in dataclasses.fields(model)}
    if model_state and self.mesh.shape[DATA] > 1 and "axis_name" not in fields:
      raise ValueError(
        f"{type(model).__name__} has state ({', '.join(model_state)}) but no axis_name "
        f"field: on {self.mesh.shape[DATA]} devices its batch statistics would be each "
        "device's own; give its BatchNorm layers an axis_name attribute (see "
        "classp_jax.models.ResNet18), which the engine sets to the data axis"
      )
    memory = (
      ()
      if method.memory is None
      else method.memory.init(
        params, ExampleSpec(stream.input_shape, dtype, stream.num_classes, model_state)
      )
    )
    # Each run seed draws its own noise (UPGD, shrink and perturb, Continual Backprop).
    opt_state = fold_in_seed(method.tx.init(params), self.seed)
    return TrainState(params, opt_state, method.regularizer.init(params), memory, model_state)

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
    self.checkpointer.save(
      self.progress.global_step,
      self.state,
      {
        "record": json_ready(dataclasses.asdict(record)),
        "progress": dataclasses.asdict(self.progress),
      },
    )

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

  def _scored(self, t: int) -> list[int] | None:
    """The tasks task ``t``'s evaluations score (`LoopConfig.eval_tasks_sample`)."""
    return scored_tasks(len(self.stream.tasks), t, self.config.eval_tasks_sample)

  def _evaluate(self, t: int) -> list[float]:
    row = self.evaluator.test(self.state.params, self.state.model_state, self._scored(t))
    for key, value in (("step", self.progress.global_step), ("task", t), ("accuracy", row)):
      self.record.history[key].append(value)
    for logger in self.loggers:
      logger.log_evaluation(self.progress.global_step, t, "test", row)
    return row

  def _diverged(self, epoch_loss: float | None = None) -> bool:
    """Whether the run has diverged (host sync: call at epoch ends, evaluations and saves)."""
    finite = bool(to_host(all_finite((self.state.params, self.state.model_state))))
    return not finite or (epoch_loss is not None and not math.isfinite(epoch_loss))

  def _mark_diverged(self, t: int) -> None:
    first_bad = self._flush_metrics()
    self.record.diverged_at = {
      "task": t,
      "step": first_bad if first_bad is not None else self.progress.global_step,
    }

  # -- training --

  def _start_task(self, t: int) -> None:
    """Injects the task's hyperparameters (and resets the optimizer state if asked)."""
    state = self.state
    fresh = self.progress.epoch == 0 and self.progress.step_in_epoch == 0
    if self.method.spec.reset_optimizer_state and t > 0 and fresh:
      params = jax.tree.map(to_host, state.params)
      opt_state = fold_in_seed(self.method.tx.init(params), self.seed)
      state = state._replace(opt_state=replicate(opt_state, self.mesh))
    self.state = state._replace(
      opt_state=set_hyperparams(
        state.opt_state, self.method.task_hparams[t], lambda v: replicate(v, self.mesh)
      )
    )

  def _train_task(self, t: int, started: _Clock) -> dict[str, float] | None:
    """Trains task ``t`` to its end; returns its last epoch's means, or None if it diverged."""
    config, progress, task = self.config, self.progress, self.train_stream.tasks[t]
    inputs, labels = replicate(padded_split(task.train, self.train_rows), self.mesh)
    num_examples = len(task.train.labels)
    steps_per_epoch = num_examples // config.batch_size
    loss_target, accuracy_target = self._targets(t)
    chasing = loss_target is not None or accuracy_target is not None
    max_epochs = config.max_epochs if chasing else per_task(config.epochs, t)
    eval_steps = (
      set()
      if chasing
      else {
        steps_per_epoch * max_epochs * (k + 1) // (config.evals_per_task + 1)
        for k in range(config.evals_per_task)
      }
    )
    bar = tqdm(
      total=steps_per_epoch * max_epochs,
      initial=progress.global_step - progress.task_start_step,
      desc=f"{self.method.name} seed {self.seed} task {t + 1}/{len(self.stream.tasks)} "
      f"({task.name})",
      disable=not self.show_progress,
      leave=False,
      unit="step",
    )
    means = dict(progress.epoch_sums)
    try:
      while progress.epoch < max_epochs:
        order = np.random.default_rng([self.seed, t, progress.epoch]).permutation(num_examples)
        order = order[: steps_per_epoch * config.batch_size].reshape(
          steps_per_epoch, config.batch_size
        )
        sums = dict(progress.epoch_sums)  # host floats until the first chunk's sums arrive
        while progress.step_in_epoch < steps_per_epoch:
          first = progress.step_in_epoch
          # Chunks stay aligned to multiples of steps_per_call within the epoch, so a
          # resumed run makes exactly the same calls as an uninterrupted one.
          last = min(first - first % config.steps_per_call + config.steps_per_call, steps_per_epoch)
          self.state, metrics = self.train_chunk(
            self.state,
            inputs,
            labels,
            shard_batch(order[first:last], self.mesh),
            self.dropout_key,
            jnp.int32(progress.global_step),
            self.label_masks,
            jnp.int32(t),
          )
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
            > (progress.global_step - (last - first)) // config.checkpoint_every
          ):
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
    return bool(
      (loss_target is not None and means["loss"] <= loss_target)
      or (accuracy_target is not None and means["accuracy"] >= accuracy_target)
    )

  def _consolidate(self, t: int) -> None:
    """The regularizer's and the memory's consolidation at the end of task ``t``."""
    task = self.train_stream.tasks[t]
    inputs, labels = replicate((task.train.inputs, task.train.labels), self.mesh)
    state = self.state
    # Eval mode on the task's final running statistics (the Fisher's and MAS's importances).
    apply_fn = consolidation_apply(
      self.fns, state.model_state, self.task_masks[t] if self.masked else None
    )
    context = ConsolidationContext(
      apply_fn=apply_fn,
      inputs=inputs,
      labels=labels,
      rng=jax.random.fold_in(self.consolidate_key, t),
      task_index=t,
      seen_classes=seen_class_mask(self.stream, t + 1),
      model_state=state.model_state,
    )
    reg_state = self.method.regularizer.consolidate(state.reg_state, state.params, context)
    boundary = self.method.regularizer.boundary_params
    if boundary is not None:  # the next task's start (shrink and perturb), once this is scored
      self.next_params = boundary(reg_state, state.params, context)
    memory = state.memory
    if self.method.memory is not None:
      memory = self.method.memory.consolidate(memory, state.params, context)
    # A copy: consolidation may keep the params themselves (an anchor), and the step
    # donates params and method state, which must not share a buffer.
    self.state = state._replace(
      reg_state=jax.tree.map(jnp.copy, reg_state),
      memory=replicate(jax.tree.map(to_host, memory), self.mesh),
    )

  def _end_task(self, t: int, means: dict[str, float]) -> None:
    """Consolidation, the task-end evaluations, and the record of where the task stopped."""
    tasks, progress, record = self.stream.tasks, self.progress, self.record
    self._flush_metrics()
    if t + 1 < len(tasks):  # after the last task it would serve no task (EWC's Fisher is costly)
      self._consolidate(t)
    record.rows.append(self._evaluate(t))
    validation = self.evaluator.validation(
      self.state.params, self.state.model_state, self._scored(t)
    )
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
    record_task_end(record.plasticity, self.probe, self.state, means, progress.epoch)
    if self.config.paper_eval:
      record.paper_rows.append(
        self.evaluator.paper_protocol(
          self.state.params, jax.random.fold_in(self.paper_key, t), self.state.model_state
        )
      )
    if self.next_params is not None:
      self.state, self.next_params = self.state._replace(params=self.next_params), None

  def run(self) -> dict[str, Any]:
    """Trains every remaining task; returns the result (see `run_continual`)."""
    started = _Clock.start()
    self._restore()
    for logger in self.loggers:
      logger.start(dataclasses.asdict(self.record))
    if self.record.baseline is None:
      self.record.baseline = self.evaluator.test(self.state.params, self.state.model_state)
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
    """The run's `classp_jax.results.RunEntry`, as written to results.json."""
    record, state = self.record, self.state
    diverged = record.diverged_at is not None
    buffer_bytes = memory_bytes(state.memory)
    model_state_bytes = tree_bytes(state.model_state)
    metrics = (
      dict.fromkeys(("acc", "bwt", "forgetting", "fwt"))
      if diverged
      else continual_metrics(np.array(record.rows), np.array(record.baseline))
    )
    paper = None
    if self.config.paper_eval:
      paper = {
        "accuracy_matrix": record.paper_rows,
        **(
          dict.fromkeys(("acc", "bwt", "forgetting"))
          if diverged
          else continual_metrics(np.array(record.paper_rows))
        ),
      }
    return RunEntry(
      method=self.method.name,
      seed=self.seed,
      settings=self.settings,
      settings_id=settings_id(self.settings),
      diverged=diverged,
      diverged_at=record.diverged_at,
      accuracy_matrix=record.rows,
      baseline=record.baseline,
      **metrics,
      param_count=int(sum(np.prod(x.shape) for x in jax.tree.leaves(state.params))),
      scenario=self.stream.scenario,
      state_bytes=tree_bytes((state.opt_state, state.reg_state, state.memory)) - buffer_bytes,
      buffer_bytes=buffer_bytes,
      model_state_bytes=model_state_bytes or None,  # None: a model without state
      steps=record.steps,
      epochs=record.epochs,
      epoch_loss=record.epoch_loss,
      epoch_accuracy=record.epoch_accuracy,
      targets_met=record.targets_met,
      wall_time_s=record.wall_time_s,
      cpu_time_s=record.cpu_time_s,
      history=record.history,
      logs=record.logs,
      reused_checkpoint=self.reused_checkpoint,
      validation_accuracy_matrix=(
        record.validation_rows if self.config.validation_fraction else None
      ),
      paper_protocol=paper,
      method_info=self.method.info.to_json(),
      **plasticity_entry(record.rows, record.plasticity),
    ).to_json()


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
  settings: dict[str, Any] | None = None,
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
    loggers: experiment logs to write (`classp_jax.training.metric_logs`).
    settings: the run's `run_settings`, when a planner has computed them and
      checked ``config`` (`classp_jax.planning.plan_runs`); None: done here.

  Returns:
    The run's results entry, a JSON-ready dict (`classp_jax.results.RunEntry`
    documents every key).
  """
  run = ContinualRun(
    model,
    stream,
    method,
    config,
    seed=seed,
    checkpoint_dir=checkpoint_dir,
    progress=progress,
    on_step=on_step,
    loggers=loggers,
    settings=settings,
  )
  try:
    return run.run()
  finally:
    for logger in loggers:
      logger.close()
    if run.checkpointer is not None:
      run.checkpointer.close()
