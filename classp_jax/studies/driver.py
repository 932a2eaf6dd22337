"""The driver: the one writer of a study's records.

`Driver.execute` takes the items a stage planned, skips those whose record
is kept (same method, seed and settings id), starts the rest on the launcher
as slots free up, and writes each record as it comes back
(`classp_jax.results.records`). A run that fails (an exception, a killed
worker, a lost node) is retried up to ``retries`` times, then marked failed
with its error, and the study goes on. Kill the driver at any moment: the
records written stay, and the next start goes on from them.

Progress is one line per finished run on stderr: done and total, failures,
and an estimate of the time left from the runs finished so far.
"""

from __future__ import annotations

import dataclasses
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Sequence, TextIO

from classp_jax.results.records import kept_ids, write_failure, write_record
from classp_jax.studies.launchers import Launcher
from classp_jax.studies.work import WorkItem

POLL_SECONDS = 0.05


def _error_text(error: BaseException) -> str:
  """A worker's error in a few lines: its type and message, and where it was raised."""
  text = "".join(traceback.format_exception_only(type(error), error)).strip()
  # A worker process's traceback comes as the text of the error's cause: its last frame.
  remote = str(error.__cause__ or "")
  frames = [line.strip() for line in remote.splitlines() if line.strip().startswith("File ")]
  if frames:
    return f"{text}\n  at {frames[-1]}"
  tail = traceback.extract_tb(error.__traceback__)[-1:] if error.__traceback__ else []
  return text + "".join(f"\n  at {f.filename}:{f.lineno} in {f.name}" for f in tail)


def _duration(seconds: float) -> str:
  minutes = round(seconds / 60)
  return f"{seconds:.0f}s" if seconds < 90 else f"{minutes // 60}h{minutes % 60:02d}m"


@dataclasses.dataclass
class Tally:
  """What the driver did: runs finished, skipped (kept already) and failed."""

  finished: int = 0
  skipped: int = 0
  failed: list[dict[str, Any]] = dataclasses.field(default_factory=list)
  run_seconds: float = 0.0

  def add(self, other: Tally) -> None:
    self.finished += other.finished
    self.skipped += other.skipped
    self.failed += other.failed
    self.run_seconds += other.run_seconds


class Driver:
  """Runs items on a launcher and keeps their records under ``runs``.

  Args:
    runs: the records' root: an item's record goes in ``runs/ITEM.folder``.
    launcher: an entered `Launcher`.
    retries: how many times a failed run is tried again.
    stream: where progress goes, or None for none.
  """

  def __init__(
    self, runs: Path, launcher: Launcher, retries: int = 2, stream: TextIO | None = sys.stderr
  ):
    self.runs, self.launcher, self.retries, self.stream = Path(runs), launcher, retries, stream
    self.tally = Tally()

  def folder(self, item: WorkItem) -> Path:
    return self.runs / item.folder

  def _say(self, text: str) -> None:
    if self.stream is not None:
      print(text, file=self.stream, flush=True)

  def pending(self, items: Sequence[WorkItem]) -> list[WorkItem]:
    """The items without a kept record, in order, each once."""
    kept: dict[Path, set] = {}
    todo, seen = [], set()
    for item in items:
      folder = self.folder(item)
      if folder not in kept:
        kept[folder] = kept_ids(folder) if folder.is_dir() else set()
      name = (item.method, item.seed, item.settings_id)
      if name not in kept[folder] and (folder, name) not in seen:
        seen.add((folder, name))
        todo.append(item)
    return todo

  def execute(self, items: Sequence[WorkItem], what: str) -> Tally:
    """Runs every item that has no kept record; returns what happened."""
    todo = self.pending(items)
    tally = Tally(skipped=len(items) - len(todo))
    if not todo:
      self.tally.add(tally)
      return tally
    self._say(f"{what}: {len(todo)} run(s) to do ({tally.skipped} kept already)")
    queue = [(item, 1) for item in todo]
    in_flight: list[tuple[WorkItem, int, Any, float]] = []
    started = time.monotonic()
    while queue or in_flight:
      while queue and len(in_flight) < self.launcher.slots:
        item, attempt = queue.pop(0)
        in_flight.append((item, attempt, self.launcher.start(item), time.monotonic()))
      ready = [entry for entry in in_flight if entry[2].done()]
      if not ready:
        self.launcher.wait([entry[2] for entry in in_flight], POLL_SECONDS)
        continue
      for entry in ready:
        in_flight.remove(entry)
        retry = self._collect(*entry, tally)
        if retry is not None:
          queue.append(retry)
        self._progress(what, tally, len(todo), started)
    self.tally.add(tally)
    return tally

  def _collect(self, item: WorkItem, attempt: int, handle, began: float, tally: Tally):
    """Keeps a finished run's record, or handles its failure; returns the retry, if any."""
    try:
      record = handle.result()
    except Exception as error:  # the worker's failure, whatever it was
      text = _error_text(error)
      if attempt <= self.retries:
        self._say(f"{item.describe()}: failed (attempt {attempt}), retrying: {text}")
        return item, attempt + 1
      path = write_failure(self.folder(item), item.key, text, attempt)
      tally.failed.append({**item.key, "error": text, "path": str(path)})
      self._say(f"{item.describe()}: FAILED after {attempt} attempts: {text}")
      return None
    write_record(self.folder(item), record["header"], record["run"])
    tally.finished += 1
    tally.run_seconds += time.monotonic() - began
    return None

  def _progress(self, what: str, tally: Tally, total: int, started: float) -> None:
    done = tally.finished + len(tally.failed)
    elapsed = time.monotonic() - started
    left = elapsed / done * (total - done) if done else 0.0
    width = 24
    bar = "#" * round(width * done / total) + "." * (width - round(width * done / total))
    failed = f", {len(tally.failed)} failed" if tally.failed else ""
    self._say(
      f"{what} [{bar}] {done}/{total} runs{failed}; {_duration(elapsed)} so far, "
      f"about {_duration(left)} left"
    )
