"""Named experiments: small configs that `classp-jax run NAME` runs.

An experiment names a task stream, a model, how each task is trained
(`classp_jax.loop.LoopConfig`) and the methods it compares. Each lives in its
own module here and registers itself in `EXPERIMENTS`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping

import flax.linen as nn

from classp_jax.data import TaskStream
from classp_jax.loop import LoopConfig
from classp_jax.methods import MethodSpec


@dataclasses.dataclass(frozen=True)
class DataOptions:
  """Where an experiment's datasets come from (`classp_jax.data.load_dataset`)."""

  source: str = "auto"
  data_dir: str | None = None


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
  """

  name: str
  description: str
  stream: Callable[[DataOptions], TaskStream]
  model: Callable[[TaskStream], nn.Module]
  loop: LoopConfig
  methods: Mapping[str, MethodSpec]
  default_methods: tuple[str, ...]
  quick: Callable[["Experiment"], "Experiment"] = lambda experiment: experiment


def experiments() -> dict[str, Experiment]:
  """All named experiments, by name."""
  from classp_jax.experiments import digits

  return {e.name: e for e in (digits.EXPERIMENT,)}


def get_experiment(name: str) -> Experiment:
  """The experiment called ``name``; a ValueError lists the known names."""
  known = experiments()
  if name not in known:
    raise ValueError(f"unknown experiment {name!r}; known: {', '.join(sorted(known))}")
  return known[name]
