"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009) in the forms their site distributes.

From https://www.cs.toronto.edu/~kriz/cifar.html, in `data_dir`, in this order of preference:

| dataset | binary version | Python version |
| --- | --- | --- |
| CIFAR-10 | `cifar-10-binary.tar.gz` (`cifar-10-batches-bin/data_batch_{1..5}.bin`, `test_batch.bin`) | `cifar-10-python.tar.gz` (`cifar-10-batches-py/data_batch_{1..5}`, `test_batch`) |
| CIFAR-100 | `cifar-100-binary.tar.gz` (`cifar-100-binary/train.bin`, `test.bin`) | `cifar-100-python.tar.gz` (`cifar-100-python/train`, `test`) |

each either as the archive or as its extracted folder (as torchvision and Keras leave it),
the folder first. A binary file is a sequence of records: CIFAR-10's are 1 label byte and
3,072 pixel bytes, CIFAR-100's a coarse label byte, a fine label byte and the 3,072 pixels
(1,024 red, then green, then blue, each 32x32 row by row). A Python file is a pickled dict
with `data` (uint8, (N, 3072), the same pixel order) and `labels` (CIFAR-10) or
`fine_labels` and `coarse_labels` (CIFAR-100); it is read with `restricted_loads`, which
refuses any pickle that could run code.

Images are returned as uint8 (N, 32, 32, 3), in file order (training batches 1 to 5).
CIFAR-100's labels are its 100 fine classes; its 20 coarse classes are
`CIFAR100_COARSE_OF_FINE[fine]` (load them as the dataset `cifar100_coarse`). Class
indices are those of the files' label-name lists (`batches.meta.txt`,
`fine_label_names.txt`, ...), which are alphabetical.

