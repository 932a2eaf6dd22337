"""Summaries of results: tables for the terminal and markdown, plots, and the report.

A results dict is what ``classp-jax run`` writes to ``results.json``: the
experiment's name, its task names, optionally its ``scenario`` (``task``,
``domain`` or ``class``), and ``runs``, one entry per (method, seed) as
returned by `classp_jax.loop.run_continual`; a frontier variant's entry also
has ``base_method``, ``knob`` and ``value``
(`classp_jax.experiments.frontier`). ``classp-jax report`` (`write_report`)
turns the results of any number of runs into one markdown report with plots.

Three rules keep the numbers honest:

* A run marked ``diverged`` (its metrics null, its accuracy matrix holding only
  the tasks finished before) is shown as ``diverged (k/n seeds)``, never as
  accuracies; the other seeds' numbers appear only on a row that says so.
* Runs of one method name merge across files only if their ``settings_id``
  (the resolved configuration without the seed) agree.
* The best point of a frontier is chosen on validation accuracy whenever its
  runs recorded one (`select_points`), and its test accuracy is reported there.
"""

from __future__ import annotations

import io
import json
import math
import os
import shlex
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterable, NamedTuple

import numpy as np

from classp_jax.results import differing_keys, flatten_settings, read_strict_json

METRICS = ("acc", "bwt", "forgetting", "fwt")
MISSING = "—"


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


def mean_std(values: Iterable[float | None]) -> str:
  """``mean ± std`` (sample std over seeds; no ± for a single value).

  Missing or non-finite values give ``—``: nothing is printed as a number
  that is not one.

  Examples:
    >>> mean_std([0.5, 0.7])
    '0.600 ± 0.141'
    >>> mean_std([0.5, None]), mean_std([float("nan")]), mean_std([])
    ('—', '—', '—')
  """
  values = list(values)
  if not values or any(v is None or not math.isfinite(v) for v in values):
    return MISSING
  values = np.asarray(values, dtype=np.float64)
  if values.size == 1:
    return f"{values[0]:.3f}"
  return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"


def format_table(header: list[str], rows: list[list[str]]) -> str:
  """A plain-text table with aligned columns."""
  widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
  lines = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)) for line in [header, *rows]]
  lines.insert(1, "  ".join("-" * w for w in widths))
  return "\n".join(lines)


def experiment_label(results: dict[str, Any]) -> str:
  """The experiment's name, with its scenario and its ``--subsample`` when the results
  record them."""
  scenario, subsample = results.get("scenario"), _subsample(results)
  return (results["experiment"] + (f" ({scenario}-incremental)" if scenario else "")
          + (f" [--subsample {subsample}]" if subsample else ""))


def _subsample(results: dict[str, Any]) -> str | None:
  return (results.get("options") or {}).get("subsample")


def divergence_details(runs: list[dict[str, Any]], tasks: list[str]) -> str:
  """Where the diverged runs stopped, by task: ``seeds 1, 2 in task 2 (fashion), steps 11, 12
  into it (31, 32 of the run)``.

  ``diverged_at`` holds the task, counting from 0 (shown counting from 1), and the run's
  step, counting over all tasks. The step into the task subtracts the earlier tasks'
  ``steps``; a run that did not record them shows its own step only.

  Examples:
    >>> runs = [{"seed": s, "diverged": True, "diverged_at": {"task": 1, "step": 30 + s},
    ...          "steps": [20]} for s in (1, 2)]
    >>> divergence_details(runs, ["mnist", "fashion"])
    'seeds 1, 2 in task 2 (fashion), steps 11, 12 into it (31, 32 of the run)'
  """
  by_task: dict[Any, list] = defaultdict(list)
  for run in runs:
    if is_diverged(run):
      where = run.get("diverged_at") or {}
      task, step, before = where.get("task"), where.get("step"), run.get("steps") or []
      into = (step - sum(before[:task]) if isinstance(step, int) and isinstance(task, int)
              and len(before) >= task else None)
      by_task[task].append((run["seed"], "?" if step is None else step, into))
  details = []
  for task, seeds in by_task.items():
    if isinstance(task, int) and 0 <= task < len(tasks):
      shown = f"task {task + 1} ({tasks[task]})"
    else:
      shown = "an unrecorded task"
    plural = "s" if len(seeds) > 1 else ""
    steps = ", ".join(str(step) for _, step, _ in seeds)
    if all(into is not None for _, _, into in seeds):
      counted = f"{', '.join(str(into) for _, _, into in seeds)} into it ({steps} of the run)"
    else:
      counted = f"{steps} of the run"
    details.append(f"seed{plural} {', '.join(str(s) for s, _, _ in seeds)} in {shown}, "
                   f"step{plural} {counted}")
  return "; ".join(details)


def accuracy_matrix_table(runs: list[dict[str, Any]], tasks: list[str],
                          key="accuracy_matrix") -> str:
  """The mean (± std over seeds) accuracy matrix: rows = after task i, columns = task j."""
  matrices = np.array([r[key] if key == "accuracy_matrix" else r[key]["accuracy_matrix"]
                       for r in runs])
  rows = [[f"after {tasks[i]}", *(mean_std(matrices[:, i, j]) for j in range(len(tasks)))]
          for i in range(len(tasks))]
  return format_table(["", *tasks], rows)


def _matrix_heading(method: str, runs: list[dict[str, Any]], tasks: list[str]) -> str:
  """What a method's accuracy matrix is averaged over, naming any diverged seeds."""
  ok, note = finished(runs), diverged_note(runs)
  if not note:
    return f"{method}: test accuracy R[i][j] (mean ± std over {len(runs)} seed(s))"
  if not ok:
    return f"{method}: {note}: {divergence_details(runs, tasks)}"
  return (f"{method}: {note}: {divergence_details(runs, tasks)}; test accuracy R[i][j] of the "
          f"{len(ok)} seed(s) that did not diverge")


def print_summary(results: dict[str, Any], select: str | None = None) -> None:
  """Prints each method's accuracy matrix, the metrics table and any frontier's selected points.

  Args:
    results: a results dict.
    select: how frontier points are selected (see `parse_select`).
  """
  tasks, label = results["tasks"], experiment_label(results)
  for method, runs in runs_by_method(results["runs"]).items():
    print(f"\n{label}, {_matrix_heading(method, runs, tasks)}")
    if finished(runs):
      print(accuracy_matrix_table(finished(runs), tasks))
  print(f"\n{label}: held-out test metrics")
  print(format_table(report_header(results["runs"]), report_rows(results["runs"], tasks=tasks)))
  selections = select_points(results["runs"], select)
  if selections:
    print(f"\n{label}: {selection_sentence(selections)}")
    print(format_table(SELECTED_HEADER, selected_rows(selections)))


def _pyplot():
  """matplotlib's pyplot, drawing to files only."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  return plt


def plot_accuracy_over_training(results: dict[str, Any], path: Path, dpi: int = 110) -> None:
  """One panel per task: its test accuracy over training steps, a line per method.

  Diverged seeds are left out; a method whose every seed diverged is named in
  the legend instead of drawn.
  """
  plt = _pyplot()
  tasks = results["tasks"]
  fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks) + 1.8, 3), sharey=True,
                           squeeze=False, layout="constrained")
  for method, group in runs_by_method(results["runs"]).items():
    runs = finished(group)
    if not runs:
      axes[0][-1].plot([], [], "x", color="black", label=f"{method}: {diverged_note(group)}")
      continue
    label = (method if len(runs) == len(group) else
             f"{method} ({len(runs)} seeds; {len(group) - len(runs)} diverged, not shown)")
    # Seeds evaluate at the same points of their tasks, but a seed stopped at a target
    # reaches them at other steps: the x-axis counts tasks trained (`tasks_trained`).
    x = np.mean([tasks_trained(r, r["history"]["step"], r["history"]["task"]) for r in runs],
                axis=0)
    accuracy = np.array([r["history"]["accuracy"] for r in runs])  # (seeds, evals, tasks)
    for j, ax in enumerate(axes[0]):
      mean = accuracy[:, :, j].mean(0)
      line, = ax.plot(x, mean, label=label if j == len(tasks) - 1 else None)
      if len(runs) > 1:
        std = accuracy[:, :, j].std(0, ddof=1)
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)
  for j, ax in enumerate(axes[0]):
    for boundary in range(1, len(tasks)):
      ax.axvline(boundary, color="grey", lw=0.5, ls="--")
    ax.set_title(f"task {j + 1}: {tasks[j]}", fontsize=9)
    ax.set_xlabel("tasks trained")
  axes[0][0].set_ylabel("test accuracy")
  axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False)
  _save(fig, path, dpi=dpi)


def seen_tasks_curve(run: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
  """A run's mean test accuracy on the tasks seen so far, at each evaluation.

  Returns:
    ``(x, y)``: x counts tasks trained (an evaluation a fraction f through task
    t, counting from 0, is at t + f; the one before training at 0), so runs
    whose tasks took different numbers of steps (a target, ``joint``'s growing
    data) line up task by task; y is the mean accuracy on tasks 0..t.

  Examples:
    >>> run = {"steps": [10, 20], "history": {"step": [0, 5, 10, 20, 30],
    ...        "task": [0, 0, 0, 1, 1], "accuracy": [[0.5, 0.5], [0.7, 0.5], [0.9, 0.5],
    ...                                              [0.8, 0.6], [0.7, 0.9]]}}
    >>> x, y = seen_tasks_curve(run)
    >>> x.tolist(), y.round(3).tolist()
    ([0.0, 0.5, 1.0, 1.5, 2.0], [0.5, 0.7, 0.9, 0.7, 0.8])
  """
  history = run["history"]
  y = [float(np.mean(accuracy[:task + 1]))
       for task, accuracy in zip(history["task"], history["accuracy"])]
  return tasks_trained(run, history["step"], history["task"]), np.array(y)


def tasks_trained(run: dict[str, Any], steps: Iterable[int], tasks: Iterable[int]) -> np.ndarray:
  """Global steps of a run as tasks trained: step s of task t (counting from 0), a fraction
  f through it, is t + f. Seeds and methods whose tasks took different numbers of steps
  (a target, ``joint``'s growing data) line up on this axis.

  Examples:
    >>> tasks_trained({"steps": [10, 20]}, [0, 5, 10, 20, 30], [0, 0, 0, 1, 1]).tolist()
    [0.0, 0.5, 1.0, 1.5, 2.0]
  """
  starts = np.concatenate([[0], np.cumsum(run["steps"])])
  steps, tasks = np.asarray(list(steps), dtype=float), np.asarray(list(tasks), dtype=int)
  return tasks + (steps - starts[tasks]) / np.maximum(starts[tasks + 1] - starts[tasks], 1)


def plot_seen_tasks_accuracy(results: dict[str, Any], path: Path, dpi: int = 75) -> None:
  """A panel per method family (`method_family`): each method's mean test accuracy on the
  tasks seen so far over training (`seen_tasks_curve`), mean ± std over its finished seeds.
  A method whose every seed diverged is named in its panel's legend instead of drawn."""
  plt = _pyplot()
  panels = defaultdict(dict)
  for method, group in runs_by_method(results["runs"]).items():
    panels[method_family(group[0])][method] = group
  families = [f for f in FAMILIES if f in panels]
  fig, axes = plt.subplots(1, len(families), figsize=(3.4 * len(families), 3.6), sharey=True,
                           squeeze=False, layout="constrained")
  for ax, family in zip(axes[0], families):
    for method, group in panels[family].items():
      runs = finished(group)
      if not runs:
        ax.plot([], [], "x", color="black", label=f"{method}: {diverged_note(group)}")
        continue
      curves = [seen_tasks_curve(r) for r in runs]
      evaluations = min(len(x) for x, _ in curves)  # equal unless a seed's history is short
      x = np.mean([c[0][:evaluations] for c in curves], axis=0)
      y = np.array([c[1][:evaluations] for c in curves])
      line, = ax.plot(x, y.mean(0), lw=1.3, label=method if len(runs) == len(group) else
                      f"{method} ({len(group) - len(runs)}/{len(group)} seeds diverged)")
      if len(runs) > 1:
        ax.fill_between(x, y.mean(0) - y.std(0, ddof=1), y.mean(0) + y.std(0, ddof=1),
                        color=line.get_color(), alpha=0.15)
    for boundary in range(1, len(results["tasks"])):
      ax.axvline(boundary, color="grey", lw=0.5, ls="--")
    ax.set_title(family, fontsize=9)
    ax.set_xlabel("tasks trained")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False,
              ncol=2)
  axes[0][0].set_ylabel("mean test accuracy, tasks seen so far")
  _save(fig, path, dpi=dpi, layout=False)


