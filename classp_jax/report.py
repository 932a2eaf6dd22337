"""Summaries of results: tables for the terminal and markdown, and plots.

A results dict is what ``classp-jax run`` writes to ``results.json``: the
experiment's name, its task names, and ``runs``, one entry per (method, seed)
as returned by `classp_jax.loop.run_continual`.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

import numpy as np

METRICS = ("acc", "bwt", "forgetting", "fwt")


def runs_by_method(runs: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
  """Groups runs by method, keeping first-seen order."""
  groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
  for run in runs:
    groups[run["method"]].append(run)
  return dict(groups)


def mean_std(values: Iterable[float]) -> str:
  """``mean ± std`` (sample std over seeds; no ± for a single value)."""
  values = np.asarray(list(values), dtype=np.float64)
  if values.size == 1:
    return f"{values[0]:.3f}"
  return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"


def summary_rows(results: dict[str, Any]) -> list[list[str]]:
  """One table row per method: metrics over seeds, state bytes and time."""
  rows = []
  for method, runs in runs_by_method(results["runs"]).items():
    params = runs[0]["param_count"]
    rows.append([
        method, str(len(runs)),
        *(mean_std(r[m] for r in runs) for m in METRICS),
        f"{runs[0]['state_bytes'] / (4 * params):.2f}x",
        f"{np.mean([r['wall_time_s'] for r in runs]):.1f}",
    ])
  return rows


SUMMARY_HEADER = ["method", "seeds", "ACC", "BWT", "forgetting", "FWT",
                  "state / fp32 params", "time/run (s)"]


def format_table(header: list[str], rows: list[list[str]]) -> str:
  """A plain-text table with aligned columns."""
  widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
  lines = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)) for line in [header, *rows]]
  lines.insert(1, "  ".join("-" * w for w in widths))
  return "\n".join(lines)


def accuracy_matrix_table(runs: list[dict[str, Any]], tasks: list[str], key="accuracy_matrix") -> str:
  """The mean (± std over seeds) accuracy matrix: rows = after task i, columns = task j."""
  matrices = np.array([r[key] if key == "accuracy_matrix" else r[key]["accuracy_matrix"]
                       for r in runs])
  rows = [[f"after {tasks[i]}", *(mean_std(matrices[:, i, j]) for j in range(len(tasks)))]
          for i in range(len(tasks))]
  return format_table(["", *tasks], rows)


def print_summary(results: dict[str, Any]) -> None:
  """Prints each method's accuracy matrix and the metrics table."""
  tasks = results["tasks"]
  for method, runs in runs_by_method(results["runs"]).items():
    print(f"\n{method}: test accuracy R[i][j] (mean ± std over {len(runs)} seed(s))")
    print(accuracy_matrix_table(runs, tasks))
  print()
  print(format_table(SUMMARY_HEADER, summary_rows(results)))


def plot_accuracy_over_training(results: dict[str, Any], path: Path) -> None:
  """One panel per task: its test accuracy over training steps, a line per method."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  tasks = results["tasks"]
  fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3), sharey=True, squeeze=False)
  for method, runs in runs_by_method(results["runs"]).items():
    steps = np.array(runs[0]["history"]["step"])
    accuracy = np.array([r["history"]["accuracy"] for r in runs])  # (seeds, evals, tasks)
    for j, ax in enumerate(axes[0]):
      mean = accuracy[:, :, j].mean(0)
      line, = ax.plot(steps, mean, label=method)
      if len(runs) > 1:
        std = accuracy[:, :, j].std(0, ddof=1)
        ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2)
  boundaries = np.cumsum(results["runs"][0]["steps"])[:-1]
  for j, ax in enumerate(axes[0]):
    for b in boundaries:
      ax.axvline(b, color="grey", lw=0.5, ls="--")
    ax.set_title(f"task {j + 1}: {tasks[j]}", fontsize=9)
    ax.set_xlabel("training step")
  axes[0][0].set_ylabel("test accuracy")
  axes[0][-1].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def write_json_atomically(data: Any, path: Path) -> None:
  """Writes JSON to ``path`` via a temporary file, so no half-written file remains."""
  tmp = path.with_suffix(path.suffix + ".tmp")
  tmp.write_text(json.dumps(data, indent=1))
  os.replace(tmp, path)


def write_run_outputs(results: dict[str, Any], out: Path) -> list[Path]:
  """Writes ``results.json`` and ``accuracy_over_training.png`` to ``out``."""
  out.mkdir(parents=True, exist_ok=True)
  paths = [out / "results.json", out / "accuracy_over_training.png"]
  write_json_atomically(results, paths[0])
  plot_accuracy_over_training(results, paths[1])
  return paths
