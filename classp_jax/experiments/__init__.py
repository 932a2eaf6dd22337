"""Named experiments: small configs that `classp-jax run NAME` runs.

An experiment names a task stream, a model, how each task is trained
(`classp_jax.loop.LoopConfig`), the methods it compares and the knob of each
method that its stability-plasticity frontier sweeps. Each lives in its own
module here and is listed in `experiments()`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn

from classp_jax.data import TaskStream
from classp_jax.experiments.frontier import Sweep
from classp_jax.loop import LoopConfig
from classp_jax.methods import MethodSpec


# Every named experiment holds out 10% of each task's training data, per class, as its
# validation split: frontier points are selected on it (`classp-jax report --select`),
# never on the test split. 10% keeps >= 1,000 validation images per task on the MNIST
# studies and costs the training set little.
VALIDATION_FRACTION = 0.1


@dataclasses.dataclass(frozen=True)
class DataOptions:
  """Where an experiment's datasets come from (`classp_jax.data.load_dataset`), and the
  scenario its stream is built in (`classp_jax.data.SCENARIOS`)."""

  source: str = "auto"
  data_dir: str | None = None
  scenario: str = "domain"


@dataclasses.dataclass(frozen=True)
class Experiment:
  """A named continual-learning experiment.

  Attributes:
    name: what ``classp-jax run`` calls it.
    description: one line for ``--help`` and reports.
    stream: builds the task stream from `DataOptions`.
    model: builds the model for a stream.
    loop: how each task is trained and evaluated.
    methods: the named methods it knows (also usable in ``a+b`` combinations).
    default_methods: what runs when ``--methods`` is not given.
    quick: turns the experiment into a smoke-sized one (``--quick``).
    scenarios: the scenarios its stream can be built in; it runs in the first
      (``--set scenario=...`` moves another one first).
    frontier: for ``--frontier``, each method's `Sweep`: the values its knobs
      take, one knob at a time around a centre, e.g.
      ``{"ewc": Sweep({"learning_rate": (0.01, 0.03, 0.1), "strength": (10, 100, 1000)},
      at={"learning_rate": 0.03, "strength": 100})}``
      (see `classp_jax.experiments.frontier`).
  """

  name: str
  description: str
  stream: Callable[[DataOptions], TaskStream]
  model: Callable[[TaskStream], nn.Module]
  loop: LoopConfig
  methods: Mapping[str, MethodSpec]
  default_methods: tuple[str, ...]
  quick: Callable[["Experiment"], "Experiment"] = lambda experiment: experiment
  scenarios: tuple[str, ...] = ("domain",)
  frontier: Mapping[str, Sweep] = dataclasses.field(default_factory=dict)


def experiments() -> dict[str, Experiment]:
  """All named experiments, by name."""
  from classp_jax.experiments import digits, fpb_imdb, mnist_fashion, permuted_mnist, split_mnist

  return {e.name: e for e in (digits.EXPERIMENT, mnist_fashion.EXPERIMENT, fpb_imdb.EXPERIMENT,
                              fpb_imdb.CPU_EXPERIMENT, split_mnist.EXPERIMENT,
                              permuted_mnist.EXPERIMENT)}


def get_experiment(name: str) -> Experiment:
  """The experiment called ``name``; a ValueError lists the known names."""
  known = experiments()
  if name not in known:
    raise ValueError(f"unknown experiment {name!r}; known: {', '.join(sorted(known))}")
  return known[name]
