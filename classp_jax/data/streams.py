"""Image task streams: sequential datasets, split classes, permuted pixels, and `digits_stream`.

Every stream scales images to float32 in [0, 1]; labels index the stream's shared head.
Text streams live in `classp_jax.data.text` (`text_stream`). `subsample_stream` cuts any
stream's tasks down to size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from classp_jax.data.containers import Dataset, Split, Task, TaskStream
from classp_jax.data.load import load_dataset

LABEL_MODES = ("task", "class")


def scale_images(images: np.ndarray) -> np.ndarray:
  """uint8 images to float32 in [0, 1].

  >>> scale_images(np.array([0, 255], np.uint8))
  array([0., 1.], dtype=float32)
  """
  return np.divide(images, np.float32(255), dtype=np.float32)


def _image_dataset(dataset: Dataset) -> Dataset:
  if dataset.is_text:
    raise ValueError(f"{dataset.name!r} is a text dataset: use text_stream")
  return dataset


def sequential_stream(datasets: Sequence[Dataset], *, name: str | None = None) -> TaskStream:
  """One task per dataset, in order, e.g. MNIST then Fashion-MNIST.

  Each task keeps its dataset's labels 0..k-1; the shared head has the largest k.

  Args:
      datasets: image datasets with the same image shape.
      name: the stream's name; default the names joined by "->".

  Returns:
      The stream.
  """
  shapes = {_image_dataset(d).train.inputs.shape[1:] for d in datasets}
  if len(shapes) > 1:
    raise ValueError(f"the datasets' image shapes differ: {sorted(shapes)}")
  tasks = tuple(
    Task(
      name=d.name,
      train=Split(scale_images(d.train.inputs), d.train.labels),
      test=Split(scale_images(d.test.inputs), d.test.labels),
      num_classes=d.num_classes,
      classes=tuple(range(d.num_classes)),
      class_names=d.class_names,
    )
    for d in datasets
  )
  return TaskStream(
    name=name or "->".join(d.name for d in datasets),
    tasks=tasks,
    num_classes=max(d.num_classes for d in datasets),
    input_shape=shapes.pop(),
  )


def split_stream(
  dataset: Dataset,
  num_tasks: int = 5,
  *,
  label_mode: str = "task",
  class_order: Sequence[int] | None = None,
  name: str | None = None,
) -> TaskStream:
  """One dataset's classes cut into `num_tasks` tasks of equal size, e.g. split-MNIST 5 x 2.

  Args:
      dataset: an image dataset.
      num_tasks: must divide the number of classes.
      label_mode: "task" (task-incremental): labels become 0..k-1 within each task and the
          shared head has k = classes per task outputs; "class" (class-incremental): the
          original labels, and a head of `dataset.num_classes` outputs.
      class_order: the order in which classes are dealt to tasks; default 0, 1, 2, ...
      name: the stream's name; default "split_<dataset>".

  Returns:
      The stream; task names list their original labels, e.g. "mnist:0-1".
  """
  _image_dataset(dataset)
  if label_mode not in LABEL_MODES:
    raise ValueError(f"unknown label_mode {label_mode!r}; choose one of {LABEL_MODES}")
  order = list(class_order) if class_order is not None else list(range(dataset.num_classes))
  if sorted(order) != list(range(dataset.num_classes)):
    raise ValueError(f"class_order must be a permutation of 0..{dataset.num_classes - 1}")
  if num_tasks < 1 or dataset.num_classes % num_tasks:
    raise ValueError(f"{num_tasks} tasks do not divide {dataset.num_classes} classes")
  per_task = dataset.num_classes // num_tasks

  tasks = []
  for t in range(num_tasks):
    group = order[t * per_task : (t + 1) * per_task]
    if label_mode == "task":  # the i-th class of the group becomes label i
      classes = tuple(range(per_task))
      new_label = np.full(dataset.num_classes, -1, np.int32)
      new_label[group] = classes
      class_names = tuple(dataset.class_names[c] for c in group)
    else:
      classes = tuple(sorted(group))
      new_label = np.arange(dataset.num_classes, dtype=np.int32)
      class_names = tuple(dataset.class_names[c] for c in classes)

    def select(split: Split) -> Split:
      keep = np.isin(split.labels, group)
      return Split(scale_images(split.inputs[keep]), new_label[split.labels[keep]])

    tasks.append(
      Task(
        name=f"{dataset.name}:{'-'.join(str(c) for c in group)}",
        train=select(dataset.train),
        test=select(dataset.test),
        num_classes=per_task,
        classes=classes,
        class_names=class_names,
      )
    )
  return TaskStream(
    name=name or f"split_{dataset.name}",
    tasks=tuple(tasks),
    num_classes=per_task if label_mode == "task" else dataset.num_classes,
    input_shape=dataset.train.inputs.shape[1:],
  )


def permuted_stream(
  dataset: Dataset,
  num_tasks: int = 10,
  *,
  seed: int = 0,
  permute_first: bool = False,
  name: str | None = None,
) -> TaskStream:
  """`num_tasks` copies of a dataset, each with its own fixed shuffle of the pixel positions.

  Task 0 keeps the original images unless `permute_first`; task t > 0 uses the t-th
  permutation drawn from `numpy.random.default_rng(seed)`. A permutation moves pixel
  positions (all channels together).

  Args:
      dataset: an image dataset.
      num_tasks: the number of tasks.
      seed: the permutations' seed.
      permute_first: whether task 0 is permuted too.
      name: the stream's name; default "permuted_<dataset>".

  Returns:
      The stream; task names are "<dataset>:perm<t>".
  """
  height, width, channels = _image_dataset(dataset).train.inputs.shape[1:]
  rng = np.random.default_rng(seed)
  train = scale_images(dataset.train.inputs).reshape(-1, height * width, channels)
  test = scale_images(dataset.test.inputs).reshape(-1, height * width, channels)
  tasks = []
  for t in range(num_tasks):
    permutation = rng.permutation(height * width)
    if t == 0 and not permute_first:
      permutation = np.arange(height * width)

    def permute(images: np.ndarray, labels: np.ndarray) -> Split:
      return Split(images[:, permutation].reshape(-1, height, width, channels), labels)

    tasks.append(
      Task(
        name=f"{dataset.name}:perm{t}",
        train=permute(train, dataset.train.labels),
        test=permute(test, dataset.test.labels),
        num_classes=dataset.num_classes,
        classes=tuple(range(dataset.num_classes)),
        class_names=dataset.class_names,
      )
    )
  return TaskStream(
    name=name or f"permuted_{dataset.name}",
    tasks=tuple(tasks),
    num_classes=dataset.num_classes,
    input_shape=(height, width, channels),
  )


def digits_stream(label_mode: str = "task") -> TaskStream:
  """The embedded default: split digits, 5 tasks of 2 digits each (0-1, 2-3, ..., 8-9).

  Real data that needs no download (scikit-learn's 8x8 digits, ~290 training images per
  task), small enough to compare methods in seconds on a CPU, and plain SGD forgets
  earlier tasks on it.

  Args:
      label_mode: "task" (shared 2-way head) or "class" (10-way head); see `split_stream`.

  Returns:
      The stream, input_shape (8, 8, 1).

  >>> stream = digits_stream()
  >>> len(stream), stream.num_classes, stream.input_shape, stream.tasks[1].name
  (5, 2, (8, 8, 1), 'digits:2-3')
  """
  return split_stream(load_dataset("digits"), 5, label_mode=label_mode, name="split_digits")


def subsample_stream(
  stream: TaskStream,
  train_examples: int | None,
  test_examples: int | None = None,
  *,
  seed: int = 0,
) -> TaskStream:
  """Keeps a seeded random subset of each task's examples (for smoke runs and CPU budgets).

  Args:
      stream: any stream, image or text.
      train_examples: training examples kept per task; None keeps them all.
      test_examples: test examples kept per task; None keeps them all.
      seed: the subsets' seed (each task draws its own from it).

  Returns:
      The stream with smaller splits; everything else (head, vocabulary) unchanged.

  >>> small = subsample_stream(digits_stream(), 50, 20)
  >>> [(len(t.train), len(t.test)) for t in small.tasks][:2]
  [(50, 20), (50, 20)]
  """

  def cut(split: Split, size: int | None, rng: np.random.Generator) -> Split:
    if size is None or size >= len(split):
      return split
    keep = np.sort(rng.permutation(len(split))[:size])
    return Split(split.inputs[keep], split.labels[keep])

  tasks = []
  for t, task in enumerate(stream.tasks):
    rng = np.random.default_rng([seed, t])
    train = cut(task.train, train_examples, rng)
    test = cut(task.test, test_examples, rng)
    tasks.append(dataclasses.replace(task, train=train, test=test))
  return dataclasses.replace(stream, tasks=tuple(tasks))
