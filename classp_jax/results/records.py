"""Study records: one compact, compressed file per finished run, kept in the repository.

A study (`classp_jax.studies`) keeps each finished (method point, seed) as a
record file in the folder of its part::

    RUNS/STUDY/PART/METHOD--seedN--SETTINGS_ID.json.gz

holding ``{"header": ..., "run": ...}``: the `ResultsHeader` of the part as
the worker that ran it saw it, and the `RunEntry` with its step logs thinned
(`compact_run`). A file's name is unique to its method, seed and settings id,
so concurrent writers never write the same file, and runs of other settings
are kept beside each other rather than replacing each other. Records are
written atomically, gzipped with no timestamp (the same record is the same
bytes), and never overwritten.

A run that failed (an exception, a lost worker) leaves a ``.failed.json``
file with its error beside the records instead; the loaders skip it and the
next study run retries it.

`read_part` reads a part's folder back as one results dict, in the shape
``results.json`` has, so that every reader of results (the report, the
selection; `classp_jax.results.loading`) reads records too.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

from classp_jax.results.store import read_strict_json, strict_json, write_bytes_atomically

RECORD_SUFFIX = ".json.gz"
FAILED_SUFFIX = ".failed.json"
# Step logs are kept at most this many points per series: the diagnostics plots
# interpolate them, and a run's full logs are ~20 kB of a ~24 kB entry.
LOG_POINTS = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9_.+=@,-]")


def record_stem(method: str, seed: int, settings_id: str | None) -> str:
  """The file name of a record without its suffix: method, seed and settings id.

  Examples:
    >>> record_stem("classp[learning_rate=0.01]", 3, "0123abcd4567")
    'classp@learning_rate=0.01--seed3--0123abcd4567'
  """
  slug = _UNSAFE.sub("_", method.replace("[", "@").replace("]", ""))
  return f"{slug}--seed{seed}--{settings_id or 'unset'}"


def compact_run(run: dict[str, Any], points: int = LOG_POINTS) -> dict[str, Any]:
  """``run`` with each step-log series thinned to at most ``points`` evenly spaced entries
  (the last always kept); every other key as it is.

  Examples:
    >>> run = {"seed": 0, "logs": {"step": list(range(10)), "loss": list(range(10))}}
    >>> compact_run(run, points=4)["logs"]["step"]
    [0, 3, 6, 9]
  """
  logs = run.get("logs") or {}
  length = max((len(v) for v in logs.values()), default=0)
  if length <= points:
    return run
  keep = sorted({round(i * (length - 1) / (points - 1)) for i in range(points)})
  return {**run, "logs": {k: [v[i] for i in keep if i < len(v)] for k, v in logs.items()}}


def _record_bytes(header: dict[str, Any], run: dict[str, Any]) -> bytes:
  text = json.dumps(strict_json({"header": header, "run": run}), sort_keys=True, allow_nan=False)
  return gzip.compress(text.encode(), mtime=0)


def write_record(folder: Path, header: dict[str, Any], run: dict[str, Any]) -> Path:
  """Keeps a finished run in ``folder`` (made if need be), and clears its failure mark.

  Returns:
    The record's path. A record of the same method, seed and settings id
    already there is left as it is (it is the same run).
  """
  folder.mkdir(parents=True, exist_ok=True)
  stem = record_stem(run["method"], run["seed"], run.get("settings_id"))
  path = folder / (stem + RECORD_SUFFIX)
  if not path.exists():
    write_bytes_atomically(_record_bytes(header, compact_run(run)), path)
  (folder / (stem + FAILED_SUFFIX)).unlink(missing_ok=True)
  return path


def write_failure(folder: Path, key: dict[str, Any], error: str, attempts: int) -> Path:
  """Marks a run that failed ``attempts`` times, with its last error, in ``folder``."""
  folder.mkdir(parents=True, exist_ok=True)
  path = folder / (record_stem(key["method"], key["seed"], key["settings_id"]) + FAILED_SUFFIX)
  text = json.dumps({**key, "error": error, "attempts": attempts}, indent=1, sort_keys=True)
  write_bytes_atomically(text.encode(), path)
  return path


def read_record(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
  """A record's header and run entry.

  Raises:
    ValueError: naming the file, when it is no gzipped record (damaged, truncated).
  """
  try:
    data = json.loads(gzip.decompress(Path(path).read_bytes()))
  except (OSError, EOFError, ValueError) as e:
    raise ValueError(f"{path}: not a readable record ({e})") from None
  if not (isinstance(data, dict) and isinstance(data.get("header"), dict)):
    raise ValueError(f"{path}: not a record (no header)")
  if not isinstance(data.get("run"), dict):
    raise ValueError(f"{path}: not a record (no run)")
  return data["header"], data["run"]


def kept_ids(folder: Path) -> set[tuple[str, int, str | None]]:
  """``(method, seed, settings_id)`` of every record in ``folder``, read from the records
  themselves (a renamed file cannot pass for another run)."""
  kept = set()
  for path in sorted(Path(folder).glob("*" + RECORD_SUFFIX)):
    _, run = read_record(path)
    kept.add((run["method"], run["seed"], run.get("settings_id")))
  return kept


def failures(root: Path) -> list[dict[str, Any]]:
  """Every failure mark under ``root``, with its path."""
  return [
    {**read_strict_json(path), "path": str(path)}
    for path in sorted(Path(root).rglob("*" + FAILED_SUFFIX))
  ]


def visible_folders(root: Path, pattern: str) -> list[Path]:
  """The folders under ``root`` (itself included) holding a file matching ``pattern``,
  sorted; hidden folders below ``root`` (a study's ``.cache``, its smoke runs' ``.quick``)
  are not read."""
  root = Path(root)
  return sorted(
    {
      p.parent
      for p in root.rglob(pattern)
      if not any(part.startswith(".") for part in p.parent.relative_to(root).parts)
    }
  )


def record_folders(root: Path) -> list[Path]:
  """The folders under ``root`` that hold records (`visible_folders`)."""
  return visible_folders(root, "*" + RECORD_SUFFIX)


def holds_own_records(folder: Path) -> bool:
  """Whether ``folder`` itself holds records (a part's folder)."""
  return any(Path(folder).glob("*" + RECORD_SUFFIX))


def _identity(header: dict[str, Any]) -> str:
  """What records of one part share: their header, less where they happened to run."""
  return json.dumps(
    {k: v for k, v in header.items() if k not in ("devices", "platform")}, sort_keys=True
  )


def read_part(folder: Path) -> dict[str, Any]:
  """The records of one part's folder as one results dict (``results.json``'s shape), its
  runs in file-name order.

  Raises:
    ValueError: a damaged record, or records whose headers differ (another
      experiment, stream or loop in one folder), naming the files.
  """
  header, first, runs = None, None, []
  for path in sorted(Path(folder).glob("*" + RECORD_SUFFIX)):
    this, run = read_record(path)
    if header is None:
      header, first = this, path
    elif _identity(this) != _identity(header):
      raise ValueError(
        f"{path}: its header differs from {first.name}'s (records of one folder must be of "
        "one experiment, stream and loop)"
      )
    runs.append(run)
  if header is None:
    raise ValueError(f"{folder}: holds no records")
  return {**header, "runs": runs}
