"""``results.json``: written so that finished runs are never lost, and never as invalid JSON.

* Strict JSON: a non-finite float is written as null (``NaN`` is not JSON).
* Atomic: written to a unique temporary file in the same folder, then renamed
  over ``results.json``, so a reader sees the old file or the new one, whole.
* After every finished (method, seed) run, so a crash or Ctrl-C later keeps it.
* Merged under a lock: runs that several ``classp-jax run`` processes (or
  earlier invocations) wrote to the same folder are kept; a new run replaces
  only an earlier run of the same method and seed, and only one of the same
  settings unless told to replace (`refuse_other_settings`).
* Never lost: when the file cannot be written (disk full, permissions, a record
  of other settings written meanwhile), the runs go to a file in the temporary
  folder, and `ResultsNotSaved` names it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

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


def write_bytes_atomically(data: bytes, path: Path) -> None:
  """Writes ``data`` to ``path`` atomically.

  The bytes go to a uniquely named temporary file in the same folder, which
  then replaces ``path``: a reader never sees half a file, and two writers
  never share a temporary file.
  """
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    os.fchmod(fd, 0o644)  # mkstemp's 0600 would make results.json private
    with os.fdopen(fd, "wb") as f:
      f.write(data)
    os.replace(tmp, path)
  except BaseException:
    Path(tmp).unlink(missing_ok=True)
    raise


def write_json_atomically(data: Any, path: Path) -> None:
  """Writes strict JSON (`strict_json`) to ``path`` atomically (`write_bytes_atomically`)."""
  write_bytes_atomically(json.dumps(strict_json(data), indent=1, allow_nan=False).encode(), path)


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


def check_writable(out: Path, option: str = "--out") -> None:
  """Creates ``out`` and checks a file can be written there, before any training; the
  message names the command-line ``option`` that gave it.

  Raises:
    OSError: with a message naming the folder.
  """
  try:
    out.mkdir(parents=True, exist_ok=True)
    descriptor, probe = tempfile.mkstemp(dir=out, prefix=".write-check.")
    os.close(descriptor)
    os.unlink(probe)
  except OSError as error:
    raise OSError(f"cannot write to {option} {out}: {error.strerror or error}") from None
  _refuse_read_only(out / RESULTS_FILE)


def _refuse_read_only(path: Path) -> None:
  """Raises OSError for a read-only ``path``: the atomic rename would replace it whatever its
  mode (and root may write anything), so a record made read-only is kept as it is."""
  if path.exists() and not path.stat().st_mode & 0o222:
    raise OSError(f"{path} is read-only: make it writable, or write to another --out")


def _is_at(lock, path: Path) -> bool:
  """Whether the open file ``lock`` is still the file at ``path``."""
  try:
    here, there = os.fstat(lock.fileno()), os.stat(path)
  except FileNotFoundError:
    return False
  return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
  """Holds ``out/.results.lock``, which is removed again on release (nothing is left in
  ``out``).

  Removing a lock file is safe because the holder removes it while it still holds it, and
  whoever then gets the lock checks that the file it locked is still the one at the path:
  a writer that waited on the removed file finds it gone and locks the new one, so two
  writers never hold two different files at once. (A writer of a version that does not
  check could, if it ran at the same moment.)
  """
  path = out / _LOCK_FILE
  while True:
    lock = open(path, "a")
    try:
      fcntl.flock(lock, fcntl.LOCK_EX)
      if _is_at(lock, path):
        break
    except BaseException:
      lock.close()
      raise
    lock.close()  # the file was removed (or replaced) while we waited: lock the current one
  try:
    yield
  finally:
    with contextlib.suppress(OSError):
      path.unlink()  # still held: a writer waiting on it retries on a new file
    lock.close()  # releases the lock


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


def _shown(value: Any) -> str:
  text = repr(value)
  return text if len(text) <= 40 else text[:37] + "..."


def _settings_change(kept: dict[str, Any], new: dict[str, Any]) -> str:
  """How two runs' settings differ, in a few words: both settings ids and the keys."""
  ids = f"settings {kept.get('settings_id')} kept, {new.get('settings_id')} now"
  if not kept.get("settings") or not new.get("settings"):
    return f"{ids}; the kept run records no settings"
  old, now = flatten_settings(kept["settings"]), flatten_settings(new["settings"])
  keys = differing_keys(old, now)
  shown = [
    f"{key}: kept {_shown(old.get(key, '(unset)'))}, now {_shown(now.get(key, '(unset)'))}"
    for key in keys[:4]
  ]
  return "; ".join([ids, *shown] + ([f"{len(keys) - 4} more"] if len(keys) > 4 else []))


