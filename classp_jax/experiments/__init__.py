"""Named experiments: small configs that `classp-jax run NAME` runs.

`base` says what an experiment is (`Experiment`, `DataOptions`, `Sweep`);
`common` holds what several experiments share (the paper's methods and
their frontiers), `plasticity_methods` what the long streams share (CLASSP's
plasticity peers), `resnet_benchmarks` what the ResNet-18 image benchmarks
share (Mammoth's settings); each other module is one experiment. Adding one is its
module plus one entry in `experiments()`.
"""

from __future__ import annotations

from classp_jax.experiments import (
  digits,
  fpb_imdb,
  label_permuted_mnist,
  long_permuted_mnist,
  mnist_fashion,
  permuted_mnist,
  rotated_mnist,
  split_cifar10,
  split_cifar100,
  split_mnist,
  split_tinyimagenet,
)
from classp_jax.experiments.base import (
  PAPER_METHODS,
  VALIDATION_FRACTION,
  DataOptions,
  Experiment,
  Study,
  Sweep,
)


def experiments() -> dict[str, Experiment]:
  """All named experiments, by name."""
  return {
    e.name: e
    for e in (
      digits.EXPERIMENT,
      mnist_fashion.EXPERIMENT,
      fpb_imdb.EXPERIMENT,
      fpb_imdb.CPU_EXPERIMENT,
      split_mnist.EXPERIMENT,
      split_cifar10.EXPERIMENT,
      split_cifar100.EXPERIMENT,
      split_tinyimagenet.EXPERIMENT,
      permuted_mnist.EXPERIMENT,
      long_permuted_mnist.EXPERIMENT,
      label_permuted_mnist.EXPERIMENT,
      label_permuted_mnist.FASHION_EXPERIMENT,
      rotated_mnist.EXPERIMENT,
    )
  }


def studies() -> dict[str, Study]:
  """All declared studies (report version 2's six, and an offline one on ``digits``), by
  name, in the report's order."""
  declared = (
    *digits.STUDIES,
    *split_mnist.STUDIES,
    *permuted_mnist.STUDIES,
    *mnist_fashion.STUDIES,
    *fpb_imdb.STUDIES,
    *long_permuted_mnist.STUDIES,
    *label_permuted_mnist.STUDIES,
    *rotated_mnist.STUDIES,
  )
  return {s.name: s for s in declared}


def get_study(name: str) -> Study:
  """The study called ``name``; a ValueError lists the known names."""
  known = studies()
  if name not in known:
    raise ValueError(f"unknown study {name!r}; known: {', '.join(known)}")
  return known[name]


def get_experiment(name: str) -> Experiment:
  """The experiment called ``name``; a ValueError lists the known names."""
  known = experiments()
  if name not in known:
    raise ValueError(f"unknown experiment {name!r}; known: {', '.join(sorted(known))}")
  return known[name]


__all__ = [
  "PAPER_METHODS",
  "VALIDATION_FRACTION",
  "DataOptions",
  "Experiment",
  "Study",
  "Sweep",
  "experiments",
  "get_experiment",
  "get_study",
  "studies",
]
