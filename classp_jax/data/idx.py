"""MNIST-family IDX files (MNIST, Fashion-MNIST), plain or gzipped, as distributed by their sites.

The format (http://yann.lecun.com/exdb/mnist/): a big-endian header of two zero bytes, a type
byte (0x08 = unsigned byte), a byte giving the number of dimensions, then one uint32 per
dimension, then the data in C order.

Damage is an error naming the file: a gzip stream that fails its CRC or length check or is
cut short, a wrong magic number, data shorter or longer than the header says, image and label
counts that differ, train and test images of different sizes, a label outside 0..9, or a
digit missing from a split. Subsets (such as the first 10,000 training images) are fine.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from classp_jax.data.checks import class_counts
from classp_jax.data.containers import Split

# (images, labels) of each split, without the optional ".gz".
IDX_FILES = {
  "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
  "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_UBYTE = 0x08
_CLASS_NAMES = tuple(str(d) for d in range(10))  # the label values of MNIST and Fashion-MNIST


def find_idx_files(folder: Path) -> dict[str, Path] | None:
  """Finds the four IDX files in `folder`, each plain or gzipped.

  Args:
      folder: where to look.

  Returns:
      The path of each standard file name, or None if any is missing.
  """
  found = {}
  for base in (name for pair in IDX_FILES.values() for name in pair):
    candidates = [folder / base, folder / f"{base}.gz"]
    existing = [path for path in candidates if path.is_file()]
    if not existing:
      return None
    found[base] = existing[0]
  return found


def read_idx(path: Path, ndim: int) -> np.ndarray:
  """Reads one IDX file of unsigned bytes.

  Args:
      path: the file, gzipped if its name ends in ".gz".
      ndim: the number of dimensions expected: 3 for images, 1 for labels.

  Returns:
      A uint8 array of the stored shape.

  Raises:
      ValueError: naming the file, when it is not a valid IDX file of `ndim` dimensions.
  """
  try:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
  except (OSError, EOFError, zlib.error) as error:  # gzip raises these for damaged streams
    raise ValueError(f"{path}: not a readable gzip file ({error})") from error
  header_size = 4 + 4 * ndim
  if len(raw) < header_size:
    raise ValueError(f"{path}: truncated header ({len(raw)} bytes)")
  magic = int.from_bytes(raw[:4], "big")
  if magic != (_UBYTE << 8) | ndim:
    raise ValueError(
      f"{path}: wrong magic number 0x{magic:08x}, expected 0x{(_UBYTE << 8) | ndim:08x} "
      f"(unsigned bytes, {ndim} dimensions)"
    )
  shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
  expected = int(np.prod(shape))
  actual = len(raw) - header_size
  if actual != expected:
    problem = "truncated data" if actual < expected else "trailing bytes"
    raise ValueError(
      f"{path}: {problem}: the header gives shape {shape} ({expected} bytes) "
      f"but {actual} bytes follow"
    )
  return np.frombuffer(raw, np.uint8, offset=header_size).reshape(shape)


def read_idx_splits(files: dict[str, Path]) -> dict[str, Split]:
  """Reads the train and test splits from the files `find_idx_files` found.

  Args:
      files: from `find_idx_files`.

  Returns:
      {"train": Split, "test": Split}, images uint8 (N, H, W, 1), labels int32.

  Raises:
      ValueError: naming the file: a corrupt file, image and label counts that differ, train
          and test images of different sizes, a label outside 0..9, or a class missing
          from a split.
  """
  splits = {}
  for split_name, (images_name, labels_name) in IDX_FILES.items():
    images = read_idx(files[images_name], ndim=3)
    labels = read_idx(files[labels_name], ndim=1)
    if len(images) != len(labels):
      raise ValueError(
        f"{files[images_name]} holds {len(images)} images but "
        f"{files[labels_name]} holds {len(labels)} labels"
      )
    class_counts({split_name: labels}, _CLASS_NAMES, str(files[labels_name]))
    splits[split_name] = Split(images[..., None], labels.astype(np.int32))
  train_shape, test_shape = (splits[name].inputs.shape[1:3] for name in ("train", "test"))
  if train_shape != test_shape:
    raise ValueError(
      f"{files['train-images-idx3-ubyte']} holds {train_shape[0]}x{train_shape[1]} images but "
      f"{files['t10k-images-idx3-ubyte']} holds {test_shape[0]}x{test_shape[1]} images"
    )
  return splits
