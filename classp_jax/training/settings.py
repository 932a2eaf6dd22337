"""What a run is: its full resolved settings (`run_settings`) and their digest
(`settings_id`), which its checkpoints and results are of."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from classp_jax.data import TaskStream
from classp_jax.methods import Method
from classp_jax.training.config import LoopConfig


def tree_bytes(tree: Any) -> int:
  """Bytes held by a pytree's array leaves."""
  return sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


_STREAM_DIGESTS: dict[int, tuple[TaskStream, str]] = {}


def stream_digest(stream: TaskStream) -> str:
  """A digest of every example and label of a stream (cached per stream object)."""
  cached = _STREAM_DIGESTS.get(id(stream))
  if cached is not None and cached[0] is stream:
    return cached[1]
  digest = hashlib.blake2b(digest_size=16)
  for task in stream.tasks:
    for split in (task.train, task.test):
      for array in (split.inputs, split.labels):
        array = np.asarray(array)
        digest.update(f"{task.name}{array.dtype}{array.shape}".encode())
        if array.dtype == object:  # raw text
          digest.update("\0".join(map(str, array.ravel())).encode())
        else:
          digest.update(np.ascontiguousarray(array).tobytes())
  _STREAM_DIGESTS[id(stream)] = (stream, digest.hexdigest())
  return digest.hexdigest()


def json_ready(value: Any) -> Any:
  """``value`` as JSON would give it back (tuples as lists, keys sorted, others as str)."""
  return json.loads(json.dumps(value, sort_keys=True, default=str))


def run_settings(
  model: nn.Module, stream: TaskStream, method: Method, config: LoopConfig, seed: int
) -> dict[str, Any]:
  """The full resolved settings of a run, JSON-ready: what its checkpoints and results are of.

  The stream is identified by its tasks, sizes and a digest of its data, the
  model by its repr (its class and every field), the method by its spec with
  every hyperparameter, and the loop by all of `LoopConfig`.
  """
  return json_ready(
    {
      "stream": {
        "name": stream.name,
        "scenario": stream.scenario,
        "num_classes": stream.num_classes,
        "input_shape": stream.input_shape,
        "tasks": [
          {"name": t.name, "train": len(t.train), "test": len(t.test)} for t in stream.tasks
        ],
        "digest": stream_digest(stream),
      },
      "model": repr(model),
      # The spec's info is what the method is, not what it computes: not a setting.
      "method": {
        "name": method.name,
        **{k: v for k, v in dataclasses.asdict(method.spec).items() if k != "info"},
      },
      "loop": dataclasses.asdict(config),
      "seed": seed,
    }
  )


def settings_id(settings: dict[str, Any]) -> str:
  """A short digest of a run's settings without its seed: runs over seeds share it."""
  rest = {k: v for k, v in settings.items() if k != "seed"}
  return hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()[:12]
