"""What the long-stream experiments share: CLASSP and its plasticity peers, their points,
their frontier, their training loop and their studies.

The three long streams (``long_permuted_mnist``, ``label_permuted_mnist``,
``rotated_mnist``) test the loss of plasticity: CLASSP's accumulator never forgets, so its
steps shrink on a long stream. Their methods:

* ``classp``: CLASSP at the point selected on ``permuted_mnist``'s validation split
  (report version 2: learning rate 0.054, threshold 0); ``classp_relative`` with a
  relative threshold of 0.25 (selected there too);
* ``classp_decay`` and ``classp_fast_decay``: ``classp`` with an accumulator that forgets,
  ``S <- beta S + |g|**p`` at beta 0.999 and 0.99 (``accumulator_decay``). This is this
  project's extension, not the paper's;
* ``adagrad``, ``adam`` and ``sgd`` at the learning rates selected on ``permuted_mnist``
  (0.0243, 0.00027, 0.081);
* the plasticity methods, each on SGD at its learning rate (0.081) unless its paper gives
  one: ``upgd`` (Elsayed and Mahmood 2024), ``shrink_perturb`` (every step, Ash and
  Adams 2020 as Dohare et al. 2024 run it; ``sgd+shrink_perturb_tasks`` at task
  boundaries), ``l2_init`` (Kumar et al. 2023), ``stable_sgd`` (Mirzadeh et al. 2020:
  learning rate 0.1 decayed by 0.8 per task, dropout 0.25) and ``cbp`` (Continual
  Backprop, Dohare et al. 2024: replacement rate 1e-4, maturity 100);
* ``ewc`` (strength 1 on SGD at 0.081, selected on ``permuted_mnist``), ``er`` (SGD at 0.3,
  a 200-example buffer) and ``joint`` (SGD at 0.09 on the union of the tasks so far, the
  upper bound; its last tasks train on every task's data).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

from classp_jax.experiments.base import VALIDATION_FRACTION, Experiment, Study, Sweep
from classp_jax.experiments.common import NARROW_HALF_DECADES
from classp_jax.experiments.sizing import smoke_sized
from classp_jax.methods import MethodSpec
from classp_jax.methods.registry import OPTIMIZERS, REGULARIZERS, stable_sgd
from classp_jax.models import MLP
from classp_jax.training import LoopConfig

# Each method's learning rate selected on validation on permuted_mnist (report version 2),
# the same MLP and batch size, one pass per task.
LEARNING_RATES = {
  "classp": 0.054,
  "adagrad": 0.0243,
  "adam": 0.00027,
  "sgd": 0.081,
  "er": 0.3,
  "joint": 0.09,
}
ACCUMULATOR_DECAYS = {"classp_decay": 0.999, "classp_fast_decay": 0.99}

# The methods the studies tune, and those a plain `classp-jax run` runs.
STUDY_METHODS = (
  "classp",
  "classp_relative",
  "classp_decay",
  "classp_fast_decay",
  "adagrad",
  "adam",
  "sgd",
  "upgd",
  "shrink_perturb",
  "l2_init",
  "stable_sgd",
  "cbp",
  "ewc",
  "er",
  "joint",
)
QUICK_TASKS = 5  # a --quick long stream's length at most

DEFAULT_METHODS = (
  "classp",
  "classp_decay",
  "adagrad",
  "adam",
  "sgd",
  "upgd",
  "shrink_perturb",
  "l2_init",
  "stable_sgd",
  "cbp",
)

_CLASSP_INFO = OPTIMIZERS["classp"].info


def _decay_info(beta: float):
  return dataclasses.replace(
    _CLASSP_INFO,
    roles=(),
    ablation_of="classp",
    changes=f"an accumulator that forgets (accumulator_decay {beta}; this project's "
    "extension, not the paper's)",
  )


def plasticity_methods() -> dict[str, MethodSpec]:
  """The named methods of the long-stream experiments (see the module docstring)."""
  classp = {"learning_rate": LEARNING_RATES["classp"], "eps": 1e-5, "power": 1.0, "threshold": 0.0}
  sgd = {"learning_rate": LEARNING_RATES["sgd"]}
  return {
    "classp": MethodSpec("classp", classp, info=_CLASSP_INFO),
    "classp_relative": MethodSpec(
      "classp",
      {**classp, "threshold": 0.25, "relative_threshold": True},
      info=dataclasses.replace(
        _CLASSP_INFO, roles=(), ablation_of="classp", changes="a relative threshold"
      ),
    ),
    **{
      name: MethodSpec("classp", {**classp, "accumulator_decay": beta}, info=_decay_info(beta))
      for name, beta in ACCUMULATOR_DECAYS.items()
    },
    "adagrad": MethodSpec(
      "adagrad", {"learning_rate": LEARNING_RATES["adagrad"], "initial_accumulator_value": 0.0}
    ),
    "adam": MethodSpec("adam", {"learning_rate": LEARNING_RATES["adam"]}),
    "sgd": MethodSpec("sgd", sgd),
    "upgd": MethodSpec("upgd", sgd),
    "shrink_perturb": MethodSpec("shrink_perturb", sgd),
    "l2_init": MethodSpec("sgd", sgd, "l2_init", info=REGULARIZERS["l2_init"].info),
    "shrink_perturb_tasks": MethodSpec(
      "sgd", sgd, "shrink_perturb_tasks", info=REGULARIZERS["shrink_perturb_tasks"].info
    ),
    "stable_sgd": stable_sgd(0.1, decay=0.8, dropout=0.25),
    "cbp": MethodSpec("cbp", sgd),
    "ewc": MethodSpec("sgd", sgd, "ewc", {"strength": 1.0, "num_examples": 1000}),
    "er": MethodSpec("sgd", {"learning_rate": LEARNING_RATES["er"]}, memory="er"),
    "joint": MethodSpec("sgd", {"learning_rate": LEARNING_RATES["joint"]}, joint=True),
  }


def _around(centre: float) -> tuple[float, ...]:
  return tuple(float(f"{centre * f:.3g}") for f in NARROW_HALF_DECADES)


def plasticity_frontier() -> dict[str, Sweep]:
  """Each method's learning rate over `NARROW_HALF_DECADES` (one decade) around its point,
  and one knob of its own around its default: CLASSP's accumulator decay, UPGD's noise,
  shrink and perturb's noise, L2 Init's strength, Continual Backprop's replacement rate
  and EWC's strength. Stable SGD has none: its learning rates are a per-task schedule."""
  specs = plasticity_methods()

  def lr(name: str) -> float:
    return specs[name].hparams["learning_rate"]

  def sweep(name: str, **own) -> Sweep:
    knobs = {"learning_rate": _around(lr(name)), **{k: v[0] for k, v in own.items()}}
    return Sweep(knobs, {"learning_rate": lr(name), **{k: v[1] for k, v in own.items()}})

  decays = ((0.99, 0.999, 0.9999), 0.999)
  return {
    **{name: sweep(name) for name in ("classp", "classp_relative", "adagrad", "adam", "sgd")},
    "classp_decay": sweep("classp_decay", accumulator_decay=decays),
    "classp_fast_decay": sweep("classp_fast_decay"),
    "upgd": sweep("upgd", sigma=((1e-4, 1e-3, 1e-2), 1e-3)),
    "shrink_perturb": sweep("shrink_perturb", sigma=((1e-5, 1e-4, 1e-3), 1e-4)),
    "l2_init": sweep("l2_init", strength=((1e-3, 1e-2, 1e-1), 1e-2)),
    "cbp": sweep("cbp", replacement_rate=((1e-5, 1e-4, 1e-3), 1e-4)),
    "ewc": sweep("ewc", strength=((0.1, 1.0, 10.0), 1.0)),
    **{name: sweep(name) for name in ("er", "joint")},
  }


