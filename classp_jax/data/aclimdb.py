"""The Large Movie Review Dataset (`aclImdb`, Maas et al. 2011) as distributed by its site.

Accepted forms, in `data_dir`: the extracted tree (`data_dir` itself, or `data_dir/aclImdb`,
holding `{train,test}/{neg,pos}/<id>_<rating>.txt`), or the archive `aclImdb*.tar.gz`
(e.g. `aclImdb_v1.tar.gz` from https://ai.stanford.edu/~amaas/data/sentiment/). The
unlabelled `train/unsup` reviews are skipped. Labels follow TFDS: 0 = neg, 1 = pos.

Reviews are returned raw (HTML `<br />` tags included), sorted by their path inside the tree,
so the folder and the archive give identical datasets.
"""

from __future__ import annotations

import re
import tarfile
from pathlib import Path

import numpy as np

from classp_jax.data.containers import Split

IMDB_CLASS_NAMES = ("neg", "pos")
# A labelled review's path inside the tree, e.g. "aclImdb/train/pos/0_9.txt".
_REVIEW_PATH = re.compile(r"(?:^|/)(train|test)/(neg|pos)/[^/]+\.txt$")


def find_aclimdb(data_dir: Path) -> Path | None:
  """Finds the aclImdb tree or archive in `data_dir`.

  Args:
      data_dir: where to look.

  Returns:
      The folder holding `train/` and `test/`, or the `.tar.gz`; None if neither is there.
  """
  for folder in (data_dir, data_dir / "aclImdb"):
    if (folder / "train" / "pos").is_dir() and (folder / "test" / "pos").is_dir():
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
  return [path for split in ("train", "test") for path in (location / split).glob("*/*.txt")]


def read_aclimdb(location: Path) -> dict[str, Split]:
  """Reads the labelled reviews from the tree or the archive (streamed once).

  Args:
      location: from `find_aclimdb`.

  Returns:
      {"train": Split, "test": Split}: raw review strings and int32 labels (0 = neg).

  Raises:
      ValueError: a damaged archive or a review that is not UTF-8.
  """
  reviews: list[tuple[str, str, int, str]] = []  # (split, path below aclImdb/, label, text)

  def add(path: str, data: bytes) -> None:
    match = _REVIEW_PATH.search(path)
    if match is None:
      return
    try:
      text = data.decode("utf-8")
    except UnicodeDecodeError as error:
      raise ValueError(f"{location}: {path} is not UTF-8 ({error})") from error
    tree_path = match[0].lstrip("/")  # the same for the folder and the archive
    reviews.append((match[1], tree_path, IMDB_CLASS_NAMES.index(match[2]), text))

  if location.is_file():
    try:
      with tarfile.open(location, "r:gz") as archive:
        for member in archive:  # one sequential pass over the gzip stream
          if member.isfile() and _REVIEW_PATH.search(member.name):
            add(member.name, archive.extractfile(member).read())
    except (tarfile.TarError, EOFError, OSError) as error:
      raise ValueError(f"{location}: not a readable .tar.gz archive ({error})") from error
  else:
    for path in aclimdb_source_files(location):
      add(path.relative_to(location).as_posix(), path.read_bytes())

  reviews.sort(key=lambda review: review[1])
  splits = {}
  for split_name in ("train", "test"):
    chosen = [r for r in reviews if r[0] == split_name]
    texts = np.empty(len(chosen), object)
    texts[:] = [r[3] for r in chosen]
    splits[split_name] = Split(texts, np.array([r[2] for r in chosen], np.int32))
  return splits
