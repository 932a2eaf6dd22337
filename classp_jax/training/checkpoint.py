"""Checkpoints of a continual run that know what they are checkpoints of.

A checkpoint holds the run state (params, optimizer and method state) and, as
JSON, the run's full resolved settings, its progress and what it has measured
so far. It is trusted only if:

* its settings equal the run's (otherwise `SettingsMismatchError`, naming
  every differing setting: a resume never silently continues another run);
* its state reads back with the digest it was written with (a bit flip or a
  truncated file is caught, not trained on);
* its state is finite.

A kept step that fails the last two is skipped for the previous kept step;
when none is sound, `CheckpointError` says so. A finished run's checkpoint
needs no state: its record is the result.

Interrupted at any moment (SIGTERM, Ctrl-C), a checkpoint folder holds only whole
steps: a new step is written to a temporary folder and renamed into place, and
only then is the oldest step dropped, by renaming it into a ``.discarded``
folder (atomic), which is emptied next (and again on the next start, if an
interruption stopped that).

A step that cannot be written (disk full, permissions) is `CheckpointWriteError`,
whose message names the folder and the reason.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import hashlib
import json
import logging
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Iterator

import jax
import numpy as np
import orbax.checkpoint as ocp

from classp_jax.results import differing_keys, flatten_settings
from classp_jax.training.settings import tree_bytes

# Two kept steps: the newest, and one to fall back to if the newest is damaged.
MAX_TO_KEEP = 2
# Where dropped steps are moved, whole, before they are deleted.
_DISCARDED = ".discarded"
# What a step holds beside its arrays and meta (orbax's metadata files), at most.
_METADATA_BYTES = 1 << 20


class CheckpointError(ValueError):
  """No sound checkpoint could be restored."""


class SettingsMismatchError(ValueError):
  """A checkpoint was written by a run with other settings."""


class CheckpointWriteError(OSError):
  """A checkpoint could not be written; ``errno`` says why (e.g. ENOSPC, disk full)."""

  def __str__(self) -> str:
    return str(self.strerror)


@contextlib.contextmanager
def _held_errors() -> Iterator[list]:
  """Holds back the error logs (with tracebacks) of orbax and its asyncio tasks, and the
  exceptions their callbacks cannot raise, given out at the end unless the caller clears
  the list it yields: when a save fails, each of its threads reports the failure, and one
  line can say what failed instead."""
  held: list = []

  def hold(record: logging.LogRecord) -> bool:
    if record.levelno < logging.ERROR:
      return True
    held.append(record)
    return False

  loggers = [logging.getLogger(name) for name in ("absl", "asyncio")]
  for logger in loggers:
    logger.addFilter(hold)
  unraisable_hook, sys.unraisablehook = sys.unraisablehook, held.append
  try:
    yield held
  finally:
    sys.unraisablehook = unraisable_hook
    for logger in loggers:
      logger.removeFilter(hold)
    for item in held:
      if isinstance(item, logging.LogRecord):
        logging.getLogger(item.name).handle(item)
      else:
        unraisable_hook(item)


def _os_error_code(error: BaseException | None) -> int | None:
  """The OS error code behind ``error`` (an OSError, or TensorStore's error text naming
  one, as orbax raises them), through its causes; None if there is none."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno:
      return error.errno
    found = re.search(r"os_error_code='?(\d+)", str(error))
    if found:
      return int(found.group(1))
    error = error.__cause__ or error.__context__
  return None


def _host_arrays(state: Any) -> list[np.ndarray]:
  """Every array of ``state`` on this host (a replicated array's local copy)."""
  return [
    np.asarray(leaf.addressable_data(0) if isinstance(leaf, jax.Array) else leaf)
    for leaf in jax.tree.leaves(state)
  ]


def state_digest(state: Any) -> str:
  """A digest of every array of ``state`` (its values, dtypes and shapes)."""
  digest = hashlib.blake2b(digest_size=16)
  for array in _host_arrays(state):
    digest.update(f"{array.dtype}{array.shape}".encode())
    digest.update(np.ascontiguousarray(array).tobytes())
  return digest.hexdigest()


def _is_finite(state: Any) -> bool:
  for array in _host_arrays(state):
    if np.issubdtype(array.dtype, np.inexact) and not np.all(np.isfinite(array)):
      return False
  return True


def settings_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
  """``"key: checkpoint X, now Y"`` for every setting that differs."""
  old, new = flatten_settings(saved), flatten_settings(current)
  return [
    f"{key}: checkpoint {old.get(key, '(unset)')!r}, now {new.get(key, '(unset)')!r}"
    for key in differing_keys(old, new)
  ]


