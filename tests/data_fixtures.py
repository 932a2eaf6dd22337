"""Tiny stand-ins for the standard dataset files, written by the data tests."""

from __future__ import annotations

import gzip
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
  n_train: int = 12,
  n_test: int = 6,
  gz: bool = True,
  seed: int = 0,
  size: int = 4,
) -> dict[str, np.ndarray]:
  """Writes the four MNIST-family files (size x size images, labels 0..9); returns them."""
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
  (tree / "train" / "unsup").mkdir()
  (tree / "train" / "unsup" / "0_0.txt").write_text("unlabelled", encoding="utf-8")
  (tree / "README").write_text("readme", encoding="utf-8")
  return tree


def write_aclimdb_archive(tree: Path, archive: Path) -> Path:
  """Tars and gzips an `aclImdb` tree, in reverse order to check the loader sorts."""
  with tarfile.open(archive, "w:gz") as tar:
    for path in sorted(tree.rglob("*"), reverse=True):
      if path.is_file():
        tar.add(path, arcname=path.relative_to(tree.parent).as_posix())
  return archive


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
