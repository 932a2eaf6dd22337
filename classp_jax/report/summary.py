"""The terminal summary of a run folder's results (``classp-jax run`` prints it)."""

from __future__ import annotations

from typing import Any

from classp_jax.report.tables import (
  SELECTED_HEADER,
  accuracy_matrix_table,
  format_table,
  matrix_heading,
  report_header,
  report_rows,
  selected_rows,
  selection_sentence,
)
from classp_jax.results import experiment_label, finished, runs_by_method, select_points


def print_summary(results: dict[str, Any], select: str | None = None) -> None:
  """Prints each method's accuracy matrix, the metrics table and any frontier's selected points.

  Args:
    results: a results dict.
    select: how frontier points are selected (see `classp_jax.results.parse_select`).
  """
  tasks, label = results["tasks"], experiment_label(results)
  for method, runs in runs_by_method(results["runs"]).items():
    print(f"\n{label}, {matrix_heading(method, runs, tasks)}")
    if finished(runs):
      print(accuracy_matrix_table(finished(runs), tasks))
  print(f"\n{label}: held-out test metrics")
  print(format_table(report_header(results["runs"]), report_rows(results["runs"], tasks=tasks)))
  selections = select_points(results["runs"], select)
  if selections:
    print(f"\n{label}: {selection_sentence(selections)}")
    print(format_table(SELECTED_HEADER, selected_rows(selections)))
