"""Tiny-ImageNet (the CS231n subset of ImageNet: 200 classes of 64x64 images) as distributed.

Accepted forms, in `data_dir`: the extracted folder `tiny-imagenet-200/` (or `data_dir`
itself, if it holds `wnids.txt`), or the archive `tiny-imagenet-200.zip` from
http://cs231n.stanford.edu/tiny-imagenet-200.zip. Inside:

- `wnids.txt`: the 200 WordNet ids, one a line; label i is the i-th (the file's order, as
  Avalanche reads it), and the class names are the ids;
- `train/<wnid>/images/*.JPEG`: 500 training images per class;
- `val/images/*.JPEG` and `val/val_annotations.txt` (`<file>\\t<wnid>\\t<box>`): 50 per class;
- `test/images/*.JPEG`, unlabelled, so not read: the labelled validation set is the test
  split, as the field uses it.

Images are decoded with Pillow to uint8 RGB (N, 64, 64, 3); the grayscale JPEGs among them
become three equal channels. Each split is sorted by the image's path inside the folder, so
the folder and the zip give identical datasets.

Damage is an error naming the file: a damaged zip (bad CRC, truncated), a missing
`wnids.txt` or `val_annotations.txt`, a repeated wnid, a training folder or annotation of a
wnid not in `wnids.txt`, a validation image without an annotation or an annotation without
its image, an image that does not decode or is not 64x64, or a class missing from a split.
Counts other than 200 classes, 100,000 training and 10,000 test images are a
`DataSizeWarning` (`check_tiny_imagenet_counts`).
"""

from __future__ import annotations

import io
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from classp_jax.data.checks import class_counts, warn_unless_standard
from classp_jax.data.containers import Split

TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINY_IMAGENET_FOLDER = "tiny-imagenet-200"
TINY_IMAGENET_STANDARD_COUNTS = {"classes": 200, "train": 100_000, "test": 10_000}
TINY_IMAGENET_EXPECTED = (
  f"the {TINY_IMAGENET_FOLDER}/ folder (wnids.txt, train/<wnid>/images/*.JPEG, val/images/ "
  f"and val/val_annotations.txt) or {TINY_IMAGENET_FOLDER}.zip, from {TINY_IMAGENET_URL}"
)
_SIZE = 64
_WNIDS = "wnids.txt"
_ANNOTATIONS = "val/val_annotations.txt"
# Image paths inside the folder: the training images of one wnid, and the validation images.
_TRAIN_IMAGE = re.compile(r"^train/([^/]+)/images/([^/]+\.jpe?g)$", re.IGNORECASE)
_VAL_IMAGE = re.compile(r"^val/images/([^/]+\.jpe?g)$", re.IGNORECASE)


def find_tiny_imagenet(folder: Path) -> list[Path] | None:
  """Finds the extracted folder (by its `wnids.txt`) or the zip in `folder`.

  Args:
      folder: where to look.

  Returns:
      The source files: the zip, or the folder's `wnids.txt`, `val_annotations.txt` and
      images (`wnids.txt` first); None if neither form is there.
  """
  for root in (folder, folder / TINY_IMAGENET_FOLDER):
    if (root / _WNIDS).is_file():
      images = [p for p in root.glob("train/*/images/*") if p.is_file()]
      images += [p for p in root.glob("val/images/*") if p.is_file()]
      annotations = [root / _ANNOTATIONS] if (root / _ANNOTATIONS).is_file() else []
      return [root / _WNIDS, *annotations, *sorted(images)]
  archive = folder / f"{TINY_IMAGENET_FOLDER}.zip"
  return [archive] if archive.is_file() else None


def tiny_imagenet_location(files: list[Path]) -> Path:
  """The zip or the extracted folder that `find_tiny_imagenet`'s files come from.

  Args:
      files: from `find_tiny_imagenet`.

  Returns:
      The zip, or the folder holding `wnids.txt`.
  """
  return files[0] if files[0].suffix == ".zip" else files[0].parent


@contextmanager
def _opened(location: Path) -> Iterator[tuple[list[str], Callable[[str], bytes]]]:
  """(the member paths below the folder, a reader of one) for the folder or the zip."""
  if location.is_dir():
    paths = [p.relative_to(location).as_posix() for p in location.rglob("*") if p.is_file()]
    yield paths, lambda path: (location / path).read_bytes()
    return
  try:
    with zipfile.ZipFile(location) as archive:
      names = [info.filename for info in archive.infolist() if not info.is_dir()]
      tops = sorted((n for n in names if n.rpartition("/")[2] == _WNIDS), key=len)
      prefix = tops[0][: -len(_WNIDS)] if tops else f"{TINY_IMAGENET_FOLDER}/"
      inside = [n[len(prefix) :] for n in names if n.startswith(prefix)]
      yield inside, lambda path: archive.read(prefix + path)
  except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
    raise ValueError(
      f"{location}: damaged zip archive ({type(error).__name__}: {error}). Nothing was "
      f"loaded; download it again from {TINY_IMAGENET_URL}"
    ) from error


def _lines(data: bytes, where: str) -> list[str]:
  try:
    text = data.decode("utf-8")
  except UnicodeDecodeError as error:
    raise ValueError(f"{where}: not UTF-8 text ({error})") from error
  return [line.strip() for line in text.splitlines() if line.strip()]


