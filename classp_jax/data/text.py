"""Sentiment text streams: one vocabulary and one label space over several text datasets.

Token ids (`classp_jax.data.vocabulary`), as the Transformer in `classp_jax.models` expects them:
- id 0 is `<pad>`, id 1 is `<unk>` (a token not in the vocabulary);
- a text longer than `max_len` tokens keeps its FIRST `max_len` tokens;
- padding goes at the END, so the true length is the number of non-zero ids
  (the model computes its mask from `ids == 0`; no lengths are stored).

Labels of sentiment datasets are aligned by meaning in one label space, `SENTIMENT_CLASSES`
= (negative, neutral, positive): IMDB's neg -> negative (0), pos -> positive (2).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from classp_jax.data.containers import Dataset, Split, Task, TaskStream
from classp_jax.data.vocabulary import build_vocabulary

SENTIMENT_CLASSES = ("negative", "neutral", "positive")
_SENTIMENT_ALIASES = {"neg": "negative", "pos": "positive"} | {c: c for c in SENTIMENT_CLASSES}


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
