"""The checks the readers share: a file that is readable but wrong is an error, not a smaller set.

Each reader raises `ValueError` naming the file for damage it can see in the file itself (a
failed CRC, a bad header, a truncated record). What remains is checked on the decoded
splits, before anything is cached, with these helpers: labels outside the class range and a class
missing from a split are errors; a size that differs from the standard one is a
`DataSizeWarning`, since a subset (or a test fixture) is legitimately smaller.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np


class DataSizeWarning(UserWarning):
  """A dataset's example counts differ from those of the standard distribution."""


def class_counts(
  labels: Mapping[str, np.ndarray],
  class_names: Sequence[str],
  where: str,
  *,
  every_class: bool = True,
) -> dict[str, np.ndarray]:
  """Counts each split's examples per class, checking the labels on the way.

  Args:
      labels: each split's integer labels, e.g. {"train": ..., "test": ...}.
      class_names: the name of each label.
      where: names the source (a file or folder) in error messages.
      every_class: whether each class must occur in each split.

  Returns:
      The counts of each split, int64 of shape (len(class_names),).

  Raises:
      ValueError: an empty split, a label outside `0..len(class_names)-1`, or (with
          `every_class`) a class with no examples in a split.

  >>> class_counts({"train": np.array([0, 1, 1])}, ("a", "b"), "toy files")["train"].tolist()
  [1, 2]
  >>> class_counts({"train": np.array([0, 1, 1])}, ("a", "b", "c"), "toy files")
  Traceback (most recent call last):
  ...
  ValueError: toy files: the train split has no examples of class 2 ('c')
  """
  counts = {}
  for split_name, split_labels in labels.items():
    split_labels = np.asarray(split_labels, np.int64)
    if len(split_labels) == 0:
      raise ValueError(f"{where}: the {split_name} split is empty")
    outside = split_labels[(split_labels < 0) | (split_labels >= len(class_names))]
    if len(outside):
      raise ValueError(
        f"{where}: {len(outside)} {split_name} labels outside 0..{len(class_names) - 1} "
        f"(e.g. {int(outside[0])})"
      )
    counts[split_name] = np.bincount(split_labels, minlength=len(class_names))
    missing = np.flatnonzero(counts[split_name] == 0)
    if every_class and len(missing):
      names = ", ".join(f"{c} ({class_names[c]!r})" for c in missing)
      plural = "es" if len(missing) > 1 else ""
      raise ValueError(f"{where}: the {split_name} split has no examples of class{plural} {names}")
  return counts


def warn_unless_standard(
  where: str, counts: Mapping[str, int], standard: Mapping[str, int]
) -> None:
  """Warns with a `DataSizeWarning` when any count differs from its standard value.

  Args:
      where: names the source in the message.
      counts: what was read, e.g. {"train/neg": 12500, ...}.
      standard: the counts of the standard distribution, with the same keys.

  >>> warn_unless_standard("aclImdb", {"train": 3}, {"train": 3})  # silent
  """
  if any(counts[key] != standard[key] for key in standard):
    found = ", ".join(f"{key} {counts[key]:,}" for key in standard)
    expected = ", ".join(f"{key} {standard[key]:,}" for key in standard)
    warnings.warn(
      f"{where}: found {found}; the standard distribution has {expected}. Using the examples "
      "as they are (a subset?); if this copy should be complete, it is damaged: get it again.",
      DataSizeWarning,
      stacklevel=3,
    )
