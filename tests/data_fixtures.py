"""Tiny stand-ins for the standard dataset files, written by the data tests."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import numpy as np


def idx_bytes(array: np.ndarray) -> bytes:
  """An IDX file of unsigned bytes holding `array`."""
  header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
    int(d).to_bytes(4, "big") for d in array.shape
  )
  return header + np.ascontiguousarray(array, np.uint8).tobytes()


def write_idx_folder(
  folder: Path,
  *,
  n_train: int = 20,
  n_test: int = 10,
  gz: bool = True,
  seed: int = 0,
  size: int = 4,
) -> dict[str, np.ndarray]:
  """Writes the four MNIST-family files (size x size images, labels 0..9 in turn); returns them.

  Every digit occurs in each split when `n_train` and `n_test` are at least 10.
  """
  rng = np.random.default_rng(seed)
  arrays = {
    "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, size, size), dtype=np.uint8),
    "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
    "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, size, size), dtype=np.uint8),
    "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8),
  }
  folder.mkdir(parents=True, exist_ok=True)
  for name, array in arrays.items():
    data = idx_bytes(array)
    if gz:
      (folder / f"{name}.gz").write_bytes(gzip.compress(data))
    else:
      (folder / name).write_bytes(data)
  return arrays


# (split, label, file name, text): two reviews per split and label, one with a <br /> tag.
IMDB_REVIEWS = [
  ("train", "neg", "0_2.txt", "Dull.<br /><br />I left early."),
  ("train", "neg", "1_3.txt", "Bad acting, bad plot."),
  ("train", "pos", "0_9.txt", "A great film!"),
  ("train", "pos", "1_10.txt", "Great, moving and — great."),
  ("test", "neg", "0_1.txt", "Awful."),
  ("test", "neg", "1_4.txt", "Boring plot."),
  ("test", "pos", "0_8.txt", "Lovely."),
  ("test", "pos", "1_7.txt", "Great fun."),
]


def write_aclimdb_tree(root: Path, reviews=IMDB_REVIEWS) -> Path:
  """Writes `root/aclImdb/{train,test}/{neg,pos}` and an unlabelled `train/unsup`."""
  tree = root / "aclImdb"
  for split, label, file_name, text in reviews:
    (tree / split / label).mkdir(parents=True, exist_ok=True)
    (tree / split / label / file_name).write_text(text, encoding="utf-8")
  (tree / "train" / "unsup").mkdir(parents=True)
  (tree / "train" / "unsup" / "0_0.txt").write_text("unlabelled", encoding="utf-8")
  (tree / "README").write_text("readme", encoding="utf-8")
  return tree


def aclimdb_tar_bytes(tree: Path) -> bytes:
  """An uncompressed tar of an `aclImdb` tree, in reverse order to check the loader sorts."""
  buffer = io.BytesIO()
  with tarfile.open(fileobj=buffer, mode="w") as tar:
    for path in sorted(tree.rglob("*"), reverse=True):
      if path.is_file():
        tar.add(path, arcname=path.relative_to(tree.parent).as_posix())
  return buffer.getvalue()


def write_aclimdb_archive(tree: Path, archive: Path, tar: bytes | None = None) -> Path:
  """Gzips `tar` (default: `aclimdb_tar_bytes(tree)`) into `archive`."""
  archive.write_bytes(gzip.compress(aclimdb_tar_bytes(tree) if tar is None else tar))
  return archive


def damage_tar(tar: bytes, damage: str) -> bytes:
  """A tar with one kind of damage that `tarfile` alone reads past without an error.

  Args:
      tar: an uncompressed tar of at least three members.
      damage: "header" garbles the name field of the middle member's header (its checksum
          no longer matches); "no_end" cuts the end-of-archive marker and padding off;
          "trailing" puts data after the end-of-archive marker.
  """
  with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
    members = archive.getmembers()
  if damage == "header":
    offset = members[len(members) // 2].offset
    return tar[:offset] + b"\xff" * 16 + tar[offset + 16 :]
  end = members[-1].offset_data + -(-members[-1].size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
  if damage == "no_end":
    return tar[:end]
  if damage == "trailing":
    return tar[:end] + bytes(2 * tarfile.BLOCKSIZE) + b"stray data"
  raise ValueError(f"unknown damage {damage!r}")


def flip_bytes(path: Path, count: int = 64) -> None:
  """Inverts `count` bytes in the middle of a file (or all of it, if it is shorter)."""
  data = bytearray(path.read_bytes())
  start = max(0, len(data) // 2 - count // 2)
  for i in range(start, min(len(data), start + count)):
    data[i] ^= 0xFF
  path.write_bytes(bytes(data))


PHRASEBANK_LINES = [
  ("Operating profit rose to EUR 13.1 mn", "positive"),
  ("Sales fell 5 % to EUR 2 mn", "negative"),
  ("The company is based in Espoo , Finland", "neutral"),
  ("Net sales of Ruukki's unit increased", "positive"),
  ("Lähde: the shares were unchanged", "neutral"),
  ("Losses widened @ the plant", "negative"),  # an "@" inside the sentence
] * 5  # 30 sentences: 10 per class


def phrasebank_bytes(
  encoding: str = "utf-8-sig", newline: str = "\r\n", lines=PHRASEBANK_LINES
) -> bytes:
  """Sentences in `sentence@label` form, encoded as the distributed files can be."""
  text = newline.join(f"{s}@{label}" for s, label in lines) + newline
  return text.encode(encoding)