class Checkpointer:
  """Saves and restores one run's checkpoints in ``directory``.

  Args:
    directory: the run's own checkpoint folder (created if missing).
    settings: the run's resolved settings, a JSON-ready dict.
  """

  def __init__(self, directory: str | os.PathLike, settings: dict[str, Any]):
    self.directory = Path(directory).absolute()
    self.settings = json.loads(json.dumps(settings))  # as it will read back
    self._manager = ocp.CheckpointManager(
      self.directory,
      options=ocp.CheckpointManagerOptions(
        max_to_keep=MAX_TO_KEEP,
        create=True,
        todelete_subdir=_DISCARDED,  # a dropped step is renamed away whole, then deleted
        cleanup_tmp_directories=True,  # steps whose writing was interrupted
        enable_async_checkpointing=False,  # written in this thread: no half-done work behind
      ),
    )
    self._empty_discarded()

  def _empty_discarded(self) -> None:
    """Deletes the steps moved aside (the first process does: it moved them)."""
    if jax.process_index() == 0:
      shutil.rmtree(self.directory / _DISCARDED, ignore_errors=True)

  def _read_meta(self, step: int) -> dict[str, Any]:
    return self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta

  def check_settings(self) -> None:
    """Raises `SettingsMismatchError` if the newest readable checkpoint is of other settings."""
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        meta = self._read_meta(step)
      except Exception:  # noqa: BLE001 - a damaged step is handled by `restore`
        continue
      differences = settings_differences(meta["settings"], self.settings)
      if differences:
        raise SettingsMismatchError(
          f"the checkpoint in {self.directory} is of a run with other settings "
          f"({'; '.join(differences)}): pass --restart to start it afresh, or use another "
          "--checkpoint-dir"
        )
      return

  def restore(self, target_state: Any) -> tuple[Any | None, dict[str, Any] | None]:
    """The newest sound checkpoint: ``(state, meta)``, or ``(None, None)`` if there is none.

    A finished run's checkpoint gives ``(None, meta)``: its record is enough.

    Args:
      target_state: a state of the run's structure and sharding, to restore into.

    Raises:
      SettingsMismatchError: the checkpoint is of other settings.
      CheckpointError: checkpoints exist but none is sound.
    """
    self.check_settings()
    steps = sorted(self._manager.all_steps(), reverse=True)
    problems = []
    for step in steps:
      try:
        meta = self._read_meta(step)
        if meta["progress"].get("finished"):
          return None, meta
        state = self._manager.restore(
          step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target_state))
        ).state
      except Exception as error:  # noqa: BLE001 - any unreadable step is skipped
        problems.append(f"step {step} unreadable ({type(error).__name__}: {error})")
        continue
      if state_digest(state) != meta.get("digest"):
        problems.append(f"step {step} does not match the digest it was written with")
        continue
      if not _is_finite(state):
        problems.append(f"step {step} holds non-finite values")
        continue
      for bad in steps[: steps.index(step)]:  # newer, damaged: make room to save again
        self._manager.delete(bad)
      self._empty_discarded()
      if problems:
        logging.warning("%s: %s; resuming from step %d", self.directory, "; ".join(problems), step)
      return state, meta
    if problems:
      raise CheckpointError(
        f"no sound checkpoint in {self.directory}: {'; '.join(problems)}. Pass --restart to "
        "start the run afresh"
      )
    return None, None

  def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
    """Saves ``state`` and ``meta`` (with the settings and the state's digest) at ``step``.

    Raises:
      CheckpointWriteError: the step cannot be written (e.g. the disk is full); the steps
        kept before are kept.
    """
    meta = {**meta, "settings": self.settings, "digest": state_digest(state)}
    what = f"cannot write the checkpoint of step {step} to {self.directory}"
    needed = tree_bytes(state) + len(json.dumps(meta)) + _METADATA_BYTES
    free = shutil.disk_usage(self.directory).free
    if free < needed:  # orbax's threads would fail part-way, each with its traceback
      raise CheckpointWriteError(
        errno.ENOSPC,
        f"{what}: No space left on device (about {needed:,} bytes needed, {free:,} free)",
      )
    with _held_errors() as held:
      try:
        if step in self._manager.all_steps():  # e.g. a periodic save and a task end at one step
          self._manager.delete(step)
        self._manager.save(
          step,
          args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
          force=True,
        )
        self._manager.wait_until_finished()
      except Exception as error:
        code = _os_error_code(error)
        if code is None:
          raise
        gc.collect()  # orbax's failed tasks log their errors now, while they are held back
        held.clear()  # all said in one line
        raise CheckpointWriteError(code, f"{what}: {os.strerror(code)}") from error
    self._empty_discarded()

  def close(self) -> None:
    self._manager.close()