def _save(fig, path: Path, dpi: int, layout: bool = True) -> None:
  """Writes ``fig`` as a 256-colour PNG: about a third of the bytes of a true-colour one,
  with no visible loss on plots (a report's figures are committed)."""
  from PIL import Image

  if layout and not fig.get_constrained_layout():
    fig.tight_layout()
  buffer = io.BytesIO()
  fig.savefig(buffer, dpi=dpi, format="png")
  _pyplot().close(fig)
  with Image.open(buffer) as image:
    image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(
        path, format="PNG", optimize=True)


# The report: `classp-jax report RUN_DIR... --out DIR`.

REFERENCE_METHOD = "classp"
TOP_LEVEL_KEYS = ("experiment", "description", "tasks", "devices", "platform", "loop", "runs")
RUN_KEYS = ("method", "seed", "accuracy_matrix", *METRICS[:3], "param_count", "state_bytes",
            "steps", "epochs", "wall_time_s", "history", "logs")


def is_variant(run: dict[str, Any]) -> bool:
  """Whether a run is a frontier variant (``METHOD[KNOB=VALUE]``)."""
  return run.get("knob") is not None


def _results_path(path: str | os.PathLike) -> Path:
  """A run folder's results.json, or the file itself."""
  path = Path(path)
  return path / "results.json" if path.is_dir() else path


def read_results(path: str | os.PathLike) -> dict[str, Any]:
  """One run folder's (or results.json file's) results, checked.

  Raises:
    ValueError: naming the file, when it cannot be read, is not strict JSON
      (truncated, garbled, or holding NaN/Infinity), or lacks a key a report
      needs.
  """
  path = _results_path(path)
  results = read_strict_json(path)
  if not isinstance(results, dict):
    raise ValueError(f"{path}: not a results dict")
  missing = [k for k in TOP_LEVEL_KEYS if k not in results]
  if missing:
    raise ValueError(f"{path}: lacks {', '.join(missing)}")
  if not (isinstance(results["tasks"], list) and isinstance(results["runs"], list)
          and all(isinstance(run, dict) for run in results["runs"])):
    raise ValueError(f"{path}: tasks and runs must be lists, and each run a dict")
  tasks = len(results["tasks"])
  for i, run in enumerate(results["runs"]):
    missing = [k for k in RUN_KEYS if k not in run]
    what = f"{path}: run {i} ({run.get('method', '?')}, seed {run.get('seed', '?')})"
    if missing:
      raise ValueError(f"{what} lacks {', '.join(missing)}")
    rows = len(run["accuracy_matrix"])
    if is_diverged(run):
      if rows > tasks:
        raise ValueError(f"{what}: diverged, but its accuracy matrix has {rows} rows for "
                         f"{tasks} tasks")
    else:
      for key in ("accuracy_matrix", "validation_accuracy_matrix"):
        matrix = run.get(key)
        if matrix is not None and (len(matrix) != tasks or any(len(r) != tasks for r in matrix)):
          raise ValueError(f"{what}: its {key} is not {tasks} x {tasks}")
      nulls = [k for k in METRICS if k in run and run[k] is None]
      if nulls:
        raise ValueError(f"{what}: {', '.join(nulls)} null but the run is not marked diverged")
  return results


def load_results(paths: Iterable[str | os.PathLike]) -> list[dict[str, Any]]:
  """Results of run folders (or results.json files), one dict per experiment, scenario and
  ``--subsample``.

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
  for path in map(_results_path, paths):
    results = read_results(path)
    key = results["experiment"], results.get("scenario"), _subsample(results)
    if key not in merged:
      merged[key] = {**results, "runs": [], "sources": []}
      origins[key] = {}
    elif merged[key]["tasks"] != results["tasks"]:
      raise ValueError(f"{path}: {experiment_label(results)}'s tasks differ from an earlier "
                       f"folder's ({', '.join(merged[key]['tasks'])})")
    experiment = merged[key]
    experiment["sources"].append(
        {"path": str(path), "options": results.get("options", {}), "loop": results["loop"]})
    seen = {(r["method"], r["seed"]) for r in experiment["runs"]}
    for run in results["runs"]:
      settings_id = run.get("settings_id")
      first_id, first_path = origins[key].setdefault(run["method"], (settings_id, path))
      if first_id != settings_id:
        def shown(s):
          return f"settings {s}" if s else "no recorded settings"
        raise ValueError(
            f"{path}: method {run['method']!r} has {shown(settings_id)} here but "
            f"{shown(first_id)} in {first_path}; runs of different settings cannot be merged "
            f"under one name (report them separately)")
      if (run["method"], run["seed"]) not in seen:
        seen.add((run["method"], run["seed"]))
        experiment["runs"].append(run)
  return list(merged.values())


def old_and_new_accuracy(run: dict[str, Any], key: str | None = None) -> tuple[float, float]:
  """Final accuracy: the mean over the earlier tasks (NaN with one task), and the last task's."""
  matrix = run[key]["accuracy_matrix"] if key else run["accuracy_matrix"]
  last = np.asarray(matrix[-1], dtype=np.float64)
  return float(last[:-1].mean()) if len(last) > 1 else float("nan"), float(last[-1])


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
  """A GitHub-flavoured markdown table."""
  lines = [header, ["---"] * len(header), *rows]
  return "\n".join("| " + " | ".join(str(c) for c in line) + " |" for line in lines)


def _metric_names(runs: list[dict[str, Any]], key: str | None) -> list[str]:
  """The metrics the runs (or their ``key`` protocol) record."""
  done = finished(runs) or runs
  first = (done[0].get(key) or {}) if key else done[0]
  return [name for name in METRICS if name in first]


def _bytes(n: float) -> str:
  """A byte count in B, kB, MB or GB."""
  for unit in ("B", "kB", "MB"):
    if n < 1000:
      return f"{n:.3g} {unit}"
    n /= 1000
  return f"{n:.3g} GB"


def report_rows(runs: list[dict[str, Any]], key: str | None = None,
                tasks: list[str] | None = None) -> list[list[str]]:
  """Per method, over seeds: metrics, final old/new-task accuracy, epochs, memory, time.

  A method with diverged seeds gets ``diverged (k/n seeds)`` instead of
  metrics, and where each diverged instead of epochs; the seeds that did not
  diverge follow on their own row, labelled as such. With
  ``key="paper_protocol"``, that protocol's metrics and accuracies only.

  Args:
    runs: the runs.
    key: None, or ``"paper_protocol"``.
    tasks: the task names, to name where runs diverged.
  """
  names = _metric_names(runs, key)
  buffers = key is None and any(r.get("buffer_bytes") for r in runs)
  tasks = tasks or []

  def memory_and_time(group):
    if key is not None:
      return []
    return [f"{group[0]['state_bytes'] / (4 * group[0]['param_count']):.2f}x",
            *([_bytes(group[0].get("buffer_bytes") or 0)] if buffers else []),
            f"{np.mean([r['wall_time_s'] for r in group]):.0f}"]

  def cells(method, group):
    metrics = [r[key] for r in group] if key else group
    old_new = np.array([old_and_new_accuracy(r, key) for r in group])
    row = [method, str(len(group)), *(mean_std(m[name] for m in metrics) for name in names),
           mean_std(old_new[:, 0]), mean_std(old_new[:, 1])]
    if key is None:
      row.append(", ".join(f"{e:.3g}" for e in np.mean([r["epochs"] for r in group], axis=0)))
    return row + memory_and_time(group)

  rows = []
  for method, group in runs_by_method(runs).items():
    ok, note = finished(group), diverged_note(group)
    if not note:
      rows.append(cells(method, group))
      continue
    where = [f"diverged: {divergence_details(group, tasks)}"] if key is None else []
    rows.append([method, str(len(group)), note, *[MISSING] * (len(names) + 1), *where,
                 *memory_and_time(group)])
    if ok:
      rows.append(cells(f"{method}: the {len(ok)} seed(s) that did not diverge", ok))
  return rows


