"""Continual-learning metrics from an accuracy matrix.

``R[i, j]`` is the test accuracy on task ``j`` after training task ``i``
(``T`` tasks, rows and columns from 0). ``baseline[j]`` is the accuracy of the
randomly initialised model on task ``j``, used for forward transfer.

* ACC: mean of the last row, ``mean_j R[T-1, j]``.
* BWT (backward transfer): ``mean_{j<T-1} R[T-1, j] - R[j, j]``; negative
  means forgetting.
* Forgetting: ``mean_{j<T-1} max_{l<T-1} R[l, j] - R[T-1, j]``, the drop from
  the best accuracy a task ever had before the last task was learnt.
* FWT (forward transfer): ``mean_{j>0} R[j-1, j] - baseline[j]``.

And the plasticity metrics of long streams (Dohare et al. 2024; Sokar et al. 2023):

* learning accuracy (`learning_accuracy`): each task's accuracy right after it was
  trained, the diagonal ``R[j, j]``, with its slope over tasks and the mean of the last
  10 tasks against the first 10;
* dormant units (`dormant_fraction`): the fraction of ReLU units whose mean activation,
  relative to their layer's mean, is at or below ``tau``.

References:
  Lopez-Paz & Ranzato, "Gradient Episodic Memory for Continual Learning",
  NeurIPS 2017 (ACC, BWT, FWT). Chaudhry et al., "Riemannian Walk for
  Incremental Learning", ECCV 2018 (forgetting). Dohare et al., "Loss of
  plasticity in deep continual learning", Nature 2024 (learning accuracy over a
  long stream). Sokar et al., "The Dormant Neuron Phenomenon in Deep
  Reinforcement Learning", ICML 2023 (tau-dormant units).
"""

from __future__ import annotations

import numpy as np


def continual_metrics(
  accuracy_matrix: np.ndarray, baseline: np.ndarray | None = None
) -> dict[str, float]:
  """ACC, BWT, forgetting and (given ``baseline``) FWT of an accuracy matrix.

  Args:
    accuracy_matrix: ``(T, T)`` array, ``R[i, j]`` = accuracy on task ``j``
      after training task ``i``.
    baseline: ``(T,)`` accuracies of the random-init model, or None.

  Returns:
    A dict with ``acc``, ``bwt``, ``forgetting`` and, given a baseline,
    ``fwt``. With one task, ``bwt``, ``forgetting`` and ``fwt`` are 0.

  Examples:
    >>> R = [[0.9, 0.1], [0.6, 0.8]]
    >>> m = continual_metrics(R, baseline=[0.1, 0.1])
    >>> {k: round(v, 3) for k, v in m.items()}
    {'acc': 0.7, 'bwt': -0.3, 'forgetting': 0.3, 'fwt': 0.0}
  """
  r = np.asarray(accuracy_matrix, dtype=np.float64)
  if r.ndim != 2 or r.shape[0] != r.shape[1] or r.shape[0] == 0:
    raise ValueError(f"accuracy_matrix must be square and non-empty, got shape {r.shape}")
  t = r.shape[0]
  metrics = {"acc": float(r[-1].mean())}
  if t == 1:
    metrics.update(bwt=0.0, forgetting=0.0)
  else:
    old = np.arange(t - 1)
    metrics["bwt"] = float(np.mean(r[-1, old] - r[old, old]))
    # nanmax: a row of a sampled evaluation (`LoopConfig.eval_tasks_sample`) leaves tasks
    # unscored (NaN); the diagonal is always scored, so no column is all NaN.
    metrics["forgetting"] = float(np.mean(np.nanmax(r[:-1, old], axis=0) - r[-1, old]))
  if baseline is not None:
    b = np.asarray(baseline, dtype=np.float64)
    if b.shape != (t,):
      raise ValueError(f"baseline must have shape ({t},), got {b.shape}")
    metrics["fwt"] = 0.0 if t == 1 else float(np.mean(r[np.arange(t - 1), np.arange(1, t)] - b[1:]))
  return metrics


