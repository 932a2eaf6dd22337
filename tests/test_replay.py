"""The replay buffer: reservoir sampling's statistics, sampling, exact storage, data parallelism."""

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from classp_jax.data.streams import scale_images
from classp_jax.methods.replay import Buffer, buffer_bytes, init_buffer, reservoir_add, sample


def ids_buffer(capacity: int) -> Buffer:
  """A buffer whose examples are their stream ids (int32 inputs of shape (1,))."""
  return init_buffer(capacity, (1,), np.int32, 1000)


@jax.jit
def offer(buffer: Buffer, ids: jax.Array, key) -> Buffer:
  return reservoir_add(buffer, ids[:, None], ids % 1000, None, key)


draw = jax.jit(sample, static_argnums=2)


def final_ids(key, capacity: int, batches: int, batch: int) -> jax.Array:
  """The ids in the buffer after offering ids 0, 1, ... in `batches` batches."""

  def step(b, buffer):
    ids = b * batch + jnp.arange(batch)
    return reservoir_add(buffer, ids[:, None], ids, None, jax.random.fold_in(key, b))

  return jax.lax.fori_loop(0, batches, step, ids_buffer(capacity)).inputs[:, 0]


def test_every_example_of_a_long_stream_is_kept_with_probability_capacity_over_n():
  capacity, n, seeds = 10, 60, 5000
  keys = jax.random.split(jax.random.key(0), seeds)
  kept = jax.jit(jax.vmap(lambda key: final_ids(key, capacity, n // 6, 6)))(keys)
  kept = np.asarray(kept)
  assert all(len(set(row)) == capacity for row in kept.tolist())  # no example twice
  counts = np.bincount(kept.ravel(), minlength=n)
  p = capacity / n
  expected, var = seeds * p, seeds * p * (1 - p)
  # Each count is Binomial(seeds, p): 5 standard deviations bound all 60 of them.
  assert np.abs(counts - expected).max() < 5 * np.sqrt(var)
  # A uniform random subset per seed: the statistic is (n / (n - 1)) chi2(n - 1); between
  # the 0.1% and 99.9% quantiles of chi2(59) (31.0 and 98.3, scipy.stats.chi2.ppf).
  statistic = np.sum((counts - expected) ** 2) / var * (n - 1) / n
  assert 31.0 < statistic < 98.3
  # The first `capacity` examples (placed deterministically) are no likelier than the rest:
  # the counts sum to seeds * capacity, so the gap is 1.2x the first ten's mean deviation.
  gap = counts[:capacity].mean() - counts[capacity:].mean()
  assert abs(gap) < 4 * 1.2 * np.sqrt(var / capacity)


def test_a_batch_is_inserted_as_algorithm_r_offers_its_examples_one_by_one():
  capacity, batch = 3, 16  # many examples of one batch draw the same slot
  buffer = ids_buffer(capacity)
  slots = list(range(100, 100 + capacity))  # a NumPy model of Algorithm R, same draws
  for call, start in enumerate(range(0, 48, batch)):
    key = jax.random.key(call)
    positions = np.arange(start, start + batch)
    draws = np.asarray(jax.random.randint(key, (batch,), 0, jnp.asarray(positions) + 1))
    buffer = offer(buffer, positions, key)
    for position, draw in zip(positions, draws):
      if position < capacity:
        slots[position] = position
      elif draw < capacity:
        slots[draw] = position
    assert np.asarray(buffer.inputs[:, 0]).tolist() == slots
    assert int(buffer.num_seen) == start + batch


def test_insertion_is_a_function_of_the_key():
  first = offer(
    offer(ids_buffer(4), np.arange(10), jax.random.key(1)), np.arange(10, 30), jax.random.key(2)
  )
  again = offer(
    offer(ids_buffer(4), np.arange(10), jax.random.key(1)), np.arange(10, 30), jax.random.key(2)
  )
  other = offer(
    offer(ids_buffer(4), np.arange(10), jax.random.key(1)), np.arange(10, 30), jax.random.key(3)
  )
  jax.tree.map(np.testing.assert_array_equal, first, again)
  assert not np.array_equal(first.inputs, other.inputs)


def test_sampling_a_partly_filled_buffer_draws_only_filled_slots():
  empty = ids_buffer(8)
  assert not draw(empty, jax.random.key(0), 4).valid.any()
  buffer = offer(empty, np.array([5, 6, 7]), jax.random.key(1))
  assert int(buffer.size) == 3
  replay = draw(buffer, jax.random.key(2), 5)  # more than it holds: repeats them
  assert replay.valid.all() and set(replay.labels.tolist()) == {5, 6, 7}
  assert replay.inputs.dtype == jnp.int32 and replay.labels.dtype == jnp.int32
  full = offer(empty, np.arange(8), jax.random.key(3))
  replay = draw(full, jax.random.key(4), 8)  # as many as it holds: each once
  assert sorted(replay.labels.tolist()) == list(range(8))


def test_sampling_is_uniform_over_the_filled_slots():
  buffer = offer(ids_buffer(16), np.arange(10), jax.random.key(0))
  draws = jax.jit(jax.vmap(lambda key: sample(buffer, key, 4).labels))
  labels = np.asarray(draws(jax.random.split(jax.random.key(1), 3000)))
  assert all(len(set(row)) == 4 for row in labels.tolist())  # without replacement
  counts = np.bincount(labels.ravel(), minlength=16)
  assert counts[10:].sum() == 0
  p = 4 / 10  # each of the 10 filled slots is in a draw of 4 with probability 0.4
  assert np.abs(counts[:10] - 3000 * p).max() < 5 * np.sqrt(3000 * p * (1 - p))


def test_images_are_stored_as_uint8_and_come_back_bit_exact():
  pixels = np.arange(256, dtype=np.uint8).reshape(4, 8, 8, 1)
  images = scale_images(pixels)  # what a task holds
  buffer = init_buffer(4, (8, 8, 1), np.float32, 10, store_logits=True)
  assert buffer.inputs.dtype == np.uint8 and buffer.labels.dtype == np.uint8
  logits = jnp.arange(40, dtype=jnp.float32).reshape(4, 10)
  buffer = jax.jit(reservoir_add)(buffer, images, jnp.arange(4), logits, jax.random.key(0))
  np.testing.assert_array_equal(buffer.inputs, pixels)
  replay = draw(buffer, jax.random.key(1), 4)
  order = np.asarray(replay.labels)
  assert sorted(order.tolist()) == [0, 1, 2, 3]
  np.testing.assert_array_equal(
    np.asarray(replay.inputs).view(np.uint32), images[order].view(np.uint32)
  )
  np.testing.assert_array_equal(replay.logits, logits[order])


def test_buffer_bytes_counts_examples_labels_and_logits():
  mnist = init_buffer(200, (28, 28, 1), np.float32, 10)
  assert buffer_bytes(mnist) == 200 * 784 + 200  # 0.16 MB: uint8 pixels and labels
  tokens = init_buffer(50, (30,), np.int32, 3, store_logits=True)
  assert buffer_bytes(tokens) == 50 * 30 * 4 + 50 + 50 * 3 * 4


def test_data_parallel_insertion_and_sampling_match_one_device():
  devices = jax.devices()[:4]
  mesh = jax.make_mesh((4,), ("data",), devices=devices)
  buffer = init_buffer(6, (2,), np.float32, 5, store_logits=True)
  inputs = scale_images(np.arange(32, dtype=np.uint8).reshape(16, 2))
  labels = jnp.arange(16) % 5
  logits = jnp.arange(80, dtype=jnp.float32).reshape(16, 5)
  key, sample_key = jax.random.key(7), jax.random.key(8)

  def per_device(buffer, inputs, labels, logits):
    buffer = reservoir_add(buffer, inputs, labels, logits, key, axis_name="data")
    replay = sample(buffer, sample_key, 8, axis_name="data")
    return jax.tree.map(lambda x: x[None], buffer), replay  # each replica's buffer

  P = jax.P
  sharded = jax.device_put((inputs, labels, logits), jax.NamedSharding(mesh, P("data")))
  replicas, replay = jax.jit(
    jax.shard_map(
      per_device,
      mesh=mesh,
      in_specs=(P(), P("data"), P("data"), P("data")),
      out_specs=(P("data"), P("data")),
      check_vma=False,
    )
  )(buffer, *sharded)

  expected = reservoir_add(buffer, inputs, labels, logits, key)  # one device, global batch
  for d in range(4):
    jax.tree.map(
      lambda r, e: np.testing.assert_array_equal(np.asarray(r)[d], e), replicas, expected
    )
  jax.tree.map(np.testing.assert_array_equal, replay, sample(expected, sample_key, 8))


def test_a_buffer_without_logits_checkpoints_and_restores(tmp_path):
  buffer = offer(ids_buffer(4), np.arange(6), jax.random.key(0))
  manager = ocp.CheckpointManager(tmp_path, options=ocp.CheckpointManagerOptions(create=True))
  manager.save(0, args=ocp.args.StandardSave(buffer))
  manager.wait_until_finished()
  restored = manager.restore(0, args=ocp.args.StandardRestore(ids_buffer(4)))
  assert isinstance(restored, Buffer) and restored.logits is None
  jax.tree.map(np.testing.assert_array_equal, restored, buffer)


def test_logits_must_match_the_buffer():
  with pytest.raises(ValueError, match="store_logits"):
    reservoir_add(
      ids_buffer(2),
      jnp.zeros((1, 1), jnp.int32),
      jnp.zeros(1, jnp.int32),
      jnp.zeros((1, 1000)),
      jax.random.key(0),
    )
