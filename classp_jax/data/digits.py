"""The embedded default dataset: scikit-learn's bundled 8x8 handwritten digits (UCI).

1,797 real images, installed with scikit-learn, so it works offline on a fresh machine.
Pixel values 0..16 are scaled to uint8 0..255 (round(v * 255 / 16)). There is no official
split: `stratified_split` keeps 20% of each digit for test by default (seeded).
"""

from __future__ import annotations

import numpy as np

from classp_jax.data.containers import Split
from classp_jax.data.stratified import stratified_split

DIGITS_CLASS_NAMES = tuple(str(d) for d in range(10))


def read_digits(*, test_fraction: float, seed: int) -> dict[str, Split]:
  """Loads the digits and splits them.

  Args:
      test_fraction: the fraction of each class held out for test.
      seed: the split's seed.

  Returns:
      {"train": Split, "test": Split}: uint8 images (N, 8, 8, 1) and int32 labels.
  """
  from sklearn.datasets import load_digits  # imported here: sklearn takes a second to load

  bunch = load_digits()
  images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  train, test = stratified_split(
    images, bunch.target.astype(np.int32), test_fraction=test_fraction, seed=seed
  )
  return {"train": train, "test": test}
