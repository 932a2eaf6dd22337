"""What the experiments share: the methods the paper compares, their frontiers, and the
paper's vision points that the MNIST studies reuse.

CLASSP at the experiment's point, its ablations, and the baselines:

* ``classp``: the paper's method at the given point (its absolute threshold,
  which on a mean-reduced loss may freeze every weight);
* ``classp_no_threshold``: threshold 0, adjustment suppression alone;
* ``classp_relative``: a relative threshold of 1.0 (a weight moves where its
  ``g**2`` is above its tensor's mean ``g**2``), so sparsity that does not
  depend on the loss scale, at the threshold-free learning rate;
* ``classp_eq1``: threshold 0 with the paper's Equation (1), the step scaled
  by the accumulator before this gradient is added
  (``include_current_gradient=False``; a weight's first step is
  ``g / eps``), at the threshold-free learning rate;
* ``classp_p2``: p = 2 and threshold 0, the AdaGrad instance of CLASSP;
* ``classp_reset``: threshold 0, with its accumulator re-initialised at each
  task boundary (``reset_optimizer_state``), at the threshold-free learning
  rate;
* ``classp_as_released``: the authors' released code
  (`classp_jax.classp_as_released`) with their per-task schedule;
* ``sgd`` at CLASSP's learning rate, ``adam`` and ``adagrad`` (PyTorch's
  default learning rates, as the paper gives none);
* ``ewc`` at the paper's lambda, ``si`` and ``mas``, all on SGD at CLASSP's
  learning rate. EWC at a tuned lambda is the best point of its frontier
  (``--frontier``), which sweeps lambda over decades;
* ``er``, ``derpp``, ``agem`` (a 200-example reservoir buffer) and ``lwf``
  (distillation from the previous task's model), on SGD at CLASSP's learning
  rate, and ``joint`` (SGD on the union of the tasks so far), the upper bound.
  ``classp_relative+er`` and the like combine CLASSP with replay.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from classp_jax.experiments.base import Sweep
from classp_jax.methods import MethodSpec
from classp_jax.methods.registry import OPTIMIZERS

METHODS = (
  "classp",
  "classp_no_threshold",
  "classp_relative",
  "classp_eq1",
  "classp_p2",
  "classp_reset",
  "classp_as_released",
  "sgd",
  "adam",
  "adagrad",
  "ewc",
  "si",
  "mas",
  "er",
  "derpp",
  "agem",
  "lwf",
  "joint",
)

RELATIVE_THRESHOLD = 1.0
# What each CLASSP variant is an ablation of (threshold-free CLASSP), and what it changes:
# the report's ablation table and sparsity curves read this from each run.
_ABLATION_REFERENCE = "classp_no_threshold"
RELATIVE_THRESHOLDS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


_CLASSP_INFO = OPTIMIZERS["classp"].info


def _ablation(changes: str, *, reference: bool = False):
  """A CLASSP variant's metadata: an ablation of threshold-free CLASSP that ``changes`` one
  thing; the ``reference`` one is CLASSP at the experiment's point, the paper's method."""
  return dataclasses.replace(
    _CLASSP_INFO,
    roles=_CLASSP_INFO.roles if reference else (),
    ablation_of=_ABLATION_REFERENCE,
    changes=changes,
  )


def comparison_methods(
  *,
  learning_rate: float,
  threshold: float,
  eps: float,
  released: Mapping[str, Any],
  ewc_strength: float,
  si_strength: float = 1.0,
  mas_strength: float = 1.0,
  importance_examples: int | None = None,
  threshold_free_learning_rate: float | None = None,
) -> dict[str, MethodSpec]:
  """The methods of `METHODS`.

  Args:
    learning_rate: CLASSP's, also SGD's and the regularizers' optimizer's.
    threshold: CLASSP's.
    eps: CLASSP's.
    released: ``classp_as_released``'s hyperparameters besides the learning
      rate; tuples give one value per task.
    ewc_strength: EWC's lambda as published.
    si_strength: SI's c.
    mas_strength: MAS's lambda.
    importance_examples: EWC's Fisher and MAS's importance on this many
      training examples of each task (None: all).
    threshold_free_learning_rate: ``classp_relative``'s and ``classp_eq1``'s,
      e.g. where threshold-free CLASSP did best (None: ``learning_rate``).
  """
  classp = {"learning_rate": learning_rate, "eps": eps, "power": 1.0}
  free = {**classp, "learning_rate": threshold_free_learning_rate or learning_rate}
  sgd = MethodSpec("sgd", {"learning_rate": learning_rate})
  ewc = {"num_examples": importance_examples}
  return {
    "classp": MethodSpec(
      "classp",
      {**classp, "threshold": threshold},
      info=_ablation("an absolute threshold", reference=True),
    ),
    "classp_no_threshold": MethodSpec(
      "classp", {**classp, "threshold": 0.0}, info=dataclasses.replace(_CLASSP_INFO, roles=())
    ),
    "classp_relative": MethodSpec(
      "classp",
      {**free, "threshold": RELATIVE_THRESHOLD, "relative_threshold": True},
      info=_ablation("a relative threshold"),
    ),
    "classp_eq1": MethodSpec(
      "classp",
      {**free, "threshold": 0.0, "include_current_gradient": False},
      info=_ablation("Eq. (1) instead of Algorithm 1"),
    ),
    "classp_p2": MethodSpec(
      "classp", {**classp, "threshold": 0.0, "power": 2.0}, info=_ablation("p = 2 instead of p = 1")
    ),
    "classp_reset": MethodSpec(
      "classp",
      {**free, "threshold": 0.0},
      reset_optimizer_state=True,
      info=_ablation("the optimizer state reset at each task"),
    ),
    "classp_as_released": MethodSpec(
      "classp_as_released", {"learning_rate": learning_rate, "eps": eps, **released}
    ),
    "sgd": sgd,
    "adam": MethodSpec("adam", {"learning_rate": 1e-3}),
    "adagrad": MethodSpec("adagrad", {"learning_rate": 1e-2, "initial_accumulator_value": 0.0}),
    "ewc": MethodSpec("sgd", sgd.hparams, "ewc", {"strength": ewc_strength, **ewc}),
    "si": MethodSpec("sgd", sgd.hparams, "si", {"strength": si_strength}),
    "mas": MethodSpec(
      "sgd", sgd.hparams, "mas", {"strength": mas_strength, "num_examples": importance_examples}
    ),
    # Replay and distillation at their papers' defaults (buffer 200, DER++ alpha 0.1 and
    # beta 0.5, LwF T = 2), and the joint-training upper bound, all on SGD.
    **{
      name: MethodSpec("sgd", sgd.hparams, memory=name) for name in ("er", "derpp", "agem", "lwf")
    },
    "joint": MethodSpec("sgd", sgd.hparams, joint=True),
  }


def _around(centre: float, factors: tuple[float, ...]) -> tuple[float, ...]:
  return tuple(float(f"{centre * f:.3g}") for f in factors)


HALF_DECADES = (0.1, 0.3, 1.0, 3.0, 10.0)  # a learning-rate grid: 2 decades, centre interior
# Three decades, reaching further down: on split_mnist's MLP, CLASSP's and threshold-free
# CLASSP's best learning rates sat at the low edge of `HALF_DECADES` around 0.02.
WIDE_HALF_DECADES = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
# One decade, for studies where a run takes minutes: a grid that must grow past an edge
# does so point by point (`classp-jax select --next-points`).
NARROW_HALF_DECADES = (0.3, 1.0, 3.0)
DECADES = (0.01, 0.1, 1.0, 10.0, 100.0)  # a strength grid: 4 decades, centre interior


def comparison_frontier(
  *,
  learning_rate: float,
  classp_learning_rate: float,
  thresholds: tuple[float, ...],
  threshold: float,
  ewc_strength: float = 100.0,
  learning_rate_factors: tuple[float, ...] = HALF_DECADES,
  learning_rate_centres: Mapping[str, float] | None = None,
) -> dict[str, Sweep]:
  """Each method's knobs, swept one at a time around a centre (`Experiment.frontier`).

  Every method sweeps its learning rate over ``learning_rate_factors`` (by
  default `HALF_DECADES`) of its centre
  (SGD-based methods around ``learning_rate``, CLASSP with p = 1 around
  ``classp_learning_rate``, Adam around 1e-3, AdaGrad and CLASSP with p = 2
  around 1e-2, Eq. (1) CLASSP a decade lower: its first step is ``g / eps``;
  ``learning_rate_centres`` replaces any of these, by method name),
  plus its own strength: CLASSP's absolute ``thresholds`` (centre
  ``threshold``) and relative `RELATIVE_THRESHOLDS` (centre 1), EWC's lambda
  (centre ``ewc_strength``), SI's c and MAS's lambda (centre 1) over
  `DECADES`, DER++'s alpha and LwF's alpha. The replay buffer stays at 200
  examples: a memory budget, not a knob, since more memory only helps and a
  validation sweep would pick the largest. ``classp+er`` is threshold-free
  CLASSP with ER's buffer. ``classp_as_released`` has no frontier: it is the
  authors' code at their settings.
  """
  classp = ("classp", "classp_no_threshold", "classp_relative", "classp_reset", "classp+er")
  sgd_based = ("sgd", "ewc", "si", "mas", "er", "derpp", "agem", "lwf", "joint")
  centres = {
    **dict.fromkeys(classp, classp_learning_rate),
    **dict.fromkeys(sgd_based, learning_rate),
    "classp_eq1": classp_learning_rate / 10,
    "classp_p2": 1e-2,
    "adam": 1e-3,
    "adagrad": 1e-2,
    **(learning_rate_centres or {}),
  }
  unknown = (
    set(centres) - set(classp) - set(sgd_based) - {"classp_eq1", "classp_p2", "adam", "adagrad"}
  )
  if unknown:
    raise ValueError(f"learning_rate_centres names methods without a frontier: {sorted(unknown)}")

  def sweep(name: str, at: Mapping[str, Any] | None = None, **strengths) -> Sweep:
    """``name``'s learning rates around its centre, and ``strengths`` around ``at``."""
    grid = {**strengths, "learning_rate": _around(centres[name], learning_rate_factors)}
    return Sweep(grid, {"learning_rate": centres[name], **(at or {})})

  return {
    "classp": sweep("classp", {"threshold": threshold}, threshold=thresholds),
    "classp_no_threshold": sweep("classp_no_threshold"),
    "classp_relative": sweep("classp_relative", threshold=RELATIVE_THRESHOLDS),
    "classp_eq1": sweep("classp_eq1"),
    "classp_p2": sweep("classp_p2"),
    "classp_reset": sweep("classp_reset"),
    "classp+er": sweep("classp+er", {"threshold": 0.0}),
    **{name: sweep(name) for name in ("sgd", "adam", "adagrad", "er", "agem", "joint")},
    "ewc": sweep("ewc", {"strength": ewc_strength}, strength=_around(ewc_strength, DECADES)),
    **{name: sweep(name, {"strength": 1.0}, strength=DECADES) for name in ("si", "mas")},
    "derpp": sweep("derpp", alpha=(0.03, 0.1, 0.3, 1.0)),
    "lwf": sweep("lwf", alpha=(0.1, 0.3, 1.0, 3.0, 10.0)),
  }