def report_header(runs: list[dict[str, Any]], key: str | None = None) -> list[str]:
  """The columns of `report_rows`."""
  header = ["method", "seeds", *(m.upper() if m != "forgetting" else m
                                 for m in _metric_names(runs, key)), "old tasks", "last task"]
  if key is None:
    header += ["epochs per task", "state / fp32 params",
               *(["replay buffer"] if any(r.get("buffer_bytes") for r in runs) else []),
               "time/run (s)"]
  return header


def stopping_rows(runs: list[dict[str, Any]]) -> list[list[str]]:
  """Per method, over seeds: each task's epochs and its last epoch's training loss and accuracy.

  Under loss or accuracy targets this is where each method stopped: with an
  accuracy target, the loss column is each method's own loss target. A task
  that a seed never finished, or whose loss is missing or non-finite, reads
  as diverged.
  """
  rows = []
  for method, group in runs_by_method(runs).items():
    cells = []
    for t in range(max(len(r["epochs"]) for r in group)):
      sound = [r for r in group if len(r["epoch_loss"]) > t and r["epoch_loss"][t] is not None
               and math.isfinite(r["epoch_loss"][t])]
      if len(sound) < len(group):
        cells.append(f"diverged ({len(group) - len(sound)}/{len(group)} seeds)")
        continue
      cells.append(f"{np.mean([r['epochs'][t] for r in sound]):.3g} ep, loss "
                   f"{mean_std(r['epoch_loss'][t] for r in sound)}, "
                   f"acc {mean_std(r['epoch_accuracy'][t] for r in sound)}")
    rows.append([method, *cells])
  return rows


def paired_differences(first: list[dict[str, Any]],
                       second: list[dict[str, Any]]) -> tuple[list[float], int]:
  """``first``'s ACC minus ``second``'s, seed by seed over the seeds both have, and how many
  of those seeds were skipped because either run diverged."""
  by_seed = {r["seed"]: r for r in second}
  both = [(r, by_seed[r["seed"]]) for r in first if r["seed"] in by_seed]
  differences = [a["acc"] - b["acc"] for a, b in both if not (is_diverged(a) or is_diverged(b))]
  return differences, len(both) - len(differences)


def _paired_cells(differences: list[float], skipped: int) -> list[str]:
  """Seeds, mean ± std of the differences, how many are positive, and the skipped seeds."""
  n = len(differences)
  return [str(n), mean_std(differences), f"{sum(d > 0 for d in differences)}/{n}", str(skipped)]


def paired_rows(runs: list[dict[str, Any]], reference: str = REFERENCE_METHOD) -> list[list[str]]:
  """``reference``'s ACC minus each other method's, paired by seed, and how often it wins.

  A seed where either method diverged is skipped, and counted in the last column.
  """
  by_method = runs_by_method(runs)
  base = by_method.get(reference, [])
  rows = []
  for method, group in by_method.items():
    differences, skipped = paired_differences(base, group)
    if method != reference and (differences or skipped):
      rows.append([method, *_paired_cells(differences, skipped)])
  return rows


PAIRED_HEADER = ["method", "seeds", "ACC difference", "wins", "seeds skipped (diverged)"]


# Frontier selection.

class FrontierPoint(NamedTuple):
  """One value of a frontier knob, over its seeds.

  Attributes:
    value: the knob's value.
    runs: its runs, one per seed.
    score: the mean over seeds of the selection accuracy, or None (a diverged
      seed, or no validation accuracy recorded).
    matched: every seed stopped each task at its training target
      (`met_targets`); always true for tasks without targets.
  """

  value: Any
  runs: list[dict[str, Any]]
  score: float | None
  matched: bool = True


class Selection(NamedTuple):
  """A frontier curve (a method and knob) and its selected point.

  Attributes:
    method: the base method.
    knob: the swept hyperparameter.
    points: its points in grid order.
    selected: the selected point, or None when every point diverged.
    selected_on: ``validation``, ``test`` or ``validation, first K tasks``.
    edge: ``yes-low`` or ``yes-high`` when the selected value (or, without
      one, the closest) is the smallest or largest of its grid, ``no``
      otherwise, ``one point`` for a curve of one point (chosen on another
      study's frontier), ``n/a`` without either.
    closest: when no point met its training targets (an accuracy-matched
      study), the one whose training accuracy came closest; else None.
    flat: no point learned (`FLAT_MARGIN`), so the selected value is no
      better than any other: an interior one is no tuned point.
  """

  method: str
  knob: str
  points: list[FrontierPoint]
  selected: FrontierPoint | None
  selected_on: str
  edge: str
  closest: FrontierPoint | None = None
  flat: bool = False


def parse_select(select: str | None) -> tuple[str | None, int | None]:
  """``--select``: ``validation``, ``test``, ``first-tasks:K`` or None (automatic).

  Returns:
    ``(protocol, K)``, K only for ``first-tasks``.

  Raises:
    ValueError: anything else.

  Examples:
    >>> parse_select("first-tasks:2"), parse_select(None)
    (('first-tasks', 2), (None, None))
  """
  if select in (None, "validation", "test"):
    return select, None
  name, _, k = select.partition(":")
  if name == "first-tasks" and k.isdigit() and int(k) >= 1:
    return name, int(k)
  raise ValueError(f"--select takes validation, test or first-tasks:K (K >= 1), got {select!r}")


def met_targets(run: dict[str, Any]) -> bool:
  """Whether a run stopped every task that chased a training target at it, not at the
  epoch cap (``targets_met``; runs without targets, or recorded before it, meet them)."""
  return all(met is not False for met in run.get("targets_met") or ())


def target_accuracy(run: dict[str, Any]) -> float:
  """The mean final-epoch training accuracy over the tasks that chased a target: how close
  a run that missed its targets came."""
  chased = [a for a, met in zip(run["epoch_accuracy"], run.get("targets_met") or ())
            if met is not None and a is not None]
  return float(np.mean(chased)) if chased else float("nan")


def _has_validation(run: dict[str, Any]) -> bool:
  return bool(run.get("validation_accuracy_matrix"))


def _selection_accuracy(run: dict[str, Any], protocol: str, k: int | None) -> float:
  """What a run scores under a selection protocol (see `select_points`)."""
  if protocol == "test":
    return run["acc"]
  matrix = run["validation_accuracy_matrix"]
  if protocol == "first-tasks":
    return float(np.mean(matrix[k - 1][:k]))
  return float(np.mean(matrix[-1]))


def _sort_key(value: Any):
  return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))


# A curve none of whose points scores this much above its runs' untrained accuracy learned
# nothing at any value (e.g. CLASSP with the paper's Eq. (1), whose first step divides by eps).
FLAT_MARGIN = 0.05


def _learned_nothing(points: list[FrontierPoint]) -> bool:
  """Whether every scored point's score is within `FLAT_MARGIN` of the mean test accuracy
  its runs had before training (``baseline``; False if a run did not record it)."""
  if not all(r.get("baseline") for p in points for r in p.runs):
    return False
  return all(p.score < np.mean([np.mean(r["baseline"]) for r in p.runs]) + FLAT_MARGIN
             for p in points)


def select_points(runs: list[dict[str, Any]], select: str | None = None) -> list[Selection]:
  """The best point of every frontier curve (runs grouped by base method and knob).

  The best point has the highest mean, over the seeds that every point of
  its curve has, of

  * ``validation``: the mean of the last row of ``validation_accuracy_matrix``
    (validation ACC, on splits carved from the training data);
  * ``first-tasks:K``: the mean of the first K entries of its row K - 1, the
    validation accuracy on tasks 1..K after task K. The first K tasks of a
    run are trained exactly as a run on those K tasks alone, so this is the
    protocol of tuning on the first tasks (Chaudhry et al. 2019) on the same
    runs; the test ACC reported is the full stream's;
  * ``test``: test ACC (optimistic: chosen on the data it is scored on).

  None (the default) is ``validation`` for a curve whose runs all recorded
  validation accuracy, ``test`` otherwise. A point with a diverged seed is
  never selected, nor one with a seed that stopped a task at the epoch cap
  short of its training target (`met_targets`): in an accuracy-matched study
  every method is compared at the same training accuracy. A curve none of
  whose points met the targets has no selection, and records the point that
  came closest (`Selection.closest`).

  Args:
    runs: any runs; frontier variants are those with a ``knob``.
    select: ``validation``, ``test``, ``first-tasks:K`` or None.

  Returns:
    One `Selection` per curve, in first-seen order.

  Raises:
    ValueError: an explicit validation protocol for a curve whose runs lack
      validation accuracy, or K beyond the number of tasks.

  Examples:
    >>> runs = [{"method": f"sgd[learning_rate={lr}]", "base_method": "sgd",
    ...          "knob": "learning_rate", "value": lr, "seed": 0, "acc": test,
    ...          "validation_accuracy_matrix": [[validation]]}
    ...         for lr, test, validation in ((0.1, 0.9, 0.5), (0.01, 0.6, 0.7))]
    >>> (on_validation,) = select_points(runs)
    >>> on_validation.selected.value, on_validation.selected_on, on_validation.edge
    (0.01, 'validation', 'yes-low')
    >>> select_points(runs, "test")[0].selected.value
    0.1
  """
  protocol, k = parse_select(select)
  curves: dict[tuple[str, str], dict[Any, list]] = defaultdict(lambda: defaultdict(list))
  for run in runs:
    if is_variant(run):
      curves[run["base_method"], run["knob"]][json.dumps(run["value"])].append(run)
  selections = []
  for (method, knob), by_value in curves.items():
    groups = sorted(by_value.values(), key=lambda g: _sort_key(g[0]["value"]))
    ok = [r for g in groups for r in finished(g)]
    # A curve with no finished run selects nothing; its label follows its diverged runs.
    validated = all(map(_has_validation, ok or [r for g in groups for r in g]))
    used = protocol or ("validation" if validated else "test")
    if used != "test" and not validated:
      raise ValueError(f"--select {select}: {method} ({knob}) has runs without a "
                       f"validation_accuracy_matrix (run with a validation split, or use "
                       f"--select test)")
    if used == "first-tasks" and any(k > len(r["validation_accuracy_matrix"]) for r in ok):
      raise ValueError(f"--select {select}: {method} ({knob}) has fewer than {k} tasks")
    # Scored on the seeds every point has, so that a point given extra seeds (the
    # selected one, for the tables) is compared on the same seeds as the others.
    shared = set.intersection(*({r["seed"] for r in g} for g in groups))
    points = [FrontierPoint(g[0]["value"], g, None if diverged_note(g) or not shared else
                            float(np.mean([_selection_accuracy(r, used, k) for r in g
                                           if r["seed"] in shared])),
                            all(map(met_targets, g)))
              for g in groups]
    scored = [p for p in points if p.score is not None]
    eligible = [p for p in scored if p.matched]
    best = max(eligible, key=lambda p: p.score) if eligible else None
    closest = None if best is not None or not scored else max(
        scored, key=lambda p: np.nan_to_num(
            np.mean([target_accuracy(r) for r in p.runs if r["seed"] in shared]), nan=-np.inf))
    edge, marked = "n/a", best or closest
    if marked is not None and len(points) == 1:
      edge = "one point"
    elif marked is not None and isinstance(marked.value, (int, float)):
      index = points.index(marked)
      edge = ("yes-low" if index == 0 else "yes-high" if index == len(points) - 1 else "no")
    shown = {"first-tasks": f"validation, first {k} tasks"}.get(used, used)
    selections.append(Selection(method, knob, points, best, shown, edge, closest,
                                bool(scored) and _learned_nothing(scored)))
  return selections


