"""Named experiments: small configs that `classp-jax run NAME` runs.

`base` says what an experiment is (`Experiment`, `DataOptions`, `Sweep`);
`common` holds what several experiments share (the paper's methods and
their frontiers); each other module is one experiment. Adding one is its
module plus one entry in `experiments()`.
"""

from __future__ import annotations

from classp_jax.experiments import digits, fpb_imdb, mnist_fashion, permuted_mnist, split_mnist
from classp_jax.experiments.base import VALIDATION_FRACTION, DataOptions, Experiment, Sweep


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
      permuted_mnist.EXPERIMENT,
    )
  }


def get_experiment(name: str) -> Experiment:
  """The experiment called ``name``; a ValueError lists the known names."""
  known = experiments()
  if name not in known:
    raise ValueError(f"unknown experiment {name!r}; known: {', '.join(sorted(known))}")
  return known[name]


__all__ = [
  "VALIDATION_FRACTION",
  "DataOptions",
  "Experiment",
  "Sweep",
  "experiments",
  "get_experiment",
]
