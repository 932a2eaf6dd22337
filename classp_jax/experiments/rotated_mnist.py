"""``rotated_mnist``: MNIST rotated by a new angle in each task (Mammoth's rot-mnist).

20 tasks, as Mammoth's rot-mnist; task t rotates its images by ``180 * t / 20`` degrees
(spread evenly over [0, 180), task 1 unrotated; Mammoth draws each task's angle at random
in [0, 180), which ``classp_jax.data.rotated_stream(..., angles="random")`` does), bilinear
with zero fill (``scipy.ndimage.rotate``). Each task is its own seeded subset of 2,000 of the
10,000 offline MNIST training images (1,800 train after the 10% validation split, one
pass: 56 steps of 32) and 1,000 test images, domain-incremental (one 10-way head;
``--set scenario=task`` gives each task its own outputs), on a 2x256 ReLU MLP. Nearby
angles share much, so forgetting is milder than on permuted pixels; a run takes well under
a minute on one CPU core.

``--quick``: 5 tasks (0, 36, ..., 144 degrees) of 256 training and 128 test images.
Other stream lengths: ``--set num_tasks=N`` (`experiment(num_tasks)`).
"""

from __future__ import annotations

from classp_jax.data import rotated_stream
from classp_jax.experiments.base import DataOptions, Experiment
from classp_jax.experiments.datasets import load_datasets
from classp_jax.experiments.plasticity_methods import plasticity_experiment, plasticity_studies

NUM_TASKS = 20  # Mammoth's rot-mnist
TRAIN_EXAMPLES = 2000  # per task
TEST_EXAMPLES = 1000


def stream(options: DataOptions, num_tasks: int = NUM_TASKS):
  """The stream: ``num_tasks`` rotations spread over [0, 180), each of its own subset."""
  return rotated_stream(
    load_datasets(("mnist",), options)[0],
    num_tasks,
    train_examples=TRAIN_EXAMPLES,
    test_examples=TEST_EXAMPLES,
    scenario=options.scenario,
  )


def experiment(num_tasks: int = NUM_TASKS) -> Experiment:
  """The experiment over ``num_tasks`` rotations (the registered one: `NUM_TASKS`)."""
  return plasticity_experiment(
    "rotated_mnist",
    f"rotated MNIST ({num_tasks} tasks, angles spread over [0, 180), 2,000 images each, "
    "one pass) on a 2x256 MLP",
    stream,
    num_tasks,
    experiment,
  )


EXPERIMENT = experiment()

STUDIES = plasticity_studies(
  "rotated_mnist", "rotated MNIST, 20 tasks: CLASSP against its plasticity peers"
)
