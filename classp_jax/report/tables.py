"""The report's tables: per-method metrics, paired differences, selected points, time.

Each table is a header and rows of strings, shown as plain text (`format_table`)
or markdown (`markdown_table`). A method with diverged seeds shows
``diverged (k/n seeds)``, never accuracies; the other seeds' numbers appear only
on a row that says so.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterable

import numpy as np

from classp_jax.results import (
  METRICS,
  REFERENCE,
  Selection,
  best_per_method,
  diverged_note,
  finished,
  has_validation,
  is_diverged,
  met_targets,
  method_info,
  method_order,
  runs_by_method,
  shown_value,
  subsample,
  target_accuracy,
)

MISSING = "—"
# A headline cell of a method that a study did not run (not a lost number).
NOT_RUN = "not run"

# The experiments' names as a reader says them (others: underscores as spaces).
STUDY_NAMES = {
  "split_mnist": "split MNIST",
  "permuted_mnist": "permuted MNIST",
  "mnist_fashion": "MNIST → Fashion",
  "fpb_imdb": "FPB → IMDB",
  "fpb_imdb_cpu": "FPB → IMDB (small)",
}


def study_name(results: dict[str, Any]) -> str:
  """A short, readable name of a study for the headline's columns: the experiment, its
  scenario and its ``--subsample``.

  Examples:
    >>> study_name({"experiment": "split_mnist", "scenario": "task"})
    'split MNIST (task)'
    >>> study_name({"experiment": "mnist_fashion", "scenario": "domain",
    ...             "options": {"subsample": "3000"}})
    'MNIST → Fashion (domain, 3000 per task)'
  """
  name = STUDY_NAMES.get(results["experiment"], results["experiment"].replace("_", " "))
  details = [results["scenario"]] if results.get("scenario") else []
  if subsample(results):
    details.append(f"{subsample(results).replace(',', '/')} per task")
  return name + (f" ({', '.join(details)})" if details else "")


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
      into = (
        step - sum(before[:task])
        if isinstance(step, int) and isinstance(task, int) and len(before) >= task
        else None
      )
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
    details.append(
      f"seed{plural} {', '.join(str(s) for s, _, _ in seeds)} in {shown}, step{plural} {counted}"
    )
  return "; ".join(details)


def accuracy_matrix_table(
  runs: list[dict[str, Any]], tasks: list[str], key="accuracy_matrix", table=format_table
) -> str:
  """The mean (± std over seeds) accuracy matrix: rows = after task i, columns = task j;
  ``table`` lays it out (e.g. `classp_jax.report.summary.fit_table`)."""
  matrices = np.array(
    [r[key] if key == "accuracy_matrix" else r[key]["accuracy_matrix"] for r in runs]
  )
  rows = [
    [f"after {tasks[i]}", *(mean_std(matrices[:, i, j]) for j in range(len(tasks)))]
    for i in range(len(tasks))
  ]
  return table(["", *tasks], rows)


def matrix_heading(method: str, runs: list[dict[str, Any]], tasks: list[str]) -> str:
  """What a method's accuracy matrix is averaged over, naming any diverged seeds."""
  ok, note = finished(runs), diverged_note(runs)
  if not note:
    return f"{method}: test accuracy R[i][j] (mean ± std over {len(runs)} seed(s))"
  if not ok:
    return f"{method}: {note}: {divergence_details(runs, tasks)}"
  return (
    f"{method}: {note}: {divergence_details(runs, tasks)}; test accuracy R[i][j] of the "
    f"{len(ok)} seed(s) that did not diverge"
  )


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


def report_rows(
  runs: list[dict[str, Any]], key: str | None = None, tasks: list[str] | None = None
) -> list[list[str]]:
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
    return [
      f"{group[0]['state_bytes'] / (4 * group[0]['param_count']):.2f}x",
      *([_bytes(group[0].get("buffer_bytes") or 0)] if buffers else []),
      f"{np.mean([r['wall_time_s'] for r in group]):.0f}",
    ]

  def cells(method, group):
    metrics = [r[key] for r in group] if key else group
    old_new = np.array([old_and_new_accuracy(r, key) for r in group])
    row = [
      method,
      str(len(group)),
      *(mean_std(m[name] for m in metrics) for name in names),
      mean_std(old_new[:, 0]),
      mean_std(old_new[:, 1]),
    ]
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
    rows.append(
      [
        method,
        str(len(group)),
        note,
        *[MISSING] * (len(names) + 1),
        *where,
        *memory_and_time(group),
      ]
    )
    if ok:
      rows.append(cells(f"{method}: the {len(ok)} seed(s) that did not diverge", ok))
  return rows


