"""Summaries of results: tables for the terminal and markdown, plots, and the report.

``classp-jax report`` (`write_report`) turns the results of any number of runs
(`classp_jax.results`) into one markdown report with plots:

* `tables`: per-method metrics, paired differences, selected points, time;
* `claims`: the paper's claims: the headline, the baselines, the ablations,
  sparse updates at matched plasticity;
* `plots` and `frontier_plot`: the PNG plots;
* `markdown`: the report itself;
* `summary`: the terminal summary (`print_summary`).

Which method is which (its plot panel, the reference, the baselines, the
ablations) is read from what each run records (`classp_jax.results.MethodInfo`),
never from method names. The report reads only `classp_jax.results`, NumPy,
matplotlib and PIL: never JAX.
"""

from classp_jax.report.markdown import write_report
from classp_jax.report.plots import plot_accuracy_over_training
from classp_jax.report.summary import print_summary
from classp_jax.results import (
  load_results,
  neighbour_points,
  next_points,
  select_points,
  selected_variants,
)

__all__ = [
  "write_report",
  "print_summary",
  "plot_accuracy_over_training",
  # For the command line: `classp-jax select`.
  "load_results",
  "neighbour_points",
  "next_points",
  "select_points",
  "selected_variants",
]
