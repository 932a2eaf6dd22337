"""``label_permuted_mnist`` (and ``label_permuted_fashion_mnist``): the same images in
every task, each task a new permutation of the labels.

20 tasks, each its own seeded subset of 2,000 of the 10,000 offline MNIST training images
(1,800 train after the 10% validation split, one pass: 56 steps of 32) and 1,000 test
images, relabelled by the task's permutation (task 1 the original labels;
`classp_jax.data.label_permuted_stream`). The inputs never change, so a method that learns
later tasks worse has lost plasticity, not met new inputs (Elsayed and Mahmood's
label-permuted streams). Domain-incremental (one 10-way head; ``--set scenario=task``
gives each task its own 10 outputs), on a 2x256 ReLU MLP; a run takes well under a minute
on one CPU core. ``label_permuted_fashion_mnist`` is the same on Fashion-MNIST (2,000 of
its 60,000 training images per task).

``--quick``: 5 tasks of 256 training and 128 test images.
"""

from __future__ import annotations

from classp_jax.data import label_permuted_stream
from classp_jax.experiments.base import DataOptions, Experiment
from classp_jax.experiments.datasets import load_datasets
from classp_jax.experiments.plasticity_methods import plasticity_experiment, plasticity_studies

NUM_TASKS = 20
TRAIN_EXAMPLES = 2000  # per task
TEST_EXAMPLES = 1000


def _builder(dataset: str):
  def stream(options: DataOptions, num_tasks: int = NUM_TASKS):
    return label_permuted_stream(
      load_datasets((dataset,), options)[0],
      num_tasks,
      train_examples=TRAIN_EXAMPLES,
      test_examples=TEST_EXAMPLES,
      scenario=options.scenario,
    )

  return stream


def experiment(dataset: str = "mnist", num_tasks: int = NUM_TASKS) -> Experiment:
  """The experiment on ``dataset`` (``mnist`` or ``fashion_mnist``) over ``num_tasks``."""
  return plasticity_experiment(
    f"label_permuted_{dataset}",
    f"label-permuted {dataset} ({num_tasks} tasks of 2,000 images, one pass) on a 2x256 "
    "MLP: plasticity alone",
    _builder(dataset),
    num_tasks,
    lambda n: experiment(dataset, n),
  )


EXPERIMENT = experiment("mnist")
FASHION_EXPERIMENT = experiment("fashion_mnist")

STUDIES = plasticity_studies(
  "label_permuted_mnist", "label-permuted MNIST, 20 tasks: plasticity without new inputs"
)