# The paper's CLASSP learning rate on its vision study; threshold-free CLASSP did best at
# TUNED_LEARNING_RATE in the first report, and the SGD-based baselines are swept around
# SGD_LEARNING_RATE, since at 0.2 large EWC strengths diverge.
VISION_LEARNING_RATE = 0.2
TUNED_LEARNING_RATE = 0.02
SGD_LEARNING_RATE = 0.03
# The absolute thresholds the frontier sweeps, centred on 1e-6; 0 (no threshold) is the
# lowest possible value, so a best point there is at the grid's edge by necessity.
THRESHOLDS = (0.0, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 0.5)
# The MLP studies (split_mnist, permuted_mnist) sweep learning rates a decade lower too.
MLP_FRONTIER = comparison_frontier(
  learning_rate=SGD_LEARNING_RATE,
  classp_learning_rate=TUNED_LEARNING_RATE,
  thresholds=THRESHOLDS,
  threshold=1e-6,
  learning_rate_factors=WIDE_HALF_DECADES,
)

# The paper's vision points: mnist_fashion's methods, which the MNIST MLP studies reuse.
VISION_METHODS = comparison_methods(
  learning_rate=VISION_LEARNING_RATE,
  threshold=0.5,
  eps=1e-5,
  released={"apply_scaling": (False, True), "threshold": (0.5, 0.0)},
  ewc_strength=5000.0,
  importance_examples=1000,
  threshold_free_learning_rate=TUNED_LEARNING_RATE,
)
