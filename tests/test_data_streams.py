"""Image task streams: sequential, split (task- and class-incremental), permuted, digits."""

from __future__ import annotations

import numpy as np
import pytest

from classp_jax.data import (
  Dataset,
  Split,
  digits_stream,
  load_dataset,
  permuted_stream,
  sequential_stream,
  split_stream,
)


@pytest.fixture(scope="module")
def digits() -> Dataset:
  return load_dataset("digits")


def image_dataset(name: str, num_classes: int, shape=(4, 4, 1), n: int = 20) -> Dataset:
  rng = np.random.default_rng(len(name))
  labels = (np.arange(n) % num_classes).astype(np.int32)
  split = Split(rng.integers(0, 256, (n, *shape), dtype=np.uint8), labels)
  return Dataset(name, split, split, tuple(f"{name}{c}" for c in range(num_classes)))


def test_split_stream_task_incremental_remaps_labels_within_each_task(digits):
  stream = split_stream(digits, 5, label_mode="task")
  assert stream.num_classes == 2 and stream.input_shape == (8, 8, 1)
  assert [t.name for t in stream.tasks] == [f"digits:{a}-{a + 1}" for a in range(0, 10, 2)]
  task = stream.tasks[1]
  assert task.num_classes == 2 and task.classes == (0, 1) and task.class_names == ("2", "3")
  original = digits.test.labels[np.isin(digits.test.labels, [2, 3])]
  np.testing.assert_array_equal(task.test.labels, original - 2)
  assert task.train.inputs.dtype == np.float32
  assert 0.0 <= task.train.inputs.min() and task.train.inputs.max() == 1.0
  assert sum(len(t.train) for t in stream.tasks) == len(digits.train)


def test_split_stream_class_incremental_keeps_original_labels(digits):
  stream = split_stream(digits, 5, label_mode="class", class_order=[9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
  assert stream.num_classes == 10
  assert stream.tasks[0].name == "digits:9-8" and stream.tasks[0].classes == (8, 9)
  assert set(stream.tasks[0].train.labels.tolist()) == {8, 9}
  assert stream.tasks[0].class_names == ("8", "9")


def test_split_stream_task_mode_follows_class_order(digits):
  task = split_stream(digits, 5, class_order=[1, 0, 2, 3, 4, 5, 6, 7, 8, 9]).tasks[0]
  np.testing.assert_array_equal(task.test.labels, 1 - digits.test.labels[digits.test.labels < 2])
  assert task.class_names == ("1", "0")


def test_split_stream_rejects_bad_arguments(digits):
  with pytest.raises(ValueError, match="do not divide"):
    split_stream(digits, 3)
  with pytest.raises(ValueError, match="label_mode"):
    split_stream(digits, label_mode="domain")
  with pytest.raises(ValueError, match="permutation"):
    split_stream(digits, class_order=[0] * 10)


def test_permuted_stream_permutes_pixels_the_same_way_in_train_and_test(digits):
  stream = permuted_stream(digits, 3, seed=7)
  first, second = stream.tasks[0], stream.tasks[1]
  np.testing.assert_array_equal(first.train.inputs, digits.train.inputs / np.float32(255))
  flat_original = first.test.inputs.reshape(len(digits.test), -1)
  flat_permuted = second.test.inputs.reshape(len(digits.test), -1)
  assert not np.array_equal(flat_original, flat_permuted)
  np.testing.assert_array_equal(np.sort(flat_original, 1), np.sort(flat_permuted, 1))
  assert not np.array_equal(stream.tasks[2].test.inputs, second.test.inputs)
  assert stream.num_classes == 10 and stream.tasks[2].name == "digits:perm2"
  again = permuted_stream(digits, 3, seed=7).tasks[1]
  np.testing.assert_array_equal(again.train.inputs, second.train.inputs)  # seeded
  same_split = image_dataset("a", 10)  # train is test: one permutation maps both alike
  task = permuted_stream(same_split, 2).tasks[1]
  np.testing.assert_array_equal(task.train.inputs, task.test.inputs)


def test_permuted_stream_can_permute_the_first_task(digits):
  stream = permuted_stream(digits, 2, permute_first=True)
  assert not np.array_equal(stream.tasks[0].train.inputs, digits.train.inputs / np.float32(255))


def test_sequential_stream_shares_the_largest_head():
  stream = sequential_stream([image_dataset("a", 10), image_dataset("b", 3)])
  assert stream.name == "a->b" and stream.num_classes == 10 and len(stream) == 2
  assert stream.tasks[1].num_classes == 3 and stream.tasks[1].class_names == ("b0", "b1", "b2")
  assert stream.tasks[0].train.inputs.dtype == np.float32 and stream.input_shape == (4, 4, 1)
  with pytest.raises(ValueError, match="shapes differ"):
    sequential_stream([image_dataset("a", 10), image_dataset("c", 10, shape=(5, 5, 1))])


def test_digits_stream_is_the_split_digits_default():
  stream = digits_stream()
  assert stream.name == "split_digits" and len(stream) == 5 and stream.num_classes == 2
  assert digits_stream("class").num_classes == 10
