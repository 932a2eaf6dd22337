"""The text pipeline: tokenizer, vocabulary, fixed-length ids, aligned sentiment labels."""

from __future__ import annotations

import numpy as np
import pytest

from classp_jax.data import (
  PAD_ID,
  SENTIMENT_CLASSES,
  UNK_ID,
  Dataset,
  Split,
  Vocabulary,
  build_vocabulary,
  sentiment_labels,
  text_stream,
  tokenize,
)


def text_dataset(name: str, class_names, train, test) -> Dataset:
  def split(rows):
    texts = np.empty(len(rows), object)
    texts[:] = [text for text, _ in rows]
    return Split(texts, np.array([label for _, label in rows], np.int32))

  return Dataset(name, split(train), split(test), tuple(class_names))


FPB = text_dataset(
  "financial_phrasebank",
  ("negative", "neutral", "positive"),
  [("Profit fell sharply", 0), ("The office is in Espoo", 1), ("Profit rose", 2)],
  [("Sales fell", 0), ("Sales rose", 2)],
)
IMDB = text_dataset(
  "imdb_reviews",
  ("neg", "pos"),
  [("A dull film.<br /><br />It fell flat", 0), ("A great film, it rose above", 1)],
  [("Great!", 1), ("Dull", 0), ("Unseen words only", 0)],
)


def test_tokenize_lowercases_and_strips_tags_and_punctuation():
  assert tokenize("It's GREAT.<br/>Loved it<BR />!!") == ["it's", "great", "loved", "it"]
  assert tokenize("EUR 13.1 mn, Lähde") == ["eur", "13", "1", "mn", "lähde"]
  assert tokenize("") == []


def test_vocabulary_orders_by_count_and_honours_min_freq_and_max_size():
  texts = ["b a b c", "c b d"]
  assert build_vocabulary(texts).tokens == ("<pad>", "<unk>", "b", "c", "a", "d")
  assert build_vocabulary(texts, min_freq=2).tokens == ("<pad>", "<unk>", "b", "c")
  assert build_vocabulary(texts, max_size=3).tokens == ("<pad>", "<unk>", "b")
  with pytest.raises(ValueError, match="max_size"):
    build_vocabulary(texts, max_size=1)
  with pytest.raises(ValueError, match="start with"):
    Vocabulary(("a", "<pad>", "<unk>"))


def test_encode_keeps_the_first_tokens_and_pads_at_the_end():
  vocab = build_vocabulary(["one two three four five"])
  ids = vocab.encode(["one two three four five six", "two", ""], max_len=4)
  assert ids.dtype == np.int32 and ids.shape == (3, 4)
  assert [vocab.tokens[i] for i in ids[0]] == ["one", "two", "three", "four"]  # truncated
  assert ids[1].tolist() == [vocab.id_of("two"), PAD_ID, PAD_ID, PAD_ID]
  assert ids[2].tolist() == [PAD_ID] * 4
  assert vocab.encode(["six"], max_len=2).tolist() == [[UNK_ID, PAD_ID]]


def test_sentiment_labels_align_by_meaning():
  assert sentiment_labels(("neg", "pos")).tolist() == [0, 2]
  assert sentiment_labels(("negative", "neutral", "positive")).tolist() == [0, 1, 2]
  with pytest.raises(ValueError, match="cannot align"):
    sentiment_labels(("bad", "good"))


def test_text_stream_shares_vocabulary_and_label_space():
  stream = text_stream([FPB, IMDB], max_len=5, min_freq=1)
  assert stream.name == "financial_phrasebank->imdb_reviews"
  assert stream.num_classes == 3 and stream.input_shape == (5,)
  fpb, imdb = stream.tasks
  assert fpb.classes == (0, 1, 2) and fpb.num_classes == 3
  assert imdb.classes == (0, 2) and imdb.class_names == ("negative", "positive")
  assert imdb.num_classes == 2
  assert imdb.train.labels.tolist() == [0, 2] and imdb.test.labels.tolist() == [2, 0, 0]
  assert SENTIMENT_CLASSES[imdb.test.labels[0]] == "positive"  # never onto "neutral"
  # The vocabulary comes from both tasks' training texts, never from test texts.
  assert {"profit", "film", "fell", "rose"} <= set(stream.vocab.tokens)
  assert "br" not in stream.vocab.tokens and "unseen" not in stream.vocab.tokens
  assert imdb.test.inputs[2].tolist() == [UNK_ID, UNK_ID, UNK_ID, PAD_ID, PAD_ID]
  assert imdb.train.inputs.dtype == np.int32 and imdb.train.inputs.shape == (2, 5)
  decoded = [stream.vocab.tokens[i] for i in imdb.train.inputs[0]]
  assert decoded == ["a", "dull", "film", "it", "fell"]  # <br /> dropped, first 5 kept


def test_text_stream_rejects_image_datasets():
  images = Split(np.zeros((2, 4, 4, 1), np.uint8), np.array([0, 1], np.int32))
  with pytest.raises(ValueError, match="not a text dataset"):
    text_stream([Dataset("mnist", images, images, ("0", "1"))])
