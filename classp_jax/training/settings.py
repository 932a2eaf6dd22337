"""What a run is: its full resolved settings (`run_settings`) and their digest
(`settings_id`), which its checkpoints and results are of."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import weakref
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


# Per live stream object: (a weak reference to it, its digest). Weak, and dropped when the
# stream is: a strong reference kept every stream a study worker had built alive (64 MB a
# split MNIST run, 18 GB after 280 runs).
_STREAM_DIGESTS: dict[int, tuple[weakref.ref, str]] = {}


def stream_digest(stream: TaskStream) -> str:
  """A digest of every example and label of a stream (cached while the stream lives)."""
  cached = _STREAM_DIGESTS.get(id(stream))
  if cached is not None and cached[0]() is stream:
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
  _STREAM_DIGESTS[id(stream)] = (weakref.ref(stream), digest.hexdigest())
  weakref.finalize(stream, _STREAM_DIGESTS.pop, id(stream), None)
  return digest.hexdigest()


def json_ready(value: Any) -> Any:
  """``value`` as JSON would give it back (tuples as lists, keys sorted, others as str)."""
  return json.loads(json.dumps(value, sort_keys=True, default=str))


# A seed makes the run's PRNG key (`jax.random.key`), which keeps 32 bits of it (without
# jax_enable_x64; beyond 2**63 it fails): seed 2**32 would be seed 0's run under another name.
MAX_SEED = 2**32 - 1


def check_seed(seed: Any) -> None:
  """Raises ValueError unless ``seed`` is an integer in [0, `MAX_SEED`]."""
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
    raise ValueError(
      f"seed {seed!r} is out of range: a seed is an integer in [0, {MAX_SEED}] (JAX's PRNG "
      "keeps 32 bits of it, so a larger one would repeat a smaller one's run)"
    )


def method_model(model: nn.Module, method) -> nn.Module:
  """The model ``method`` trains: ``model`` with the method's dropout (`MethodSpec.dropout`)
  if it sets one; ValueError if the model has no ``dropout`` field."""
  dropout = getattr(method.spec, "dropout", None)
  if dropout is None:
    return model
  if "dropout" not in {f.name for f in dataclasses.fields(model)}:
    raise ValueError(
      f"{method.name} sets dropout {dropout}, but {type(model).__name__} has no dropout field"
    )
  return model.clone(dropout=dropout)


def run_settings(
  model: nn.Module, stream: TaskStream, method: Method, config: LoopConfig, seed: int
) -> dict[str, Any]:
  """The full resolved settings of a run, JSON-ready: what its checkpoints and results are of.

  The stream is identified by its tasks, sizes and a digest of its data, the
  model by its repr, as the method trains it (`method_model`: its class and every field, which fix its state's structure:
  BatchNorm's statistics, whose values a checkpoint's state digest covers), the
  method by its spec with every hyperparameter, and the loop by all of
  `LoopConfig` (its fields added since results were first written, such as
  ``augment``, only when they differ from their default: the runs written
  before have the same settings and id).

  Raises:
    ValueError: a seed out of range (`check_seed`).
  """
  check_seed(seed)
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
      "model": repr(method_model(model, method)),
      # The spec's info is what the method is, not what it computes: not a setting.
      "method": {
        "name": method.name,
        **{
          k: v
          for k, v in dataclasses.asdict(method.spec).items()
          if k != "info" and (k not in _LATER_SPEC_DEFAULTS or v != _LATER_SPEC_DEFAULTS[k])
        },
      },
      "loop": _loop_settings(config),
      "seed": seed,
    }
  )


# `LoopConfig` fields younger than the first results files, with their defaults: left out
# of a run's settings at that default, so that the runs written before keep their id.
_LATER_LOOP_DEFAULTS = {"augment": False, "eval_tasks_sample": None}
# The same for `MethodSpec` fields.
_LATER_SPEC_DEFAULTS = {"dropout": None}


def _loop_settings(config: LoopConfig) -> dict[str, Any]:
  loop = dataclasses.asdict(config)
  return {
    k: v for k, v in loop.items() if k not in _LATER_LOOP_DEFAULTS or v != _LATER_LOOP_DEFAULTS[k]
  }


def settings_id(settings: dict[str, Any]) -> str:
  """A short digest of a run's settings without its seed: runs over seeds share it."""
  rest = {k: v for k, v in settings.items() if k != "seed"}
  return hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()[:12]
