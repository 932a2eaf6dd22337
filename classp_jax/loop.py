"""The continual-training loop: a task stream, in order, for one method and seed.

For each task the loop trains until a number of epochs or a training-loss
target, lets the method's regularizer consolidate (except after the last task,
where it would serve nothing), and evaluates every task's
held-out test split in eval mode (dropout off). That gives the accuracy matrix
``R[i, j]`` (accuracy on task ``j`` after training task ``i``) and the
metrics of `classp_jax.metrics`. The optimizer and regularizer state carry
over between tasks; per-task hyperparameters are injected into the optimizer
state, so nothing is rebuilt or recompiled.

Runs are deterministic for a given seed and backend: the data order of
(task, epoch) and each step's dropout key are functions of the seed alone, so a
run resumed from a checkpoint ends exactly where an uninterrupted run ends.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from tqdm.auto import tqdm

from classp_jax.data import TaskStream
from classp_jax.methods import Method, per_task, set_hyperparams
from classp_jax.regularizers import ConsolidationContext
from classp_jax.metrics import continual_metrics
from classp_jax.parallel import (DATA, TrainState, data_mesh, make_evaluate, make_train_chunk,
                                 replicate, shard_batch, to_host)


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
      within each device's batch (the same gradient; on XLA:CPU much faster
      for large conv-net batches, see `make_train_chunk`); None: one pass.
    checkpoint_every: also checkpoint every this many steps (0: only after
      each task); needs a checkpoint directory.
    paper_eval: also score each task's training split with dropout on, as the
      authors' code did, so published numbers can be compared.
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


# Step metrics averaged over each epoch, for the stopping targets and the results.
EPOCH_METRICS = ("loss", "accuracy")


def tree_bytes(tree: Any) -> int:
  """Bytes held by a pytree's array leaves."""
  return sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def check_config(config: LoopConfig, stream: TaskStream, num_devices: int) -> None:
  """Raises ValueError, before any training, for settings the run cannot honour."""
  if config.batch_size <= 0 or config.batch_size % num_devices:
    raise ValueError(
        f"batch_size {config.batch_size} must be a positive multiple of the "
        f"{num_devices} devices")
  for task in stream.tasks:
    if len(task.train.labels) < config.batch_size:
      raise ValueError(
          f"task {task.name!r} has {len(task.train.labels)} training examples, "
          f"fewer than one batch of {config.batch_size}")
  per_device = config.batch_size // num_devices
  if config.microbatch_size is not None and (
      config.microbatch_size < 1 or per_device % config.microbatch_size):
    raise ValueError(
        f"microbatch_size {config.microbatch_size} must divide the per-device batch "
        f"of {per_device} examples")
  for t in range(len(stream.tasks)):
    target = per_task(config.accuracy_target, t)
    if target is not None and not 0 < target <= 1:
      raise ValueError(f"accuracy_target {target} is not a fraction in (0, 1]")
  if config.steps_per_call < 1 or config.max_epochs < 1 or config.log_every < 1:
    raise ValueError("steps_per_call, max_epochs and log_every must be at least 1")


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
def _train_chunk(model_fns: _ModelFns, tx, regularizer, mesh, unroll: bool,
                 microbatch_size: int | None):
  """The jitted training chunk of a method, shared by runs that differ only in seed."""
  return make_train_chunk(model_fns.train_apply, tx, regularizer, mesh, unroll=unroll,
                          microbatch_size=microbatch_size)


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
) -> dict[str, Any]:
  """Trains ``model`` on ``stream``'s tasks in order with ``method``.

  Args:
    model: a Flax Linen module called as ``model(inputs, train=...)``.
    stream: the tasks, in order.
    method: the optimizer and regularizer (`classp_jax.methods.build_method`).
    config: training and evaluation settings.
    seed: seeds the init, the data order and dropout.
    checkpoint_dir: where to checkpoint after each task (and every
      ``config.checkpoint_every`` steps); a run finding a checkpoint there
      resumes from it.
    progress: show progress bars.
    on_step: called with the global step count after each jitted call.

  Returns:
    A JSON-ready dict: ``method``, ``seed``, ``accuracy_matrix`` (``R[i][j]``),
    ``baseline`` (random-init accuracy per task), the metrics ``acc``,
    ``bwt``, ``forgetting``, ``fwt``, ``param_count``, ``state_bytes``,
    ``steps``, ``epochs`` and the last epoch's mean training ``epoch_loss``
    and ``epoch_accuracy`` per task, ``wall_time_s``, ``history`` (test
    accuracy on every task over training), ``logs`` (step metrics) and, with
    ``config.paper_eval``, ``paper_protocol`` (the same on training splits
    with dropout on).
  """
  start_time = time.perf_counter()
  tasks = stream.tasks
  num_tasks = len(tasks)
  mesh = data_mesh()
  check_config(config, stream, mesh.shape[DATA])
  fns = _model_fns(model, mesh, config.eval_batch_size)
  train_chunk = _train_chunk(fns, method.tx, method.regularizer, mesh, config.unroll,
                             config.microbatch_size)
  init_key, dropout_key, consolidate_key, paper_key = jax.random.split(jax.random.key(seed), 4)
  dummy = np.zeros((1, *stream.input_shape), tasks[0].train.inputs.dtype)
  params = model.init({"params": init_key}, dummy, train=False)["params"]
  state = TrainState(params, method.tx.init(params), method.regularizer.init(params))
  state = replicate(state, mesh)
  tests = [replicate((t.test.inputs, t.test.labels), mesh) for t in tasks]

  record: dict[str, Any] = {
      "rows": [], "paper_rows": [], "steps": [], "epochs": [], "epoch_loss": [],
      "epoch_accuracy": [],
      "history": {"step": [], "task": [], "accuracy": []},
      "logs": {"step": [], "loss": [], "accuracy": [], "penalty": [], "update_fraction": [],
               "capacity_used": []},
  }
  position = {"task": 0, "epoch": 0, "step_in_epoch": 0, "global_step": 0,
              "epoch_sums": dict.fromkeys(EPOCH_METRICS, 0.0), "task_start_step": 0}

  manager = None
  if checkpoint_dir is not None:
    manager = ocp.CheckpointManager(
        checkpoint_dir, options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True))
    latest = manager.latest_step()
    if latest is not None:
      restored = manager.restore(latest, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(state), meta=ocp.args.JsonRestore()))
      state = restored.state
      record, position = restored.meta["record"], restored.meta["position"]

  def save():
    if manager is not None:
      manager.save(position["global_step"], args=ocp.args.Composite(
          state=ocp.args.StandardSave(state),
          meta=ocp.args.JsonSave({"record": record, "position": position})))
      manager.wait_until_finished()

  def evaluate_all(params) -> list[float]:
    return [fns.evaluate(params, x, y) for x, y in tests]

  if "baseline" not in record:
    record["baseline"] = evaluate_all(state.params)
    record["history"]["step"].append(0)
    record["history"]["task"].append(0)
    record["history"]["accuracy"].append(record["baseline"])

  pending_logs: list[tuple[int, dict[str, jax.Array]]] = []

  def flush_logs():
    for first_step, metrics in pending_logs:
      metrics = jax.tree.map(to_host, metrics)
      for i in range(len(metrics["loss"])):
        if (first_step + i) % config.log_every:
          continue
        record["logs"]["step"].append(first_step + i)
        for name in ("loss", "accuracy", "penalty", "update_fraction", "capacity_used"):
          record["logs"][name].append(float(metrics[name][i]) if name in metrics else None)
    pending_logs.clear()

  for t in range(position["task"], num_tasks):
    task = tasks[t]
    state = state._replace(opt_state=set_hyperparams(
        state.opt_state, method.task_hparams[t], lambda v: replicate(v, mesh)))
    inputs, labels = replicate((task.train.inputs, task.train.labels), mesh)
    num_examples = len(task.train.labels)
    steps_per_epoch = num_examples // config.batch_size
    loss_target = per_task(config.loss_target, t)
    accuracy_target = per_task(config.accuracy_target, t)
    chasing = loss_target is not None or accuracy_target is not None
    max_epochs = config.max_epochs if chasing else per_task(config.epochs, t)
    eval_steps = set() if chasing else {
        steps_per_epoch * max_epochs * (k + 1) // (config.evals_per_task + 1)
        for k in range(config.evals_per_task)}
    bar = tqdm(total=steps_per_epoch * max_epochs, initial=position["global_step"] - position["task_start_step"],
               desc=f"{method.name} seed {seed} task {t + 1}/{num_tasks} ({task.name})",
               disable=not progress, leave=False, unit="step")
    while position["epoch"] < max_epochs:
      order = np.random.default_rng([seed, t, position["epoch"]]).permutation(num_examples)
      order = order[: steps_per_epoch * config.batch_size].reshape(steps_per_epoch, config.batch_size)
      sums = {k: jnp.asarray(v, jnp.float32) for k, v in position["epoch_sums"].items()}
      while position["step_in_epoch"] < steps_per_epoch:
        first = position["step_in_epoch"]
        # Chunks stay aligned to multiples of steps_per_call within the epoch, so a
        # resumed run makes exactly the same calls as an uninterrupted one.
        last = min(first - first % config.steps_per_call + config.steps_per_call, steps_per_epoch)
        state, metrics = train_chunk(state, inputs, labels, shard_batch(order[first:last], mesh),
                                     dropout_key, jnp.int32(position["global_step"]))
        sums = {k: v + metrics[k].sum() for k, v in sums.items()}  # on device: no sync
        pending_logs.append((position["global_step"], metrics))
        position["global_step"] += last - first
        position["step_in_epoch"] = last
        bar.update(last - first)
        if on_step is not None:
          on_step(position["global_step"])
        task_step = position["global_step"] - position["task_start_step"]
        if any(task_step - (last - first) < s <= task_step for s in eval_steps):
          record["history"]["step"].append(position["global_step"])
          record["history"]["task"].append(t)
          record["history"]["accuracy"].append(evaluate_all(state.params))
        if config.checkpoint_every and (
            position["global_step"] // config.checkpoint_every
            > (position["global_step"] - (last - first)) // config.checkpoint_every):
          flush_logs()
          position["epoch_sums"] = {k: float(to_host(v)) for k, v in sums.items()}
          save()
      means = {k: float(to_host(v)) / steps_per_epoch for k, v in sums.items()}
      position.update(epoch=position["epoch"] + 1, step_in_epoch=0,
                      epoch_sums=dict.fromkeys(EPOCH_METRICS, 0.0))
      if ((loss_target is not None and means["loss"] <= loss_target)
          or (accuracy_target is not None and means["accuracy"] >= accuracy_target)):
        break
    bar.close()
    flush_logs()

    if t + 1 < num_tasks:  # after the last task it would serve no task (and EWC's Fisher is costly)
      reg_state = method.regularizer.consolidate(state.reg_state, state.params, ConsolidationContext(
          apply_fn=fns.eval_apply, inputs=inputs, labels=labels,
          rng=jax.random.fold_in(consolidate_key, t), task_index=t))
      # A copy: consolidation may keep the params themselves (an anchor), and the step
      # donates params and regularizer state, which must not share a buffer.
      state = state._replace(reg_state=jax.tree.map(jnp.copy, reg_state))
    row = evaluate_all(state.params)
    record["rows"].append(row)
    record["history"]["step"].append(position["global_step"])
    record["history"]["task"].append(t)
    record["history"]["accuracy"].append(row)
    record["steps"].append(position["global_step"] - position["task_start_step"])
    record["epochs"].append(position["epoch"])
    record["epoch_loss"].append(means["loss"])
    record["epoch_accuracy"].append(means["accuracy"])
    if config.paper_eval:
      record["paper_rows"].append([
          fns.evaluate_train_mode(state.params, *replicate((u.train.inputs, u.train.labels), mesh),
                              rng=jax.random.fold_in(paper_key, t))
          for u in tasks])
    position.update(task=t + 1, epoch=0, step_in_epoch=0,
                    epoch_sums=dict.fromkeys(EPOCH_METRICS, 0.0),
                    task_start_step=position["global_step"])
    save()

  result = {
      "method": method.name,
      "seed": seed,
      "accuracy_matrix": record["rows"],
      "baseline": record["baseline"],
      **continual_metrics(np.array(record["rows"]), np.array(record["baseline"])),
      "param_count": int(sum(np.prod(x.shape) for x in jax.tree.leaves(state.params))),
      "state_bytes": tree_bytes((state.opt_state, state.reg_state)),
      "steps": record["steps"],
      "epochs": record["epochs"],
      "epoch_loss": record["epoch_loss"],
      "epoch_accuracy": record["epoch_accuracy"],
      "wall_time_s": time.perf_counter() - start_time,
      "history": record["history"],
      "logs": record["logs"],
  }
  if config.paper_eval:
    result["paper_protocol"] = {"accuracy_matrix": record["paper_rows"],
                                **continual_metrics(np.array(record["paper_rows"]))}
  return result
