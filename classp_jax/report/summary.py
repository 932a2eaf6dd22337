"""The terminal summary of a run folder's results (``classp-jax run`` prints it), and
``classp-jax select``'s table; every table fits `TERMINAL_WIDTH` columns (`fit_table`)."""

from __future__ import annotations

import math
import textwrap
from typing import Any

import numpy as np

from classp_jax.report.plasticity import (
  PLASTICITY_HEADER,
  has_plasticity,
  plasticity_caption,
  plasticity_rows,
)
from classp_jax.report.tables import (
  SELECTED_HEADER,
  accuracy_matrix_table,
  matrix_heading,
  old_and_new_accuracy,
  report_header,
  report_rows,
  selected_rows,
  selection_sentence,
)
from classp_jax.results import (
  Selection,
  best_per_method,
  experiment_label,
  finished,
  runs_by_method,
  select_points,
  shown_value,
)


def print_summary(results: dict[str, Any], select: str | None = None) -> None:
  """Prints each method's accuracy matrix, the metrics table, the plasticity metrics of a
  stream of several tasks, and any frontier's selected points.

  Args:
    results: a results dict.
    select: how frontier points are selected (see `classp_jax.results.parse_select`).
  """
  tasks, label = results["tasks"], experiment_label(results)
  for method, runs in runs_by_method(results["runs"]).items():
    print()
    print(textwrap.fill(f"{label}, {matrix_heading(method, runs, tasks)}", TERMINAL_WIDTH))
    if finished(runs):
      print(accuracy_matrix_table(finished(runs), tasks, table=fit_table))
  print(f"\n{label}: held-out test metrics")  # a name and scenario: short
  print(fit_table(report_header(results["runs"]), report_rows(results["runs"], tasks=tasks)))
  guide = reading_guide(results)
  if guide:
    print()
  for line in guide:
    print(textwrap.fill(line, TERMINAL_WIDTH, subsequent_indent="  "))
  if has_plasticity(results["runs"]):
    print()
    print(
      textwrap.fill(f"{label}: plasticity ({plasticity_caption(results['runs'])})", TERMINAL_WIDTH)
    )
    print(fit_table(PLASTICITY_HEADER, plasticity_rows(results["runs"])))
  selections = select_points(results["runs"], select)
  if selections:
    print()
    print(textwrap.fill(f"{label}: {selection_sentence(selections)}", TERMINAL_WIDTH))
    print(fit_table(SELECTED_HEADER, selected_rows(selections)))
  print()
  print(textwrap.fill(next_step(results), TERMINAL_WIDTH, subsequent_indent="  "))


# The columns where continual learners differ: what they kept, what they just learned.
CONTRASTS = ("forgetting", "old tasks", "last task")


def reading_guide(results: dict[str, Any]) -> list[str]:
  """The lines after the metrics table: where the methods differ (`CONTRASTS`: forgetting,
  and the final accuracy on the old tasks against the last one, each method's mean over
  its finished seeds), whether the gaps are within the spread over seeds, and how to read
  the tables. None for a stream of one task.

  Examples:
    >>> runs = [{"method": m, "seed": s, "forgetting": f, "accuracy_matrix": [[0.9, 0.5],
    ...          [0.9 - f, last + s / 100]]}
    ...         for m, f, last in (("sgd", 0.4, 0.95), ("ewc", 0.1, 0.8)) for s in (0, 1)]
    >>> print("\\n".join(reading_guide({"tasks": ["a", "b"], "runs": runs})))
    Where they differ: forgetting 0.100 (ewc) to 0.400 (sgd); old tasks 0.500 (sgd) to 0.800 \
(ewc); last task 0.805 (ewc) to 0.955 (sgd).
    How to read: row i of a matrix is each task's test accuracy after task i; a column falling \
below its diagonal is forgetting; ACC is the last row's mean, split into old tasks and the last.
  """
  if len(results["tasks"]) < 2:
    return []
  means, stds, seeds = {}, {}, 0
  for method, runs in runs_by_method(results["runs"]).items():
    if finished(runs):
      ok, seeds = finished(runs), max(seeds, len(finished(runs)))
      values = np.array([(r["forgetting"], *old_and_new_accuracy(r)) for r in ok], dtype=np.float64)
      means[method] = dict(zip(CONTRASTS, values.mean(axis=0)))
      stds[method] = values.std(axis=0, ddof=1) if len(ok) > 1 else np.zeros(3)
  lines = []
  if len(means) > 1:
    parts = []
    for k, column in enumerate(CONTRASTS):
      values = {m: round(v[column], 3) for m, v in means.items() if math.isfinite(v[column])}
      if not values:
        continue
      low, high = min(values.values()), max(values.values())
      named = lambda x: ", ".join(m for m, v in values.items() if v == x)
      part = (
        f"{column} {high:.3f} for all"
        if low == high
        else (f"{column} {low:.3f} ({named(low)}) to {high:.3f} ({named(high)})")
      )
      if seeds > 1 and high - low <= max(float(stds[m][k]) for m in values):
        part += ", within the std over seeds"
      parts.append(part)
    noise = " With one seed, gaps of a few thousandths are noise: --seeds 0,1,2 adds ± std."
    lines.append(f"Where they differ: {'; '.join(parts)}." + (noise if seeds == 1 else ""))
  return lines + [
    "How to read: row i of a matrix is each task's test accuracy after task i; a column falling "
    "below its diagonal is forgetting; ACC is the last row's mean, split into old tasks and "
    "the last."
  ]