def best_per_method(selections: list[Selection]) -> list[Selection]:
  """Each method's best selected point over all its curves (its knobs), CLASSP's first.

  A method's curves share their centre, so their scores compare points of one
  method. A method none of whose points met the training targets keeps the
  curve that came closest; one whose every point diverged keeps its (empty)
  selection.
  """
  def rank(s: Selection) -> tuple[int, float]:
    if s.selected is not None:
      return 2, s.selected.score
    if s.closest is not None:
      return 1, float(np.mean([target_accuracy(r) for r in s.closest.runs]))
    return 0, 0.0

  best: dict[str, Selection] = {}
  for s in selections:
    if s.method not in best or rank(s) > rank(best[s.method]):
      best[s.method] = s
  return sorted(best.values(), key=lambda s: _method_order(s.method))


def _method_order(method: str) -> tuple[bool, bool, str]:
  """CLASSP's variants first, then the other methods by name, and ``joint`` (the upper bound)
  last: the order of the tuned tables and plots."""
  return not method.startswith("classp"), method == "joint", method


def tuned_runs(selections: list[Selection]) -> list[dict[str, Any]]:
  """The runs of each method's best point (`best_per_method`), named after the method and
  no longer marked as variants, for the tables (`report_rows`, `paired_rows`) and plots."""
  return [{**run, "method": s.method, "base_method": None, "knob": None, "value": None}
          for s in best_per_method(selections) if s.selected for run in s.selected.runs]


def selected_variants(selections: list[Selection]) -> list[str]:
  """Each method's best point as ``METHOD[KNOB=VALUE]``, the name ``classp-jax run
  --frontier --methods`` takes (e.g. to run it on more seeds); for a method that met its
  training targets at no point, the point that came closest (it is reported too)."""
  from classp_jax.experiments.frontier import variant_name

  return [variant_name(s.method, s.knob, (s.selected or s.closest).value)
          for s in best_per_method(selections) if s.selected or s.closest]


def _unstable_curve(selections: list[Selection], method: str) -> Selection | None:
  """The curve to grow down for a method that diverged at every point: its strength's (a
  penalty too stiff for the step size: EWC needs ``lr * strength * F_i < 2``), or, without
  one, its learning rate's; None if it has neither."""
  curves = {s.knob: s for s in selections if s.method == method}
  return curves.get("strength", curves.get("learning_rate"))


def _incomplete_points(selections: list[Selection]) -> list[str]:
  """The points that lack a seed which most points of their curve have (a growth round
  stopped part-way): until they have it, their whole curve is scored on fewer seeds."""
  from classp_jax.experiments.frontier import variant_name

  names = []
  for s in selections:
    seeds = [frozenset(r["seed"] for r in p.runs) for p in s.points]
    usual = Counter(seeds).most_common(1)[0][0]
    names += [variant_name(s.method, s.knob, p.value)
              for p, have in zip(s.points, seeds) if not usual <= have]
  return names


def next_points(selections: list[Selection]) -> tuple[list[str], list[str]]:
  """Where each method's grid must grow: a point beyond each selected point at a grid edge
  (or, where no point met the training targets, beyond the closest one at an edge).

  First come the points to complete: those missing a seed most of their curve's points
  have (`_incomplete_points`).

  A method whose every point diverged grows one grid below its lowest value: its
  strength's, or its learning rate's if it has no strength (`_unstable_curve`).

  The next value continues the grid's geometric step past the edge (0.001, 0.003, 0.01:
  0.0003 below, 0.03 above), to 3 significant digits.

  Returns:
    The points as ``METHOD[KNOB=VALUE]`` (`selected_variants`), and the edges that
    cannot grow (a low edge at 0, or a grid of one value), in words.
  """
  from classp_jax.experiments.frontier import variant_name

  points, stuck = _incomplete_points(selections), []
  for s in best_per_method(selections):
    if s.selected is None and s.closest is None:
      s = _unstable_curve(selections, s.method)
      if s is None:
        continue
      s = s._replace(edge="yes-low")
    if not s.edge.startswith("yes"):
      continue
    values = [p.value for p in s.points]
    if len(values) < 2:  # e.g. a point chosen on another frontier that diverged here
      stuck.append(f"{s.method} ({s.knob}) has one value, {_value(values[0])}, and no step "
                   "to grow its grid by")
      continue
    edge, neighbour = (values[0], values[1]) if s.edge == "yes-low" else (values[-1], values[-2])
    if edge == 0 or neighbour == 0:
      stuck.append(f"{s.method} ({s.knob}) selected {_value(edge)}, at its grid's "
                   f"{s.edge[4:]} edge, which cannot grow")
      continue
    value = float(f"{edge * edge / neighbour:.3g}")
    if isinstance(edge, int) and not isinstance(edge, bool):
      value = max(1, round(value))
    points.append(variant_name(s.method, s.knob, value))
  return points, stuck


def neighbour_points(selections: list[Selection]) -> list[str]:
  """Each method's selected point and the values either side of it on its curve, to run
  on other data: a frontier tuned on a subsample need not select the same point on all
  the data, where every run takes more steps.

  Returns:
    The points as ``METHOD[KNOB=VALUE]``, each method's in grid order; a method whose
    every point diverged has none.

  Examples:
    >>> runs = [{"method": f"sgd[learning_rate={lr}]", "base_method": "sgd",
    ...          "knob": "learning_rate", "value": lr, "seed": 0, "acc": 0.5,
    ...          "validation_accuracy_matrix": [[score]]}
    ...         for lr, score in ((0.01, 0.5), (0.03, 0.7), (0.1, 0.6), (0.3, 0.2))]
    >>> neighbour_points(select_points(runs))
    ['sgd[learning_rate=0.01]', 'sgd[learning_rate=0.03]', 'sgd[learning_rate=0.1]']
  """
  from classp_jax.experiments.frontier import variant_name

  names = []
  for s in best_per_method(selections):
    marked = s.selected or s.closest
    if marked is None:
      continue
    i = s.points.index(marked)
    names += [variant_name(s.method, s.knob, p.value) for p in s.points[max(0, i - 1):i + 2]]
  return names


def selection_sentence(selections: list[Selection]) -> str:
  """What the selected points were chosen on, in words (curves that selected nothing, every
  point diverged, do not count)."""
  used = sorted({s.selected_on for s in selections if s.selected or s.closest}
                or {s.selected_on for s in selections})
  if used == ["validation"]:
    return ("best points selected on validation ACC (held out from the training data); "
            "test ACC reported at that point")
  if used == ["test"]:
    return ("best points selected on TEST ACC (no validation split recorded): optimistic, "
            "chosen on the data they are scored on")
  if len(used) == 1:
    return (f"best points selected on {used[0]} accuracy (held out from the training data); "
            "test ACC on the full stream reported at that point")
  return ("best points selected per row on " + " or ".join(used) +
          " (see 'selected on'); test ACC reported at that point")


SELECTED_HEADER = ["method", "knob", "selected value", "selected on", "validation ACC",
                   "test ACC", "old tasks", "last task", "seeds", "grid edge"]


def _value(value: Any) -> str:
  return f"{value:g}" if isinstance(value, float) else str(value)


def _validation_acc(runs: list[dict[str, Any]]) -> str:
  if not all(map(_has_validation, runs)):
    return MISSING
  return mean_std(float(np.mean(r["validation_accuracy_matrix"][-1])) for r in runs)


def selected_rows(selections: list[Selection]) -> list[list[str]]:
  """The rows of `SELECTED_HEADER`: each curve's selected point, test accuracy at it."""
  rows = []
  for s in selections:
    if s.selected is None:
      why = ("every point diverged" if s.closest is None else
             f"no point reached the training target (closest: {_value(s.closest.value)})")
      rows.append([s.method, s.knob, f"none: {why}", s.selected_on,
                   *[MISSING] * 4, MISSING, _edge(s)])
      continue
    runs = s.selected.runs
    old_new = np.array([old_and_new_accuracy(r) for r in runs])
    rows.append([s.method, s.knob, _value(s.selected.value), s.selected_on, _validation_acc(runs),
                 mean_std(r["acc"] for r in runs), mean_std(old_new[:, 0]),
                 mean_std(old_new[:, 1]), str(len(runs)), _edge(s)])
  return rows


