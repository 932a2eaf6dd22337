"""Financial PhraseBank v1.0 (Malo et al. 2014) `Sentences_*.txt` files, as distributed.

Each line is `sentence@label`, label in {negative, neutral, positive}. The original files
are ISO-8859-1; UTF-8 copies (with or without a byte-order mark) are accepted too, with LF
or CRLF line ends. The four files differ in how many annotators had to agree:
`Sentences_50Agree.txt` (4,846 sentences), `66Agree`, `75Agree`, `AllAgree`.

A file with a class missing, or a malformed line (as a file cut mid-line has), is an error;
one with another number of sentences than the distributed file is a `DataSizeWarning`
(`check_phrasebank_size`).
"""

from __future__ import annotations

import codecs
from pathlib import Path

import numpy as np

from classp_jax.data.checks import warn_unless_standard

PHRASEBANK_CLASS_NAMES = ("negative", "neutral", "positive")
PHRASEBANK_AGREEMENTS = ("50Agree", "66Agree", "75Agree", "AllAgree")
# Sentences in each distributed `Sentences_<agreement>.txt` (Malo et al. 2014).
PHRASEBANK_STANDARD_SIZES = {"50Agree": 4846, "66Agree": 4217, "75Agree": 3453, "AllAgree": 2264}


def find_phrasebank(data_dir: Path, agreement: str | None = None) -> Path | None:
  """Finds a `Sentences_<agreement>.txt` in `data_dir` or `data_dir/FinancialPhraseBank-v1.0`.

  Args:
      data_dir: where to look.
      agreement: one of `PHRASEBANK_AGREEMENTS`; None takes the first one present,
          so "50Agree" when it is there.

  Returns:
      The file, or None if it is not there.
  """
  if agreement is not None and agreement not in PHRASEBANK_AGREEMENTS:
    raise ValueError(
      f"unknown Financial PhraseBank agreement {agreement!r}; choose one of {PHRASEBANK_AGREEMENTS}"
    )
  for chosen in [agreement] if agreement else PHRASEBANK_AGREEMENTS:
    for folder in (data_dir, data_dir / "FinancialPhraseBank-v1.0"):
      if (folder / f"Sentences_{chosen}.txt").is_file():
        return folder / f"Sentences_{chosen}.txt"
  return None


def decode_phrasebank(raw: bytes) -> str:
  """Decodes a file's bytes: UTF-8 with a byte-order mark, else UTF-8, else ISO-8859-1.

  >>> decode_phrasebank("Nokia's net sales rose@positive".encode("latin-1"))
  "Nokia's net sales rose@positive"
  >>> decode_phrasebank(codecs.BOM_UTF8 + "Café@neutral".encode())
  'Café@neutral'
  """
  if raw.startswith(codecs.BOM_UTF8):
    return raw[len(codecs.BOM_UTF8) :].decode("utf-8")
  try:
    return raw.decode("utf-8")
  except UnicodeDecodeError:
    return raw.decode("iso-8859-1")  # the original distribution; decodes any bytes


def read_phrasebank(path: Path) -> tuple[np.ndarray, np.ndarray]:
  """Reads every sentence and its label.

  Args:
      path: a `Sentences_*.txt` file.

  Returns:
      (sentences, labels): an object array of str, int32 labels indexing
      `PHRASEBANK_CLASS_NAMES`.

  Raises:
      ValueError: naming the file: the line number of a line that is not `sentence@label`,
          or a class with no sentences.
  """
  # Split on "\n" only: str.splitlines would also split on "\x85", a Latin-1 character.
  lines = decode_phrasebank(path.read_bytes()).split("\n")
  sentences, labels = [], []
  for number, line in enumerate(lines, start=1):
    line = line.rstrip("\r")
    if not line.strip():
      continue
    sentence, at, label = line.rpartition("@")
    label = label.strip()
    if not at or not sentence.strip() or label not in PHRASEBANK_CLASS_NAMES:
      raise ValueError(
        f"{path}, line {number}: expected 'sentence@label' with label in "
        f"{PHRASEBANK_CLASS_NAMES}, got {line[:80]!r}"
      )
    sentences.append(sentence.strip())
    labels.append(PHRASEBANK_CLASS_NAMES.index(label))
  counts = np.bincount(np.array(labels, np.int64), minlength=len(PHRASEBANK_CLASS_NAMES))
  if (counts == 0).any():
    missing = [name for name, count in zip(PHRASEBANK_CLASS_NAMES, counts) if count == 0]
    raise ValueError(
      f"{path}: no {', '.join(missing)} sentences among the {len(labels)} read; the "
      "distributed files have all three classes: is this file complete?"
    )
  texts = np.empty(len(sentences), object)
  texts[:] = sentences
  return texts, np.array(labels, np.int32)


def check_phrasebank_size(num_sentences: int, path: Path) -> None:
  """Warns (`DataSizeWarning`) unless a distributed file holds its standard number of sentences.

  Args:
      num_sentences: how many were read from `path`.
      path: a `Sentences_<agreement>.txt`; other names are not checked.
  """
  agreement = path.stem.removeprefix("Sentences_")
  if agreement in PHRASEBANK_STANDARD_SIZES:
    standard = {"sentences": PHRASEBANK_STANDARD_SIZES[agreement]}
    warn_unless_standard(str(path), {"sentences": num_sentences}, standard)
