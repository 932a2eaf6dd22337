"""A deterministic, seeded, stratified train/test split for datasets without an official one."""

from __future__ import annotations

import numpy as np

from classp_jax.data.containers import Split


def stratified_split(
  inputs: np.ndarray, labels: np.ndarray, *, test_fraction: float, seed: int
) -> tuple[Split, Split]:
  """Splits examples into train and test so that each class keeps its proportion.

  Within each class the examples are shuffled with `numpy.random.default_rng(seed)` and
  `round(n_class * test_fraction)` of them go to test. Both splits keep the original order
  of the examples, so the result depends only on the data, `test_fraction` and `seed`.

  Args:
      inputs: the examples, (N, ...).
      labels: int32 (N,).
      test_fraction: the fraction of each class put in the test split, in (0, 1).
      seed: the shuffling seed.

  Returns:
      (train, test).

  Raises:
      ValueError: `test_fraction` outside (0, 1), or a class too small to have examples in
          both splits.

  >>> train, test = stratified_split(np.arange(10), np.array([0] * 5 + [1] * 5, np.int32),
  ...                                test_fraction=0.4, seed=0)
  >>> len(train), len(test), np.bincount(test.labels).tolist()
  (6, 4, [2, 2])
  """
  if not 0.0 < test_fraction < 1.0:
    raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
  small = too_small_class(labels, test_fraction)
  if small is not None:
    raise ValueError(
      f"class {small[0]} has {small[1]} examples: too few to hold out a fraction "
      f"{test_fraction} of them for test and keep the rest for training"
    )
  rng = np.random.default_rng(seed)
  is_test = np.zeros(len(labels), bool)
  for label in np.unique(labels):
    members = np.flatnonzero(labels == label)
    is_test[rng.permutation(members)[: int(round(len(members) * test_fraction))]] = True
  return (
    Split(inputs[~is_test], labels[~is_test]),
    Split(inputs[is_test], labels[is_test]),
  )


def too_small_class(labels: np.ndarray, test_fraction: float) -> tuple[int, int] | None:
  """``(label, count)`` of the first class that `stratified_split` could not split at
  ``test_fraction`` (it would be missing from one split), or None."""
  classes, counts = np.unique(np.asarray(labels), return_counts=True)
  for label, count in zip(classes.tolist(), counts.tolist()):
    if not 0 < int(round(count * test_fraction)) < count:
      return label, count
  return None