def long_stream_loop(eval_tasks_sample: int | None = None) -> LoopConfig:
  """One pass per task in batches of 32, task-end evaluations only (each test split in
  one batch), 10% of each task's training data held out for validation."""
  return LoopConfig(
    validation_fraction=VALIDATION_FRACTION,
    batch_size=32,
    epochs=1,
    evals_per_task=0,
    eval_batch_size=1000,
    steps_per_call=8,
    eval_tasks_sample=eval_tasks_sample,
  )


def plasticity_experiment(
  name: str,
  description: str,
  build: Callable[..., Any],
  num_tasks: int,
  resized: Callable[[int], Experiment],
  eval_tasks_sample: int | None = None,
) -> Experiment:
  """A long-stream experiment: ``build(options, num_tasks)`` builds its stream, on a 2x256
  ReLU MLP with the methods, loop and frontier the long streams share; ``resized(n)``
  builds it over n tasks (``--set num_tasks=N``)."""
  return Experiment(
    name=name,
    description=description,
    stream=lambda options: build(options, num_tasks),
    model=lambda s: MLP(num_classes=s.num_classes, hidden=(256, 256)),
    loop=long_stream_loop(eval_tasks_sample),
    methods=plasticity_methods(),
    default_methods=DEFAULT_METHODS,
    quick=quick_with_tasks(build, min(QUICK_TASKS, num_tasks)),
    scenarios=("domain", "task"),
    frontier=plasticity_frontier(),
    resized=resized,
  )


def quick_with_tasks(build: Callable[..., Any], num_tasks: int = QUICK_TASKS):
  """A ``quick`` that also cuts the stream to ``num_tasks`` tasks: ``build(options,
  num_tasks)`` builds it."""

  def quick(experiment: Experiment) -> Experiment:
    fewer = dataclasses.replace(experiment, stream=lambda options: build(options, num_tasks))
    return smoke_sized(fewer)

  return quick


def plasticity_studies(
  experiment: str, description: str, overrides: Mapping[str, Any] | None = None
) -> tuple[Study, ...]:
  """The study of a long-stream experiment: every method of `STUDY_METHODS` tuned on its
  frontier, and `DEFAULT_METHODS` at their own points."""
  return (
    Study(
      experiment,
      experiment,
      description,
      overrides=tuple(f"{k}={v}" for k, v in (overrides or {}).items()),
      methods=STUDY_METHODS,
      paper_methods=DEFAULT_METHODS,
      cuts="3-point learning-rate grids around permuted_mnist's selected points (grown "
      "where a selected point is at an edge), one knob of each method's own; a subset of "
      "MNIST per task (stated in the experiment)",
    ),
  )