def next_step(results: dict[str, Any]) -> str:
  """The summary's last line: what to try next, from what the results hold.

  Examples:
    >>> next_step({"runs": [{"method": "sgd", "seed": 0}]})[:44]
    'Try next: add --seeds 0,1,2 (mean ± std over'
  """
  seeds = max((len(runs) for runs in runs_by_method(results["runs"]).values()), default=0)
  more_seeds = "--seeds 0,1,2 (mean ± std over seeds)"
  if any(r.get("knob") for r in results["runs"]):
    return (
      "Try next: `classp-jax select` on its --out names each method's selected point, and "
      "`--next-points` the points beyond a grid's edge"
      + (
        f"; run the selected ones with --frontier --methods NAMES {more_seeds}" if seeds < 2 else ""
      )
      + "."
    )
  hints = [
    *([more_seeds] if seeds < 2 else []),
    "--methods classp,sgd,ewc (EWC: a penalty on moving the weights old tasks need)",
    "--frontier (each method's knobs tuned on validation; then `classp-jax select` on its --out)",
  ]
  return "Try next: add " + ", or ".join(hints) + "."


# The widest a terminal table may be: its headers wrap, and columns that still do not fit
# continue in a block below, each led by the first column.
TERMINAL_WIDTH = 100


def fit_table(header: list[str], rows: list[list[str]], width: int = TERMINAL_WIDTH) -> str:
  """`format_table`'s table within ``width`` columns.

  Each header wraps at its words onto lines no wider than its column (its widest cell, or
  its longest word); a cell wider than ``width`` allows wraps too. Columns that still do
  not fit continue in blocks below, each led by the first column (the row's name).

  Examples:
    >>> print(fit_table(["method", "old tasks", "last task"], [["sgd", "0.771", "0.958"]], 20))
    method  old    last
            tasks  task
    ------  -----  -----
    sgd     0.771  0.958
  """
  rows = [[str(c) for c in row] + [""] * (len(header) - len(row)) for row in rows]
  cells = [max((len(row[i]) for row in rows), default=0) for i in range(len(header))]
  widths = [max(c, len(name), 1) for c, name in zip(cells, header)]
  if sum(w + 2 for w in widths) - 2 > width:  # the headers wrap
    widths = []
    for i, name in enumerate(header):
      words = max((len(word) for word in name.split()), default=0)
      # A long row name (e.g. "sgd: the 2 seed(s) that did not diverge") wraps too.
      widest = max(width - widths[0] - 2, 8) if i else (2 * width) // 5
      widths.append(min(max(cells[i], words, 1), max(widest, words)))
  blocks, block = [], [0]
  for i in range(1, len(header)):
    if len(block) > 1 and sum(widths[j] + 2 for j in (*block, i)) - 2 > width:
      blocks.append(block)
      block = [0]
    block.append(i)
  blocks.append(block)
  return "\n\n".join(_block(header, rows, widths, block) for block in blocks)


def _block(header: list[str], rows: list[list[str]], widths: list[int], block: list[int]) -> str:
  """The lines of one block of `fit_table`: its columns ``block``."""

  def lines(cells: list[str]) -> list[str]:
    wrapped = [textwrap.wrap(cells[i], widths[i], break_on_hyphens=False) or [""] for i in block]
    height = max(map(len, wrapped))
    return [
      "  ".join(
        (w[k] if k < len(w) else "").ljust(widths[i]) for w, i in zip(wrapped, block)
      ).rstrip()
      for k in range(height)
    ]

  rule = "  ".join("-" * widths[i] for i in block)
  return "\n".join([*lines(header), rule, *(line for row in rows for line in lines(row))])


SELECT_HEADER = ["method", "knob", "selected", "score", "seeds", "grid", "at an edge"]


def selection_table(selections: list[Selection]) -> str:
  """``classp-jax select``'s table: each method's best point over its knobs
  (`best_per_method`): the knob, the value selected, the score behind the choice (the mean
  over the seeds every point of its curve has of its ``selected on`` accuracy), the grid
  (the selected value in brackets), and whether the value is at the grid's edge.

  Examples:
    >>> runs = [{"method": f"sgd[learning_rate={lr}]", "base_method": "sgd",
    ...          "knob": "learning_rate", "value": lr, "seed": seed, "acc": 0.5,
    ...          "validation_accuracy_matrix": [[score + seed / 100]]}
    ...         for lr, score in ((0.01, 0.5), (0.1, 0.7)) for seed in (0, 1)]
    >>> print(selection_table(select_points(runs)))
    method  knob           selected  validation ACC  seeds  grid         at an edge
    ------  -------------  --------  --------------  -----  -----------  ----------
    sgd     learning_rate  0.1       0.705           2      0.01, [0.1]  yes, high
  """
  best = best_per_method(selections)
  on = sorted({s.selected_on for s in best})
  header = [*SELECT_HEADER[:3], f"{on[0]} ACC" if len(on) == 1 else "ACC", *SELECT_HEADER[4:]]
  rows = []
  for s in best:
    marked = s.selected or s.closest
    grid = ", ".join(
      f"[{shown_value(p.value)}]" if p is marked else shown_value(p.value) for p in s.points
    )
    seeds = set.intersection(*({r["seed"] for r in p.runs} for p in s.points))
    if s.selected is None:
      chosen = (
        "none, all diverged" if marked is None else f"none (closest: {shown_value(marked.value)})"
      )
      score = "—"
    else:
      chosen, score = shown_value(s.selected.value), f"{s.selected.score:.3f}"
      score += "" if len(on) == 1 else f" ({s.selected_on})"
    edge = {"yes-low": "yes, low", "yes-high": "yes, high"}.get(s.edge, s.edge)
    rows.append([s.method, s.knob, chosen, score, str(len(seeds)), grid, edge])
  return fit_table(header, rows)