def _edge(s: Selection) -> str:
  """The grid-edge column: the edge, and whether the curve is flat."""
  return f"{s.edge}, flat" if s.flat else s.edge


def unmatched_rows(selections: list[Selection]) -> list[list[str]]:
  """The rows of `UNMATCHED_HEADER`: each method none of whose points met the training
  targets (`best_per_method`), at the point that came closest."""
  rows = []
  for s in best_per_method(selections):
    if s.selected is None and s.closest is not None:
      runs = finished(s.closest.runs)
      rows.append([s.method, s.knob, _value(s.closest.value), str(len(runs)),
                   mean_std(map(target_accuracy, runs)),
                   f"{np.mean([sum(r['epochs']) for r in runs]):.3g}",
                   mean_std(r["acc"] for r in runs), _edge(s)])
  return rows


UNMATCHED_HEADER = ["method", "knob", "closest value", "seeds", "training accuracy reached",
                    "epochs in all", "test ACC (not matched)", "grid edge"]


def frontier_rows(selections: list[Selection]) -> list[list[str]]:
  """Per frontier point, over seeds: old-task, last-task accuracy, validation and test ACC."""
  rows = []
  for s in selections:
    for point in s.points:
      note = diverged_note(point.runs)
      ok = finished(point.runs)
      old_new = np.array([old_and_new_accuracy(r) for r in ok]) if ok else np.zeros((0, 2))
      mark = ("selected" + (f" (grid edge: {s.edge[4:]})" if s.edge.startswith("yes") else "")
              if point is s.selected else
              "closest to the training target" if point is s.closest else "")
      missed = sum(not met_targets(r) for r in ok)
      if missed:
        mark = ", ".join(filter(None, [mark, f"missed the training target ({missed}/"
                                             f"{len(ok)} seeds)"]))
      numbers = ([note, MISSING, MISSING, MISSING] if note else
                 [mean_std(old_new[:, 0]), mean_std(old_new[:, 1]), _validation_acc(ok),
                  mean_std(r["acc"] for r in ok)])
      rows.append([s.method, s.knob, _value(point.value), str(len(point.runs)), *numbers, mark])
  return rows


FRONTIER_HEADER = ["method", "knob", "value", "seeds", "old tasks", "last task",
                   "validation ACC", "test ACC", "selected"]


# CLASSP's principles, tested on the frontiers.

# (sparse curve, dense curve): does a sparser update forget less than a lower learning
# rate that learns each task as well?
SPARSITY_CURVES = ((("classp_relative", "threshold"), ("classp_no_threshold", "learning_rate")),
                   (("classp", "threshold"), ("classp_no_threshold", "learning_rate")))
# (variant, reference, what the variant changes): tuned against tuned, paired by seed.
ABLATIONS = (("classp_p2", "classp_no_threshold", "p = 2 instead of p = 1"),
             ("classp_eq1", "classp_no_threshold", "Eq. (1) instead of Algorithm 1"),
             ("classp_relative", "classp_no_threshold", "a relative threshold"),
             ("classp_reset", "classp_no_threshold", "the optimizer state reset at each task"),
             ("classp", "classp_no_threshold", "an absolute threshold"))


def plasticity(run: dict[str, Any]) -> float:
  """Mean accuracy on each task right after training it (the matrix's diagonal)."""
  return float(np.mean(np.diag(np.asarray(run["accuracy_matrix"], dtype=np.float64))))


def _learning_rate(run: dict[str, Any]) -> Any:
  return ((run.get("settings") or {}).get("method") or {}).get("hparams", {}).get("learning_rate")


def matched_plasticity_rows(selections: list[Selection]) -> list[list[str]]:
  """Forgetting of each sparse-update point against threshold-free CLASSP's.

  For each point of a sparse curve of `SPARSITY_CURVES` (a threshold swept at a fixed
  learning rate), two references from the dense curve (threshold 0, learning rate swept):

  * at matched plasticity: the dense curve interpolated linearly, over its points' mean
    plasticity, to the forgetting it has at the sparse point's plasticity (not where that
    plasticity is outside the dense curve's range). A negative difference means the
    sparser update forgot less than a lower learning rate that learned as well;
  * at the same learning rate: the dense point at the sparse curve's learning rate, if it
    was run (from the runs' recorded settings).

  Points with a diverged seed are not compared.
  """
  curves = {(s.method, s.knob): s for s in selections}
  rows = []
  for sparse_key, dense_key in SPARSITY_CURVES:
    if sparse_key not in curves or dense_key not in curves:
      continue
    sound = [p for p in curves[dense_key].points if p.score is not None]
    dense = sorted((float(np.mean([plasticity(r) for r in p.runs])),
                    float(np.mean([r["forgetting"] for r in p.runs]))) for p in sound)
    by_lr = {p.value: p for p in sound}
    for point in curves[sparse_key].points:
      name = f"{sparse_key[0]}[{sparse_key[1]}={_value(point.value)}]"
      if point.score is None:
        rows.append([name, str(len(point.runs)), diverged_note(point.runs) or MISSING,
                     *[MISSING] * 4])
        continue
      p = [plasticity(r) for r in point.runs]
      f = [r["forgetting"] for r in point.runs]
      x, y = zip(*dense) if dense else ((), ())
      inside = bool(dense) and x[0] <= np.mean(p) <= x[-1]
      matched = float(np.interp(np.mean(p), x, y)) if inside else None
      same = by_lr.get(_learning_rate(point.runs[0]))
      rows.append([name, str(len(point.runs)), mean_std(p), mean_std(f),
                   f"{matched:.3f} ({np.mean(f) - matched:+.3f})" if inside else
                   "outside its range",
                   MISSING if same is None else
                   f"{np.mean([r['forgetting'] for r in same.runs]):.3f} at plasticity "
                   f"{np.mean([plasticity(r) for r in same.runs]):.3f}"])
  return rows


MATCHED_HEADER = ["sparse point", "seeds", "plasticity", "forgetting",
                  "threshold 0 at this plasticity (lr swept): forgetting (difference)",
                  "threshold 0 at the same lr: forgetting"]


def ablation_rows(tuned: list[dict[str, Any]]) -> list[list[str]]:
  """Each of `ABLATIONS` present: the variant's ACC minus its reference's, both at their
  selected points, paired by seed; a seed where either diverged is skipped."""
  by_method = runs_by_method(tuned)
  return [[f"{variant} vs {reference}", change,
           *_paired_cells(*paired_differences(by_method[variant], by_method[reference]))]
          for variant, reference, change in ABLATIONS
          if variant in by_method and reference in by_method]


ABLATION_HEADER = ["ablation", "what changes", "seeds", "ACC difference (variant - reference)",
                   "variant wins", "seeds skipped (diverged)"]


# Plots of the report.

REGULARIZERS = ("ewc", "si", "mas", "l2")
FAMILIES = ("CLASSP", "regularizers", "optimizers", "replay")


def method_family(run: dict[str, Any]) -> str:
  """The frontier plot's panel of a run's method: one of `FAMILIES`.

  Replay methods keep a buffer (or say so in their name); CLASSP variants
  (including CLASSP with a regularizer) share one panel; methods with a
  regularizer are ``regularizers``; plain optimizers are ``optimizers``.
  """
  name = run.get("base_method") or run["method"]
  method = (run.get("settings") or {}).get("method")
  regularizer = method.get("regularizer") if isinstance(method, dict) else None
  if run.get("buffer_bytes") or "replay" in name or "replay" in str(regularizer):
    return "replay"
  if name.startswith("classp"):
    return "CLASSP"
  if regularizer or any(part in REGULARIZERS for part in name.replace("+", "_").split("_")):
    return "regularizers"
  return "optimizers"


def plot_accuracy_matrices(results: dict[str, Any], path: Path) -> None:
  """One heatmap per method: the mean accuracy matrix over the seeds that did not diverge.

  Every panel uses the same colour scale, accuracy 0 to 1, with one colourbar.
  """
  plt = _pyplot()
  groups = runs_by_method(results["runs"])
  tasks = len(results["tasks"])
  columns = min(4, len(groups))
  rows = -(-len(groups) // columns)
  size = 1.3 + 0.35 * tasks
  fig, axes = plt.subplots(rows, columns, figsize=(size * columns + 0.8, size * rows + 0.3),
                           squeeze=False, layout="constrained")
  for ax in axes.flat[len(groups):]:
    ax.axis("off")
  image = None
  for ax, (method, group) in zip(axes.flat, groups.items()):
    runs, note = finished(group), diverged_note(group)
    ax.set_xticks(range(tasks), [str(j + 1) for j in range(tasks)], fontsize=6)
    ax.set_yticks(range(tasks), [str(i + 1) for i in range(tasks)], fontsize=6)
    if not runs:
      ax.imshow(np.full((tasks, tasks), np.nan), vmin=0, vmax=1, cmap="viridis")
      ax.text((tasks - 1) / 2, (tasks - 1) / 2, note.replace(" (", "\n("), ha="center",
              va="center", fontsize=7, color="firebrick")
      ax.set_title(method, fontsize=8)
      continue
    mean = np.mean([r["accuracy_matrix"] for r in runs], axis=0)
    image = ax.imshow(mean, vmin=0, vmax=1, cmap="viridis")
    if tasks <= 5:
      for (i, j), value in np.ndenumerate(mean):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                color="white" if value < 0.6 else "black")
    shown = f"{method}\n{len(runs)} seeds shown, {len(group) - len(runs)} diverged"
    ax.set_title(shown if note else method, fontsize=8, color="firebrick" if note else "black")
  if image is not None:
    fig.colorbar(image, ax=axes, shrink=min(0.8, 2.5 / (size * rows)), label="test accuracy")
  fig.supxlabel("evaluated on task j", fontsize=8)
  fig.supylabel("after training task i", fontsize=8)
  _save(fig, path, dpi=80)


class _Point(NamedTuple):
  """A frontier plot point: mean (last-task, old-task) accuracy over seeds and their std."""

  x: float
  y: float
  xerr: float
  yerr: float


