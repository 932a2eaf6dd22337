"""What a named experiment is: `Experiment`, its data options, and its frontier's `Sweep`.

An experiment names a task stream, a model, how each task is trained
(`classp_jax.training.LoopConfig`), the methods it compares and the knobs of each
method that its stability-plasticity frontier sweeps. Each experiment lives in its own
module of this package, shares what it has in common with others through
`classp_jax.experiments.common`, and is listed in `classp_jax.experiments.experiments`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import flax.linen as nn

from classp_jax.data import TaskStream
from classp_jax.methods import MethodSpec
from classp_jax.training import LoopConfig


class Sweep(NamedTuple):
  """A method's frontier: its knobs, each swept with the others at the centre.

  Attributes:
    knobs: the values of each swept hyperparameter, e.g.
      ``{"learning_rate": (0.01, 0.03, 0.1), "strength": (1, 10, 100)}``.
    at: the centre, hyperparameters set on every point before its knob
      (e.g. ``{"learning_rate": 0.03, "strength": 10}``); empty: the
      method's own point.
  """

  knobs: Mapping[str, Sequence[Any]]
  at: Mapping[str, Any] = {}


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
      (see `classp_jax.planning.plan_methods`).
    resized: for a stream whose length is a setting (``--set num_tasks=N``), builds
      the experiment over N tasks; None: its length is fixed.
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
  resized: Callable[[int], "Experiment"] | None = None


# The methods a study runs at the paper's own points (its `paper` stage).
PAPER_METHODS = ("classp", "classp_as_released", "sgd", "adam", "adagrad", "ewc")


@dataclasses.dataclass(frozen=True)
class Study:
  """A study: an experiment tuned on its frontier, its selected points run on more seeds,
  and the paper's points, as `classp_jax.studies.run_study` runs it.

  Attributes:
    name: what ``classp-jax study`` calls it.
    experiment: the experiment it runs (`classp_jax.experiments.experiments`).
    description: one line for ``classp-jax list`` and the report.
    overrides: ``--set`` items of every stage (e.g. ``scenario=task``).
    tuning_overrides: ``--set`` items the frontier and the selected points add
      (cheaper evaluation, e.g. ``evals_per_task=0``); the paper stage leaves
      them out.
    subsample: ``TRAIN[,TEST]`` examples per task of every stage, or None.
    tune_subsample: ``TRAIN`` examples per task the frontier alone runs on, or
      None. Its selected points are then selected again on all the data (the
      ``selected`` part): each selected point runs there, and a method whose
      point diverged there, or was at its grid's edge, runs its grid
      neighbours too; then the grids grow as a frontier's do.
    methods: the methods it tunes; None: every method of the experiment's
      frontier.
    knobs: the knobs swept; None: all.
    paper_methods: the methods run at their own points (the paper's).
    tuning_seeds: the frontier's seeds.
    seeds: the seeds of each selected point and the paper's points.
    select: how points are selected (`classp_jax.results.parse_select`):
      ``validation`` at the end of the stream, or ``first-tasks:K``.
    growth_rounds: at most this many rounds of grid growth per part.
    cuts: what the CPU budget cut from it, in words, for the report.
  """

  name: str
  experiment: str
  description: str
  overrides: tuple[str, ...] = ()
  tuning_overrides: tuple[str, ...] = ()
  subsample: str | None = None
  tune_subsample: str | None = None
  methods: tuple[str, ...] | None = None
  knobs: tuple[str, ...] | None = None
  paper_methods: tuple[str, ...] = PAPER_METHODS
  tuning_seeds: tuple[int, ...] = (0, 1, 2)
  seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
  select: str = "validation"
  growth_rounds: int = 8
  cuts: str = ""
