"""Financial PhraseBank v1.0 (Malo et al. 2014) `Sentences_*.txt` files, as distributed.

Each line is `sentence@label`, label in {negative, neutral, positive}. The original files
are ISO-8859-1; UTF-8 copies (with or without a byte-order mark) are accepted too, with LF
or CRLF line ends. The four files differ in how many annotators had to agree:
`Sentences_50Agree.txt` (4,846 sentences), `66Agree`, `75Agree`, `AllAgree`.
"""

from __future__ import annotations

import codecs
from pathlib import Path

import numpy as np

PHRASEBANK_CLASS_NAMES = ("negative", "neutral", "positive")
PHRASEBANK_AGREEMENTS = ("50Agree", "66Agree", "75Agree", "AllAgree")


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
      ValueError: naming the file and line number of a line that is not `sentence@label`.
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
  texts = np.empty(len(sentences), object)
  texts[:] = sentences
  return texts, np.array(labels, np.int32)
