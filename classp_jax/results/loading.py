"""Reading results back: run folders' ``results.json`` checked, and merged per experiment.

A results dict is what ``classp-jax run`` writes (`classp_jax.results.schema`):
the experiment's name, its task names, optionally its ``scenario`` (``task``,
``domain`` or ``class``), and ``runs``, one entry per (method, seed); a
frontier point's entry also has ``base_method``, ``knob`` and ``value``
(`classp_jax.results.naming`).

Runs of one method name merge across files only if their ``settings_id`` (the
resolved configuration without the seed) agree. Beside the readers are the
predicates every reader of runs uses: a run marked ``diverged`` (its metrics
null, its accuracy matrix holding only the tasks finished before) is never
read as accuracies.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

from classp_jax.results.records import (
  holds_own_records,
  read_part,
  record_folders,
  visible_folders,
)
from classp_jax.results.schema import REQUIRED_RUN_KEYS, REQUIRED_TOP_LEVEL_KEYS
from classp_jax.results.store import RESULTS_FILE, read_strict_json

METRICS = ("acc", "bwt", "forgetting", "fwt")


_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


def runs_by_method(runs: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
  """Groups runs by method, keeping first-seen order."""
  groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
  for run in runs:
    groups[run["method"]].append(run)
  return dict(groups)


def is_diverged(run: dict[str, Any]) -> bool:
  """Whether a run stopped on a non-finite loss or non-finite params."""
  return bool(run.get("diverged"))


def finished(runs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
  """The runs that did not diverge."""
  return [r for r in runs if not is_diverged(r)]


def diverged_note(runs: list[dict[str, Any]]) -> str | None:
  """``diverged (k/n seeds)``, or None when no run diverged."""
  k = sum(map(is_diverged, runs))
  return f"diverged ({k}/{len(runs)} seeds)" if k else None


def subsample(results: dict[str, Any]) -> str | None:
  """The ``--subsample`` the results were run with, if any."""
  return (results.get("options") or {}).get("subsample")


def experiment_label(results: dict[str, Any]) -> str:
  """The experiment's name, with its scenario and its ``--subsample`` when the results
  record them.

  Examples:
    >>> experiment_label({"experiment": "split_mnist", "scenario": "class",
    ...                   "options": {"subsample": "3000"}})
    'split_mnist (class-incremental) [--subsample 3000]'
  """
  scenario, fraction = results.get("scenario"), subsample(results)
  return (
    results["experiment"]
    + (f" ({scenario}-incremental)" if scenario else "")
    + (f" [--subsample {fraction}]" if fraction else "")
  )


def _results_path(path: str | os.PathLike) -> Path:
  """A run folder's results.json, or the file itself."""
  path = Path(path)
  return path / RESULTS_FILE if path.is_dir() else path


def read_results(path: str | os.PathLike) -> dict[str, Any]:
  """One run folder's (or results.json file's) results, checked.

  Raises:
    ValueError: naming the file, when it cannot be read, is not strict JSON
      (truncated, garbled, or holding NaN/Infinity), or lacks a key a report
      needs (`REQUIRED_TOP_LEVEL_KEYS`, `REQUIRED_RUN_KEYS`).
  """
  path = _results_path(path)
  return check_results(read_strict_json(path), path)


def check_results(results: Any, path: Path) -> dict[str, Any]:
  """``results`` read from ``path``, checked as `read_results` says; ValueError names it."""
  if not isinstance(results, dict):
    raise ValueError(f"{path}: not a results dict")
  missing = [k for k in REQUIRED_TOP_LEVEL_KEYS if k not in results]
  if missing:
    raise ValueError(f"{path}: lacks {', '.join(missing)}")
  if not (isinstance(results["tasks"], list) and isinstance(results["runs"], list)):
    raise ValueError(f"{path}: tasks and runs must be lists, and each run a dict")
  for i, run in enumerate(results["runs"]):
    if not isinstance(run, dict):
      raise ValueError(f"{path}: run {i} is {_shown(run)}, not a run entry (a dict)")
  for key in ("experiment", "scenario"):
    # Report file names are built from them: a name with a path in it is refused here.
    value = results.get(key)
    if value is not None and not (isinstance(value, str) and _PLAIN_NAME.fullmatch(value)):
      raise ValueError(f"{path}: its {key} {value!r} is not a plain name")
  for i, run in enumerate(results["runs"]):
    _check_run(
      run,
      len(results["tasks"]),
      f"{path}: run {i} ({run.get('method', '?')}, seed {run.get('seed', '?')})",
    )
  return results


def _shown(value: Any) -> str:
  text = repr(value)
  return text if len(text) <= 60 else text[:57] + "..."


