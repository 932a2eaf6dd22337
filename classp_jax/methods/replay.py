"""A device-resident replay buffer filled by reservoir sampling: ER, DER++ and A-GEM's memory.

The buffer is a fixed-shape pytree (`Buffer`), so it lives in the run state, passes through
jitted steps, and is checkpointed and restored like params. Its functions are pure and
jittable: `init_buffer`, `reservoir_add`, `sample`, and `buffer_bytes` for the results.

Storage is the cheapest exact form. Images arrive as float32 ``x / 255`` of uint8 pixels
(`classp_jax.data.streams.scale_images`) and are kept as the uint8 ``round(x * 255)``, 4x
smaller and bit-exact on the way back; token ids keep their integer dtype; labels take the
smallest unsigned integer that holds every class; DER++'s logits are float32. 200 MNIST images take
0.16 MB (0.63 MB as float32).

Data parallelism (a ``data`` mesh axis in `jax.shard_map`, as in `classp_jax.training.steps`):
the buffer is replicated, and every replica stays identical because each device inserts the
*global* batch with the *same* key (`reservoir_add` with ``axis_name`` all-gathers the
devices' slices first). Sampling draws the same global replay batch on every device, from
the same key, and each device keeps its own slice of it (`sample` with ``axis_name``). A run
on 1 device and on 4 therefore replays the same examples, and results agree to float
tolerance; a key folded with the device index would instead make the replayed examples
depend on the device count.

References:
    Vitter, "Random sampling with a reservoir", ACM TOMS 11(1), 1985 (Algorithm R).
    Chaudhry et al., "On Tiny Episodic Memories in Continual Learning", arXiv 1902.10486, 2019.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from classp_jax.data.streams import scale_images


class Buffer(NamedTuple):
  """The replay memory: ``capacity`` slots, filled in order, then replaced at random.

  Attributes:
      inputs: (capacity, *example_shape): uint8 for images (``round(255 x)``), else the
          inputs' own dtype (int32 token ids).
      labels: (capacity,) the smallest unsigned integer dtype that holds every label.
      logits: (capacity, num_classes) float32, the model's logits when each example was
          inserted (DER++), or None when not stored.
      num_seen: int32 (), how many stream examples `reservoir_add` has been offered.
  """

  inputs: jax.Array
  labels: jax.Array
  logits: jax.Array | None
  num_seen: jax.Array

  @property
  def capacity(self) -> int:
    """The number of slots (static)."""
    return self.labels.shape[0]

  @property
  def size(self) -> jax.Array:
    """int32 (): the filled slots, ``min(num_seen, capacity)``; slots 0..size-1 are filled."""
    return jnp.minimum(self.num_seen, self.capacity)


class ReplayBatch(NamedTuple):
  """What `sample` returns: inputs and labels as the model takes them.

  Attributes:
      inputs: float32 images in [0, 1] or int32 token ids, (batch, *example_shape).
      labels: int32 (batch,).
      logits: float32 (batch, num_classes) stored at insertion, or None.
      valid: bool (batch,): False for every entry while the buffer is empty, else True; weigh
          replay terms with it so a step before the first insertion adds nothing.
  """

  inputs: jax.Array
  labels: jax.Array
  logits: jax.Array | None
  valid: jax.Array


def _storage_dtype(input_dtype) -> np.dtype:
  input_dtype = np.dtype(input_dtype)
  return np.dtype(np.uint8) if np.issubdtype(input_dtype, np.floating) else input_dtype


def _encode(inputs: jax.Array, dtype) -> jax.Array:
  if dtype == np.uint8 and jnp.issubdtype(inputs.dtype, jnp.floating):
    return jnp.round(jnp.clip(inputs, 0, 1) * 255).astype(jnp.uint8)
  return inputs.astype(dtype)


def _decode(stored: jax.Array) -> jax.Array:
  if stored.dtype == jnp.uint8:
    # By table: XLA turns a division by 255 into a multiplication by 1/255, which is not
    # exact; the table holds the very bits of `scale_images`.
    return jnp.asarray(scale_images(np.arange(256, dtype=np.uint8)))[stored]
  return stored


def init_buffer(
  capacity: int,
  example_shape: tuple[int, ...],
  input_dtype,
  num_classes: int,
  store_logits: bool = False,
) -> Buffer:
  """An empty buffer.

  Args:
    capacity: the number of examples it holds (``buffer_size``).
    example_shape: the shape of one example, e.g. ``TaskStream.input_shape``.
    input_dtype: the dtype of the examples offered: floating point means images in
      [0, 1] on a 1/255 grid (stored as uint8), an integer dtype is kept as is.
    num_classes: the head size (``TaskStream.num_classes``).
    store_logits: also keep each example's logits at insertion (DER++).

  Returns:
    A `Buffer` with ``num_seen == 0``.

  Examples:
    >>> buffer = init_buffer(200, (28, 28, 1), np.float32, 10)
    >>> buffer.inputs.dtype, buffer.labels.dtype, buffer.logits, int(buffer.size)
    (dtype('uint8'), dtype('uint8'), None, 0)
  """
  if capacity < 1:
    raise ValueError(f"capacity {capacity} must be at least 1")
  return Buffer(
    inputs=jnp.zeros((capacity, *example_shape), _storage_dtype(input_dtype)),
    labels=jnp.zeros((capacity,), np.min_scalar_type(max(num_classes - 1, 0))),
    logits=jnp.zeros((capacity, num_classes), jnp.float32) if store_logits else None,
    num_seen=jnp.zeros((), jnp.int32),
  )


def reservoir_add(
  buffer: Buffer,
  inputs: jax.Array,
  labels: jax.Array,
  logits: jax.Array | None,
  key: jax.Array,
  *,
  axis_name: str | None = None,
) -> Buffer:
  """Offers a batch of stream examples to the buffer (reservoir sampling, Algorithm R).

  The n-th example of the stream (counting from 0, over all calls) goes to slot n while
  n < capacity; after that it replaces slot j, for j drawn uniformly from 0..n, if
  j < capacity, and is dropped otherwise. At any time every example seen so far is in the
  buffer with the same probability ``capacity / num_seen``. Within a batch, examples are
  offered in order: when two draw the same slot the later one stays, as in the sequential
  algorithm.

  Args:
    buffer: the buffer.
    inputs: (batch, *example_shape), as the model takes them.
    labels: int (batch,).
    logits: (batch, num_classes) to store (the step's logits; DER++), or None for a buffer
      without logits.
    key: a PRNG key; the result is a function of the buffer, the batch and the key.
    axis_name: inside `jax.shard_map`, the data axis over which the batch is split: each
      device passes its own slice and the slices are all-gathered (in device order) into
      the global batch, which every device inserts with the same key, so the replicated
      buffers stay identical. The key must be the same on every device.

  Returns:
    The updated buffer.

  Examples:
    >>> buffer = init_buffer(2, (1,), np.int32, 5)
    >>> buffer = reservoir_add(buffer, jnp.array([[7], [8], [9]]), jnp.array([1, 2, 3]),
    ...                        None, jax.random.key(0))
    >>> int(buffer.num_seen), int(buffer.size)
    (3, 2)
  """
  if (logits is None) != (buffer.logits is None):
    raise ValueError("pass logits exactly when the buffer stores them (store_logits)")
  batch = (inputs, labels, logits)
  if axis_name is not None:
    batch = jax.tree.map(lambda x: lax.all_gather(x, axis_name, tiled=True), batch)
  inputs, labels, logits = batch
  size = labels.shape[0]
  capacity = buffer.capacity
  order = jnp.arange(size, dtype=jnp.int32)
  position = buffer.num_seen + order
  draw = jax.random.randint(key, (size,), 0, position + 1)  # uniform on 0..position
  slot = jnp.where(position < capacity, position, draw)
  # A later example of the batch that takes the same slot overwrites this one; giving the
  # dropped ones distinct out-of-range slots keeps every scatter index unique.
  overwritten = ((slot[None, :] == slot[:, None]) & (order[None, :] > order[:, None])).any(1)
  slot = jnp.where((slot < capacity) & ~overwritten, slot, capacity + order)

  def put(stored, new):
    return stored.at[slot].set(new.astype(stored.dtype), mode="drop", unique_indices=True)

  return Buffer(
    inputs=put(buffer.inputs, _encode(inputs, buffer.inputs.dtype)),
    labels=put(buffer.labels, labels),
    logits=None if logits is None else put(buffer.logits, lax.stop_gradient(logits)),
    num_seen=buffer.num_seen + size,
  )


def sample(
  buffer: Buffer, key: jax.Array, batch_size: int, *, axis_name: str | None = None
) -> ReplayBatch:
  """Draws a replay batch uniformly from the filled slots.

  Without replacement while the buffer holds at least ``min(batch_size, capacity)``
  examples; a buffer holding fewer repeats them (each pass through them in a new random
  order), so every entry is a uniform draw from the filled slots and a step right after the
  first insertions composes like any other. An empty buffer returns ``valid`` all False
  (and arbitrary slots).

  Args:
    buffer: the buffer.
    key: a PRNG key; with ``axis_name``, the same on every device.
    batch_size: the global replay batch size (static).
    axis_name: inside `jax.shard_map`, the data axis: every device draws the same global
      batch and returns its own contiguous slice of ``batch_size / devices`` entries.

  Returns:
    A `ReplayBatch` (this device's share with ``axis_name``).

  Examples:
    >>> buffer = init_buffer(4, (2,), np.float32, 3)
    >>> bool(sample(buffer, jax.random.key(0), 2).valid.any())
    False
    >>> buffer = reservoir_add(buffer, jnp.full((1, 2), 1.0), jnp.array([2]), None,
    ...                        jax.random.key(1))
    >>> replay = sample(buffer, jax.random.key(2), 2)
    >>> replay.labels.tolist(), replay.valid.tolist(), replay.inputs[0].tolist()
    ([2, 2], [True, True], [1.0, 1.0])
  """
  capacity = buffer.capacity
  draws = min(batch_size, capacity)
  size = buffer.size
  # The `draws` filled slots with the smallest uniform keys: a uniformly random ordered
  # sample without replacement (filled slots are 0..size-1).
  keys = jnp.where(jnp.arange(capacity) < size, jax.random.uniform(key, (capacity,)), 2.0)
  _, chosen = lax.top_k(-keys, draws)
  slots = chosen[jnp.arange(batch_size) % jnp.clip(size, 1, draws)]
  valid = jnp.broadcast_to(size > 0, (batch_size,))
  if axis_name is not None:
    devices = lax.axis_size(axis_name)
    if batch_size % devices:
      raise ValueError(f"replay batch {batch_size} is not divisible by {devices} devices")
    share = batch_size // devices
    start = lax.axis_index(axis_name) * share
    slots, valid = (lax.dynamic_slice_in_dim(x, start, share) for x in (slots, valid))
  return ReplayBatch(
    inputs=_decode(buffer.inputs[slots]),
    labels=buffer.labels[slots].astype(jnp.int32),
    logits=None if buffer.logits is None else buffer.logits[slots],
    valid=valid,
  )


def buffer_bytes(buffer: Buffer) -> int:
  """Bytes of the stored examples, labels and logits (works on `jax.eval_shape` output too).

  Examples:
    >>> buffer_bytes(init_buffer(200, (28, 28, 1), np.float32, 10))  # 200 x 784 + 200
    157000
    >>> abstract = jax.eval_shape(lambda: init_buffer(200, (28, 28, 1), np.float32, 10, True))
    >>> buffer_bytes(abstract)  # + 200 x 10 float32 logits
    165000
  """
  stored = (buffer.inputs, buffer.labels, buffer.logits)
  return sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(stored))
