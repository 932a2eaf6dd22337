"""Experiment logs of a continual run, in the formats people already open: CSV, TensorBoard, W&B.

A logger receives what the loop already brings to the host (so logging adds
no per-step device-to-host transfer): step metrics when the loop flushes them
(at evaluations, checkpoints and task ends) and every evaluation's accuracy
on each task. One logger per (method, seed).

* `CsvLogger`: ``steps.csv`` (step, task, loss, accuracy, penalty,
  update_fraction, capacity_used) and ``evaluations.csv`` (step, task
  trained, split, one column per task). Always available.
* `TensorBoardLogger`: event files written by ``tensorboardX`` (a maintained,
  pure-Python writer of TensorBoard's format; it needs neither TensorFlow nor
  a running TensorBoard), scalars ``train/<metric>`` and
  ``<split>_accuracy/<task>``.
* `WandbLogger`: the same to Weights & Biases, with the run's settings as its
  config; needs ``pip install 'classp-jax[wandb]'``.
"""

from __future__ import annotations

import contextlib
import csv
import os
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, Protocol, Sequence

LOG_FORMATS = ("csv", "tensorboard", "wandb")
STEP_METRICS = ("loss", "accuracy", "penalty", "update_fraction", "capacity_used")


class MetricLogger(Protocol):
  """What the loop calls; every method is called on the host."""

  def start(self, record: Mapping[str, Any]) -> None:
    """Called once with what the run has recorded so far (non-empty on a resume)."""

  def log_steps(
    self, steps: Sequence[int], tasks: Sequence[int], metrics: Mapping[str, Sequence[float | None]]
  ) -> None:
    """Step metrics: ``metrics[name][i]`` is the value at ``steps[i]`` (None: not logged)."""

  def log_evaluation(self, step: int, task: int, split: str, accuracies: Sequence[float]) -> None:
    """Accuracy on every task (``split`` "test" or "validation") after ``step`` steps of ``task``."""

  def close(self) -> None:
    """Flushes and closes."""


@contextlib.contextmanager
def _writing(path: str | os.PathLike) -> Iterator[None]:
  """Names ``path`` in an OSError raised while writing it (a flush's names no file)."""
  try:
    yield
  except OSError as error:
    if error.filename is not None or error.errno is None:
      raise
    raise OSError(error.errno, error.strerror, str(path)) from error


class CsvLogger:
  """``steps.csv`` and ``evaluations.csv`` in ``folder``.

  On a resume the files are rewritten from the run's record, so lines written
  after the checkpoint by the interrupted run do not appear twice, and as an
  uninterrupted run writes them: the random-init baseline (which the record keeps
  first in its test history) is not an evaluation row, and the test and
  validation rows come in the order they were made, by step, test first.
  """

  def __init__(self, folder: str | os.PathLike, task_names: Sequence[str]):
    self.folder = Path(folder)
    self.task_names = list(task_names)
    self._steps = self._evaluations = None

  def start(self, record: Mapping[str, Any]) -> None:
    self.folder.mkdir(parents=True, exist_ok=True)
    self._steps = open(self.folder / "steps.csv", "w", newline="")
    self._evaluations = open(self.folder / "evaluations.csv", "w", newline="")
    csv.writer(self._steps).writerow(["step", "task", *STEP_METRICS])
    csv.writer(self._evaluations).writerow(["step", "task", "split", *self.task_names])
    logs = record.get("logs") or {}
    if logs.get("step"):
      self.log_steps(logs["step"], logs["task"], {m: logs[m] for m in STEP_METRICS})
    rows = []
    for order, (split, history) in enumerate(
      (("test", record.get("history")), ("validation", record.get("validation_history")))
    ):
      history = history or {"step": [], "task": [], "accuracy": []}
      made = zip(history["step"], history["task"], history["accuracy"])
      skip = 1 if split == "test" and record.get("baseline") is not None else 0
      rows += [(step, order, task, split, a) for step, task, a in list(made)[skip:]]
    for step, _, task, split, accuracies in sorted(rows, key=lambda row: row[:2]):
      self.log_evaluation(step, task, split, accuracies)

  def log_steps(self, steps, tasks, metrics) -> None:
    with _writing(self._steps.name):
      writer = csv.writer(self._steps)
      for i, step in enumerate(steps):
        writer.writerow(
          [step, tasks[i], *("" if metrics[m][i] is None else metrics[m][i] for m in STEP_METRICS)]
        )
      self._steps.flush()

  def log_evaluation(self, step, task, split, accuracies) -> None:
    with _writing(self._evaluations.name):
      csv.writer(self._evaluations).writerow([step, task, split, *accuracies])
      self._evaluations.flush()

  def close(self) -> None:
    for file in (self._steps, self._evaluations):
      if file is not None:
        with _writing(file.name):
          file.close()


