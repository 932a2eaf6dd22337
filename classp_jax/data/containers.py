"""The data contracts: `Split`, `Dataset`, `Task` and `TaskStream` (see docs/architecture.md).

Everything here is plain numpy on the host; the training loop moves arrays to devices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from classp_jax.data.vocabulary import Vocabulary

# The three continual-learning scenarios (van de Ven, Tuytelaars and Tolias 2022).
SCENARIOS = ("task", "domain", "class")


@dataclass(frozen=True)
class Split:
  """Examples and their labels.

  Attributes:
      inputs: images as uint8 (N, H, W, C) in a `Dataset`, float32 in [0, 1] in a `Task`;
          text as raw strings (object array, (N,)) in a `Dataset`, int32 token ids
          (N, max_len) in a `Task`.
      labels: int32 (N,).

  >>> Split(np.zeros((2, 8, 8, 1), np.uint8), np.array([0, 1], np.int32)).labels.shape
  (2,)
  """

  inputs: np.ndarray
  labels: np.ndarray

  def __post_init__(self) -> None:
    if self.labels.ndim != 1 or not np.issubdtype(self.labels.dtype, np.integer):
      raise ValueError(
        f"labels must be a 1-D integer array, got dtype {self.labels.dtype} "
        f"and shape {self.labels.shape}"
      )
    if len(self.inputs) != len(self.labels):
      raise ValueError(
        f"inputs and labels differ in length: {len(self.inputs)} != {len(self.labels)}"
      )

  def __len__(self) -> int:
    return len(self.labels)


def _require_nonempty(owner: str, train: Split, test: Split) -> None:
  for split_name, split in (("train", train), ("test", test)):
    if len(split) == 0:
      raise ValueError(f"{owner}: the {split_name} split is empty")


@dataclass(frozen=True)
class Dataset:
  """A dataset as read from its source, before any preprocessing (what `load_dataset` returns).

  Attributes:
      name: the dataset's name, e.g. "mnist".
      train: the training split (uint8 images or raw strings).
      test: the test split.
      class_names: the name of each label: `class_names[label]`.
      source: where the examples came from: "local", "tfds" or "embedded".
  """

  name: str
  train: Split
  test: Split
  class_names: tuple[str, ...]
  source: str = ""

  def __post_init__(self) -> None:
    _require_nonempty(f"dataset {self.name!r}", self.train, self.test)

  @property
  def num_classes(self) -> int:
    """The number of classes, `len(class_names)`."""
    return len(self.class_names)

  @property
  def is_text(self) -> bool:
    """Whether the inputs are strings (else they are images)."""
    return self.train.inputs.dtype == object


@dataclass(frozen=True)
class Task:
  """A preprocessed, model-ready task.

  Labels always index the stream's shared head: `0 <= label < TaskStream.num_classes`.

  Attributes:
      name: e.g. "mnist:0-1" or "fashion_mnist".
      train: float32 images in [0, 1] (N, H, W, C), or int32 token ids (N, max_len), 0 = <pad>.
      test: as `train`.
      num_classes: how many distinct classes this task has (`len(classes)`); for the size of
          the model's output layer use `TaskStream.num_classes`.
      classes: the head outputs this task's labels use, ascending.
      class_names: the name of each entry of `classes`.
  """

  name: str
  train: Split
  test: Split
  num_classes: int
  classes: tuple[int, ...] = ()
  class_names: tuple[str, ...] = ()

  def __post_init__(self) -> None:
    _require_nonempty(f"task {self.name!r}", self.train, self.test)


@dataclass(frozen=True)
class TaskStream:
  """An ordered sequence of tasks that share one model.

  Attributes:
      name: e.g. "split_mnist".
      tasks: the tasks, in training order.
      num_classes: size of the model's output layer (shared head).
      input_shape: the shape of one example, e.g. (28, 28, 1) or (30,).
      vocab: the vocabulary of text streams; None for image streams.
      scenario: one of `SCENARIOS` (van de Ven, Tuytelaars and Tolias 2022):
          "domain": a shared head over the same labels in every task, no task identity;
          "class": one head over all classes, no task identity;
          "task": task identity at training and test time: a task's predictions use only
          the head outputs in its `Task.classes` (see `classp_jax.data.class_mask`), so
          its tasks' classes must be disjoint and its test labels within them.
  """

  name: str
  tasks: tuple[Task, ...]
  num_classes: int
  input_shape: tuple[int, ...]
  vocab: Vocabulary | None = None
  scenario: str = "domain"

  def __post_init__(self) -> None:
    if not self.tasks:
      raise ValueError(f"task stream {self.name!r} has no tasks")
    if self.scenario not in SCENARIOS:
      raise ValueError(f"unknown scenario {self.scenario!r}; choose one of {SCENARIOS}")
    for task in self.tasks:
      for split in (task.train, task.test):
        if split.inputs.shape[1:] != self.input_shape:
          raise ValueError(
            f"task {task.name!r}: example shape {split.inputs.shape[1:]} != "
            f"the stream's input_shape {self.input_shape}"
          )
        if split.labels.min() < 0 or split.labels.max() >= self.num_classes:
          raise ValueError(f"task {task.name!r}: labels outside [0, {self.num_classes})")
    if self.scenario == "task":
      self._check_task_identity()

  def _check_task_identity(self) -> None:
    """Task-IL masks logits to `Task.classes`: each label must have exactly one owner task."""
    owners = np.zeros(self.num_classes, np.int32)
    for task in self.tasks:
      if not task.classes:
        raise ValueError(f"task {task.name!r}: a task-incremental task needs its classes")
      owners[list(task.classes)] += 1
      if not np.isin(task.test.labels, task.classes).all():
        raise ValueError(f"task {task.name!r}: test labels outside the task's classes")
    if (owners > 1).any():
      shared = np.flatnonzero(owners > 1).tolist()
      raise ValueError(f"task-incremental tasks share classes {shared}")
    for task in self.tasks:  # a joint stream's training splits hold earlier tasks' classes
      if not (owners[task.train.labels] == 1).all():
        raise ValueError(f"task {task.name!r}: training labels no task owns")

  def __len__(self) -> int:
    return len(self.tasks)
