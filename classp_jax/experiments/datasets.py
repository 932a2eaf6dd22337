"""Loading an experiment's datasets from one data root.

``--data-dir ROOT`` names one folder for every dataset an experiment reads:
each dataset is found in ROOT itself or in a subfolder named after it
(`classp_jax.data.dataset_folders`: ``ROOT/mnist`` or ``ROOT/mnist-10k``,
``ROOT/fashion_mnist`` or ``ROOT/fashion-mnist``, ``ROOT/imdb``,
``ROOT/financial_phrasebank`` or ``ROOT/financial-phrasebank``). Without
local files, datasets come from TFDS (``--source``).
"""

from __future__ import annotations

from classp_jax.data import Dataset, find_local_files, load_dataset
from classp_jax.experiments.base import DataOptions


def load_datasets(names: tuple[str, ...], options: DataOptions) -> list[Dataset]:
  """Loads each named dataset from ``options``.

  Raises:
    ValueError: two datasets would be read from the same files (ROOT itself
      holds one dataset's files, so every dataset would find them there).
  """
  if options.data_dir is not None and options.source != "tfds":
    found = {name: find_local_files(name, options.data_dir) for name in names}
    readers: dict[tuple, str] = {}
    for name, files in found.items():
      if files is None:
        continue
      if tuple(files) in readers:
        raise ValueError(
          f"{readers[tuple(files)]} and {name} would both read {files[0].parent}: "
          f"put each dataset in its own subfolder of --data-dir (e.g. {name.replace('_', '-')}/)"
        )
      readers[tuple(files)] = name
  return [load_dataset(name, source=options.source, data_dir=options.data_dir) for name in names]