def _mean_point(runs: list[dict[str, Any]]) -> _Point | None:
  """The plotted point of a group of seeds, or None if any diverged."""
  if diverged_note(runs):
    return None
  points = np.array([old_and_new_accuracy(r) for r in runs])  # (seeds, [old, new])
  mean = points.mean(0)
  std = points.std(0, ddof=1) if len(runs) > 1 else np.zeros(2)
  return _Point(mean[1], mean[0], std[1], std[0])


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
  """The points no other point beats on both coordinates (higher is better), by x.

  Examples:
    >>> pareto_front([(0.5, 0.9), (0.7, 0.8), (0.6, 0.7), (0.9, 0.2)])
    [(0.5, 0.9), (0.7, 0.8), (0.9, 0.2)]
  """
  front = [p for p in points
           if not any(q[0] >= p[0] and q[1] >= p[1] and q != p for q in points)]
  return sorted(set(front))


def _overlaps(box, boxes) -> bool:
  return any(box.overlaps(other) for other in boxes)


def _place_labels(fig, ax, candidates, occupied) -> None:
  """Writes each candidate label beside its point where it fits inside ``ax`` and collides
  with nothing placed or drawn; the others are left out.

  Args:
    fig: the figure, already laid out.
    ax: the panel.
    candidates: ``(x, y, text, colour)`` in priority order.
    occupied: display-space bounding boxes to avoid (points, legends); grows.
  """
  renderer = fig.canvas.get_renderer()
  frame = ax.get_window_extent(renderer)
  offsets = ((4, 3, "left", "bottom"), (4, -3, "left", "top"), (-4, 3, "right", "bottom"),
             (-4, -3, "right", "top"), (0, 6, "center", "bottom"), (0, -6, "center", "top"))
  for x, y, text, colour in candidates:
    for dx, dy, ha, va in offsets:
      label = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha,
                          va=va, fontsize=7, color=colour)
      box = label.get_window_extent(renderer).expanded(1.05, 1.1)
      inside = (frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0
                and box.y1 <= frame.y1)
      if inside and not _overlaps(box, occupied):
        occupied.append(box)
        break
      label.remove()


def plot_frontier(results: dict[str, Any], path: Path,
                  selections: list[Selection] | None = None) -> None:
  """Final old-task accuracy against last-task accuracy: one panel per method family.

  Each frontier curve (a method and knob) is a line through its points in
  grid order, with the std over seeds as error bars. A diverged point is not
  drawn and breaks the line; the legend names it. The selected point is a
  star (outlined in red at a grid edge); the grey band is the Pareto front
  over every method, the same in every panel; hollow circles are methods at
  their own points. Values label points only where they collide with nothing.

  Args:
    results: a results dict.
    path: the PNG to write.
    selections: `select_points` of the runs (default: automatic selection).
  """
  plt = _pyplot()
  from matplotlib.lines import Line2D

  selections = select_points(results["runs"]) if selections is None else selections
  panels: dict[str, list] = defaultdict(list)
  for s in selections:
    panels[method_family(s.points[0].runs[0])].append(s)
  singles: dict[str, list] = defaultdict(list)
  for method, runs in runs_by_method(results["runs"]).items():
    if not is_variant(runs[0]):
      singles[method_family(runs[0])].append((method, runs))
  families = [f for f in FAMILIES if f in panels or f in singles]
  everything = [_mean_point(p.runs) for s in selections for p in s.points]
  everything += [_mean_point(runs) for family in singles.values() for _, runs in family]
  drawn = [(p.x, p.y) for p in everything if p is not None]
  front = pareto_front(drawn)

  fig, axes = plt.subplots(1, len(families), figsize=(4.3 * len(families), 5.2), squeeze=False,
                           layout="constrained")
  colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  candidates: dict[int, list] = defaultdict(list)
  for index, (ax, family) in enumerate(zip(axes[0], families)):
    shown_here, selected_labels = [], 0
    for colour, s in zip(colours, panels[family]):
      points = [_mean_point(p.runs) for p in s.points]
      x = [p.x if p else np.nan for p in points]  # NaN breaks the line at a diverged point
      y = [p.y if p else np.nan for p in points]
      shown = [p for p in points if p]
      shown_here += shown
      label = f"{s.method}: {s.knob}"
      if s.selected is not None:
        label += f", ★ {_value(s.selected.value)}" + (
            f" at the grid's {s.edge[4:]} edge" if s.edge.startswith("yes") else "")
      broken = [f"{_value(p.value)}" + ("" if all(map(is_diverged, p.runs)) else
                                        f" ({sum(map(is_diverged, p.runs))}/{len(p.runs)} seeds)")
                for p, q in zip(s.points, points) if q is None]
      if broken:
        label += f"\n  × diverged at {', '.join(broken)}"
      ax.plot(x, y, "-o", color=colour, ms=3.5, lw=1.2, label=label)
      ax.errorbar([p.x for p in shown], [p.y for p in shown], xerr=[p.xerr for p in shown],
                  yerr=[p.yerr for p in shown], fmt="none", ecolor=colour, alpha=0.35, lw=0.8)
      if s.selected is not None:
        best = points[s.points.index(s.selected)]
        edge = s.edge.startswith("yes")
        ax.plot(best.x, best.y, "*", ms=14, mfc=colour, mec="red" if edge else "black",
                mew=1.8 if edge else 0.8, zorder=5)
        candidates[index].insert(selected_labels, (best.x, best.y, _value(s.selected.value)
                                                   + (" (grid edge)" if edge else ""), colour))
        selected_labels += 1
      ends = [(p, q) for p, q in zip(s.points, points) if q is not None and p is not s.selected]
      for p, q in ends[:1] + ends[-1:] if len(ends) > 1 else ends:
        candidates[index].append((q.x, q.y, _value(p.value), colour))
    for method, runs in singles[family]:
      point = _mean_point(runs)
      if point is None:
        ax.plot([], [], "x", color="black", label=f"{method}: {diverged_note(runs)}, not drawn")
        continue
      shown_here.append(point)
      ax.plot(point.x, point.y, "o", mfc="none", mec="black", ms=6, zorder=4)
      candidates[index].insert(selected_labels, (point.x, point.y, method, "black"))
      selected_labels += 1
    # Each panel spans its own points and the front, not the other panels' points.
    _limits(ax, [p.x for p in shown_here] + [x for x, _ in front],
            [p.y for p in shown_here] + [y for _, y in front])
    if front:
      ax.plot(*zip(*front), color="grey", lw=6, alpha=0.3, solid_capstyle="round", zorder=0,
              scalex=False, scaley=False)
    ax.set_xlabel(f"final accuracy on the last task ({results['tasks'][-1]})", fontsize=8)
    ax.set_title(family, fontsize=10)
    ax.grid(alpha=0.25, lw=0.5)
    ax.tick_params(labelsize=7)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(-0.02, -0.13), frameon=False)
  selected_on = sorted({s.selected_on for s in selections})
  handles = [Line2D([], [], color="grey", lw=6, alpha=0.3, label="Pareto front (all methods)"),
             Line2D([], [], ls="none", marker="*", ms=11, mfc="white", mec="black",
                    label=f"selected on {' / '.join(selected_on) or 'validation'}"),
             Line2D([], [], ls="none", marker="*", ms=11, mfc="white", mec="red", mew=1.8,
                    label="selected at a grid edge"),
             Line2D([], [], ls="none", marker="o", ms=6, mfc="none", mec="black",
                    label="method at its own point")]
  fig.legend(handles=handles, loc="outside lower center", ncol=4, fontsize=7.5, frameon=False)
  fig.suptitle(f"{experiment_label(results)}: stability-plasticity frontier "
               "(mean over seeds, bars: std)", fontsize=10)
  axes[0][0].set_ylabel("final accuracy on the earlier tasks (mean)", fontsize=8)
  fig.canvas.draw()  # lays the figure out, so labels can be placed where they fit
  fig.set_layout_engine("none")
  for index, ax in enumerate(axes[0]):
    occupied = []
    for line in ax.get_lines():
      xy = line.get_xydata()
      if line.get_marker() not in ("None", "", None) and len(xy):
        for point in ax.transData.transform(xy[np.isfinite(xy).all(1)]):
          occupied.append(_box(point, 10 if line.get_marker() == "*" else 4))
    _place_labels(fig, ax, candidates[index], occupied)
  _save(fig, path, dpi=90, layout=False)


def _limits(ax, xs, ys) -> None:
  """Fits a panel's axes to its points, with a margin and at least 0.1 across."""
  for values, setter in ((xs, ax.set_xlim), (ys, ax.set_ylim)):
    if values:
      low, high = min(values), max(values)
      pad = max(0.08 * (high - low), (0.1 - (high - low)) / 2, 0.02)
      setter(low - pad, high + pad)


def _box(centre, radius):
  from matplotlib.transforms import Bbox

  return Bbox.from_extents(centre[0] - radius, centre[1] - radius, centre[0] + radius,
                           centre[1] + radius)


def plot_classp_diagnostics(results: dict[str, Any], path: Path) -> bool:
  """CLASSP's fraction of weights updated per step and capacity used, over training.

  Returns:
    False (and draws nothing) when no run that did not diverge logged them.
  """
  groups = {m: finished(runs) for m, runs in runs_by_method(results["runs"]).items()
            if not is_variant(runs[0])}
  groups = {m: runs for m, runs in groups.items()
            if runs and runs[0]["logs"]["capacity_used"]
            and runs[0]["logs"]["capacity_used"][0] is not None}
  if not groups:
    return False
  plt = _pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
  num_tasks = len(results["tasks"])
  # Seeds stopped at a target train for different numbers of steps: each is read at the
  # same points of the tasks-trained axis (`tasks_trained`) and averaged there.
  grid = np.linspace(0, num_tasks, 100 * num_tasks + 1)
  for method, runs in groups.items():
    for ax, name in zip(axes, ("update_fraction", "capacity_used")):
      curves = [np.interp(grid, tasks_trained(r, r["logs"]["step"], r["logs"]["task"]),
                          r["logs"][name]) for r in runs]
      ax.plot(grid, np.mean(curves, axis=0), label=method, lw=1)
  for boundary in range(1, num_tasks):
    for ax in axes:
      ax.axvline(boundary, color="grey", lw=0.5, ls="--")
  axes[0].set_title("fraction of weights updated in a step", fontsize=9)
  axes[1].set_title("capacity used: fraction of weights ever updated", fontsize=9)
  for ax in axes:
    ax.set_xlabel("tasks trained")
    ax.set_ylim(-0.02, 1.02)
  axes[1].legend(fontsize=7)
  _save(fig, path, dpi=80)
  return True


