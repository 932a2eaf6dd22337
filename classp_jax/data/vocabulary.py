"""Tokens and ids: the tokenizer and `Vocabulary` (see `classp_jax.data.text` for the conventions).

- id 0 is `<pad>`, id 1 is `<unk>` (a token not in the vocabulary);
- a text longer than `max_len` tokens keeps its FIRST `max_len` tokens;
- padding goes at the END.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
_LINE_BREAK_TAG = re.compile(r"<br\s*/?>", re.IGNORECASE)  # IMDB reviews hold "<br />"
_WORD = re.compile(r"\w+(?:'\w+)*")  # letters/digits, keeping inner apostrophes: "don't"


def _words(text: str) -> Iterable[str]:
  return (m.group() for m in _WORD.finditer(_LINE_BREAK_TAG.sub(" ", text.lower())))


def tokenize(text: str) -> list[str]:
  """Splits text into lowercase words, dropping punctuation and `<br />` tags.

  Args:
      text: raw text.

  Returns:
      The words.

  >>> tokenize("Great film!<br /><br />I didn't expect 2 sequels.")
  ['great', 'film', 'i', "didn't", 'expect', '2', 'sequels']
  """
  return list(_words(text))


@dataclass(frozen=True)
class Vocabulary:
  """Maps tokens to ids: `tokens[id]` is the token; ids 0 and 1 are `<pad>` and `<unk>`.

  >>> vocab = Vocabulary(("<pad>", "<unk>", "the", "film"))
  >>> vocab.encode(["The film, the end."], max_len=6).tolist()
  [[2, 3, 2, 1, 0, 0]]
  """

  tokens: tuple[str, ...]
  _ids: dict[str, int] = field(init=False, repr=False, compare=False)

  def __post_init__(self) -> None:
    if self.tokens[:2] != (PAD, UNK):
      raise ValueError(f"a vocabulary must start with {PAD!r}, {UNK!r}")
    if len(set(self.tokens)) != len(self.tokens):
      raise ValueError("the vocabulary's tokens must be distinct")
    object.__setattr__(self, "_ids", {token: i for i, token in enumerate(self.tokens)})

  def __len__(self) -> int:
    return len(self.tokens)

  def id_of(self, token: str) -> int:
    """The id of `token`, `UNK_ID` if it is not in the vocabulary."""
    return self._ids.get(token, UNK_ID)

  def encode(self, texts: Iterable[str], max_len: int) -> np.ndarray:
    """Token ids of each text: the first `max_len` tokens, padded with 0 at the end.

    Args:
        texts: raw texts.
        max_len: the number of ids per text.

    Returns:
        int32 (len(texts), max_len).
    """
    rows = [
      [self._ids.get(word, UNK_ID) for word in itertools.islice(_words(text), max_len)]
      for text in texts
    ]
    ids = np.full((len(rows), max_len), PAD_ID, np.int32)
    for row, row_ids in zip(ids, rows):
      row[: len(row_ids)] = row_ids
    return ids


def build_vocabulary(
  texts: Iterable[str], *, min_freq: int = 1, max_size: int | None = None
) -> Vocabulary:
  """Builds a vocabulary from the most frequent tokens of `texts`.

  Args:
      texts: raw training texts.
      min_freq: tokens seen fewer times are left out (they become `<unk>`).
      max_size: the most entries, `<pad>` and `<unk>` included; None for no limit.

  Returns:
      `<pad>`, `<unk>`, then tokens by decreasing count, ties alphabetical.

  >>> build_vocabulary(["a b b c", "b c"], min_freq=2).tokens
  ('<pad>', '<unk>', 'b', 'c')
  """
  if max_size is not None and max_size < 2:
    raise ValueError(f"max_size must leave room for {PAD!r} and {UNK!r}, got {max_size}")
  counts = Counter(word for text in texts for word in _words(text))
  kept = sorted(
    (token for token, count in counts.items() if count >= min_freq and token not in (PAD, UNK)),
    key=lambda token: (-counts[token], token),
  )
  if max_size is not None:
    kept = kept[: max_size - 2]
  return Vocabulary((PAD, UNK, *kept))
