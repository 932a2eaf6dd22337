"""The Large Movie Review Dataset (`aclImdb`, Maas et al. 2011) as distributed by its site.

Accepted forms, in `data_dir`: the extracted tree (`data_dir` itself, or `data_dir/aclImdb`,
holding `{train,test}/{neg,pos}/<id>_<rating>.txt`), or the archive `aclImdb*.tar.gz`
(e.g. `aclImdb_v1.tar.gz` from https://ai.stanford.edu/~amaas/data/sentiment/). The
unlabelled `train/unsup` reviews are skipped. Labels follow TFDS: 0 = neg, 1 = pos.

Reviews are returned raw (HTML `<br />` tags included), sorted by their path inside the tree,
so the folder and the archive give identical datasets.

Damage is an error, never a smaller dataset. `tarfile` alone stops quietly at the first
member header it cannot parse, and a gzip stream's CRC is checked only once it is read to
its end, so the archive reader reads the whole stream (gzip then checks the CRC and length)
and requires the members to end at a real end-of-archive marker followed only by zero
padding. A split or label with no reviews is an error; counts other than the full set's
12,500 per split and label are a `DataSizeWarning` (`check_aclimdb_counts`).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from classp_jax.data.archives import read_tar_gz
from classp_jax.data.checks import warn_unless_standard
from classp_jax.data.containers import Split

IMDB_CLASS_NAMES = ("neg", "pos")
IMDB_SPLITS = ("train", "test")
IMDB_STANDARD_PER_LABEL = 12_500  # reviews per split and label in the full set
# A labelled review's path inside the tree, e.g. "aclImdb/train/pos/0_9.txt".
_REVIEW_PATH = re.compile(r"(?:^|/)(train|test)/(neg|pos)/[^/]+\.txt$")
_SOURCE_URL = "https://ai.stanford.edu/~amaas/data/sentiment/"


def find_aclimdb(data_dir: Path) -> Path | None:
  """Finds the aclImdb tree or archive in `data_dir`.

  A folder with any of `{train,test}/{neg,pos}/` is taken for the tree, so that a tree
  missing a split or label is reported as such rather than as absent.

  Args:
      data_dir: where to look.

  Returns:
      The folder holding `train/` and `test/`, or the `.tar.gz`; None if neither is there.
  """
  for folder in (data_dir, data_dir / "aclImdb"):
    label_dirs = [folder / split / label for split in IMDB_SPLITS for label in IMDB_CLASS_NAMES]
    if any(path.is_dir() for path in label_dirs):
      return folder
  archives = sorted(data_dir.glob("aclImdb*.tar.gz"))
  return archives[0] if archives else None


def aclimdb_source_files(location: Path) -> list[Path]:
  """The files whose fingerprint identifies the data: the archive, or every review file.

  Args:
      location: from `find_aclimdb`.

  Returns:
      The files.
  """
  if location.is_file():
    return [location]
  return [path for split in IMDB_SPLITS for path in (location / split).glob("*/*.txt")]


def read_aclimdb(location: Path) -> dict[str, Split]:
  """Reads the labelled reviews from the tree or the archive (streamed once), checking both.

  Args:
      location: from `find_aclimdb`.

  Returns:
      {"train": Split, "test": Split}: raw review strings and int32 labels (0 = neg).

  Raises:
      ValueError: naming `location`: a damaged or truncated archive (a failed gzip CRC, a
          bad deflate stream, a member header that does not parse, no end-of-archive
          marker), a review twice in the archive, an empty review, a review that is not
          UTF-8, or a split or label with no reviews.
  """
  reviews: dict[str, tuple[str, int, str]] = {}  # path below aclImdb/ -> (split, label, text)

  def add(path: str, data: bytes) -> None:
    match = _REVIEW_PATH.search(path)
    if match is None:
      return
    tree_path = match[0].lstrip("/")  # the same for the folder and the archive
    if tree_path in reviews:
      raise ValueError(f"{location}: {path} appears twice")
    if not data:  # no review is empty: a file cut off, as by an interrupted extraction
      raise ValueError(f"{location}: {path} is empty")
    try:
      text = data.decode("utf-8")
    except UnicodeDecodeError as error:
      raise ValueError(f"{location}: {path} is not UTF-8 ({error})") from error
    reviews[tree_path] = (match[1], IMDB_CLASS_NAMES.index(match[2]), text)

  if location.is_file():
    keep = lambda path: _REVIEW_PATH.search(path) is not None
    for path, data in read_tar_gz(location, keep, _SOURCE_URL).items():
      add(path, data)
  else:
    for path in aclimdb_source_files(location):
      add(path.relative_to(location).as_posix(), path.read_bytes())

  splits = {}
  for split_name in IMDB_SPLITS:
    chosen = [reviews[path] for path in sorted(reviews) if reviews[path][0] == split_name]
    texts = np.empty(len(chosen), object)
    texts[:] = [text for _, _, text in chosen]
    splits[split_name] = Split(texts, np.array([label for _, label, _ in chosen], np.int32))
  counts = _label_counts(splits)
  missing = [key for key, count in counts.items() if count == 0]
  if missing:
    found = ", ".join(f"{key} {count:,}" for key, count in counts.items())
    raise ValueError(
      f"{location}: no {', '.join(missing)} reviews (found {found}); the aclImdb tree holds "
      f"{{train,test}}/{{neg,pos}}/<id>_<rating>.txt, {IMDB_STANDARD_PER_LABEL:,} in each "
      "for the full set"
    )
  return splits


def check_aclimdb_counts(splits: dict[str, Split], location: Path) -> None:
  """Warns (`DataSizeWarning`) unless each split holds 12,500 reviews of each label.

  Args:
      splits: from `read_aclimdb`.
      location: the tree or archive, named in the warning.
  """
  counts = _label_counts(splits)
  warn_unless_standard(str(location), counts, dict.fromkeys(counts, IMDB_STANDARD_PER_LABEL))


def _label_counts(splits: dict[str, Split]) -> dict[str, int]:
  return {
    f"{split}/{label}": int(np.sum(splits[split].labels == index))
    for split in IMDB_SPLITS
    for index, label in enumerate(IMDB_CLASS_NAMES)
  }