def _check_run(run: dict[str, Any], tasks: int, what: str) -> None:
  """Raises ValueError, starting with ``what``, when a run lacks a key, has matrices that are
  not ``tasks`` x ``tasks`` (fewer rows only if it diverged), or null metrics without
  having diverged."""
  missing = [k for k in REQUIRED_RUN_KEYS if k not in run]
  if missing:
    raise ValueError(f"{what} lacks {', '.join(missing)}")
  rows = len(run["accuracy_matrix"])
  if is_diverged(run):
    if rows > tasks:
      raise ValueError(
        f"{what}: diverged, but its accuracy matrix has {rows} rows for {tasks} tasks"
      )
    return
  for key in ("accuracy_matrix", "validation_accuracy_matrix"):
    matrix = run.get(key)
    if matrix is not None and (len(matrix) != tasks or any(len(r) != tasks for r in matrix)):
      raise ValueError(f"{what}: its {key} is not {tasks} x {tasks}")
  nulls = [k for k in METRICS if k in run and run[k] is None]
  if nulls:
    raise ValueError(f"{what}: {', '.join(nulls)} null but the run is not marked diverged")


def _folders_below(root: Path) -> list[Path]:
  """The folders below ``root`` that hold a results.json or study records, sorted; hidden
  folders (``.cache``, ``.quick``) aside."""
  found = set(record_folders(root)) | set(visible_folders(root, RESULTS_FILE))
  if not found:
    raise ValueError(f"{root}: holds no {RESULTS_FILE} and no study records")
  return sorted(found)


def _read_all(paths: Iterable[str | os.PathLike]) -> Iterable[tuple[Path, dict[str, Any]]]:
  """``(path, results)`` of each run folder or results.json file; a folder with neither
  results.json nor records of its own stands for every such folder below it (a study's
  record tree: `classp_jax.results.records`)."""
  for path in map(Path, paths):
    if path.is_dir() and not (path / RESULTS_FILE).exists() and not holds_own_records(path):
      yield from _read_all(_folders_below(path))
    elif path.is_dir() and not (path / RESULTS_FILE).exists():
      yield path, check_results(read_part(path), path)
    else:
      yield _results_path(path), read_results(path)


def load_results(paths: Iterable[str | os.PathLike]) -> list[dict[str, Any]]:
  """Results of run folders (or results.json files, or study record trees), one dict per
  experiment, scenario and ``--subsample``.

  Folders of the same experiment, scenario and ``--subsample`` (e.g. its
  methods and its frontier) are merged; ``sources`` lists each folder's
  command-line options and loop settings. A (method, seed) already seen with
  the same ``settings_id`` is the same run and is not added again.

  Raises:
    ValueError: naming the file, when one cannot be read (`read_results`),
      when its tasks differ from an earlier folder's of the same experiment,
      or when a method name comes with different settings in two files (or
      with recorded settings in one and none in the other): such runs are not
      the same method and cannot be averaged.
  """
  merged: dict[tuple[str, str | None, str | None], dict[str, Any]] = {}
  origins: dict[tuple[str, str | None, str | None], dict[str, tuple[str | None, Path]]] = {}
  for path, results in _read_all(paths):
    key = results["experiment"], results.get("scenario"), subsample(results)
    if key not in merged:
      merged[key] = {**results, "runs": [], "sources": []}
      origins[key] = {}
    elif merged[key]["tasks"] != results["tasks"]:
      raise ValueError(
        f"{path}: {experiment_label(results)}'s tasks differ from an earlier "
        f"folder's ({', '.join(merged[key]['tasks'])})"
      )
    experiment = merged[key]
    experiment["sources"].append(
      {"path": str(path), "options": results.get("options", {}), "loop": results["loop"]}
    )
    seen = {(r["method"], r["seed"]) for r in experiment["runs"]}
    for run in results["runs"]:
      _check_same_settings(run, path, origins[key])
      if (run["method"], run["seed"]) not in seen:
        seen.add((run["method"], run["seed"]))
        experiment["runs"].append(run)
  return list(merged.values())


def _check_same_settings(
  run: dict[str, Any], path: Path, origins: dict[str, tuple[str | None, Path]]
) -> None:
  """Raises ValueError when ``run``'s method was first seen (``origins``, which records
  each method's first settings id and file) with other settings."""
  settings_id = run.get("settings_id")
  first_id, first_path = origins.setdefault(run["method"], (settings_id, path))
  if first_id != settings_id:

    def shown(s):
      return f"settings {s}" if s else "no recorded settings"

    raise ValueError(
      f"{path}: method {run['method']!r} has {shown(settings_id)} here but "
      f"{shown(first_id)} in {first_path}; runs of different settings cannot be merged "
      f"under one name (report them separately)"
    )
