"""`load_dataset`: one entry point for TFDS, local standard files and the embedded `digits`.

| name | local files (in `data_dir`) | TFDS | classes |
| --- | --- | --- | --- |
| `mnist` | the four IDX files, plain or .gz | `mnist` | '0'..'9' |
| `fashion_mnist` | the four IDX files, plain or .gz | `fashion_mnist` | the 10 standard names |
| `imdb_reviews` | the `aclImdb` tree or `aclImdb*.tar.gz` | `imdb_reviews` | ('neg', 'pos') |
| `financial_phrasebank` | `Sentences_<agreement>.txt` | not in the catalog | negative, neutral, positive |
| `cifar10` | `cifar-10-binary.tar.gz` or `cifar-10-python.tar.gz`, or their folders | `cifar10` | airplane, ..., truck |
| `cifar100` | `cifar-100-binary.tar.gz` or `cifar-100-python.tar.gz`, or their folders | `cifar100` | the 100 fine classes |
| `cifar100_coarse` | the same as `cifar100` | `cifar100` | its 20 superclasses |
| `tiny_imagenet` | `tiny-imagenet-200/` or `tiny-imagenet-200.zip` | not in the catalog | the 200 wnids |
| `digits` | none: bundled with scikit-learn | no | '0'..'9' |

Local files are looked for in `data_dir`, then in its subfolders named after the dataset
(see `dataset_folders`), so one root can hold them all: `ROOT/mnist-10k`, `ROOT/fashion-mnist`,
`ROOT/imdb`, `ROOT/financial-phrasebank`, `ROOT/cifar-10`, `ROOT/cifar-100` (cifar100 and
cifar100_coarse read the same files), `ROOT/tiny-imagenet`; `classp_jax.data.cifar` and
`classp_jax.data.tiny_imagenet` describe the forms they read. Financial PhraseBank and digits
have no official split: a seeded stratified split holds out `test_fraction` of each class (see
`stratified_split`).

Decoded datasets from files are cached (see `classp_jax.data.cache`); digits is not, as it
loads in milliseconds.

Damaged or partial files are a `ValueError` naming the file, raised before anything is
cached; sizes other than the standard distribution's are a `DataSizeWarning` on every load
(see `classp_jax.data.checks` and each reader).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from classp_jax.data.aclimdb import (
  IMDB_CLASS_NAMES,
  aclimdb_source_files,
  check_aclimdb_counts,
  find_aclimdb,
  read_aclimdb,
)
from classp_jax.data.cache import cached_dataset, fingerprint_files
from classp_jax.data.cifar import (
  CIFAR10_CLASS_NAMES,
  CIFAR100_CLASS_NAMES,
  CIFAR100_COARSE_CLASS_NAMES,
  CIFAR100_COARSE_OF_FINE,
  CIFAR_EXPECTED,
  check_cifar_counts,
  cifar_location,
  find_cifar,
  read_cifar,
)
from classp_jax.data.containers import Dataset, Split
from classp_jax.data.digits import DIGITS_CLASS_NAMES, read_digits
from classp_jax.data.idx import find_idx_files, read_idx_splits
from classp_jax.data.phrasebank import (
  PHRASEBANK_CLASS_NAMES,
  check_phrasebank_size,
  find_phrasebank,
  read_phrasebank,
)
from classp_jax.data.stratified import stratified_split
from classp_jax.data.tfds_source import TfdsUnavailableError, prepare_tfds, read_tfds
from classp_jax.data.tiny_imagenet import (
  TINY_IMAGENET_EXPECTED,
  check_tiny_imagenet_counts,
  find_tiny_imagenet,
  read_tiny_imagenet,
  tiny_imagenet_location,
  tiny_imagenet_wnids,
)

SOURCES = ("auto", "tfds", "local")
FASHION_MNIST_CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


@dataclass(frozen=True)
class _LocalFiles:
  """How one dataset is found and read from its standard files."""

  expected: str  # what the files are and where to get them, for error messages
  find: Callable[[Path, _Options], list[Path] | None]  # the source files, or None
  read: Callable[[list[Path], _Options], dict[str, Split]]  # raises on damaged files
  # Warns about a size other than the standard one, on every load (cached or not).
  check: Callable[[Dataset, list[Path]], None] = lambda dataset, files: None
  # The class names, for datasets whose files name them (`_Spec.class_names` empty).
  class_names: Callable[[list[Path]], tuple[str, ...]] | None = None


@dataclass(frozen=True)
class _Options:
  phrasebank_agreement: str | None
  test_fraction: float
  split_seed: int


@dataclass(frozen=True)
class _Relabel:
  """A dataset read as another's labels, then mapped (CIFAR-100's superclasses)."""

  read_class_names: tuple[str, ...]  # the classes of the labels the source gives
  mapping: np.ndarray  # this dataset's label of each of them


@dataclass(frozen=True)
class _Spec:
  class_names: tuple[str, ...]  # empty: named by the files (`_LocalFiles.class_names`)
  tfds_name: str | None
  input_key: str  # the TFDS feature of the inputs
  local: _LocalFiles | None
  options_in_key: tuple[str, ...] = ()  # the `_Options` fields that change the data
  relabel: _Relabel | None = None


def _idx_local(site: str) -> _LocalFiles:
  def find(folder: Path, options: _Options) -> list[Path] | None:
    files = find_idx_files(folder)
    return sorted(files.values()) if files else None

  def read(files: list[Path], options: _Options) -> dict[str, Split]:
    return read_idx_splits(find_idx_files(files[0].parent))

  return _LocalFiles(
    expected=(
      "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
      f"t10k-labels-idx1-ubyte (each plain or .gz), from {site}"
    ),
    find=find,
    read=read,
  )


def _find_imdb(folder: Path, options: _Options) -> list[Path] | None:
  location = find_aclimdb(folder)
  return aclimdb_source_files(location) if location else None


def _aclimdb_location(files: list[Path]) -> Path:
  if files[0].name.endswith(".tar.gz"):  # the archive
    return files[0]
  return files[0].parents[2]  # review files sit at <tree>/<split>/<label>/<id>.txt


def _read_imdb(files: list[Path], options: _Options) -> dict[str, Split]:
  return read_aclimdb(_aclimdb_location(files))


def _check_imdb(dataset: Dataset, files: list[Path]) -> None:
  check_aclimdb_counts({"train": dataset.train, "test": dataset.test}, _aclimdb_location(files))


def _find_phrasebank(folder: Path, options: _Options) -> list[Path] | None:
  path = find_phrasebank(folder, options.phrasebank_agreement)
  return [path] if path else None


def _read_phrasebank(files: list[Path], options: _Options) -> dict[str, Split]:
  sentences, labels = read_phrasebank(files[0])
  try:
    train, test = stratified_split(
      sentences, labels, test_fraction=options.test_fraction, seed=options.split_seed
    )
  except ValueError as error:  # a class too small to split
    raise ValueError(f"{files[0]}: {error}") from error
  return {"train": train, "test": test}


def _check_phrasebank(dataset: Dataset, files: list[Path]) -> None:
  check_phrasebank_size(len(dataset.train) + len(dataset.test), files[0])


def _cifar_local(dataset: str) -> _LocalFiles:
  def check(loaded: Dataset, files: list[Path]) -> None:
    splits = {"train": loaded.train, "test": loaded.test}
    check_cifar_counts(splits, cifar_location(files, dataset))

  return _LocalFiles(
    expected=CIFAR_EXPECTED[dataset],
    find=lambda folder, options: find_cifar(folder, dataset),
    read=lambda files, options: read_cifar(files, dataset),
    check=check,
  )


def _check_tiny_imagenet(dataset: Dataset, files: list[Path]) -> None:
  splits = {"train": dataset.train, "test": dataset.test}
  check_tiny_imagenet_counts(splits, dataset.class_names, tiny_imagenet_location(files))


_SPECS: dict[str, _Spec] = {
    "mnist": _Spec(
        tuple(str(d) for d in range(10)), "mnist", "image",
        _idx_local("http://yann.lecun.com/exdb/mnist/ (or a mirror)"),
    ),
    "fashion_mnist": _Spec(
        FASHION_MNIST_CLASS_NAMES, "fashion_mnist", "image",
        _idx_local("https://github.com/zalandoresearch/fashion-mnist"),
    ),
    "imdb_reviews": _Spec(
        IMDB_CLASS_NAMES, "imdb_reviews", "text",
        _LocalFiles(
            "the aclImdb folder (train/ and test/ with neg/ and pos/) or aclImdb_v1.tar.gz, "
            "from https://ai.stanford.edu/~amaas/data/sentiment/",
            _find_imdb, _read_imdb, _check_imdb,
        ),
    ),
    "financial_phrasebank": _Spec(
        PHRASEBANK_CLASS_NAMES, None, "text",
        _LocalFiles(
            "Sentences_50Agree.txt (or 66Agree, 75Agree, AllAgree), from FinancialPhraseBank-"
            "v1.0.zip at https://www.researchgate.net/publication/251231364 "
            "(or https://huggingface.co/datasets/takala/financial_phrasebank)",
            _find_phrasebank, _read_phrasebank, _check_phrasebank,
        ),
        options_in_key=("phrasebank_agreement", "test_fraction", "split_seed"),
    ),
    "cifar10": _Spec(CIFAR10_CLASS_NAMES, "cifar10", "image", _cifar_local("cifar10")),
    "cifar100": _Spec(CIFAR100_CLASS_NAMES, "cifar100", "image", _cifar_local("cifar100")),
    "cifar100_coarse": _Spec(
        CIFAR100_COARSE_CLASS_NAMES, "cifar100", "image", _cifar_local("cifar100"),
        relabel=_Relabel(CIFAR100_CLASS_NAMES, CIFAR100_COARSE_OF_FINE),
    ),
    "tiny_imagenet": _Spec(
        (), None, "image",
        _LocalFiles(
            TINY_IMAGENET_EXPECTED,
            lambda folder, options: find_tiny_imagenet(folder),
            lambda files, options: read_tiny_imagenet(tiny_imagenet_location(files)),
            _check_tiny_imagenet,
            lambda files: tiny_imagenet_wnids(tiny_imagenet_location(files)),
        ),
    ),
    "digits": _Spec(DIGITS_CLASS_NAMES, None, "image", None),
}  # fmt: skip
KNOWN_DATASETS = tuple(_SPECS)


# Other names a dataset's folder goes by under a data root, besides its own.
_FOLDER_ALIASES = {
  "imdb_reviews": ("imdb",),
  "cifar10": ("cifar-10",),
  "cifar100": ("cifar-100",),
  "cifar100_coarse": ("cifar100", "cifar-100"),  # the files of cifar100
}


def _folder_names(name: str) -> tuple[str, ...]:
  return tuple(dict.fromkeys((name, name.replace("_", "-"), *_FOLDER_ALIASES.get(name, ()))))


def _folder_patterns(name: str) -> list[str]:
  return [f"{n}/" for n in _folder_names(name)] + [f"{n}-*/" for n in _folder_names(name)]


def dataset_folders(name: str, data_dir: str | os.PathLike) -> list[Path]:
  """Where a dataset's local files are looked for under `data_dir`, in order.

  `data_dir` itself; its subfolders named after the dataset, with '_' or '-'
  (`fashion_mnist/`, `fashion-mnist/`; also `imdb/` for `imdb_reviews`, `cifar-10/` for
  `cifar10`, `cifar-100/` for `cifar100`, and `cifar100/` or `cifar-100/` for
  `cifar100_coarse`); then, sorted, its subfolders whose names extend one of those after a
  '-' or '_' (`mnist-10k/`, `tiny-imagenet-200/`). Names must start with the dataset's, so
  `fashion-mnist/` is never taken for `mnist`, nor `cifar-100/` for `cifar10`.

  Args:
      name: a dataset name.
      data_dir: the folder, or a root holding one subfolder per dataset.

  Returns:
      The existing folders, in the order they are looked in.
  """
  root = Path(data_dir).expanduser()
  if not root.is_dir():
    return []
  names = _folder_names(name)
  named = [root / n for n in names if (root / n).is_dir()]
  extended = sorted(
    path
    for path in root.iterdir()
    if path.is_dir() and any(path.name.startswith((f"{n}-", f"{n}_")) for n in names)
  )
  return [root, *named, *extended]


def _find_local_files(spec: _Spec, options: _Options, data_dir: Path, name: str):
  for folder in dataset_folders(name, data_dir):
    files = spec.local.find(folder, options)
    if files:
      return files
  return None


def find_local_files(
  name: str, data_dir: str | os.PathLike, *, phrasebank_agreement: str | None = None
) -> list[Path] | None:
  """The standard files `load_dataset(name, source="local", data_dir=...)` would read.

  Args:
      name: one of `KNOWN_DATASETS` with local files (not `digits`).
      data_dir: where to look (see `dataset_folders`).
      phrasebank_agreement: see `load_dataset`.

  Returns:
      The files, or None if they are not there.
  """
  if name not in _SPECS or _SPECS[name].local is None:
    raise ValueError(f"{name!r} has no local files; known: {', '.join(KNOWN_DATASETS)}")
  options = _Options(phrasebank_agreement, 0.2, 0)
  return _find_local_files(_SPECS[name], options, Path(data_dir).expanduser(), name)


def load_dataset(
  name: str,
  *,
  source: str = "auto",
  data_dir: str | os.PathLike | None = None,
  download: bool = True,
  cache: bool = True,
  cache_dir: str | os.PathLike | None = None,
  phrasebank_agreement: str | None = None,
  test_fraction: float = 0.2,
  split_seed: int = 0,
) -> Dataset:
  """Loads a dataset's train and test splits, undecoded: uint8 images or raw strings.

  Args:
      name: one of `KNOWN_DATASETS`.
      source: "local" reads the standard files in `data_dir`; "tfds" reads TFDS through
          `tfds.data_source` (see `classp_jax.data.tfds_source` for what that needs);
          "auto" reads local files if `data_dir` holds them, else TFDS. `digits` is
          always read from scikit-learn.
      data_dir: the folder of the local files, or the TFDS data folder (None: TFDS's
          default).
      download: for TFDS, whether to download and prepare a dataset that is not prepared
          (needs internet and TensorFlow).
      cache: whether to use the on-disk cache of decoded arrays.
      cache_dir: the cache folder; None for `default_cache_dir()`.
      phrasebank_agreement: which `Sentences_<agreement>.txt` to read, e.g. "AllAgree";
          None for "50Agree" if present, else the next one present.
      test_fraction: the held-out fraction per class, for datasets without an official
          split (financial_phrasebank, digits).
      split_seed: the seed of that split.

  Returns:
      The dataset.

  Raises:
      ValueError: an unknown name or source; or files that are damaged, truncated or
          incomplete (a failed CRC, a bad header, a label or class missing, ...), naming
          the file. Nothing is cached then. A CIFAR Python batch whose pickle names
          anything that could run code is refused (`UnsafePickleError`, a ValueError).
      FileNotFoundError: the files are not there; the message names the files expected and
          where to get them (`TfdsUnavailableError` for TFDS).

  Warns:
      DataSizeWarning: imdb_reviews, financial_phrasebank, the CIFARs or tiny_imagenet
          from local files with other counts than the standard distribution (a subset, or
          a damaged copy), on every load.

  >>> digits = load_dataset("digits")
  >>> digits.train.inputs.shape, digits.train.inputs.dtype, len(digits.test), digits.num_classes
  ((1438, 8, 8, 1), dtype('uint8'), 359, 10)
  """
  if name not in _SPECS:
    raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(KNOWN_DATASETS)}")
  if source not in SOURCES:
    raise ValueError(f"unknown source {source!r}; choose one of {SOURCES}")
  spec = _SPECS[name]
  options = _Options(phrasebank_agreement, test_fraction, split_seed)
  data_dir = Path(data_dir).expanduser() if data_dir is not None else None
  cache_folder = Path(cache_dir).expanduser() if cache_dir is not None else None

  if name == "digits":
    if source == "tfds":
      raise ValueError("'digits' ships with scikit-learn, not TFDS: use source='auto'")
    splits = read_digits(test_fraction=test_fraction, seed=split_seed)
    return Dataset(name, splits["train"], splits["test"], spec.class_names, "embedded")

  def load(
    files: list[Path],
    origin: str,
    read: Callable[[], dict[str, Split]],
    check: Callable[[Dataset], None] = lambda dataset: None,
  ) -> Dataset:
    def build() -> Dataset:
      splits = read()
      if spec.relabel is not None:
        mapping = spec.relabel.mapping
        splits = {k: Split(split.inputs, mapping[split.labels]) for k, split in splits.items()}
      class_names = spec.class_names or spec.local.class_names(files)
      return Dataset(name, splits["train"], splits["test"], class_names, origin)

    if not cache:
      dataset = build()
      check(dataset)
      return dataset
    options_key = ",".join(f"{o}={getattr(options, o)}" for o in spec.options_in_key)
    key = f"{name}:{origin}:{options_key}:{fingerprint_files(files)}"
    return cached_dataset(build, key=key, name=name, cache_dir=cache_folder, check=check)

  local_problem = None
  if source in ("local", "auto") and spec.local is not None and data_dir is not None:
    files = _find_local_files(spec, options, data_dir, name)
    if files:
      return load(
        files,
        "local",
        lambda: spec.local.read(files, options),
        lambda dataset: spec.local.check(dataset, files),
      )
    local_problem = (
      f"no {name} files in {data_dir} or its subfolders "
      f"{', '.join(_folder_patterns(name))}: expected {spec.local.expected}"
    )
  if source == "local":
    if data_dir is None:
      raise FileNotFoundError(
        f"source='local' needs data_dir, the folder holding {spec.local.expected}"
      )
    raise FileNotFoundError(local_problem)
  if spec.tfds_name is None:
    raise FileNotFoundError(
      (local_problem or f"{name} needs data_dir with {spec.local.expected}")
      + f". {name} is not in the TFDS catalog: download the files and use source='local'."
    )

  try:
    files = prepare_tfds(spec.tfds_name, data_dir=data_dir, download=download)
    return load(
      files,
      "tfds",
      lambda: read_tfds(
        spec.tfds_name,
        data_dir=data_dir,
        input_key=spec.input_key,
        class_names=spec.relabel.read_class_names if spec.relabel else spec.class_names,
      ),
    )
  except TfdsUnavailableError as error:
    if local_problem is None:
      raise
    raise TfdsUnavailableError(f"{local_problem}; and from TFDS: {error}") from error
