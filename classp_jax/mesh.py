"""The device mesh and moving data onto it: the only place that knows about devices.

A 1-D ``data`` mesh spans every device of every process, so the same code runs
on one CPU, N simulated CPU devices (``JAX_NUM_CPU_DEVICES=N``), a GPU, or a
multi-host slice. `replicate` puts host trees on every device, `shard_batch`
splits a batch's indices over ``data``, `to_host` reads a replicated value
back, and `compiler_options` gives XLA options for the backend. Methods
(`classp_jax.methods`) and the training steps (`classp_jax.training`) build
on it; it imports nothing else of classp_jax.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding

DATA = "data"
P = jax.P

# XLA:CPU hands convolutions, dots and reductions to YNNPACK by default. Measured with
# benchmarks/throughput.py (jax 0.10, 2-core x86, one run): without YNNPACK the paper
# CNN's batch-32 training step went from 0.91x to 1.00x PyTorch eager, and batch
# 256 from 0.39x to 1.20x; alone, its 3x3 convolution ran 2.4x faster forward
# and 1.6x faster for the weight gradient. MLP and Transformer steps did not slow.
# Reductions stay with YNNPACK: without it XLA:CPU split the mean of g**2 over a
# 1e7-weight tensor (CLASSP's relative threshold) into a slow loop, 3.1x the
# absolute-threshold step against 1.06x with it, and the paper CNN's step took 1.3x
# as long (both side by side in one run, benchmarks/optimizer_speed.py and a probe).
CPU_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_REDUCE"}


@functools.cache
def _cpu_options_supported() -> bool:
  """Whether this XLA knows `CPU_COMPILER_OPTIONS` (a later one may drop the flag)."""
  try:
    jax.jit(lambda x: x + 1, compiler_options=CPU_COMPILER_OPTIONS).lower(
      jax.ShapeDtypeStruct((), jnp.float32)
    ).compile()
    return True
  except Exception:  # noqa: BLE001 - XLA reports an unknown option as a runtime error
    return False


def compiler_options(mesh: Mesh) -> dict[str, str] | None:
  """XLA options for our jitted steps on ``mesh``: `CPU_COMPILER_OPTIONS` on CPU."""
  if mesh.devices.flat[0].platform == "cpu" and _cpu_options_supported():
    return CPU_COMPILER_OPTIONS
  return None


def data_mesh(devices=None) -> Mesh:
  """A 1-D ``data`` mesh over ``devices`` (default: all devices of all processes)."""
  devices = jax.devices() if devices is None else list(devices)
  return jax.make_mesh((len(devices),), (DATA,), axis_types=(AxisType.Auto,), devices=devices)


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Puts a host pytree on every device of ``mesh`` (also across processes)."""
  sharding = NamedSharding(mesh, P())

  def put(x):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

  return jax.tree.map(put, tree)


def shard_batch(indices: np.ndarray, mesh: Mesh) -> jax.Array:
  """Splits the last axis of host ``indices`` (..., global_batch) over ``data``."""
  n = mesh.shape[DATA]
  if indices.shape[-1] % n:
    raise ValueError(
      f"the global batch size {indices.shape[-1]} is not divisible by the "
      f"{n} devices of the data mesh; choose a multiple of {n}"
    )
  spec = P(*([None] * (indices.ndim - 1)), DATA)
  return jax.make_array_from_callback(
    indices.shape, NamedSharding(mesh, spec), lambda index: indices[index]
  )


def to_host(x: jax.Array) -> np.ndarray:
  """A replicated array's value on this host (works across processes)."""
  return np.asarray(x.addressable_data(0))
