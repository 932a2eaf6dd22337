"""What every launcher is: it starts one `WorkItem` and hands back a `Handle`.

A launcher keeps at most ``slots`` runs in flight, and says whether its runs
checkpoint (to resume where a cluster preempted them). It is a context
manager that owns what it started (worker processes, a local Ray).
"""

from __future__ import annotations

import os
import time
from typing import Any, Protocol

from classp_jax.studies.work import WorkItem


class Handle(Protocol):
  def done(self) -> bool: ...

  def result(self) -> dict[str, Any]: ...


class Launcher:
  """Starts runs; a context manager that owns what it started (processes, a Ray)."""

  slots: int = 1
  checkpoints: bool = False  # whether runs checkpoint, to resume where they were preempted

  def __enter__(self) -> Launcher:
    return self

  def __exit__(self, *exc) -> None:
    del exc

  def start(self, item: WorkItem) -> Handle:
    raise NotImplementedError

  def wait(self, handles: list[Handle], timeout: float) -> None:
    """Returns when one of ``handles`` is done, or after ``timeout`` seconds."""
    del handles
    time.sleep(timeout)


def cpu_count() -> int:
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not on Linux
    return os.cpu_count() or 1
