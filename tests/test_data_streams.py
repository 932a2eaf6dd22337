"""Image task streams in the three scenarios: sequential, split, permuted, digits, joint; masks."""

from __future__ import annotations

import numpy as np
import pytest

from classp_jax.data import (
  Dataset,
  Split,
  Task,
  TaskStream,
  class_mask,
  digits_stream,
  joint_stream,
  label_class_masks,
  load_dataset,
  permuted_stream,
  seen_class_mask,
  sequential_stream,
  split_stream,
  subsample_stream,
)


@pytest.fixture(scope="module")
def digits() -> Dataset:
  return load_dataset("digits")


def image_dataset(name: str, num_classes: int, shape=(4, 4, 1), n: int = 20) -> Dataset:
  rng = np.random.default_rng(len(name))
  labels = (np.arange(n) % num_classes).astype(np.int32)
  split = Split(rng.integers(0, 256, (n, *shape), dtype=np.uint8), labels)
  return Dataset(name, split, split, tuple(f"{name}{c}" for c in range(num_classes)))


def test_split_stream_domain_incremental_remaps_labels_within_each_task(digits):
  stream = split_stream(digits, 5, scenario="domain")
  assert stream.num_classes == 2 and stream.input_shape == (8, 8, 1)
  assert stream.scenario == "domain"
  assert [t.name for t in stream.tasks] == [f"digits:{a}-{a + 1}" for a in range(0, 10, 2)]
  task = stream.tasks[1]
  assert task.num_classes == 2 and task.classes == (0, 1) and task.class_names == ("2", "3")
  original = digits.test.labels[np.isin(digits.test.labels, [2, 3])]
  np.testing.assert_array_equal(task.test.labels, original - 2)
  assert task.train.inputs.dtype == np.float32
  assert 0.0 <= task.train.inputs.min() and task.train.inputs.max() == 1.0
  assert sum(len(t.train) for t in stream.tasks) == len(digits.train)


