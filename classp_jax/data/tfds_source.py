"""Reading TensorFlow Datasets (TFDS) through `tfds.data_source`, which needs no TensorFlow.

Reading needs the dataset *prepared* in the `array_record` file format under `data_dir`
(default: `$TFDS_DATA_DIR`, else `~/tensorflow_datasets`). Preparing it (downloading and
converting) needs internet access and TensorFlow (`pip install tensorflow`); do it once with
`download=True`, or on another machine with
`tfds build mnist --file_format=array_record --data_dir=DIR` and copy DIR over.
Nothing is read from Google Cloud Storage (`try_gcs=False`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from classp_jax.data.checks import class_counts
from classp_jax.data.containers import Split


class TfdsUnavailableError(FileNotFoundError):
  """The dataset is not prepared in `data_dir` and could not be prepared here."""


def _where(data_dir: Path | None) -> str:
  return f"TFDS data_dir {data_dir}" if data_dir else "the default TFDS data_dir"


def prepare_tfds(tfds_name: str, *, data_dir: Path | None, download: bool) -> list[Path]:
  """Makes sure the dataset is prepared (if `download`) and lists its prepared files.

  Args:
      tfds_name: the TFDS name, e.g. "mnist".
      data_dir: the TFDS data folder, or None for TFDS's default.
      download: whether to download and prepare the dataset if it is not prepared.

  Returns:
      The files of the prepared dataset (empty if it is not prepared), to fingerprint.

  Raises:
      TfdsUnavailableError: `download` is set and preparing failed (offline, no TensorFlow).
  """
  import tensorflow_datasets as tfds

  builder = tfds.builder(tfds_name, data_dir=data_dir, try_gcs=False)
  if download:
    try:
      if _downloads(builder) and not builder.is_prepared():
        _check_reachable(builder)  # offline, TFDS retries each download for minutes
      builder.download_and_prepare(file_format="array_record")  # no-op once prepared
    except Exception as error:  # network, missing TensorFlow, ...: one clear message
      raise TfdsUnavailableError(
        f"could not download and prepare TFDS dataset {tfds_name!r} into "
        f"{_where(data_dir)}: {type(error).__name__}: {error}. Offline, pass data_dir "
        "(--data-dir) holding its standard files, or the dataset prepared in the "
        "array_record format, or use the embedded 'digits' data (classp-jax run digits); "
        "preparing needs internet access and TensorFlow (pip install tensorflow)."
      ) from error
  folder = Path(builder.data_dir)
  return sorted(p for p in folder.glob("*") if p.is_file()) if folder.is_dir() else []


def _downloads(builder: Any) -> bool:
  """Whether the builder's download_and_prepare is TFDS's own: a mocked TFDS
  (``tfds.testing.mock_data``) downloads nothing."""
  prepare = type(builder).download_and_prepare
  return getattr(prepare, "__module__", None) == "tensorflow_datasets.core.dataset_builder"


def _check_reachable(builder: Any, timeout_s: float = 5.0) -> None:
  """Raises ConnectionError, in seconds, when no host the dataset downloads from answers."""
  import socket
  from urllib.parse import urlsplit

  hosts = {
    (url.hostname, url.port or (443 if url.scheme == "https" else 80))
    for url in map(urlsplit, builder.url_infos or ())
    if url.hostname
  }
  failures = []
  for host in sorted(hosts):
    try:
      socket.create_connection(host, timeout=timeout_s).close()
      return
    except OSError as error:
      failures.append(f"{host[0]}: {error.strerror or error}")
  if failures:
    raise ConnectionError(f"no network: cannot reach {'; '.join(failures)}")


def read_tfds(
  tfds_name: str, *, data_dir: Path | None, input_key: str, class_names: Sequence[str]
) -> dict[str, Split]:
  """Reads the train and test splits of a prepared dataset with `tfds.data_source`.

  Args:
      tfds_name: the TFDS name, e.g. "mnist".
      data_dir: the TFDS data folder, or None for TFDS's default.
      input_key: the feature holding the inputs, "image" or "text".
      class_names: the dataset's classes; every label must index them.

  Returns:
      {"train": Split, "test": Split}: uint8 images (N, H, W, C) or raw strings; int32 labels.

  Raises:
      TfdsUnavailableError: the dataset is not prepared in the array_record format.
      ValueError: an empty split, or a label outside the classes.
  """
  import tensorflow_datasets as tfds

  try:
    sources = tfds.data_source(
      tfds_name, split=["train", "test"], data_dir=data_dir, download=False, try_gcs=False
    )
  except Exception as error:  # not prepared, or prepared as tfrecord
    raise TfdsUnavailableError(
      f"TFDS dataset {tfds_name!r} is not prepared in the array_record format in "
      f"{_where(data_dir)} ({type(error).__name__}: {error}). Pass download=True (needs "
      "internet and TensorFlow), or data_dir holding it prepared with "
      f"`tfds build {tfds_name} --file_format=array_record`, or use source='local'."
    ) from error
  splits = {
    split_name: _to_split(source, input_key, f"TFDS {tfds_name!r} {split_name}")
    for split_name, source in zip(("train", "test"), sources)
  }
  where = f"TFDS {tfds_name!r} in {_where(data_dir)}"
  # TFDS checks its own files; a class may legitimately be absent from a small split.
  class_counts(
    {name: split.labels for name, split in splits.items()}, class_names, where, every_class=False
  )
  return splits


def _to_split(source: Any, input_key: str, what: str) -> Split:
  if len(source) == 0:
    raise ValueError(f"{what}: the split is empty")
  # The plain sequence protocol, one record at a time; the decoded arrays are cached, so
  # this runs once per prepared dataset.
  examples = list(source)
  labels = np.array([example["label"] for example in examples], np.int32)
  if input_key == "image":
    inputs = np.stack([np.asarray(example["image"], np.uint8) for example in examples])
  else:
    inputs = np.empty(len(examples), object)
    inputs[:] = [_as_str(example[input_key]) for example in examples]
  return Split(inputs, labels)


def _as_str(value: str | bytes) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)