def learning_accuracy(accuracy_matrix, window: int = 10) -> dict[str, object]:
  r"""Each task's accuracy right after training it, and its trend over the stream.

  .. math::

    a_j = R_{j,j}, \qquad
    \text{slope} = \arg\min_b \min_c \sum_j (a_j - c - b j)^2, \qquad
    \text{first} = \tfrac{1}{w} \sum_{j < w} a_j, \quad
    \text{last} = \tfrac{1}{w} \sum_{j \ge T - w} a_j,

  with :math:`w` = ``min(window, T)`` (the two windows overlap when :math:`T < 2w`). A
  negative slope, or ``last`` below ``first``, is a loss of plasticity: later tasks are
  learnt less well than earlier ones.

  Args:
    accuracy_matrix: ``R``, ``(T, T)`` (or the rows of the tasks trained so far: the
      diagonal of the first rows).
    window: ``w``, tasks at each end.

  Returns:
    ``per_task`` (the diagonal, a list), ``slope`` (accuracy per task; 0 for one task),
    ``first`` and ``last`` (the windows' means) and ``window``.

  Examples:
    >>> R = [[0.9, 0.1, 0.1], [0.5, 0.8, 0.1], [0.4, 0.5, 0.7]]
    >>> m = learning_accuracy(R, window=1)
    >>> m["per_task"], round(m["slope"], 3), m["first"], m["last"]
    ([0.9, 0.8, 0.7], -0.1, 0.9, 0.7)

  References:
    Dohare et al., Loss of plasticity in deep continual learning, Nature 632, 2024.
  """
  rows = [np.asarray(row, dtype=np.float64) for row in accuracy_matrix]
  diagonal = np.array([row[j] for j, row in enumerate(rows)], dtype=np.float64)
  if diagonal.size == 0:
    raise ValueError("learning_accuracy needs at least one task")
  w = min(window, diagonal.size)
  slope = 0.0 if diagonal.size == 1 else float(np.polyfit(np.arange(diagonal.size), diagonal, 1)[0])
  return {
    "per_task": [float(a) for a in diagonal],
    "slope": slope,
    "first": float(diagonal[:w].mean()),
    "last": float(diagonal[-w:].mean()),
    "window": int(w),
  }


def dormant_fraction(activations, tau: float = 0.0) -> tuple[float, dict[str, float]]:
  r"""The fraction of tau-dormant units (Sokar et al. 2023), overall and per layer.

  A unit :math:`i` of layer :math:`\ell` with :math:`H` units has the score

  .. math::

    s_i = \frac{\mathbb{E}_x |h_i(x)|}{\frac{1}{H} \sum_k \mathbb{E}_x |h_k(x)|},

  the expectation over a probe batch (and, for a convolution's channel, over its
  positions too); it is dormant if :math:`s_i \le \tau`. With :math:`\tau = 0` the
  dormant ReLU units are the dead ones (zero on every probe input). A layer whose every
  unit is zero has all of them dormant.

  Args:
    activations: by layer name, an array ``(N, ..., H)`` of the units' activations on
      the probe batch (units on the last axis).
    tau: the threshold :math:`\tau \ge 0`.

  Returns:
    The dormant fraction over every unit of every layer, and each layer's.

  Examples:
    >>> h = np.array([[0.0, 1.0, 2.0, 0.01], [0.0, 3.0, 2.0, 0.01]])  # 4 units, mean 1.0025
    >>> dormant_fraction({"dense": h}, tau=0.0)
    (0.25, {'dense': 0.25})
    >>> dormant_fraction({"dense": h}, tau=0.1)[0]
    0.5

  References:
    Sokar, Agarwal, Castro and Evci, The Dormant Neuron Phenomenon in Deep
    Reinforcement Learning, ICML 2023, https://arxiv.org/abs/2302.12902.
  """
  per_layer, dormant, total = {}, 0, 0
  for name, h in activations.items():
    h = np.asarray(h, dtype=np.float64)
    mean = np.abs(h).reshape(-1, h.shape[-1]).mean(axis=0)
    layer_mean = mean.mean()
    score = mean / layer_mean if layer_mean > 0 else np.zeros_like(mean)
    count = int(np.sum(score <= tau))
    per_layer[name] = count / mean.size
    dormant, total = dormant + count, total + mean.size
  return (dormant / total if total else 0.0), per_layer
