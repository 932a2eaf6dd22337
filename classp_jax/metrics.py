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

References:
  Lopez-Paz & Ranzato, "Gradient Episodic Memory for Continual Learning",
  NeurIPS 2017 (ACC, BWT, FWT). Chaudhry et al., "Riemannian Walk for
  Incremental Learning", ECCV 2018 (forgetting).
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
    metrics["forgetting"] = float(np.mean(r[:-1, old].max(axis=0) - r[-1, old]))
  if baseline is not None:
    b = np.asarray(baseline, dtype=np.float64)
    if b.shape != (t,):
      raise ValueError(f"baseline must have shape ({t},), got {b.shape}")
    metrics["fwt"] = 0.0 if t == 1 else float(np.mean(r[np.arange(t - 1), np.arange(1, t)] - b[1:]))
  return metrics
