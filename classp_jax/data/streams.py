"""Image task streams: sequential datasets, split classes, permuted pixels, and `digits_stream`.

Every stream scales images to float32 in [0, 1]; labels index the stream's shared head.
Split and permuted streams come in the three scenarios of van de Ven, Tuytelaars and
Tolias (2022), recorded as `TaskStream.scenario`:

- "domain": within-task labels 0..k-1 on a shared k-way head, no task identity;
- "class": the original labels on one head over all classes, no task identity;
- "task": task identity at training and test time. One mechanism: the original labels on a
  head over all classes, with each example's logits masked to its task's classes
  (`class_mask`, `label_class_masks`) in training and evaluation. For a shared trunk this
  equals a head per task (a masked output gets no gradient and is never predicted), keeps one
  model shape for every scenario, and is how Mammoth and Avalanche run task-IL.

`standard_split_stream` cuts a dataset into the field's usual split benchmark (split MNIST,
split CIFAR-10 5 x 2, split CIFAR-100 10 x 10, split Tiny-ImageNet 10 x 20; `SPLIT_BENCHMARKS`).
`joint_stream` makes the joint upper bound of any stream, and `subsample_stream` cuts any
stream's tasks down to size. Text streams live in `classp_jax.data.text` (`text_stream`).

References:
    van de Ven, Tuytelaars and Tolias, "Three types of incremental learning", Nature Machine
    Intelligence 4, 2022.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from classp_jax.data.containers import SCENARIOS, Dataset, Split, Task, TaskStream
from classp_jax.data.load import load_dataset


def _check_scenario(scenario: str) -> None:
  if scenario not in SCENARIOS:
    raise ValueError(f"unknown scenario {scenario!r}; choose one of {SCENARIOS}")


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
  scenario: str = "domain",
  class_order: Sequence[int] | None = None,
  name: str | None = None,
) -> TaskStream:
  """One dataset's classes cut into `num_tasks` tasks of equal size, e.g. split-MNIST 5 x 2.

  Args:
      dataset: an image dataset.
      num_tasks: must divide the number of classes.
      scenario: "domain": labels become 0..k-1 within each task (the i-th class of the task's
          group becomes label i) and the shared head has k = classes per task outputs;
          "class": the original labels and a head of `dataset.num_classes` outputs;
          "task": as "class", and the loop masks each task's logits to its `Task.classes`
          (see the module docstring).
      class_order: the order in which classes are dealt to tasks; default 0, 1, 2, ...
      name: the stream's name; default "split_<dataset>".

  Returns:
      The stream; task names list their original labels, e.g. "mnist:0-1".
  """
  _image_dataset(dataset)
  _check_scenario(scenario)
  order = list(class_order) if class_order is not None else list(range(dataset.num_classes))
  if sorted(order) != list(range(dataset.num_classes)):
    raise ValueError(f"class_order must be a permutation of 0..{dataset.num_classes - 1}")
  if num_tasks < 1 or dataset.num_classes % num_tasks:
    raise ValueError(f"{num_tasks} tasks do not divide {dataset.num_classes} classes")
  per_task = dataset.num_classes // num_tasks

  tasks = []
  for t in range(num_tasks):
    group = order[t * per_task : (t + 1) * per_task]
    if scenario == "domain":
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
    num_classes=per_task if scenario == "domain" else dataset.num_classes,
    input_shape=dataset.train.inputs.shape[1:],
    scenario=scenario,
  )


# The field's split benchmarks: tasks and stream name per dataset. CIFAR-10, CIFAR-100 and
# Tiny-ImageNet as Mammoth's seq-cifar10 (5 x 2), seq-cifar100 (10 x 10) and seq-tinyimg
# (10 x 20).
SPLIT_BENCHMARKS = {
  "digits": (5, "split_digits"),
  "mnist": (5, "split_mnist"),
  "fashion_mnist": (5, "split_fashion_mnist"),
  "cifar10": (5, "split_cifar10"),
  "cifar100": (10, "split_cifar100"),
  "tiny_imagenet": (10, "split_tinyimagenet"),
}


def standard_split_stream(
  dataset: Dataset, scenario: str = "domain", *, class_order: Sequence[int] | None = None
) -> TaskStream:
  """The field's split benchmark of a dataset: `split_stream` with its tasks and name.

  Args:
      dataset: one of the datasets of `SPLIT_BENCHMARKS`, e.g. `load_dataset("cifar10")`.
      scenario: "domain", "class" or "task" (see `split_stream`).
      class_order: the order in which classes are dealt to tasks; default 0, 1, 2, ...

  Returns:
      The stream, e.g. "split_cifar10": 5 tasks of 2 classes.

  >>> stream = standard_split_stream(load_dataset("digits"), "class")
  >>> stream.name, len(stream), stream.num_classes, stream.tasks[4].classes
  ('split_digits', 5, 10, (8, 9))
  """
  if dataset.name not in SPLIT_BENCHMARKS:
    raise ValueError(
      f"no standard split of {dataset.name!r} (known: {', '.join(SPLIT_BENCHMARKS)}); "
      "use split_stream(dataset, num_tasks)"
    )
  num_tasks, name = SPLIT_BENCHMARKS[dataset.name]
  return split_stream(dataset, num_tasks, scenario=scenario, class_order=class_order, name=name)


def permuted_stream(
  dataset: Dataset,
  num_tasks: int = 10,
  *,
  seed: int = 0,
  permute_first: bool = False,
  scenario: str = "domain",
  name: str | None = None,
) -> TaskStream:
  """`num_tasks` copies of a dataset, each with its own fixed shuffle of the pixel positions.

  Task 0 keeps the original images unless `permute_first`; task t > 0 uses the t-th
  permutation drawn from `numpy.random.default_rng(seed)`. A permutation moves pixel
  positions (all channels together).

  Args:
      dataset: an image dataset with k classes.
      num_tasks: the number of tasks T.
      seed: the permutations' seed.
      permute_first: whether task 0 is permuted too.
      scenario: "domain" (the usual permuted benchmark): every task keeps labels 0..k-1 on a
          shared k-way head; "task": task t's labels are offset by t * k on a head of k * T
          outputs, and `Task.classes` is its block t*k..(t+1)*k-1, so masking the logits to it
          gives each task its own head; "class": the same offset labels without masking.
      name: the stream's name; default "permuted_<dataset>".

  Returns:
      The stream; task names are "<dataset>:perm<t>".
  """
  height, width, channels = _image_dataset(dataset).train.inputs.shape[1:]
  _check_scenario(scenario)
  k = dataset.num_classes
  rng = np.random.default_rng(seed)
  train = scale_images(dataset.train.inputs).reshape(-1, height * width, channels)
  test = scale_images(dataset.test.inputs).reshape(-1, height * width, channels)
  tasks = []
  for t in range(num_tasks):
    permutation = rng.permutation(height * width)
    if t == 0 and not permute_first:
      permutation = np.arange(height * width)

    offset = 0 if scenario == "domain" else t * k

    def permute(images: np.ndarray, labels: np.ndarray) -> Split:
      return Split(images[:, permutation].reshape(-1, height, width, channels), labels + offset)

    tasks.append(
      Task(
        name=f"{dataset.name}:perm{t}",
        train=permute(train, dataset.train.labels),
        test=permute(test, dataset.test.labels),
        num_classes=k,
        classes=tuple(range(offset, offset + k)),
        class_names=dataset.class_names,
      )
    )
  return TaskStream(
    name=name or f"permuted_{dataset.name}",
    tasks=tuple(tasks),
    num_classes=k if scenario == "domain" else k * num_tasks,
    input_shape=(height, width, channels),
    scenario=scenario,
  )


def digits_stream(scenario: str = "domain") -> TaskStream:
  """The embedded default: split digits, 5 tasks of 2 digits each (0-1, 2-3, ..., 8-9).

  Real data that needs no download (scikit-learn's 8x8 digits, ~290 training images per
  task), small enough to compare methods in seconds on a CPU, and plain SGD forgets
  earlier tasks on it.

  Args:
      scenario: "domain" (shared 2-way head), "class" (10-way head) or "task" (10-way head,
          logits masked to each task's two digits); see `split_stream`.

  Returns:
      The stream, input_shape (8, 8, 1).

  >>> stream = digits_stream()
  >>> len(stream), stream.num_classes, stream.input_shape, stream.tasks[1].name
  (5, 2, (8, 8, 1), 'digits:2-3')
  >>> stream = digits_stream("task")
  >>> stream.num_classes, stream.scenario, stream.tasks[1].classes
  (10, 'task', (2, 3))
  """
  return standard_split_stream(load_dataset("digits"), scenario)


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


def joint_stream(stream: TaskStream) -> TaskStream:
  """The joint-training upper bound: task t trains on the union of tasks 0..t.

  This is *incremental* joint training: after task t the model has trained on every example
  of tasks 0..t together, so its accuracy matrix is evaluated exactly like the others' (task
  t's row after training task t). Training costs grow with t (the last task trains on the
  whole stream). Test splits, `Task.classes` (the task's identity, which task-IL masking
  uses) and everything else are unchanged; only the training splits grow, so a training
  batch mixes tasks and, in the task-incremental scenario, each example takes its own task's
  mask (`label_class_masks`).

  Args:
      stream: any stream, image or text, in any scenario.

  Returns:
      The stream named "joint_<name>".

  >>> stream = subsample_stream(digits_stream(), 50, 20)
  >>> [len(t.train) for t in joint_stream(stream).tasks]
  [50, 100, 150, 200, 250]
  """
  tasks = []
  for t, task in enumerate(stream.tasks):
    seen = stream.tasks[: t + 1]
    train = Split(
      np.concatenate([u.train.inputs for u in seen]),
      np.concatenate([u.train.labels for u in seen]),
    )
    tasks.append(dataclasses.replace(task, train=train))
  return dataclasses.replace(stream, name=f"joint_{stream.name}", tasks=tuple(tasks))


def class_mask(stream: TaskStream, task_index: int) -> np.ndarray:
  """The head outputs that the predictions for task `task_index` may use.

  In the task-incremental scenario these are the task's `Task.classes` (the task's identity
  is known in training and evaluation); in the domain and class scenarios, every output. The
  loop masks a task's logits with it (`classp_jax.methods.losses.mask_logits`) for the
  training loss and for evaluating that task's test split.

  Args:
      stream: the stream.
      task_index: the task.

  Returns:
      bool (stream.num_classes,).

  >>> class_mask(digits_stream("task"), 1).nonzero()[0].tolist()
  [2, 3]
  >>> bool(class_mask(digits_stream("class"), 1).all())
  True
  """
  if stream.scenario != "task":
    return np.ones(stream.num_classes, bool)
  mask = np.zeros(stream.num_classes, bool)
  mask[list(stream.tasks[task_index].classes)] = True
  return mask


def label_class_masks(stream: TaskStream) -> np.ndarray:
  """`class_mask` of the task each label belongs to, as a table indexed by label.

  For batches that mix tasks (replayed examples, the joint stream), where the loop knows an
  example's label but not its task: the mask of an example with label y is
  `label_class_masks(stream)[y]`. Task-incremental tasks own disjoint classes
  (`TaskStream` checks), so the label names the task. All True outside task-IL.

  Args:
      stream: the stream.

  Returns:
      bool (stream.num_classes, stream.num_classes); row y is the mask for label y.

  >>> label_class_masks(digits_stream("task"))[7].nonzero()[0].tolist()
  [6, 7]
  """
  table = np.ones((stream.num_classes, stream.num_classes), bool)
  if stream.scenario == "task":
    for t, task in enumerate(stream.tasks):
      table[list(task.classes)] = class_mask(stream, t)
  return table


def seen_class_mask(stream: TaskStream, num_tasks: int) -> np.ndarray:
  """The head outputs used by the first `num_tasks` tasks (the union of their classes).

  What a model trained on those tasks has learnt to output, e.g. the outputs LwF distils
  from the previous model: in class- and task-incremental streams the classes seen so far;
  in domain-incremental streams, whose tasks share their labels, the whole shared head.

  Args:
      stream: the stream.
      num_tasks: how many tasks, from the first, have been seen (0: none).

  Returns:
      bool (stream.num_classes,).

  >>> seen_class_mask(digits_stream("class"), 2).nonzero()[0].tolist()
  [0, 1, 2, 3]
  >>> seen_class_mask(digits_stream(), 1).tolist()
  [True, True]
  """
  mask = np.zeros(stream.num_classes, bool)
  for task in stream.tasks[:num_tasks]:
    mask[list(task.classes)] = True
  return mask
