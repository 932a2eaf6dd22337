"""``results.json``: written so that finished runs are never lost, and never as invalid JSON.

* Strict JSON: a non-finite float is written as null (``NaN`` is not JSON).
* Atomic: written to a unique temporary file in the same folder, then renamed
  over ``results.json``, so a reader sees the old file or the new one, whole.
* After every finished (method, seed) run, so a crash or Ctrl-C later keeps it.
* Merged under a lock: runs that several ``classp-jax run`` processes (or
  earlier invocations) wrote to the same folder are kept; a new run replaces
  only an earlier run of the same method and seed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

RESULTS_FILE = "results.json"
_LOCK_FILE = ".results.lock"


def flatten_settings(tree: Any, prefix: str = "") -> dict[str, Any]:
  """Nested settings as one dict of dotted keys (``{"hparams": {"lr": 1}}`` ->
  ``{"hparams.lr": 1}``), to compare two runs' settings key by key."""
  if isinstance(tree, dict):
    flat = {}
    for key, value in tree.items():
      flat.update(flatten_settings(value, f"{prefix}{key}."))
    return flat
  return {prefix.rstrip("."): tree}


def differing_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
  """The keys of two flattened settings (`flatten_settings`) whose values differ, sorted; a
  key only one of them has differs."""
  return [key for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]


def strict_json(data: Any) -> Any:
  """``data`` with every non-finite float (NaN, ±Infinity) replaced by None.

  Examples:
    >>> strict_json({"acc": float("nan"), "logs": [1.0, float("inf")], "seed": 0})
    {'acc': None, 'logs': [1.0, None], 'seed': 0}
  """
  if isinstance(data, dict):
    return {k: strict_json(v) for k, v in data.items()}
  if isinstance(data, (list, tuple)):
    return [strict_json(v) for v in data]
  if isinstance(data, (float, np.floating)):
    return float(data) if math.isfinite(data) else None
  return data


def write_json_atomically(data: Any, path: Path) -> None:
  """Writes strict JSON (`strict_json`) to ``path`` atomically.

  The text goes to a uniquely named temporary file in the same folder, which
  then replaces ``path``: a reader never sees half a file, and two writers
  never share a temporary file.
  """
  text = json.dumps(strict_json(data), indent=1, allow_nan=False)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    os.fchmod(fd, 0o644)  # mkstemp's 0600 would make results.json private
    with os.fdopen(fd, "w") as f:
      f.write(text)
    os.replace(tmp, path)
  except BaseException:
    Path(tmp).unlink(missing_ok=True)
    raise


def _reject_constant(name: str):
  raise ValueError(f"{name} is not JSON (results must hold null, never NaN or Infinity)")


def read_strict_json(path: Path) -> Any:
  """Parses a JSON file strictly (no NaN or Infinity).

  Raises:
    ValueError: naming the file, when it cannot be read or is not strict JSON.
  """
  try:
    text = Path(path).read_text()
  except OSError as e:
    raise ValueError(f"{path}: cannot read it ({e.strerror or e})") from None
  try:
    return json.loads(text, parse_constant=_reject_constant)
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: not valid JSON, truncated or garbled ({e})") from None
  except ValueError as e:
    raise ValueError(f"{path}: {e}") from None


def check_writable(out: Path) -> None:
  """Creates ``out`` and checks a file can be written there, before any training.

  Raises:
    OSError: with a message naming the folder.
  """
  try:
    out.mkdir(parents=True, exist_ok=True)
    descriptor, probe = tempfile.mkstemp(dir=out, prefix=".write-check.")
    os.close(descriptor)
    os.unlink(probe)
  except OSError as error:
    raise OSError(f"cannot write to --out {out}: {error.strerror or error}") from None
  _refuse_read_only(out / RESULTS_FILE)


def _refuse_read_only(path: Path) -> None:
  """Raises OSError for a read-only ``path``: the atomic rename would replace it whatever its
  mode (and root may write anything), so a record made read-only is kept as it is."""
  if path.exists() and not path.stat().st_mode & 0o222:
    raise OSError(f"{path} is read-only: make it writable, or write to another --out")


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
  with open(out / _LOCK_FILE, "a") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)


def _check_same_stream(
  path: Path, experiment: str, scenario: str | None, tasks: list[str]
) -> dict[str, Any] | None:
  """The results already in ``path`` (None if there are none), if they are of the same stream."""
  if not path.exists():
    return None
  earlier = read_strict_json(path)
  if not isinstance(earlier, dict) or not isinstance(earlier.get("runs"), list):
    raise ValueError(f"{path}: not a results file (no list of runs)")
  found = (earlier.get("experiment"), earlier.get("scenario"), earlier.get("tasks"))
  if found != (experiment, scenario, tasks):
    raise ValueError(
      f"{path} holds results of {found[0]!r} ({found[1]} scenario) on tasks {found[2]}: "
      f"write {experiment!r} ({scenario} scenario) to another --out"
    )
  return earlier


def save_results(out: Path, results: dict[str, Any]) -> Path:
  """Merges ``results`` into ``out/results.json`` under a lock, and writes it atomically.

  Earlier runs in the file (of the same experiment, scenario and tasks) are kept unless
  ``results`` has a run of the same method and seed, which replaces them.

  Raises:
    ValueError: the folder holds results of another experiment or task stream.
  """
  path = out / RESULTS_FILE
  with _locked(out):
    _refuse_read_only(path)
    runs = results["runs"]
    earlier = _check_same_stream(
      path, results["experiment"], results.get("scenario"), results["tasks"]
    )
    if earlier is not None:
      new = {(r["method"], r["seed"]) for r in runs}
      runs = [r for r in earlier["runs"] if (r["method"], r["seed"]) not in new] + runs
    write_json_atomically({**results, "runs": runs}, path)
  return path


def check_compatible(out: Path, experiment: str, scenario: str | None, tasks: list[str]) -> None:
  """Raises ValueError, before training, if ``out`` holds another stream's results."""
  _check_same_stream(out / RESULTS_FILE, experiment, scenario, tasks)