Damage is an error naming the file: a damaged archive (see `classp_jax.data.archives`), a
missing batch file, a binary file that is not a whole number of records, a pickle that is
not a dict of the expected arrays, a label outside the classes, a coarse label that is not
its fine label's superclass, or a class missing from a split. Counts other than 50,000
training and 10,000 test images are a `DataSizeWarning` (`check_cifar_counts`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from classp_jax.data.archives import read_tar_gz
from classp_jax.data.checks import class_counts, warn_unless_standard
from classp_jax.data.containers import Split
from classp_jax.data.safe_pickle import restricted_loads

CIFAR_SOURCE_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
CIFAR_STANDARD_COUNTS = {"train": 50_000, "test": 10_000}
CIFAR10_CLASS_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
# CIFAR-100's 20 superclasses and their 5 classes each, as the CIFAR page lists them.
CIFAR100_SUPERCLASSES = {
  "aquatic_mammals": ("beaver", "dolphin", "otter", "seal", "whale"),
  "fish": ("aquarium_fish", "flatfish", "ray", "shark", "trout"),
  "flowers": ("orchid", "poppy", "rose", "sunflower", "tulip"),
  "food_containers": ("bottle", "bowl", "can", "cup", "plate"),
  "fruit_and_vegetables": ("apple", "mushroom", "orange", "pear", "sweet_pepper"),
  "household_electrical_devices": ("clock", "keyboard", "lamp", "telephone", "television"),
  "household_furniture": ("bed", "chair", "couch", "table", "wardrobe"),
  "insects": ("bee", "beetle", "butterfly", "caterpillar", "cockroach"),
  "large_carnivores": ("bear", "leopard", "lion", "tiger", "wolf"),
  "large_man-made_outdoor_things": ("bridge", "castle", "house", "road", "skyscraper"),
  "large_natural_outdoor_scenes": ("cloud", "forest", "mountain", "plain", "sea"),
  "large_omnivores_and_herbivores": ("camel", "cattle", "chimpanzee", "elephant", "kangaroo"),
  "medium_mammals": ("fox", "porcupine", "possum", "raccoon", "skunk"),
  "non-insect_invertebrates": ("crab", "lobster", "snail", "spider", "worm"),
  "people": ("baby", "boy", "girl", "man", "woman"),
  "reptiles": ("crocodile", "dinosaur", "lizard", "snake", "turtle"),
  "small_mammals": ("hamster", "mouse", "rabbit", "shrew", "squirrel"),
  "trees": ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"),
  "vehicles_1": ("bicycle", "bus", "motorcycle", "pickup_truck", "train"),
  "vehicles_2": ("lawn_mower", "rocket", "streetcar", "tank", "tractor"),
}
CIFAR100_COARSE_CLASS_NAMES = tuple(sorted(CIFAR100_SUPERCLASSES))
CIFAR100_CLASS_NAMES = tuple(sorted(c for group in CIFAR100_SUPERCLASSES.values() for c in group))
# The superclass (coarse label) of each fine label.
CIFAR100_COARSE_OF_FINE = np.array(
  [
    CIFAR100_COARSE_CLASS_NAMES.index(
      next(coarse for coarse, group in CIFAR100_SUPERCLASSES.items() if fine in group)
    )
    for fine in CIFAR100_CLASS_NAMES
  ],
  np.int32,
)
_PIXELS = 32 * 32 * 3


@dataclass(frozen=True)
class _Form:
  """One distributed form of a dataset: its archive, the folder inside, its member files."""

  archive: str
  folder: str
  members: dict[str, tuple[str, ...]]  # split -> the files holding it, in order
  binary: bool


_FORMS = {
  "cifar10": (
    _Form(
      "cifar-10-binary.tar.gz",
      "cifar-10-batches-bin",
      {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)},
      binary=True,
    ),
    _Form(
      "cifar-10-python.tar.gz",
      "cifar-10-batches-py",
      {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
      binary=False,
    ),
  ),
  "cifar100": (
    _Form(
      "cifar-100-binary.tar.gz",
      "cifar-100-binary",
      {"train": ("train.bin",), "test": ("test.bin",)},
      binary=True,
    ),
    _Form(
      "cifar-100-python.tar.gz",
      "cifar-100-python",
      {"train": ("train",), "test": ("test",)},
      binary=False,
    ),
  ),
}
CIFAR_EXPECTED = {
  name: " or ".join(f"{form.archive} (or its folder {form.folder}/)" for form in forms)
  + f", from {CIFAR_SOURCE_URL}"
  for name, forms in _FORMS.items()
}


def _member_names(form: _Form) -> list[str]:
  return [member for split in ("train", "test") for member in form.members[split]]


def _forms(dataset: str) -> tuple[_Form, ...]:
  if dataset not in _FORMS:
    raise ValueError(f"unknown CIFAR dataset {dataset!r}; choose one of {tuple(_FORMS)}")
  return _FORMS[dataset]


def find_cifar(folder: Path, dataset: str) -> list[Path] | None:
  """Finds one of the dataset's forms in `folder` (see the module docstring for the order).

  An extracted folder is `folder/<its name>` or `folder` itself when it has that name; it
  is taken if it holds any of the form's batch files, so that a folder missing some is
  reported as such rather than as absent.

  Args:
      folder: where to look.
      dataset: "cifar10" or "cifar100".

  Returns:
      The source files: the archive, or the batch files of the extracted folder that are
      there; None if no form is there.
  """
  for form in _forms(dataset):
    extracted = [folder / form.folder, *([folder] if folder.name == form.folder else [])]
    for place in extracted:
      present = [place / m for m in _member_names(form) if (place / m).is_file()]
      if present:
        return present
    if (folder / form.archive).is_file():
      return [folder / form.archive]
  return None


def _form_of(files: list[Path], dataset: str) -> tuple[_Form, Path]:
  """The form and location (the archive or the extracted folder) of `find_cifar`'s files."""
  for form in _forms(dataset):
    if files[0].name == form.archive:
      return form, files[0]
    if files[0].parent.name == form.folder and files[0].name in _member_names(form):
      return form, files[0].parent
  raise ValueError(f"{files[0]} is not one of {dataset}'s files: {CIFAR_EXPECTED[dataset]}")


def _member_bytes(form: _Form, location: Path) -> dict[str, bytes]:
  """Each batch file's bytes, by its name, from the archive or the folder; all must be there."""
  wanted = set(_member_names(form))
  if location.is_file():
    found = read_tar_gz(
      location,
      lambda path: path.rpartition("/")[0] == form.folder and path.rpartition("/")[2] in wanted,
      CIFAR_SOURCE_URL,
    )
    data = {path.rpartition("/")[2]: content for path, content in found.items()}
  else:
    data = {m: (location / m).read_bytes() for m in wanted if (location / m).is_file()}
  missing = [m for m in _member_names(form) if m not in data]
  if missing:
    inside = f"{form.folder}/ in the archive" if location.is_file() else "the folder"
    raise ValueError(
      f"{location}: {', '.join(missing)} missing from {inside} (an incomplete download or "
      f"extraction?); get {form.archive} again from {CIFAR_SOURCE_URL}"
    )
  return data


def _read_binary(data: bytes, label_bytes: int, where: str) -> tuple[np.ndarray, np.ndarray]:
  """(images (N, 3072), labels (N, label_bytes)) from a binary batch file's records."""
  record = label_bytes + _PIXELS
  if len(data) % record:
    raise ValueError(
      f"{where}: {len(data):,} bytes is not a whole number of {record:,}-byte records "
      f"({len(data) // record:,} records and {len(data) % record:,} bytes over): a record "
      "of the wrong length, or a truncated file"
    )
  records = np.frombuffer(data, np.uint8).reshape(-1, record)
  return records[:, label_bytes:], records[:, :label_bytes].astype(np.int32)


def _pickled_field(batch: dict, key: str, where: str) -> object:
  for candidate in (key, key.encode()):
    if candidate in batch:
      return batch[candidate]
  raise ValueError(f"{where}: the pickled batch has no {key!r} entry (keys: {sorted(batch)})")


def _read_pickle(data: bytes, label_keys: tuple[str, ...], where: str):
  """(images (N, 3072), labels (N, len(label_keys))) from a pickled Python batch file."""
  batch = restricted_loads(data, where)  # UnsafePickleError for a pickle that could run code
  if not isinstance(batch, dict):
    raise ValueError(f"{where}: the pickle holds a {type(batch).__name__}, not a batch dict")
  images = _pickled_field(batch, "data", where)
  if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 2:
    raise ValueError(f"{where}: 'data' is not a 2-D uint8 array")
  if images.shape[1] != _PIXELS:
    raise ValueError(f"{where}: 'data' has rows of {images.shape[1]:,} bytes, not {_PIXELS:,}")
  columns = []
  for key in label_keys:
    labels = np.asarray(_pickled_field(batch, key, where))
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
      raise ValueError(f"{where}: {key!r} is not a list of integer labels")
    if len(labels) != len(images):
      raise ValueError(f"{where}: {len(images):,} images but {len(labels):,} {key!r}")
    columns.append(labels.astype(np.int64))
  return images, np.stack(columns, axis=1)


def _check_superclasses(fine: np.ndarray, coarse: np.ndarray, where: str) -> None:
  outside = (coarse < 0) | (coarse >= len(CIFAR100_COARSE_CLASS_NAMES))
  wrong = outside | (CIFAR100_COARSE_OF_FINE[np.clip(fine, 0, 99)] != coarse)
  if wrong.any():
    i = int(np.flatnonzero(wrong)[0])
    raise ValueError(
      f"{where}: {int(wrong.sum()):,} coarse labels are not their fine label's superclass "
      f"(e.g. image {i:,}: fine {int(fine[i])}, coarse {int(coarse[i])})"
    )


def read_cifar(files: list[Path], dataset: str) -> dict[str, Split]:
  """Reads the train and test splits from the files `find_cifar` found.

  Args:
      files: from `find_cifar`.
      dataset: "cifar10" or "cifar100".

  Returns:
      {"train": Split, "test": Split}: uint8 images (N, 32, 32, 3) and int32 labels (the
      fine labels for CIFAR-100).

  Raises:
      UnsafePickleError: a Python batch file whose pickle names a global that could run code.
      ValueError: naming the file, for any damage listed in the module docstring.
  """
  form, location = _form_of(files, dataset)
  data = _member_bytes(form, location)
  label_names = ("coarse_labels", "fine_labels") if dataset == "cifar100" else ("labels",)
  splits, labels = {}, {}
  for split_name, members in form.members.items():
    parts = []
    for member in members:
      where = f"{location}:{member}" if location.is_file() else str(location / member)
      if form.binary:
        parts.append(_read_binary(data.pop(member), len(label_names), where))
      else:
        parts.append(_read_pickle(data.pop(member), label_names, where))
    pixels = np.concatenate([images for images, _ in parts])
    read = np.concatenate([columns for _, columns in parts])
    labels[split_name] = read[:, -1]  # CIFAR-10's only label, CIFAR-100's fine one
    where = f"{location} ({split_name} split)"
    names = CIFAR100_CLASS_NAMES if dataset == "cifar100" else CIFAR10_CLASS_NAMES
    class_counts({split_name: labels[split_name]}, names, where)
    if dataset == "cifar100":
      _check_superclasses(read[:, 1], read[:, 0], where)
    images = pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    splits[split_name] = Split(np.ascontiguousarray(images), labels[split_name].astype(np.int32))
  return splits


def check_cifar_counts(splits: dict[str, Split], where: Path) -> None:
  """Warns (`DataSizeWarning`) unless there are 50,000 training and 10,000 test images.

  Args:
      splits: from `read_cifar`.
      where: the archive or folder, named in the warning.
  """
  counts = {name: len(split) for name, split in splits.items()}
  warn_unless_standard(str(where), counts, CIFAR_STANDARD_COUNTS)


def cifar_location(files: list[Path], dataset: str) -> Path:
  """The archive or extracted folder that `find_cifar`'s files come from.

  Args:
      files: from `find_cifar`.
      dataset: "cifar10" or "cifar100".

  Returns:
      The path, for messages.
  """
  return _form_of(files, dataset)[1]