def report_header(runs: list[dict[str, Any]], key: str | None = None) -> list[str]:
  """The columns of `report_rows`."""
  header = [
    "method",
    "seeds",
    *(m.upper() if m != "forgetting" else m for m in _metric_names(runs, key)),
    "old tasks",
    "last task",
  ]
  if key is None:
    header += [
      "epochs per task",
      "state / fp32 params",
      *(["replay buffer"] if any(r.get("buffer_bytes") for r in runs) else []),
      "time/run (s)",
    ]
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
      sound = [
        r
        for r in group
        if len(r["epoch_loss"]) > t
        and r["epoch_loss"][t] is not None
        and math.isfinite(r["epoch_loss"][t])
      ]
      if len(sound) < len(group):
        cells.append(f"diverged ({len(group) - len(sound)}/{len(group)} seeds)")
        continue
      cells.append(
        f"{np.mean([r['epochs'][t] for r in sound]):.3g} ep, loss "
        f"{mean_std(r['epoch_loss'][t] for r in sound)}, "
        f"acc {mean_std(r['epoch_accuracy'][t] for r in sound)}"
      )
    rows.append([method, *cells])
  return rows


def paired_differences(
  first: list[dict[str, Any]], second: list[dict[str, Any]]
) -> tuple[list[float], int]:
  """``first``'s ACC minus ``second``'s, seed by seed over the seeds both have, and how many
  of those seeds were skipped because either run diverged."""
  by_seed = {r["seed"]: r for r in second}
  both = [(r, by_seed[r["seed"]]) for r in first if r["seed"] in by_seed]
  differences = [a["acc"] - b["acc"] for a, b in both if not (is_diverged(a) or is_diverged(b))]
  return differences, len(both) - len(differences)


def paired_cells(differences: list[float], skipped: int) -> list[str]:
  """Seeds, mean ± std of the differences, how many are positive, and the skipped seeds."""
  n = len(differences)
  return [str(n), mean_std(differences), f"{sum(d > 0 for d in differences)}/{n}", str(skipped)]


def reference_method(runs: Iterable[dict[str, Any]]) -> str | None:
  """The method the paper's claims are about: the one whose recorded roles include
  `REFERENCE` (the first by name if several do), or None.

  A frontier point counts as its base method.
  """
  names = sorted(
    {r.get("base_method") or r["method"] for r in runs if REFERENCE in method_info(r).roles}
  )
  return names[0] if names else None


def paired_rows(runs: list[dict[str, Any]], reference: str | None = None) -> list[list[str]]:
  """``reference``'s ACC minus each other method's, paired by seed, and how often it wins.

  A seed where either method diverged is skipped, and counted in the last column.

  Args:
    runs: the runs.
    reference: the method compared with the others (default: `reference_method`).
  """
  by_method = runs_by_method(runs)
  reference = reference or reference_method(runs)
  base = by_method.get(reference, [])
  rows = []
  for method, group in by_method.items():
    differences, skipped = paired_differences(base, group)
    if method != reference and (differences or skipped):
      rows.append([method, *paired_cells(differences, skipped)])
  return rows


PAIRED_HEADER = ["method", "seeds", "ACC difference", "wins", "seeds skipped (diverged)"]


def selection_sentence(selections: list[Selection]) -> str:
  """What the selected points were chosen on, in words (curves that selected nothing, every
  point diverged, do not count)."""
  used = sorted(
    {s.selected_on for s in selections if s.selected or s.closest}
    or {s.selected_on for s in selections}
  )
  if used == ["validation"]:
    return (
      "best points selected on validation ACC (held out from the training data); "
      "test ACC reported at that point"
    )
  if used == ["test"]:
    return (
      "best points selected on TEST ACC (no validation split recorded): optimistic, "
      "chosen on the data they are scored on"
    )
  if len(used) == 1:
    return (
      f"best points selected on {used[0]} accuracy (held out from the training data); "
      "test ACC on the full stream reported at that point"
    )
  return (
    "best points selected per row on "
    + " or ".join(used)
    + " (see 'selected on'); test ACC reported at that point"
  )


SELECTED_HEADER = [
  "method",
  "knob",
  "selected value",
  "selected on",
  "validation ACC",
  "test ACC",
  "old tasks",
  "last task",
  "seeds",
  "grid edge",
]


def _validation_acc(runs: list[dict[str, Any]]) -> str:
  if not all(map(has_validation, runs)):
    return MISSING
  return mean_std(float(np.mean(r["validation_accuracy_matrix"][-1])) for r in runs)