def _required(paths: set[str], read: Callable[[str], bytes], path: str, location: Path) -> bytes:
  if path not in paths:
    raise ValueError(
      f"{location}: no {path} (an incomplete download or extraction?); expected "
      f"{TINY_IMAGENET_EXPECTED}"
    )
  return read(path)


def _wnids(data: bytes, where: str) -> tuple[str, ...]:
  wnids = tuple(_lines(data, where))
  if not wnids:
    raise ValueError(f"{where}: no wnids")
  repeated = sorted({w for w in wnids if wnids.count(w) > 1})
  if repeated:
    raise ValueError(f"{where}: {', '.join(repeated)} listed more than once")
  return wnids


def tiny_imagenet_wnids(location: Path) -> tuple[str, ...]:
  """The class names: the wnids of `wnids.txt`, in its order (label i is the i-th).

  Args:
      location: from `tiny_imagenet_location`.

  Returns:
      The wnids.
  """
  with _opened(location) as (paths, read):
    return _wnids(_required(set(paths), read, _WNIDS, location), f"{location}:{_WNIDS}")


def _annotations(data: bytes, wnids: dict[str, int], where: str) -> dict[str, int]:
  """Validation image file name -> label, from `val_annotations.txt`."""
  labels = {}
  for number, line in enumerate(_lines(data, where), 1):
    fields = line.split("\t")
    if len(fields) < 2:
      raise ValueError(f"{where}: line {number} is not '<file>\\t<wnid>\\t...': {line!r}")
    file_name, wnid = fields[0], fields[1]
    if wnid not in wnids:
      raise ValueError(f"{where}: line {number}: {wnid} is not in wnids.txt")
    if file_name in labels:
      raise ValueError(f"{where}: line {number}: {file_name} annotated twice")
    labels[file_name] = wnids[wnid]
  return labels


def _decode(data: bytes, where: str) -> np.ndarray:
  """A JPEG's pixels as uint8 RGB (64, 64, 3); grayscale (and CMYK) images converted."""
  from PIL import Image, UnidentifiedImageError  # Pillow: only needed for Tiny-ImageNet

  try:
    with Image.open(io.BytesIO(data)) as image:
      pixels = np.asarray(image.convert("RGB"), np.uint8)
  except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
    raise ValueError(f"{where}: not a readable image ({type(error).__name__}: {error})") from error
  if pixels.shape != (_SIZE, _SIZE, 3):
    raise ValueError(f"{where}: a {pixels.shape[1]}x{pixels.shape[0]} image, not {_SIZE}x{_SIZE}")
  return pixels


def _decode_all(paths: list[str], read: Callable[[str], bytes], location: Path) -> np.ndarray:
  images = np.empty((len(paths), _SIZE, _SIZE, 3), np.uint8)
  for i, path in enumerate(paths):
    images[i] = _decode(read(path), f"{location}:{path}")
  return images


def read_tiny_imagenet(location: Path) -> dict[str, Split]:
  """Reads the training images and the labelled validation images (the test split).

  Args:
      location: from `tiny_imagenet_location`.

  Returns:
      {"train": Split, "test": Split}: uint8 images (N, 64, 64, 3), int32 labels indexing
      `tiny_imagenet_wnids(location)`.

  Raises:
      ValueError: naming the file, for any damage listed in the module docstring.
  """
  with _opened(location) as (paths, read):
    present = set(paths)
    wnids = _wnids(_required(present, read, _WNIDS, location), f"{location}:{_WNIDS}")
    index = {wnid: i for i, wnid in enumerate(wnids)}
    where = f"{location}:{_ANNOTATIONS}"
    annotated = _annotations(_required(present, read, _ANNOTATIONS, location), index, where)

    train = sorted(p for p in paths if _TRAIN_IMAGE.match(p))
    strangers = sorted({_TRAIN_IMAGE.match(p)[1] for p in train} - set(index))
    if strangers:
      raise ValueError(
        f"{location}: training folders of wnids not in wnids.txt: {', '.join(strangers[:5])}"
      )
    test = sorted(p for p in paths if _VAL_IMAGE.match(p))
    names = {_VAL_IMAGE.match(p)[1]: p for p in test}
    unannotated = sorted(set(names) - set(annotated))
    if unannotated:
      raise ValueError(f"{where}: no annotation for {', '.join(unannotated[:5])}")
    missing = sorted(set(annotated) - set(names))
    if missing:
      raise ValueError(f"{where} lists images missing from val/images/: {', '.join(missing[:5])}")

    labels = {
      "train": np.array([index[_TRAIN_IMAGE.match(p)[1]] for p in train], np.int32),
      "test": np.array([annotated[_VAL_IMAGE.match(p)[1]] for p in test], np.int32),
    }
    class_counts(labels, wnids, f"{location} (train: train/<wnid>/images/, test: val/)")
    return {
      "train": Split(_decode_all(train, read, location), labels["train"]),
      "test": Split(_decode_all(test, read, location), labels["test"]),
    }


def check_tiny_imagenet_counts(
  splits: dict[str, Split], class_names: tuple[str, ...], where: Path
) -> None:
  """Warns (`DataSizeWarning`) unless there are 200 classes, 100,000 and 10,000 images.

  Args:
      splits: from `read_tiny_imagenet`.
      class_names: the wnids.
      where: the folder or zip, named in the warning.
  """
  counts = {"classes": len(class_names), **{name: len(s) for name, s in splits.items()}}
  warn_unless_standard(str(where), counts, TINY_IMAGENET_STANDARD_COUNTS)
