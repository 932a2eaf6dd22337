"""The methods the paper compares, and their frontiers, for any experiment.

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

from typing import Any, Mapping

from classp_jax.methods import MethodSpec

METHODS = ("classp", "classp_no_threshold", "classp_relative", "classp_eq1", "classp_p2",
           "classp_as_released", "sgd", "adam", "adagrad", "ewc", "si", "mas", "er", "derpp",
           "agem", "lwf", "joint")

RELATIVE_THRESHOLD = 1.0
RELATIVE_THRESHOLDS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def comparison_methods(*, learning_rate: float, threshold: float, eps: float,
                       released: Mapping[str, Any], ewc_strength: float,
                       si_strength: float = 1.0,
                       mas_strength: float = 1.0,
                       importance_examples: int | None = None,
                       threshold_free_learning_rate: float | None = None
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
      "classp": MethodSpec("classp", {**classp, "threshold": threshold}),
      "classp_no_threshold": MethodSpec("classp", {**classp, "threshold": 0.0}),
      "classp_relative": MethodSpec("classp", {**free, "threshold": RELATIVE_THRESHOLD,
                                               "relative_threshold": True}),
      "classp_eq1": MethodSpec("classp", {**free, "threshold": 0.0,
                                          "include_current_gradient": False}),
      "classp_p2": MethodSpec("classp", {**classp, "threshold": 0.0, "power": 2.0}),
      "classp_as_released": MethodSpec("classp_as_released",
                                       {"learning_rate": learning_rate, "eps": eps, **released}),
      "sgd": sgd,
      "adam": MethodSpec("adam", {"learning_rate": 1e-3}),
      "adagrad": MethodSpec("adagrad", {"learning_rate": 1e-2, "initial_accumulator_value": 0.0}),
      "ewc": MethodSpec("sgd", sgd.hparams, "ewc", {"strength": ewc_strength, **ewc}),
      "si": MethodSpec("sgd", sgd.hparams, "si", {"strength": si_strength}),
      "mas": MethodSpec("sgd", sgd.hparams, "mas",
                        {"strength": mas_strength, "num_examples": importance_examples}),
      # Replay and distillation at their papers' defaults (buffer 200, DER++ alpha 0.1 and
      # beta 0.5, LwF T = 2), and the joint-training upper bound, all on SGD.
      **{name: MethodSpec("sgd", sgd.hparams, memory=name) for name in ("er", "derpp", "agem",
                                                                        "lwf")},
      "joint": MethodSpec("sgd", sgd.hparams, joint=True),
  }


def comparison_frontier(*, learning_rate: float, thresholds: tuple[float, ...],
                        threshold_free_learning_rate: float | None = None
                        ) -> dict[str, dict[str, tuple[float, ...]]]:
  """Each method's main knob over a log grid around its point (`Experiment.frontier`).

  CLASSP's threshold is swept at its learning rate, and its learning rate at
  threshold 0 (``classp_no_threshold``): at the paper's thresholds, which may
  freeze every weight, a learning-rate sweep would show nothing.
  ``classp_relative`` sweeps its relative threshold over `RELATIVE_THRESHOLDS`
  and its learning rate, ``classp_eq1`` its learning rate, both around
  ``threshold_free_learning_rate`` (None: ``learning_rate``).
  """
  def around(value: float, factors=(0.1, 0.3, 1.0, 3.0)) -> tuple[float, ...]:
    return tuple(value * f for f in factors)

  free_learning_rate = threshold_free_learning_rate or learning_rate
  decades = tuple(10.0 ** k for k in range(-2, 5))
  # SI's and MAS's penalties are stiffer per unit of strength: on mnist_fashion
  # both diverged with SGD at lr 0.2 from 0.1 up and did best at the lowest value.
  small_decades = tuple(10.0 ** k for k in range(-4, 3))
  return {
      "classp": {"threshold": thresholds},
      "classp_no_threshold": {"learning_rate": around(learning_rate, (0.01, 0.03, 0.1, 0.3, 1.0))},
      "classp_relative": {"threshold": RELATIVE_THRESHOLDS,
                          "learning_rate": around(free_learning_rate, (0.1, 0.3, 1.0, 3.0, 10.0))},
      "classp_eq1": {"learning_rate": around(free_learning_rate, (0.01, 0.1, 0.3, 1.0, 3.0))},
      "sgd": {"learning_rate": around(learning_rate)},
      "adam": {"learning_rate": around(1e-3)},
      "adagrad": {"learning_rate": around(1e-2)},
      "ewc": {"strength": decades},
      "si": {"strength": small_decades},
      "mas": {"strength": small_decades},
  }