def selected_rows(selections: list[Selection]) -> list[list[str]]:
  """The rows of `SELECTED_HEADER`: each curve's selected point, test accuracy at it."""
  rows = []
  for s in selections:
    if s.selected is None:
      why = (
        "every point diverged"
        if s.closest is None
        else f"no point reached the training target (closest: {shown_value(s.closest.value)})"
      )
      rows.append(
        [s.method, s.knob, f"none: {why}", s.selected_on, *[MISSING] * 4, MISSING, _edge(s)]
      )
      continue
    runs = s.selected.runs
    old_new = np.array([old_and_new_accuracy(r) for r in runs])
    rows.append(
      [
        s.method,
        s.knob,
        shown_value(s.selected.value),
        s.selected_on,
        _validation_acc(runs),
        mean_std(r["acc"] for r in runs),
        mean_std(old_new[:, 0]),
        mean_std(old_new[:, 1]),
        str(len(runs)),
        _edge(s),
      ]
    )
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
      rows.append(
        [
          s.method,
          s.knob,
          shown_value(s.closest.value),
          str(len(runs)),
          mean_std(map(target_accuracy, runs)),
          f"{np.mean([sum(r['epochs']) for r in runs]):.3g}",
          mean_std(r["acc"] for r in runs),
          _edge(s),
        ]
      )
  return rows


UNMATCHED_HEADER = [
  "method",
  "knob",
  "closest value",
  "seeds",
  "training accuracy reached",
  "epochs in all",
  "test ACC (not matched)",
  "grid edge",
]


def frontier_rows(selections: list[Selection]) -> list[list[str]]:
  """Per frontier point, over seeds: old-task, last-task accuracy, validation and test ACC."""
  rows = []
  for s in selections:
    for point in s.points:
      note = diverged_note(point.runs)
      ok = finished(point.runs)
      old_new = np.array([old_and_new_accuracy(r) for r in ok]) if ok else np.zeros((0, 2))
      mark = (
        "selected" + (f" (grid edge: {s.edge[4:]})" if s.edge.startswith("yes") else "")
        if point is s.selected
        else "closest to the training target"
        if point is s.closest
        else ""
      )
      missed = sum(not met_targets(r) for r in ok)
      if missed:
        mark = ", ".join(
          filter(None, [mark, f"missed the training target ({missed}/{len(ok)} seeds)"])
        )
      numbers = (
        [note, MISSING, MISSING, MISSING]
        if note
        else [
          mean_std(old_new[:, 0]),
          mean_std(old_new[:, 1]),
          _validation_acc(ok),
          mean_std(r["acc"] for r in ok),
        ]
      )
      rows.append(
        [s.method, s.knob, shown_value(point.value), str(len(point.runs)), *numbers, mark]
      )
  return rows


FRONTIER_HEADER = [
  "method",
  "knob",
  "value",
  "seeds",
  "old tasks",
  "last task",
  "validation ACC",
  "test ACC",
  "selected",
]


def duration(seconds: float) -> str:
  """A time span in the unit a reader expects: seconds under a minute, minutes under an
  hour, hours above.

  Examples:
    >>> duration(48), duration(90), duration(1800), duration(9000)
    ('48 s', '1.5 min', '30 min', '2.50 h')
  """
  if seconds < 60:
    return f"{seconds:.0f} s"
  if seconds < 3600:
    minutes = seconds / 60
    return f"{minutes:.1f} min" if minutes < 10 else f"{minutes:.0f} min"
  return f"{seconds / 3600:.2f} h"


def cpu_time(runs: list[dict[str, Any]]) -> str:
  """The CPU time (`duration`) of the runs that recorded it (``cpu_time_s``; older results
  did not), with how many did when not all did."""
  recorded = [r["cpu_time_s"] for r in runs if r.get("cpu_time_s") is not None]
  if not recorded:
    return MISSING
  spent = duration(sum(recorded))
  return spent if len(recorded) == len(runs) else f"{spent} ({len(recorded)} runs)"


def time_rows(runs: list[dict[str, Any]]) -> list[list[str]]:
  """Per method (a frontier point counts towards its base method), in `method_order`: its
  runs, their wall and CPU time in all, and the mean wall time per run."""
  groups = defaultdict(list)
  for run in runs:
    groups[run.get("base_method") or run["method"]].append(run)
  rows = []
  for method, group in sorted(
    groups.items(), key=lambda item: method_order(item[0], method_info(item[1][0]))
  ):
    wall = [r.get("wall_time_s") or 0.0 for r in group]
    rows.append(
      [method, str(len(group)), duration(sum(wall)), cpu_time(group), f"{np.mean(wall):.0f}"]
    )
  return rows


TIME_HEADER = ["method", "runs", "wall time in all", "CPU time in all", "seconds per run"]