def other_settings(
  kept: Iterable[dict[str, Any]], new: Iterable[dict[str, Any]]
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
  """``(kept run, new run)`` for each run of ``new`` that has the method and seed of a run
  of ``kept`` but another ``settings_id``: saving it would replace that record.

  Each run is a dict with ``method``, ``seed``, ``settings_id`` and ``settings`` (a results
  entry, or a planned run described so).
  """
  by_run = {(r["method"], r["seed"]): r for r in kept}
  return [
    (by_run[r["method"], r["seed"]], r)
    for r in new
    if (r["method"], r["seed"]) in by_run
    and by_run[r["method"], r["seed"]].get("settings_id") != r.get("settings_id")
  ]


def refuse_other_settings(
  path: Path | None, kept: Iterable[dict[str, Any]], new: Iterable[dict[str, Any]]
) -> None:
  """Raises ValueError, naming both settings, when a run of ``new`` would replace a run of
  ``kept`` (read from ``path``) of other settings (`other_settings`)."""
  clashes = other_settings(kept, new)
  if clashes:
    old, run = clashes[0]
    more = f" (and {len(clashes) - 1} more run(s))" if len(clashes) > 1 else ""
    raise ValueError(
      f"{path} holds a run of {run['method']} seed {run['seed']} with other settings{more} "
      f"({_settings_change(old, run)}): pass --replace to replace it, or use another --out"
    )


class ResultsNotSaved(OSError):
  """results.json could not be written; the message says why and where the runs are kept."""


def _keep_elsewhere(results: dict[str, Any]) -> Path | None:
  """Writes ``results`` to a new file in the temporary folder (else the home folder); its
  path, or None when neither can be written."""
  text = json.dumps(strict_json(results), indent=1, allow_nan=False)
  for folder in (tempfile.gettempdir(), Path.home()):
    try:
      fd, name = tempfile.mkstemp(dir=folder, prefix="classp-jax-results-", suffix=".json")
      with os.fdopen(fd, "w") as f:
        f.write(text)
      return Path(name)
    except OSError:
      continue
  return None


def save_results(out: Path, results: dict[str, Any], *, replace: bool = False) -> Path:
  """Merges ``results`` into ``out/results.json`` under a lock, and writes it atomically.

  Earlier runs in the file (of the same experiment, scenario and tasks) are kept unless
  ``results`` has a run of the same method and seed, which replaces them if it has the
  same settings, or with ``replace``.

  Raises:
    ResultsNotSaved: the file could not be written (disk full, permissions), the folder
      holds results of another experiment or task stream, or a run of the same method and
      seed with other settings (without ``replace``). ``results`` are then written to a
      file in the temporary folder, which the message names.
  """
  path = out / RESULTS_FILE
  try:
    with _locked(out):
      _refuse_read_only(path)
      runs = results["runs"]
      earlier = _check_same_stream(
        path, results["experiment"], results.get("scenario"), results["tasks"]
      )
      if earlier is not None:
        if not replace:
          refuse_other_settings(path, earlier["runs"], runs)
        new = {(r["method"], r["seed"]) for r in runs}
        runs = [r for r in earlier["runs"] if (r["method"], r["seed"]) not in new] + runs
      write_json_atomically({**results, "runs": runs}, path)
  except (OSError, ValueError, KeyError, TypeError) as error:
    if isinstance(error, (KeyError, TypeError)):  # written meanwhile by something else
      reason = f"it holds a malformed run entry: {type(error).__name__} {error}"
    else:
      reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    kept = _keep_elsewhere(results)
    where = f"kept in {kept}" if kept else "lost: nowhere else could be written either"
    raise ResultsNotSaved(
      f"cannot write {path} ({reason}); this command's {len(results['runs'])} finished "
      f"run(s) are {where}"
    ) from None
  return path


def check_compatible(out: Path, experiment: str, scenario: str | None, tasks: list[str]) -> None:
  """Raises ValueError, before training, if ``out`` holds another stream's results."""
  _check_same_stream(out / RESULTS_FILE, experiment, scenario, tasks)
