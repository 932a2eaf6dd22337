"""``long_permuted_mnist``: permuted MNIST over 50 tasks, one pass each, for the loss of
plasticity.

Each task is its own fixed shuffle of the pixels (task 1 the original images) of its own
seeded subset of 2,000 of the 10,000 offline MNIST training images (1,800 train after the
10% validation split: 56 steps of 32) and 500 of the test images, domain-incremental (a
shared 10-way head; ``--set scenario=task`` gives each task its own 10 outputs), on a
2x256 ReLU MLP. Sizes: 50 x 2,500 images of 784 float32 pixels, 0.4 GB; a run takes
about half a minute to a minute on one CPU core. CLASSP's accumulator never forgets, so on
this stream its steps shrink task after task: the learning accuracy (each task's accuracy
right after it was trained) tells plasticity apart from forgetting.

Evaluation is bounded (``eval_tasks_sample=10``, `classp_jax.training.LoopConfig`): each
task end but the last scores the task itself, the next and the same 10 tasks drawn once
(seed 0); the last scores all 50. ACC, BWT, FWT and learning accuracy are exact.

``--quick``: 5 tasks of 256 training and 128 test images (every task scored: a sample of
10 covers them). Other stream lengths: ``--set num_tasks=N`` (`experiment(num_tasks)`;
with ``--quick``, at most 5 tasks).
"""

from __future__ import annotations

from classp_jax.data import long_permuted_stream
from classp_jax.experiments.base import DataOptions, Experiment
from classp_jax.experiments.datasets import load_datasets
from classp_jax.experiments.plasticity_methods import plasticity_experiment, plasticity_studies

NUM_TASKS = 50
TRAIN_EXAMPLES = 2000  # per task, of MNIST's 10,000 offline training images
TEST_EXAMPLES = 500
EVAL_TASKS_SAMPLE = 10


def stream(options: DataOptions, num_tasks: int = NUM_TASKS):
  """The stream: ``num_tasks`` permutations, each of its own subset of MNIST."""
  return long_permuted_stream(
    load_datasets(("mnist",), options)[0],
    num_tasks,
    train_examples=TRAIN_EXAMPLES,
    test_examples=TEST_EXAMPLES,
    scenario=options.scenario,
  )


def experiment(num_tasks: int = NUM_TASKS) -> Experiment:
  """The experiment over ``num_tasks`` tasks (the registered one: `NUM_TASKS`)."""
  return plasticity_experiment(
    "long_permuted_mnist",
    f"permuted MNIST over {num_tasks} tasks (2,000 images each, one pass) on a 2x256 MLP: "
    "the loss of plasticity",
    stream,
    num_tasks,
    experiment,
    eval_tasks_sample=EVAL_TASKS_SAMPLE if num_tasks > EVAL_TASKS_SAMPLE + 2 else None,
  )


EXPERIMENT = experiment()

STUDIES = plasticity_studies(
  "long_permuted_mnist", "permuted MNIST over 50 tasks: CLASSP against its plasticity peers"
)
