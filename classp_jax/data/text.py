"""The text pipeline: tokenizer, vocabulary, fixed-length token ids, and sentiment text streams.

Token ids, as the Transformer in `classp_jax.models` expects them:
- id 0 is `<pad>`, id 1 is `<unk>` (a token not in the vocabulary);
- a text longer than `max_len` tokens keeps its FIRST `max_len` tokens;
- padding goes at the END, so the true length is the number of non-zero ids
  (the model computes its mask from `ids == 0`; no lengths are stored).

Labels of sentiment datasets are aligned by meaning in one label space, `SENTIMENT_CLASSES`
= (negative, neutral, positive): IMDB's neg -> negative (0), pos -> positive (2).
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from classp_jax.data.containers import Dataset, Split, Task, TaskStream

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
SENTIMENT_CLASSES = ("negative", "neutral", "positive")
_SENTIMENT_ALIASES = {"neg": "negative", "pos": "positive"} | {c: c for c in SENTIMENT_CLASSES}
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


def sentiment_labels(class_names: Sequence[str]) -> np.ndarray:
  """Where each of a dataset's classes goes in `SENTIMENT_CLASSES`.

  Args:
      class_names: the dataset's class names, e.g. ("neg", "pos").

  Returns:
      int32 array: `sentiment_labels(names)[label]` is the shared label.

  >>> sentiment_labels(("neg", "pos")).tolist()
  [0, 2]
  """
  unknown = [name for name in class_names if name not in _SENTIMENT_ALIASES]
  if unknown:
    raise ValueError(
      f"cannot align classes {unknown} with {SENTIMENT_CLASSES}; "
      f"known names: {sorted(_SENTIMENT_ALIASES)}"
    )
  return np.array(
    [SENTIMENT_CLASSES.index(_SENTIMENT_ALIASES[name]) for name in class_names], np.int32
  )


def text_stream(
  datasets: Sequence[Dataset],
  *,
  max_len: int = 30,
  min_freq: int = 2,
  max_size: int | None = 25_000,
  name: str | None = None,
) -> TaskStream:
  """A sequence of sentiment tasks over one vocabulary and one label space.

  The vocabulary is built from the training texts of all the tasks, as in the paper's
  code; test texts are never used.

  Args:
      datasets: text datasets in training order, e.g. (financial_phrasebank, imdb_reviews).
      max_len: ids per text (the paper uses 30).
      min_freq: see `build_vocabulary`.
      max_size: see `build_vocabulary`.
      name: the stream's name; default the datasets' names joined by "->".

  Returns:
      A stream with `vocab`, `input_shape == (max_len,)` and `num_classes == 3`
      (`SENTIMENT_CLASSES`).
  """
  for dataset in datasets:
    if not dataset.is_text:
      raise ValueError(f"{dataset.name!r} is not a text dataset")
  vocab = build_vocabulary(
    (text for dataset in datasets for text in dataset.train.inputs),
    min_freq=min_freq,
    max_size=max_size,
  )
  tasks = []
  for dataset in datasets:
    shared = sentiment_labels(dataset.class_names)

    def encode(split: Split) -> Split:
      return Split(vocab.encode(split.inputs, max_len), shared[split.labels])

    classes = tuple(sorted(int(c) for c in set(shared.tolist())))
    tasks.append(
      Task(
        name=dataset.name,
        train=encode(dataset.train),
        test=encode(dataset.test),
        num_classes=len(classes),
        classes=classes,
        class_names=tuple(SENTIMENT_CLASSES[c] for c in classes),
      )
    )
  return TaskStream(
    name=name or "->".join(d.name for d in datasets),
    tasks=tuple(tasks),
    num_classes=len(SENTIMENT_CLASSES),
    input_shape=(max_len,),
    vocab=vocab,
  )