def _shown_command(options: dict[str, Any]) -> str:
  """A run folder's command as a reader can repeat it: the data folder as ROOT, and an
  absolute output folder as RUNS/ and its last two parts (a machine's paths say nothing)."""
  command = options.get("command")
  if command is None:
    return "(not recorded)"
  words = shlex.split(command)
  for i, word in enumerate(words[:-1]):
    if word == "--data-dir":
      words[i + 1] = "ROOT"
    elif word == "--out" and Path(words[i + 1]).is_absolute():
      out = Path(words[i + 1])
      words[i + 1] = f"RUNS/{out.parent.name}/{out.name}"
  return shlex.join(words)


def _settings(results: dict[str, Any]) -> list[str]:
  """The tasks, the devices, how each run folder was made, and each method's settings."""
  lines = [f"Tasks: {', '.join(results['tasks'])}; {results['devices']} x "
           f"{results['platform']} device(s)."
           + (f" Scenario: {results['scenario']}-incremental." if results.get("scenario") else ""),
           "", f"<details><summary>The commands ({len(results['sources'])} run folder(s))"
           "</summary>", ""]
  for source in results["sources"]:
    loop = source["loop"]
    validation = loop.get("validation_fraction")
    command = _shown_command(source["options"])
    lines.append(f"- `{command}`: batch "
                 f"{loop['batch_size']}, epochs {loop['epochs']}, loss target "
                 f"{loop.get('loss_target')}, accuracy target {loop.get('accuracy_target')} "
                 f"(at most {loop.get('max_epochs')} epochs)"
                 + (f", validation fraction {validation}" if validation else ""))
  lines += ["", "</details>"]
  recorded = {r["method"]: r for r in results["runs"] if r.get("settings")}
  if recorded:
    lines += ["", "<details><summary>Each method's settings (settings id: the configuration "
              "without the seed)</summary>", ""]
    first_of = {}  # base method -> its first point's name and flattened settings
    for method, run in recorded.items():
      spec = run["settings"].get("method", run["settings"])
      flat = flatten_settings(spec)
      base = run.get("base_method") or method
      if base not in first_of:
        first_of[base] = method, flat
        lines.append(f"- {method} `{run.get('settings_id')}`: `{json.dumps(spec)}`")
        continue
      # Another point of a swept method: only what differs (its knob), not all of it again.
      first, first_flat = first_of[base]
      changed = {key: flat.get(key) for key in differing_keys(first_flat, flat) if key != "name"}
      lines.append(f"- {method} `{run.get('settings_id')}`: as {first}, but "
                   f"`{json.dumps(changed)}`")
    lines += ["", "</details>"]
  return lines


def _chases_targets(results: dict[str, Any]) -> bool:
  """Whether any run folder stopped tasks at loss or accuracy targets."""
  def given(value):
    return any(v is not None for v in value) if isinstance(value, list) else value is not None
  return any(given(s["loop"].get("loss_target")) or given(s["loop"].get("accuracy_target"))
             for s in results["sources"])


def _metric_tables(label: str, runs: list[dict[str, Any]], tasks: list[str],
                   reference: str) -> list[str]:
  """The held-out test table of ``runs``, and ``reference``'s ACC against each, by seed."""
  parts = ["Mean ± std over seeds. *old tasks*: final accuracy on the earlier tasks; *last "
           "task*: on the last one. State: optimizer and regularizer memory as a multiple of "
           "the fp32 parameters. Time: wall seconds per run, with compilation and evaluation "
           "(rough on a shared machine). A method with diverged seeds shows no metrics; its "
           "other seeds follow on their own row.", "",
           markdown_table(report_header(runs), report_rows(runs, tasks=tasks)), ""]
  paired = paired_rows(runs)
  if paired:
    parts += [f"{label}: {reference}'s ACC minus each method's, paired by seed (wins: seeds "
              f"where {REFERENCE_METHOD} is higher; a seed where either diverged is skipped):",
              "", markdown_table(PAIRED_HEADER, paired), ""]
  return parts


def _stopping_and_protocol(label: str, results: dict[str, Any], runs: list[dict[str, Any]],
                           tasks: list[str]) -> list[str]:
  """Where each task stopped (under targets), and the paper's own protocol, if recorded."""
  parts = []
  if _chases_targets(results) and all("epoch_loss" in r for r in runs):
    parts += [f"### {label}: where each task stopped", "",
              "Epochs, and the last epoch's mean training loss and accuracy (training split, "
              "dropout on, as the stopping rule measures them), mean ± std over seeds. With an "
              "accuracy target, the loss is the method's own loss target.", "",
              markdown_table(["method", *tasks], stopping_rows(runs)), ""]
  if any("paper_protocol" in r for r in finished(runs)):
    protocol = [r for r in runs if "paper_protocol" in r or is_diverged(r)]
    parts += [f"### {label}: paper protocol, training-split accuracy, dropout on", "",
              "As the paper scored it (not held-out data); for comparison with the published "
              "numbers only.", "",
              markdown_table(report_header(protocol, "paper_protocol"),
                             report_rows(protocol, "paper_protocol")), ""]
  return parts


def _plots(label: str, prefix: str, results: dict[str, Any], runs: list[dict[str, Any]],
           out: Path) -> tuple[list[str], list[Path]]:
  """Accuracy matrices, accuracy over training and CLASSP's diagnostics of ``runs``."""
  shown = {**results, "runs": runs}
  parts, plots = [], []
  for suffix, title, draw in (
      ("accuracy_matrices", "Accuracy matrices (mean over seeds)", plot_accuracy_matrices),
      ("accuracy_over_training", "Mean test accuracy on the tasks seen so far, over "
       "training", plot_seen_tasks_accuracy)):
    plots.append(out / f"{prefix}_{suffix}.png")
    draw(shown, plots[-1])
    parts += [f"![{label}: {title}]({plots[-1].name})", ""]
  diagnostics = out / f"{prefix}_classp_diagnostics.png"
  if plot_classp_diagnostics(shown, diagnostics):
    plots.append(diagnostics)
    parts += [f"![{label}: CLASSP update fraction and capacity used]({diagnostics.name})", ""]
  return parts, plots


def _tuned_section(label: str, selections: list[Selection], tasks: list[str]) -> list[str]:
  """Each method at its selected point; CLASSP's ablations; sparsity at matched plasticity."""
  tuned = tuned_runs(selections)
  parts = [f"### {label}: each method at its selected point", "",
           f"Each method's knobs are swept one at a time around a centre; its point is the "
           f"best of all its curves: {selection_sentence(selections)}. A point with a diverged "
           "seed is never selected. *grid edge*: the selected value is the smallest (low) or "
           "largest (high) of its grid, so the grid may be too narrow; *flat*: no point "
           f"scored {FLAT_MARGIN} above the untrained model's accuracy, so the selected value "
           "is no better than any other. Test metrics are over every seed the point was run "
           "with.", "",
           markdown_table(SELECTED_HEADER, selected_rows(best_per_method(selections))), ""]
  grow, stuck = next_points(selections)
  if grow or stuck:
    parts += ["Exceptions to the rule that a selected point is interior to its grid:", "",
              *[f"- {line}." for line in stuck],
              *[f"- `{name}`, the next point past an edge or one missing seeds, was not "
                "run (the grid's growth stopped before it)." for name in grow], ""]
  if any(s.edge == "one point" for s in selections):
    parts[2] += (" *one point*: the method ran here at one point only, chosen on another "
                 "frontier's validation ACC (see the commands above, and the section of the "
                 "same study with `--subsample`), so its grid edge is that frontier's.")
  unmatched = unmatched_rows(selections)
  if unmatched:
    parts += [f"{len(unmatched)} method(s) reached the training target at no point of their "
              "grids within the epoch cap, and are not in the matched tables below. Each is "
              "shown at the point whose training accuracy (dropout on, the last epoch's mean "
              "on the tasks with a target) came closest:", "",
              markdown_table(UNMATCHED_HEADER, unmatched), ""]
  if tuned:
    parts += _metric_tables(label, tuned, tasks, f"tuned {REFERENCE_METHOD}")
  ablations = ablation_rows(tuned)
  if ablations:
    parts += [f"### {label}: CLASSP's ablations, each at its selected point", "",
              "Each variant's ACC minus its reference's, paired by seed (*variant wins*: seeds "
              "where the variant's ACC is higher).", "",
              markdown_table(ABLATION_HEADER, ablations), ""]
  matched = matched_plasticity_rows(selections)
  if matched:
    parts += [f"### {label}: sparse updates against a lower learning rate, at matched "
              "plasticity", "",
              "Does updating fewer weights forget less than learning more slowly? "
              "*plasticity*: the mean accuracy on each task right after training it; "
              "*forgetting*: the mean drop from each earlier task's best accuracy. Each "
              "threshold point is compared with threshold-free CLASSP's learning-rate curve, "
              "interpolated to the same plasticity (a negative difference means the sparser "
              "update forgot less than learning more slowly), and with threshold 0 at the "
              "same learning rate.", "", markdown_table(MATCHED_HEADER, matched), ""]
  return parts


def _frontier_section(label: str, prefix: str, results: dict[str, Any],
                      selections: list[Selection], out: Path) -> tuple[list[str], Path]:
  """The frontier plot, and every curve's selected point and every point, folded."""
  path = out / f"{prefix}_frontier.png"
  plot_frontier(results, path, selections)
  several = len(selections) > len(best_per_method(selections))
  return [f"### {label}: stability-plasticity frontier", "", f"![{label}: frontier]({path.name})",
          "", *(["<details><summary>The selected point of every curve</summary>", "",
                 markdown_table(SELECTED_HEADER, selected_rows(selections)), "", "</details>",
                 ""] if several else []),
          "<details><summary>Every frontier point</summary>", "",
          markdown_table(FRONTIER_HEADER, frontier_rows(selections)), "", "</details>", ""], path


