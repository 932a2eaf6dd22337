"""Long task streams for the loss of plasticity: permuted pixels, permuted labels, rotations.

CLASSP's accumulator never forgets, so on a long stream its steps shrink to nothing: the loss
of plasticity (Dohare et al., Nature 2024). These streams test it:

- `long_permuted_stream`: `classp_jax.data.permuted_stream` with a seeded subset of the
  dataset per task, so that 50 or more tasks fit in memory (each task a new input
  distribution);
- `label_permuted_stream`: the inputs stay and each task draws a new permutation of the
  labels (Elsayed and Mahmood, ICLR 2024), so the input distribution never changes and only
  plasticity is tested;
- `rotated_stream`: each task rotates the images by its own angle (Mammoth's rot-mnist:
  20 tasks).

Each comes in the three scenarios of `classp_jax.data.streams` (its module docstring), as
`permuted_stream` does: "domain" keeps labels 0..k-1 on a shared k-way head; "task" offsets
task t's labels by t * k on a head of k * T outputs, each task masked to its block; "class"
the same offset labels without masking. Task 0 is always the untransformed dataset
(identity permutation, angle 0).

References:
    Dohare et al., "Loss of plasticity in deep continual learning", Nature 632, 2024.
    Elsayed and Mahmood, "Addressing loss of plasticity and catastrophic forgetting in
    continual learning", ICLR 2024.
    Buzzega et al., "Dark experience for general continual learning: a strong, simple
    baseline", NeurIPS 2020 (Mammoth's rotated MNIST).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from classp_jax.data.containers import SCENARIOS, Dataset, Split, Task, TaskStream
from classp_jax.data.streams import scale_images

# A task's images: (scaled float32 images (N, H, W, C), task index) -> images.
ImageTransform = Callable[[np.ndarray, int], np.ndarray]


def _subset(split: Split, size: int | None, rng: np.random.Generator) -> Split:
  if size is None or size >= len(split.labels):
    return split
  keep = np.sort(rng.permutation(len(split.labels))[:size])
  return Split(split.inputs[keep], split.labels[keep])


def _transformed_stream(
  dataset: Dataset,
  num_tasks: int,
  *,
  images: ImageTransform,
  label_maps: Sequence[np.ndarray],
  task_names: Sequence[str],
  scenario: str,
  name: str,
  train_examples: int | None,
  test_examples: int | None,
  subset_seed: int,
) -> TaskStream:
  """``num_tasks`` copies of ``dataset``: task t's images through ``images(x, t)``, its labels
  through ``label_maps[t]``, on a seeded subset per task (seeded by ``[subset_seed, t]``)."""
  if dataset.is_text:
    raise ValueError(f"{dataset.name!r} is a text dataset: these streams transform images")
  if scenario not in SCENARIOS:
    raise ValueError(f"unknown scenario {scenario!r}; choose one of {SCENARIOS}")
  if num_tasks < 1:
    raise ValueError(f"num_tasks must be at least 1, got {num_tasks}")
  k = dataset.num_classes
  tasks = []
  for t in range(num_tasks):
    rng = np.random.default_rng([subset_seed, t])
    offset = 0 if scenario == "domain" else t * k

    def make(split: Split, size: int | None) -> Split:
      split = _subset(split, size, rng)
      x = images(scale_images(split.inputs), t)
      return Split(x.astype(np.float32, copy=False), label_maps[t][split.labels] + offset)

    tasks.append(
      Task(
        name=task_names[t],
        train=make(dataset.train, train_examples),
        test=make(dataset.test, test_examples),
        num_classes=k,
        classes=tuple(range(offset, offset + k)),
        class_names=dataset.class_names,
      )
    )
  return TaskStream(
    name=name,
    tasks=tuple(tasks),
    num_classes=k if scenario == "domain" else k * num_tasks,
    input_shape=dataset.train.inputs.shape[1:],
    scenario=scenario,
  )


def long_permuted_stream(
  dataset: Dataset,
  num_tasks: int = 50,
  *,
  train_examples: int | None = None,
  test_examples: int | None = None,
  seed: int = 0,
  scenario: str = "domain",
  name: str | None = None,
) -> TaskStream:
  """Permuted pixels over a long stream: each task its own pixel shuffle and its own subset.

  The permutations are exactly `classp_jax.data.permuted_stream`'s (task 0 the original
  images, task t > 0 the t-th permutation of ``numpy.random.default_rng(seed)``), so without
  subsets the two streams are equal. With ``train_examples`` (``test_examples``) each task
  keeps its own seeded random subset of that many training (test) images, drawn before the
  permutation: 50 tasks of 2,000 MNIST images take 0.3 GB where the whole dataset per task
  would take 12 GB.

  Args:
      dataset: an image dataset with k classes.
      num_tasks: the number of tasks T.
      train_examples: training images per task (None: all).
      test_examples: test images per task (None: all).
      seed: the permutations' and the subsets' seed.
      scenario: "domain", "task" or "class" (see the module docstring).
      name: the stream's name; default "long_permuted_<dataset>".

  Returns:
      The stream; task names are "<dataset>:perm<t>".

  >>> from classp_jax.data import load_dataset
  >>> stream = long_permuted_stream(load_dataset("digits"), 30, train_examples=40)
  >>> len(stream), len(stream.tasks[7].train), stream.tasks[7].name
  (30, 40, 'digits:perm7')
  """
  height, width, channels = dataset.train.inputs.shape[1:]
  rng = np.random.default_rng(seed)
  permutations = [rng.permutation(height * width) for _ in range(num_tasks)]
  permutations[0] = np.arange(height * width)

  def permute(x: np.ndarray, t: int) -> np.ndarray:
    flat = x.reshape(len(x), height * width, channels)
    return flat[:, permutations[t]].reshape(x.shape)

  identity = np.arange(dataset.num_classes, dtype=np.int32)
  return _transformed_stream(
    dataset,
    num_tasks,
    images=permute,
    label_maps=[identity] * num_tasks,
    task_names=[f"{dataset.name}:perm{t}" for t in range(num_tasks)],
    scenario=scenario,
    name=name or f"long_permuted_{dataset.name}",
    train_examples=train_examples,
    test_examples=test_examples,
    subset_seed=seed,
  )


def label_permutations(num_classes: int, num_tasks: int, seed: int = 0) -> list[np.ndarray]:
  """Each task's map from original to new label: the identity for task 0, then the t-th
  permutation of ``numpy.random.default_rng(seed)``.

  >>> [p.tolist() for p in label_permutations(3, 2, seed=1)]
  [[0, 1, 2], [2, 0, 1]]
  """
  rng = np.random.default_rng(seed)
  maps = [rng.permutation(num_classes).astype(np.int32) for _ in range(num_tasks)]
  maps[0] = np.arange(num_classes, dtype=np.int32)
  return maps


def label_permuted_stream(
  dataset: Dataset,
  num_tasks: int = 20,
  *,
  train_examples: int | None = None,
  test_examples: int | None = None,
  seed: int = 0,
  scenario: str = "domain",
  name: str | None = None,
) -> TaskStream:
  """The same images in every task, each task with its own permutation of the labels.

  Task t relabels an image of class y as ``label_permutations(k, T, seed)[t][y]`` (task 0
  keeps the labels). The input distribution never changes, so a method that fails here has
  lost plasticity, not met new inputs (Elsayed and Mahmood's label-permuted streams).

  Args:
      dataset: an image dataset with k classes, e.g. MNIST or Fashion-MNIST.
      num_tasks: the number of tasks T.
      train_examples: training images per task, each task its own seeded subset (None: all).
      test_examples: test images per task (None: all).
      seed: the label permutations' and the subsets' seed.
      scenario: "domain", "task" or "class" (see the module docstring).
      name: the stream's name; default "label_permuted_<dataset>".

  Returns:
      The stream; task names are "<dataset>:labels<t>".

  >>> from classp_jax.data import load_dataset
  >>> stream = label_permuted_stream(load_dataset("digits"), 3)
  >>> bool((stream.tasks[1].train.inputs == stream.tasks[0].train.inputs).all())
  True
  """
  maps = label_permutations(dataset.num_classes, num_tasks, seed)
  return _transformed_stream(
    dataset,
    num_tasks,
    images=lambda x, t: x,
    label_maps=maps,
    task_names=[f"{dataset.name}:labels{t}" for t in range(num_tasks)],
    scenario=scenario,
    name=name or f"label_permuted_{dataset.name}",
    train_examples=train_examples,
    test_examples=test_examples,
    subset_seed=seed,
  )


def rotation_angles(num_tasks: int, angles: str | Sequence[float] = "spread", seed: int = 0):
  """Each task's rotation in degrees.

  Args:
      num_tasks: T.
      angles: "spread" (the default): ``180 * t / T``, evenly over [0, 180), task 0 unrotated;
          "random": task 0 at 0 and each other task uniform in [0, 180) from
          ``numpy.random.default_rng(seed)``, as Mammoth's rot-mnist draws them; or one angle
          per task.
      seed: the random angles' seed.

  Returns:
      A list of T floats.

  >>> rotation_angles(4)
  [0.0, 45.0, 90.0, 135.0]
  """
  if isinstance(angles, str):
    if angles == "spread":
      return [180.0 * t / num_tasks for t in range(num_tasks)]
    if angles == "random":
      drawn = np.random.default_rng(seed).uniform(0.0, 180.0, num_tasks)
      return [0.0, *(float(a) for a in drawn[1:])][:num_tasks]
    raise ValueError(f"angles must be 'spread', 'random' or one angle per task, got {angles!r}")
  if len(angles) != num_tasks:
    raise ValueError(f"{len(angles)} angles for {num_tasks} tasks")
  return [float(a) for a in angles]


def rotate_images(images: np.ndarray, angle: float) -> np.ndarray:
  """Images (N, H, W, C) rotated by ``angle`` degrees about their centre, counter-clockwise
  as displayed, bilinear, zero outside (``scipy.ndimage.rotate``, the same size).

  >>> x = np.zeros((1, 3, 3, 1), np.float32); x[0, 0, 1, 0] = 1.0  # top middle
  >>> rotate_images(x, 90)[0, :, :, 0].round(3).tolist()  # now left middle
  [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
  """
  if angle == 0:
    return images
  from scipy import ndimage

  return ndimage.rotate(images, angle, axes=(2, 1), reshape=False, order=1, mode="constant")


def rotated_stream(
  dataset: Dataset,
  num_tasks: int = 20,
  *,
  angles: str | Sequence[float] = "spread",
  train_examples: int | None = None,
  test_examples: int | None = None,
  seed: int = 0,
  scenario: str = "domain",
  name: str | None = None,
) -> TaskStream:
  """Rotated images: each task rotates the dataset by its own angle (Mammoth's rot-mnist).

  Args:
      dataset: an image dataset with k classes.
      num_tasks: the number of tasks T (Mammoth's rot-mnist: 20).
      angles: the tasks' angles (`rotation_angles`): by default spread evenly over [0, 180),
          task t at ``180 * t / T`` degrees; "random" draws them as Mammoth does.
      train_examples: training images per task, each task its own seeded subset (None: all).
      test_examples: test images per task (None: all).
      seed: the subsets' and the random angles' seed.
      scenario: "domain", "task" or "class" (see the module docstring).
      name: the stream's name; default "rotated_<dataset>".

  Returns:
      The stream; task names are "<dataset>:rot<degrees>".

  >>> from classp_jax.data import load_dataset
  >>> stream = rotated_stream(load_dataset("digits"), 4, train_examples=20, test_examples=10)
  >>> [t.name for t in stream.tasks]
  ['digits:rot0', 'digits:rot45', 'digits:rot90', 'digits:rot135']
  """
  degrees = rotation_angles(num_tasks, angles, seed)
  identity = np.arange(dataset.num_classes, dtype=np.int32)
  return _transformed_stream(
    dataset,
    num_tasks,
    images=lambda x, t: rotate_images(x, degrees[t]),
    label_maps=[identity] * num_tasks,
    task_names=[f"{dataset.name}:rot{a:g}" for a in degrees],
    scenario=scenario,
    name=name or f"rotated_{dataset.name}",
    train_examples=train_examples,
    test_examples=test_examples,
    subset_seed=seed,
  )