def test_split_stream_class_incremental_keeps_original_labels(digits):
  stream = split_stream(digits, 5, scenario="class", class_order=[9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
  assert stream.num_classes == 10 and stream.scenario == "class"
  assert stream.tasks[0].name == "digits:9-8" and stream.tasks[0].classes == (8, 9)
  assert set(stream.tasks[0].train.labels.tolist()) == {8, 9}
  assert stream.tasks[0].class_names == ("8", "9")


def test_split_stream_domain_labels_follow_class_order(digits):
  task = split_stream(digits, 5, class_order=[1, 0, 2, 3, 4, 5, 6, 7, 8, 9]).tasks[0]
  np.testing.assert_array_equal(task.test.labels, 1 - digits.test.labels[digits.test.labels < 2])
  assert task.class_names == ("1", "0")


def test_split_stream_rejects_bad_arguments(digits):
  with pytest.raises(ValueError, match="do not divide"):
    split_stream(digits, 3)
  with pytest.raises(ValueError, match="scenario"):
    split_stream(digits, scenario="task-il")
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
  assert digits_stream("task").scenario == "task"


def test_the_three_scenarios_of_a_split_stream_on_a_tiny_dataset():
  dataset = image_dataset("a", 4, n=20)  # labels 0, 1, 2, 3, 0, 1, ...
  domain, klass, task = (split_stream(dataset, 2, scenario=s) for s in ("domain", "class", "task"))
  assert (domain.num_classes, klass.num_classes, task.num_classes) == (2, 4, 4)
  second_labels = [2, 3] * 5
  assert domain.tasks[1].train.labels.tolist() == [0, 1] * 5 and domain.tasks[1].classes == (0, 1)
  for stream in (klass, task):
    assert stream.tasks[1].train.labels.tolist() == second_labels
    assert stream.tasks[1].classes == (2, 3) and stream.tasks[1].class_names == ("a2", "a3")
  # task identity only in task-IL: a mask per task, and per label for mixed batches
  assert class_mask(task, 0).tolist() == [True, True, False, False]
  assert class_mask(task, 1).tolist() == [False, False, True, True]
  assert class_mask(klass, 1).all() and class_mask(domain, 1).all()
  assert len(class_mask(domain, 1)) == 2
  np.testing.assert_array_equal(
    label_class_masks(task), [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]]
  )
  assert label_class_masks(klass).all() and label_class_masks(domain).shape == (2, 2)
  # what a model has been trained to output after the first task(s)
  assert seen_class_mask(klass, 0).tolist() == [False] * 4
  assert seen_class_mask(task, 1).tolist() == [True, True, False, False]
  assert seen_class_mask(klass, 2).all() and seen_class_mask(domain, 1).all()


def test_permuted_stream_task_incremental_gives_each_task_its_block_of_outputs():
  dataset = image_dataset("a", 3, n=12)
  domain = permuted_stream(dataset, 3, seed=1)
  task = permuted_stream(dataset, 3, seed=1, scenario="task")
  assert domain.scenario == "domain" and domain.num_classes == 3
  assert domain.tasks[2].classes == (0, 1, 2)
  assert task.num_classes == 9 and task.scenario == "task"
  for t in range(3):
    np.testing.assert_array_equal(task.tasks[t].train.labels, dataset.train.labels + 3 * t)
    np.testing.assert_array_equal(task.tasks[t].train.inputs, domain.tasks[t].train.inputs)
    assert task.tasks[t].classes == (3 * t, 3 * t + 1, 3 * t + 2)
  assert class_mask(task, 1).nonzero()[0].tolist() == [3, 4, 5]
  klass = permuted_stream(dataset, 3, seed=1, scenario="class")
  assert klass.num_classes == 9 and class_mask(klass, 1).all()


def test_joint_stream_trains_each_task_on_the_union_so_far():
  stream = subsample_stream(split_stream(image_dataset("a", 6, n=30), 3, scenario="task"), 4, 3)
  joint = joint_stream(stream)
  assert joint.name == "joint_split_a" and joint.scenario == "task" and len(joint) == 3
  assert [len(t.train) for t in joint.tasks] == [4, 8, 12]
  assert [len(t.test) for t in joint.tasks] == [3, 3, 3]
  np.testing.assert_array_equal(
    joint.tasks[2].train.labels, np.concatenate([t.train.labels for t in stream.tasks])
  )
  np.testing.assert_array_equal(joint.tasks[1].train.inputs[4:], stream.tasks[1].train.inputs)
  assert [t.classes for t in joint.tasks] == [t.classes for t in stream.tasks]
  # each example keeps its own task's mask: the label names the task
  np.testing.assert_array_equal(label_class_masks(joint), label_class_masks(stream))


def test_task_stream_checks_its_scenario():
  split = Split(np.zeros((2, 1), np.float32), np.array([0, 1], np.int32))
  task = Task("t", split, split, 2, classes=(0, 1))
  with pytest.raises(ValueError, match="scenario"):
    TaskStream("s", (task,), 2, (1,), scenario="incremental")
  assert TaskStream("s", (task,), 2, (1,)).scenario == "domain"
  with pytest.raises(ValueError, match="share classes"):
    TaskStream("s", (task, task), 2, (1,), scenario="task")
  narrow = Task("n", split, split, 1, classes=(0,))
  with pytest.raises(ValueError, match="test labels"):
    TaskStream("s", (narrow,), 2, (1,), scenario="task")
  stray = Task(
    "x",
    Split(split.inputs, np.array([0, 1], np.int32)),
    Split(split.inputs, np.array([0, 0], np.int32)),
    1,
    classes=(0,),
  )
  with pytest.raises(ValueError, match="training labels no task owns"):
    TaskStream("s", (stray,), 2, (1,), scenario="task")
  with pytest.raises(ValueError, match="needs its classes"):
    TaskStream("s", (Task("c", split, split, 2),), 2, (1,), scenario="task")