class TensorBoardLogger:
  """TensorBoard event files in ``folder`` (open with ``tensorboard --logdir``).

  Written in this thread, flushed after each call: tensorboardX's `SummaryWriter`
  writes from a thread of its own, which dies on a write error (a full disk), and the
  next event then blocked the run forever on its full queue. Here the error is raised.
  """

  def __init__(self, folder: str | os.PathLike, task_names: Sequence[str]):
    from tensorboardX.event_file_writer import EventsWriter

    Path(folder).mkdir(parents=True, exist_ok=True)
    self.folder = Path(folder)
    with _writing(self.folder):
      self._events = EventsWriter(os.path.join(folder, "events"))
    self.task_names = list(task_names)

  def _add(self, scalars: Sequence[tuple[str, float, int]]) -> None:
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.summary import scalar

    with _writing(self.folder):
      for tag, value, step in scalars:
        event = Event(wall_time=time.time(), step=step, summary=scalar(tag, value))
        self._events.write_event(event)
      self._events.flush()

  def start(self, record: Mapping[str, Any]) -> None:
    del record  # TensorBoard shows the last value written at a step: a resume just goes on

  def log_steps(self, steps, tasks, metrics) -> None:
    del tasks
    self._add(
      [
        (f"train/{name}", value, step)
        for name in STEP_METRICS
        for step, value in zip(steps, metrics[name])
        if value is not None
      ]
    )

  def log_evaluation(self, step, task, split, accuracies) -> None:
    del task
    self._add(
      [(f"{split}_accuracy/{name}", a, step) for name, a in zip(self.task_names, accuracies)]
      + [(f"{split}_accuracy/mean", sum(accuracies) / len(accuracies), step)]
    )

  def close(self) -> None:
    with _writing(self.folder):
      self._events.close()


class WandbLogger:
  """A Weights & Biases run per (method, seed)."""

  def __init__(
    self,
    folder: str | os.PathLike,
    task_names: Sequence[str],
    *,
    name: str,
    config: Mapping[str, Any],
  ):
    import wandb

    Path(folder).mkdir(parents=True, exist_ok=True)
    self._run = wandb.init(
      project=os.environ.get("WANDB_PROJECT", "classp-jax"),
      name=name,
      dir=str(folder),
      config=dict(config),
      reinit="create_new",
    )
    self.task_names = list(task_names)

  def start(self, record: Mapping[str, Any]) -> None:
    del record

  def log_steps(self, steps, tasks, metrics) -> None:
    del tasks
    for i, step in enumerate(steps):
      values = {f"train/{m}": metrics[m][i] for m in STEP_METRICS if metrics[m][i] is not None}
      self._run.log(values, step=step)

  def log_evaluation(self, step, task, split, accuracies) -> None:
    del task
    self._run.log(
      {f"{split}_accuracy/{n}": a for n, a in zip(self.task_names, accuracies)}, step=step
    )

  def close(self) -> None:
    self._run.finish()


def make_loggers(
  formats: Sequence[str],
  folder: str | os.PathLike,
  task_names: Sequence[str],
  *,
  name: str,
  settings: Mapping[str, Any],
) -> list[MetricLogger]:
  """The loggers for ``formats`` writing under ``folder``.

  W&B is skipped with a warning when ``wandb`` is not installed.

  Raises:
    ValueError: an unknown format.
  """
  unknown = set(formats) - set(LOG_FORMATS)
  if unknown:
    raise ValueError(f"unknown log format(s) {sorted(unknown)}; known: {', '.join(LOG_FORMATS)}")
  folder = Path(folder)
  loggers: list[MetricLogger] = []
  if "csv" in formats:
    loggers.append(CsvLogger(folder, task_names))
  if "tensorboard" in formats:
    loggers.append(TensorBoardLogger(folder / "tensorboard", task_names))
  if "wandb" in formats:
    try:
      loggers.append(WandbLogger(folder, task_names, name=name, config=settings))
    except ImportError:
      warnings.warn(
        "--log wandb: wandb is not installed (pip install 'classp-jax[wandb]'); skipping it",
        stacklevel=2,
      )
  return loggers
