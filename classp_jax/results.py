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

RESULTS_FILE = "results.json"
_LOCK_FILE = ".results.lock"


def strict_json(value: Any) -> Any:
  """``value`` with every non-finite float replaced by None (recursively)."""
  if isinstance(value, float):
    return value if math.isfinite(value) else None
  if isinstance(value, dict):
    return {k: strict_json(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [strict_json(v) for v in value]
  return value


def write_json_atomically(data: Any, path: Path) -> None:
  """Writes strict JSON to ``path`` through a unique temporary file and an atomic rename."""
  text = json.dumps(strict_json(data), indent=1, allow_nan=False)
  descriptor, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(descriptor, "w") as file:
      file.write(text)
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(tmp)
    raise


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


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
  with open(out / _LOCK_FILE, "a") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)


def read_results(path: Path) -> dict[str, Any]:
  """Reads a results.json strictly.

  Raises:
    ValueError: naming the file, when it is not strict JSON of a results dict.
  """
  def reject(constant: str):
    raise ValueError(f"{constant} is not JSON")

  try:
    results = json.loads(Path(path).read_text(), parse_constant=reject)
  except (OSError, ValueError) as error:
    raise ValueError(f"{path}: not a readable results file ({error})") from None
  if not isinstance(results, dict) or not isinstance(results.get("runs"), list):
    raise ValueError(f"{path}: not a results file (no list of runs)")
  return results


def save_results(out: Path, results: dict[str, Any]) -> Path:
  """Merges ``results`` into ``out/results.json`` under a lock, and writes it atomically.

  Earlier runs in the file (of the same experiment and tasks) are kept unless
  ``results`` has a run of the same method and seed, which replaces them.

  Raises:
    ValueError: the folder holds results of another experiment or task stream.
  """
  path = out / RESULTS_FILE
  with _locked(out):
    runs = results["runs"]
    if path.exists():
      earlier = read_results(path)
      if (earlier.get("experiment"), earlier.get("tasks")) != (results["experiment"],
                                                                results["tasks"]):
        raise ValueError(
            f"{path} holds results of {earlier.get('experiment')!r} on tasks "
            f"{earlier.get('tasks')}: write {results['experiment']!r} to another --out")
      new = {(r["method"], r["seed"]) for r in runs}
      runs = [r for r in earlier["runs"] if (r["method"], r["seed"]) not in new] + runs
    write_json_atomically({**results, "runs": runs}, path)
  return path


def check_compatible(out: Path, experiment: str, tasks: list[str]) -> None:
  """Raises ValueError, before training, if ``out`` holds another experiment's results."""
  path = out / RESULTS_FILE
  if not path.exists():
    return
  earlier = read_results(path)
  if (earlier.get("experiment"), earlier.get("tasks")) != (experiment, tasks):
    raise ValueError(
        f"{path} holds results of {earlier.get('experiment')!r} on tasks {earlier.get('tasks')}: "
        f"write {experiment!r} to another --out")
