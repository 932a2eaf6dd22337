"""The report's plots: accuracy over training, accuracy matrices and CLASSP's diagnostics.

Every plot is drawn with matplotlib (imported only here, when a plot is drawn)
and written as a 256-colour PNG (`save`). A method's panel is its family, as
its runs record it (`method_family`).
"""

from __future__ import annotations

import io
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from classp_jax.results import (
  FAMILIES,
  diverged_note,
  experiment_label,
  finished,
  is_variant,
  method_info,
  runs_by_method,
)

# Every plot's resolution and smallest font: readable on a laptop screen and in print.
DPI = 150
FONT_SIZE = 10
# tab10, with brown (next to red, hard to tell apart on thin lines) moved last.
COLOURS = (
  "#1f77b4",
  "#ff7f0e",
  "#2ca02c",
  "#d62728",
  "#9467bd",
  "#17becf",
  "#e377c2",
  "#7f7f7f",
  "#bcbd22",
  "#8c564b",
)


def method_family(run: dict[str, Any]) -> str:
  """The panel of a run's method: its recorded family, one of `FAMILIES` (``other`` for a
  run that recorded none)."""
  return method_info(run).family


def family_panels(
  items_by_family: dict[str, list], per_panel: int
) -> list[tuple[str, str, list, bool]]:
  """``(family, title, items, first)`` of each panel of a plot in small multiples, in
  `FAMILIES` order: a family's items split evenly into panels of at most ``per_panel``
  (titled e.g. ``CLASSP (1 of 2)``; ``first``: its first panel). A family given with no
  items still has one panel."""
  panels = []
  for family in FAMILIES:
    if family not in items_by_family:
      continue
    mine = items_by_family[family]
    count = max(1, -(-len(mine) // per_panel))
    size = -(-len(mine) // count)
    for i in range(count):
      title = family if count == 1 else f"{family} ({i + 1} of {count})"
      panels.append((family, title, mine[i * size : (i + 1) * size], i == 0))
  return panels


def pyplot():
  """matplotlib's pyplot, drawing to files only, with the report's fonts and colours."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from matplotlib import cycler

  plt.rcParams.update(
    {
      "font.size": FONT_SIZE,
      "axes.titlesize": FONT_SIZE + 1,
      "axes.labelsize": FONT_SIZE,
      "xtick.labelsize": FONT_SIZE,
      "ytick.labelsize": FONT_SIZE,
      "legend.fontsize": FONT_SIZE,
      "figure.titlesize": FONT_SIZE + 2,
      "axes.prop_cycle": cycler(color=COLOURS),
    }
  )
  return plt


def figure_title(results: dict[str, Any], what: str) -> str:
  """A figure's title: the experiment and scenario, what is drawn, and the seeds."""
  seeds = sorted({r["seed"] for r in results["runs"] if r.get("seed") is not None})
  shown = f"seed {seeds[0]}" if len(seeds) == 1 else f"{len(seeds)} seeds" if seeds else ""
  return f"{experiment_label(results)}: {what}" + (f", {shown}" if shown else "")


def _chance_lines(axes, runs: list[dict[str, Any]]) -> None:
  """A dashed line per task's panel at the untrained model's accuracy on it (the runs'
  ``baseline``, mean over runs): the accuracy of guessing, or close to it."""
  baselines = [r["baseline"] for r in runs if r.get("baseline")]
  if not baselines:
    return
  chance = np.mean(np.asarray(baselines, dtype=np.float64), axis=0)
  for j, ax in enumerate(axes):
    ax.axhline(chance[j], color="black", lw=1, ls=(0, (4, 3)), alpha=0.6, label="_chance")
  axes[-1].lines[-1].set_label("untrained model's accuracy (≈ chance)")


def plot_accuracy_over_training(results: dict[str, Any], path: Path, dpi: int = DPI) -> None:
  """One panel per task: its test accuracy over training steps, a line per method, and a
  dashed line at the untrained model's accuracy (`_chance_lines`).

  Diverged seeds are left out; a method whose every seed diverged is named in
  the legend instead of drawn.
  """
  plt = pyplot()
  tasks = results["tasks"]
  columns = min(len(tasks), 5)
  rows = -(-len(tasks) // columns)
  fig, axes = plt.subplots(
    rows,
    columns,
    figsize=(3.0 * columns + 1.8, 2.8 * rows + 0.6),
    sharey=True,
    squeeze=False,
    layout="constrained",
  )
  for ax in axes.flat[len(tasks) :]:
    ax.axis("off")
  axes = [list(axes.flat[: len(tasks)])]
  for method, group in runs_by_method(results["runs"]).items():
    runs = finished(group)
    if not runs:
      axes[0][-1].plot([], [], "x", color="black", label=f"{method}: {diverged_note(group)}")
      continue
    label = (
      method
      if len(runs) == len(group)
      else f"{method} ({len(runs)} seeds; {len(group) - len(runs)} diverged, not shown)"
    )
    # Seeds evaluate at the same points of their tasks, but a seed stopped at a target
    # reaches them at other steps: the x-axis counts tasks trained (`tasks_trained`).
    x = np.mean(
      [tasks_trained(r, r["history"]["step"], r["history"]["task"]) for r in runs], axis=0
    )
    accuracy = np.array([r["history"]["accuracy"] for r in runs])  # (seeds, evals, tasks)
    for j, ax in enumerate(axes[0]):
      mean = accuracy[:, :, j].mean(0)
      (line,) = ax.plot(x, mean, label=label if j == len(tasks) - 1 else None)
      if len(runs) > 1:
        std = accuracy[:, :, j].std(0, ddof=1)
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)
  _chance_lines(axes[0], [r for group in runs_by_method(results["runs"]).values() for r in group])
  for j, ax in enumerate(axes[0]):
    for boundary in range(1, len(tasks)):
      ax.axvline(boundary, color="grey", lw=0.5, ls=":")
    ax.set_title(f"task {j + 1}: {tasks[j]}")
    ax.set_xlabel("tasks trained")
    ax.grid(alpha=0.25, lw=0.5)
  for j in range(0, len(tasks), columns):
    axes[0][j].set_ylabel("test accuracy")
  handles, labels = axes[0][-1].get_legend_handles_labels()
  fig.legend(handles, labels, loc="outside right upper", frameon=False)
  fig.suptitle(figure_title(results, "test accuracy on each task over training (mean ± std)"))
  save(fig, path, dpi=dpi)


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
  y = [  # nanmean: a sampled evaluation (`eval_tasks_sample`) leaves tasks unscored (null)
    float(np.nanmean(np.asarray(accuracy[: task + 1], dtype=np.float64)))
    for task, accuracy in zip(history["task"], history["accuracy"])
  ]
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


def plot_seen_tasks_accuracy(results: dict[str, Any], path: Path, dpi: int = DPI) -> None:
  """A panel per method family (`method_family`): each method's mean test accuracy on the
  tasks seen so far over training (`seen_tasks_curve`), mean ± std over its finished seeds.
  A method whose every seed diverged is named in its panel's legend instead of drawn."""
  plt = pyplot()
  panels = defaultdict(dict)
  for method, group in runs_by_method(results["runs"]).items():
    panels[method_family(group[0])][method] = group
  families = [f for f in FAMILIES if f in panels]
  fig, axes = plt.subplots(
    1,
    len(families),
    figsize=(3.6 * len(families), 3.8),
    sharey=True,
    squeeze=False,
    layout="constrained",
  )
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
      (line,) = ax.plot(
        x,
        y.mean(0),
        lw=1.6,
        label=method
        if len(runs) == len(group)
        else f"{method} ({len(group) - len(runs)}/{len(group)} seeds diverged)",
      )
      if len(runs) > 1:
        ax.fill_between(
          x,
          y.mean(0) - y.std(0, ddof=1),
          y.mean(0) + y.std(0, ddof=1),
          color=line.get_color(),
          alpha=0.15,
        )
    for boundary in range(1, len(results["tasks"])):
      ax.axvline(boundary, color="grey", lw=0.5, ls=":")
    ax.set_title(family)
    ax.set_xlabel("tasks trained")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False, ncol=2)
  axes[0][0].set_ylabel("mean test accuracy,\ntasks seen so far")
  fig.suptitle(figure_title(results, "accuracy on the tasks seen so far (mean ± std)"))
  save(fig, path, dpi=dpi, layout=False)


def save(fig, path: Path, dpi: int = DPI, layout: bool = True) -> None:
  """Writes ``fig`` as a 256-colour PNG: about a third of the bytes of a true-colour one,
  with no visible loss on plots (a report's figures are committed).

  The image holds everything drawn (``bbox_inches="tight"``: no title or legend outside
  the figure is cropped), at `DPI` at least.
  """
  from PIL import Image

  if layout and not fig.get_constrained_layout():
    fig.tight_layout()
  buffer = io.BytesIO()
  fig.savefig(buffer, dpi=max(dpi, DPI), format="png", bbox_inches="tight", pad_inches=0.1)
  pyplot().close(fig)
  with Image.open(buffer) as image:
    image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(
      path, format="PNG", optimize=True
    )


def plot_accuracy_matrices(results: dict[str, Any], path: Path) -> None:
  """One heatmap per method: the mean accuracy matrix over the seeds that did not diverge.

  Every panel uses the same colour scale, accuracy 0 to 1, with one colourbar.
  """
  plt = pyplot()
  groups = runs_by_method(results["runs"])
  tasks = len(results["tasks"])
  columns = min(4, len(groups))
  rows = -(-len(groups) // columns)
  size = 1.6 + (0.5 if tasks <= 5 else 0.3) * tasks
  names = _short_names(results["tasks"])
  fig, axes = plt.subplots(
    rows,
    columns,
    figsize=(size * columns + 1.6, size * rows + 1.2),
    squeeze=False,
    layout="constrained",
  )
  for ax in axes.flat[len(groups) :]:
    ax.axis("off")
  image = None
  for index, (ax, (method, group)) in enumerate(zip(axes.flat, groups.items())):
    runs, note = finished(group), diverged_note(group)
    ax.set_xticks(
      range(tasks), names, rotation=45 if tasks > 2 else 0, ha="right" if tasks > 2 else "center"
    )
    ax.set_yticks(range(tasks), names if index % columns == 0 else [])
    if not runs:
      ax.imshow(np.full((tasks, tasks), np.nan), vmin=0, vmax=1, cmap="viridis")
      ax.text(
        (tasks - 1) / 2,
        (tasks - 1) / 2,
        note.replace(" (", "\n("),
        ha="center",
        va="center",
        color="firebrick",
      )
      ax.set_title(method)
      continue
    # float: a sampled evaluation's unscored entries (null) are NaN, drawn blank
    mean = np.mean(np.array([r["accuracy_matrix"] for r in runs], dtype=np.float64), axis=0)
    image = ax.imshow(mean, vmin=0, vmax=1, cmap="viridis")
    if tasks <= 5:
      for (i, j), value in np.ndenumerate(mean):
        ax.text(
          j,
          i,
          f"{value:.2f}",
          ha="center",
          va="center",
          color="white" if value < 0.6 else "black",
        )
    shown = f"{method}\n{len(runs)} seeds shown, {len(group) - len(runs)} diverged"
    ax.set_title(shown if note else method, color="firebrick" if note else "black")
  if image is not None:
    fig.colorbar(image, ax=axes, shrink=min(0.8, 2.5 / (size * rows)), label="test accuracy")
  fig.supxlabel("evaluated on task")
  fig.supylabel("after training task")
  fig.suptitle(figure_title(results, "test accuracy matrices, mean over seeds"))
  save(fig, path)


def _short_names(tasks: list[str]) -> list[str]:
  """Task names for tick labels, cut to 16 characters.

  Examples:
    >>> _short_names(["mnist:0-1", "a_very_long_task_name"])
    ['mnist:0-1', 'a_very_long_tas…']
  """
  return [t if len(t) <= 16 else t[:15] + "…" for t in tasks]


def plot_classp_diagnostics(results: dict[str, Any], path: Path) -> bool:
  """CLASSP's fraction of weights updated per step and capacity used, over training.

  Returns:
    False (and draws nothing) when no run that did not diverge logged them.
  """
  groups = {
    m: finished(runs)
    for m, runs in runs_by_method(results["runs"]).items()
    if not is_variant(runs[0])
  }
  groups = {
    m: runs
    for m, runs in groups.items()
    if runs and runs[0]["logs"]["capacity_used"] and runs[0]["logs"]["capacity_used"][0] is not None
  }
  if not groups:
    return False
  plt = pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
  num_tasks = len(results["tasks"])
  # Seeds stopped at a target train for different numbers of steps: each is read at the
  # same points of the tasks-trained axis (`tasks_trained`) and averaged there.
  grid = np.linspace(0, num_tasks, 100 * num_tasks + 1)
  for method, runs in groups.items():
    for ax, name in zip(axes, ("update_fraction", "capacity_used")):
      curves = [
        np.interp(grid, tasks_trained(r, r["logs"]["step"], r["logs"]["task"]), r["logs"][name])
        for r in runs
      ]
      ax.plot(grid, np.mean(curves, axis=0), label=method, lw=1.6)
  for boundary in range(1, num_tasks):
    for ax in axes:
      ax.axvline(boundary, color="grey", lw=0.5, ls=":")
  axes[0].set_title("weights updated in a step")
  axes[1].set_title("weights ever updated")
  axes[0].set_ylabel("update fraction")
  axes[1].set_ylabel("capacity used")
  for ax in axes:
    ax.set_xlabel("tasks trained")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.25, lw=0.5)
  fig.legend(*axes[1].get_legend_handles_labels(), loc="outside right upper", frameon=False)
  fig.suptitle(figure_title(results, "CLASSP's sparse updates, mean over seeds"))
  save(fig, path)
  return True
