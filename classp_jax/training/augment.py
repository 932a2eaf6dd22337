"""Data augmentation on the device, inside the jitted training step.

`random_crop_flip` is the augmentation of the CIFAR and Tiny-ImageNet benchmarks
(Mammoth's ``RandomCrop(size, padding=4)`` and ``RandomHorizontalFlip()``): each
image is zero-padded by 4 pixels on every side, a window of its own size is cut
at a uniform offset in 0..8 on each axis, and the result is mirrored left-right
with probability 1/2. The per-channel normalisation that follows it in Mammoth
lives in the model (`classp_jax.models.ResNet18`'s ``mean`` and ``std``), since
evaluation, which never augments, needs it too.

The training step (`classp_jax.training.steps.make_train_chunk`) calls
`crop_flip` on its batch and hands it to the memories, which call it on their
replay batches (`classp_jax.methods.StepBatch.augment`). Its key is a function
of the run's key and the global step, shared by every device, and each device
cuts its own slice of the draws for the global batch: a resumed run augments
exactly as an uninterrupted one, and 1 and 4 devices augment the same examples
the same way.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from classp_jax.mesh import DATA

PADDING = 4
"""Pixels of zero padding on each side before the random crop (the benchmarks' 4)."""


def random_crop_flip(
  images: jax.Array, key: jax.Array, *, padding: int = PADDING, axis_name: str | None = None
) -> jax.Array:
  """Random crops of zero-padded images, each flipped left-right with probability 1/2.

  Args:
    images: (N, H, W, C) images in [0, 1] (padding is 0, black).
    key: a PRNG key; with ``axis_name``, the same on every device.
    padding: pixels added on every side before cropping back to (H, W).
    axis_name: inside `jax.shard_map`, the axis over which the global batch is
      split: the offsets and flips are drawn for the global batch, and each
      device takes its own contiguous slice of them (so the result does not
      depend on the device count). None: ``images`` is the whole batch.

  Returns:
    The augmented images, same shape and dtype.

  Examples:
    >>> augment = jax.jit(random_crop_flip, static_argnames="padding")
    >>> images = jnp.arange(2 * 4 * 4, dtype=jnp.float32).reshape(2, 4, 4, 1)
    >>> out = augment(images, jax.random.key(0), padding=1)
    >>> out.shape, bool(jnp.all(out == augment(images, jax.random.key(0), padding=1)))
    ((2, 4, 4, 1), True)
  """
  n, height, width, channels = images.shape
  total, start = n, 0
  if axis_name is not None:
    total = n * lax.axis_size(axis_name)
    start = lax.axis_index(axis_name) * n
  crop_key, flip_key = jax.random.split(key)
  offsets = jax.random.randint(crop_key, (total, 2), 0, 2 * padding + 1)
  flips = jax.random.bernoulli(flip_key, 0.5, (total,))
  if axis_name is not None:
    offsets = lax.dynamic_slice_in_dim(offsets, start, n)
    flips = lax.dynamic_slice_in_dim(flips, start, n)
  padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))

  def crop(image, offset):
    return lax.dynamic_slice(image, (offset[0], offset[1], 0), (height, width, channels))

  crops = jax.vmap(crop)(padded, offsets)
  return jnp.where(flips[:, None, None, None], crops[:, :, ::-1], crops)


def crop_flip(images: jax.Array, key: jax.Array) -> jax.Array:
  """`random_crop_flip` with the benchmarks' padding over the ``data`` mesh axis: the
  training step's augmentation (``LoopConfig.augment``). Call it inside the
  data-parallel step with this device's slice and a key shared by every device."""
  return random_crop_flip(images, key, padding=PADDING, axis_name=DATA)