def cpu_hours(runs: list[dict[str, Any]]) -> str:
  """The CPU hours of the runs that recorded them (``cpu_time_s``; older results did not),
  with how many did when not all did."""
  recorded = [r["cpu_time_s"] for r in runs if r.get("cpu_time_s") is not None]
  if not recorded:
    return MISSING
  hours = f"{sum(recorded) / 3600:.2f}"
  return hours if len(recorded) == len(runs) else f"{hours} ({len(recorded)} runs)"


def time_rows(runs: list[dict[str, Any]]) -> list[list[str]]:
  """Per method (a frontier point counts towards its base method): its runs, their wall
  and CPU time in all, and the mean wall time per run."""
  groups = defaultdict(list)
  for run in runs:
    groups[run.get("base_method") or run["method"]].append(run)
  rows = []
  for method, group in sorted(groups.items(), key=lambda item: _method_order(item[0])):
    wall = [r.get("wall_time_s") or 0.0 for r in group]
    rows.append([method, str(len(group)), f"{sum(wall) / 3600:.2f}", cpu_hours(group),
                 f"{np.mean(wall):.0f}"])
  return rows


TIME_HEADER = ["method", "runs", "wall hours in all", "CPU hours in all", "seconds per run"]


def _fixed_point_cell(runs: list[dict[str, Any]]) -> str:
  """``mean ± std (seeds)`` of runs at a point not selected (the paper's), and, for those
  that missed their training targets, that they did and what they reached: their ACC is
  not accuracy-matched."""
  cell = f"{mean_std(r['acc'] for r in runs)} ({len(runs)})"
  missed = [r for r in runs if not met_targets(r)]
  if missed:
    cell += (f"; target missed ({len(missed)}/{len(runs)} seeds, reached "
             f"{mean_std(map(target_accuracy, missed))})")
  return cell


def headline_rows(experiments: list[dict[str, Any]],
                  selections: list[list[Selection]]) -> tuple[list[str], list[list[str]]]:
  """Each method's test ACC at its selected point (`best_per_method`), study by study, and
  CLASSP at the paper's point: the report's first table.

  A cell is ``mean ± std (seeds)``; a method that never reached an accuracy-matched
  study's training target reads ``target missed``, with the training accuracy it reached
  (the paper's point, which is not selected, says so after its ACC).

  Args:
    experiments: merged results (`load_results`).
    selections: each one's `select_points`.

  Returns:
    The header (``method`` and one column per study with frontier runs) and the rows.
  """
  columns, cells = [], defaultdict(dict)
  paper = "classp at the paper's point"
  for results, study in zip(experiments, selections):
    if not study:
      continue
    column = experiment_label(results)
    columns.append(column)
    for s in best_per_method(study):
      if s.selected is not None:
        runs = s.selected.runs
        cells[s.method][column] = f"{mean_std(r['acc'] for r in runs)} ({len(runs)})"
      elif s.closest is not None:
        cells[s.method][column] = (f"target missed (reached "
                                   f"{mean_std(map(target_accuracy, s.closest.runs))})")
      else:
        cells[s.method][column] = "every point diverged"
    named = [r for r in results["runs"] if r["method"] == REFERENCE_METHOD and not is_variant(r)]
    if named:
      cells[paper][column] = diverged_note(named) or _fixed_point_cell(named)
  order = sorted((m for m in cells if m != paper), key=_method_order)
  rows = [[m, *(cells[m].get(c, MISSING) for c in columns)]
          for m in ([paper] if paper in cells else []) + order]
  return ["method", *columns], rows


PAPER_BASELINES = ("ewc", "sgd", "adam", "adagrad")  # what the paper compares CLASSP with


def claim_rows(experiments: list[dict[str, Any]],
               selections: list[list[Selection]]) -> tuple[list[str], list[list[str]]]:
  """The tuned CLASSP's ACC minus each of `PAPER_BASELINES`' (each at its selected point),
  paired by seed, study by study: the evidence for the paper's accuracy claim.

  A cell is ``mean ± std (wins/seeds)``; ``—`` where either method has no selected point.
  """
  columns, rows = [], {b: [b] for b in PAPER_BASELINES}
  for results, study in zip(experiments, selections):
    tuned = runs_by_method(tuned_runs(study))
    if REFERENCE_METHOD not in tuned:
      continue
    columns.append(experiment_label(results))
    for baseline in PAPER_BASELINES:
      differences, _ = paired_differences(tuned[REFERENCE_METHOD], tuned.get(baseline, []))
      rows[baseline].append(
          f"{mean_std(differences)} ({sum(d > 0 for d in differences)}/{len(differences)})"
          if differences else MISSING)
  return ["CLASSP (tuned) minus", *columns], list(rows.values()) if columns else []


def _matrices_details(groups: Iterable[tuple[str, list[dict[str, Any]]]],
                      tasks: list[str]) -> list[str]:
  """The accuracy matrices of ``(name, runs)`` groups, each averaged over its own runs."""
  parts = ["<details><summary>Accuracy matrices R[i][j], mean ± std over seeds</summary>", ""]
  for method, group in groups:
    parts += [f"{_matrix_heading(method, group, tasks)}:", ""]
    if finished(group):
      parts += ["```", accuracy_matrix_table(finished(group), tasks), "```", ""]
  return parts + ["</details>", ""]


def experiment_report(results: dict[str, Any], out: Path,
                      selections: list[Selection]) -> tuple[str, list[Path]]:
  """The markdown section of one experiment, and the plots it writes to ``out``.

  With frontier runs, each method at its selected point leads, with the plots; the
  named methods (e.g. the paper's points) follow in their own tables. Without, the
  named methods lead, with the plots.

  Args:
    results: merged results (`load_results`).
    out: the report folder.
    selections: its frontier curves' selections (`select_points`).
  """
  from classp_jax.experiments.frontier import variant_name

  label, tasks = experiment_label(results), results["tasks"]
  prefix = "_".join([results["experiment"], *filter(None, [results.get("scenario")])]
                    + ([f"subsample{_subsample(results).replace(',', '-')}"]
                       if _subsample(results) else []))
  named = [r for r in results["runs"] if not is_variant(r)]
  tuned = tuned_runs(selections)
  hours = sum(r.get("wall_time_s") or 0 for r in results["runs"]) / 3600
  parts = [f"## {label}", "", results["description"], "", *_settings(results), "",
           f"{len(results['runs'])} runs, {hours:.2f} hours of wall time in all; CPU hours "
           f"(all threads): {cpu_hours(results['runs'])}.", "",
           "<details><summary>Wall time per method</summary>", "",
           markdown_table(TIME_HEADER, time_rows(results["runs"])), "", "</details>", ""]
  plots = []
  if selections:
    parts += _tuned_section(label, selections, tasks)
    if tuned:
      shown, drawn = _plots(label, prefix, results, tuned, out)
      parts, plots = parts + shown, plots + drawn
    frontier, path = _frontier_section(label, prefix, results, selections, out)
    parts, plots = parts + frontier, plots + [path]
  if named:
    parts += [f"### {label}: "
              + ("the named methods at their own points" if selections else
                 "held-out test accuracy (eval mode, dropout off)"), "",
              *_metric_tables(label, named, tasks, REFERENCE_METHOD),
              *_stopping_and_protocol(label, results, named, tasks)]
    if not tuned:
      shown, drawn = _plots(label, prefix, results, named, out)
      parts, plots = parts + shown, plots + drawn
  # Each selected point under its variant name: a method's tuned runs and its runs at its own
  # point (e.g. the paper's) share the method's name, and are not one group.
  selected = [(variant_name(s.method, s.knob, s.selected.value), s.selected.runs)
              for s in best_per_method(selections) if s.selected]
  parts += _matrices_details([*selected, *runs_by_method(named).items()], tasks)
  return "\n".join(parts), plots


def write_report(paths: Iterable[str | os.PathLike], out: str | os.PathLike,
                 notes: str | os.PathLike | None = None, *,
                 select: str | None = None) -> list[Path]:
  """Writes ``report.md`` and its PNG plots to ``out``.

  Args:
    paths: run folders (or their results.json files).
    out: the report folder.
    notes: a markdown file put after the title (e.g. hand-written conclusions).
    select: what frontier points are selected on: ``validation``, ``test``,
      ``first-tasks:K`` or None (validation where recorded, else test); see
      `select_points`.

  Returns:
    The files written.

  Raises:
    ValueError: a bad ``select``, or results that cannot be read or merged
      (`load_results`); the message names the file.
  """
  parse_select(select)
  experiments = load_results(paths)
  out = Path(out)
  out.mkdir(parents=True, exist_ok=True)
  selections = [select_points(results["runs"], select) for results in experiments]
  sections, written = [], []
  for results, study in zip(experiments, selections):
    section, plots = experiment_report(results, out, study)
    sections.append(section)
    written += plots
  header, rows = headline_rows(experiments, selections)
  every = [s for study in selections for s in study]
  headline = ("" if not rows else
              "## Headline: test ACC of each method at its selected point\n\n"
              f"Mean ± std over seeds (their number in brackets); {selection_sentence(every)}. "
              "Each study's section below has the full tables.\n\n"
              + markdown_table(header, rows) + "\n\n")
  header, rows = claim_rows(experiments, selections)
  if rows:
    headline += ("The tuned CLASSP's test ACC minus each baseline the paper compares it with, "
                 "each at its selected point, paired by seed (wins: seeds where CLASSP is "
                 "higher):\n\n" + markdown_table(header, rows) + "\n\n")
  preamble = Path(notes).read_text().strip() + "\n\n" if notes else ""
  report = out / "report.md"
  report.write_text("# CLASSP-JAX results\n\n" + headline + preamble + "\n".join(sections))
  return [report, *written]
