"""load_dataset(source="tfds") through tfds.data_source, with TFDS mocked (no files, no network)."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import tensorflow_datasets as tfds

from classp_jax.data import TfdsUnavailableError, load_dataset


def mocked_tfds(num_examples: int = 6):
  # USE_CODE generates random examples from the builders' feature specs; it patches
  # DatasetBuilder.as_data_source, so tfds.data_source works without TensorFlow.
  return tfds.testing.mock_data(num_examples=num_examples, policy=tfds.testing.MockPolicy.USE_CODE)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_tfds_images(tmp_path, name):
  with mocked_tfds():
    dataset = load_dataset(name, source="tfds", cache_dir=tmp_path)
  assert dataset.train.inputs.shape == (6, 28, 28, 1) and dataset.train.inputs.dtype == np.uint8
  assert dataset.train.labels.dtype == np.int32 and len(dataset.test) == 6
  assert dataset.source == "tfds" and dataset.num_classes == 10


def test_tfds_text_is_raw_strings_with_neg_pos_labels(tmp_path):
  with mocked_tfds(num_examples=4):
    dataset = load_dataset("imdb_reviews", source="tfds", cache_dir=tmp_path, download=False)
  assert dataset.class_names == ("neg", "pos")
  assert dataset.train.inputs.dtype == object
  assert all(isinstance(text, str) for text in dataset.train.inputs)
  assert set(dataset.train.labels.tolist()) <= {0, 1}


def test_tfds_results_are_cached(tmp_path):
  empty_data_dir = tmp_path / "tfds"  # unmocked, it fingerprints like the mocked one
  with mocked_tfds():
    first = load_dataset("mnist", source="tfds", data_dir=empty_data_dir, cache_dir=tmp_path)
  with mock.patch("classp_jax.data.load.read_tfds", side_effect=AssertionError("not cached")):
    again = load_dataset(
      "mnist", source="tfds", data_dir=empty_data_dir, cache_dir=tmp_path, download=False
    )
  np.testing.assert_array_equal(first.train.inputs, again.train.inputs)


def test_auto_without_local_files_uses_tfds(tmp_path):
  with mocked_tfds():
    dataset = load_dataset("mnist", data_dir=tmp_path, cache_dir=tmp_path / "cache")
  assert dataset.source == "tfds"


def test_an_unprepared_dataset_is_a_clear_error_not_a_stack_trace(tmp_path):
  with pytest.raises(TfdsUnavailableError, match="not prepared in the array_record format"):
    load_dataset("mnist", source="tfds", data_dir=tmp_path, download=False, cache=False)


def test_failing_to_download_says_what_preparing_needs(tmp_path):
  offline = mock.patch(
    "tensorflow_datasets.core.dataset_builder.DatasetBuilder.download_and_prepare",
    side_effect=ConnectionError("no route to host"),
  )
  with offline, pytest.raises(TfdsUnavailableError, match="internet access and TensorFlow"):
    load_dataset("mnist", source="tfds", data_dir=tmp_path, cache=False)
  # With data_dir and source="auto", the message also names the local files looked for.
  with offline, pytest.raises(FileNotFoundError, match="no mnist files.*t10k-images"):
    load_dataset("mnist", data_dir=tmp_path, cache=False)


def test_offline_the_download_fails_at_once_in_one_line_naming_the_offline_ways(tmp_path):
  # TFDS itself retries each download for minutes before it gives up.
  no_network = mock.patch("socket.create_connection", side_effect=OSError(101, "unreachable"))
  manager = "tensorflow_datasets.core.download.download_manager.DownloadManager"
  never = [
    mock.patch(f"{manager}.{name}", side_effect=AssertionError("tried to download"))
    for name in ("download", "download_and_extract")
  ]
  with no_network as connect, never[0], never[1], pytest.raises(TfdsUnavailableError) as raised:
    load_dataset("mnist", source="tfds", data_dir=tmp_path, cache=False)
  message = str(raised.value)
  assert "\n" not in message and "cannot reach storage.googleapis.com: unreachable" in message
  assert "(--data-dir)" in message and "the embedded 'digits' data" in message
  assert connect.call_args.args[0] == ("storage.googleapis.com", 443)  # mnist's host


@pytest.mark.parametrize(
  "train_labels, problem", [([], "train: the split is empty"), ([3, 10], "labels outside 0..9")]
)
def test_empty_splits_and_labels_outside_the_classes_are_errors(tmp_path, train_labels, problem):
  def split(labels):
    return [{"image": np.zeros((28, 28, 1), np.uint8), "label": label} for label in labels]

  prepared = mock.patch(
    "tensorflow_datasets.data_source", return_value=[split(train_labels), split([1])]
  )
  with prepared, pytest.raises(ValueError, match=problem):
    load_dataset("mnist", source="tfds", data_dir=tmp_path, download=False, cache_dir=tmp_path)
  assert list(tmp_path.iterdir()) == []  # nothing cached
