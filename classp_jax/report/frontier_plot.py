"""The stability-plasticity frontier plot: final old-task against last-task accuracy.

Panels by method family (`classp_jax.report.plots.method_family`), at most
`CURVES_PER_PANEL` curves each (a crowded family takes several); each frontier
curve (a method and knob) is a line through its points in grid order.
"""

from __future__ import annotations

import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from classp_jax.report.plots import COLOURS, family_panels, method_family, pyplot, save
from classp_jax.report.tables import old_and_new_accuracy
from classp_jax.results import (
  Selection,
  diverged_note,
  experiment_label,
  is_diverged,
  is_variant,
  runs_by_method,
  select_points,
  shown_value,
)

# Curves in one panel: a family with more takes several panels (small multiples).
CURVES_PER_PANEL = 4
# Panels in a row of the figure.
PANELS_PER_ROW = 4


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
  front = [p for p in points if not any(q[0] >= p[0] and q[1] >= p[1] and q != p for q in points)]
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
  offsets = (
    (4, 3, "left", "bottom"),
    (4, -3, "left", "top"),
    (-4, 3, "right", "bottom"),
    (-4, -3, "right", "top"),
    (0, 6, "center", "bottom"),
    (0, -6, "center", "top"),
  )
  for x, y, text, colour in candidates:
    for dx, dy, ha, va in offsets:
      label = ax.annotate(
        text,
        (x, y),
        xytext=(dx, dy),
        textcoords="offset points",
        ha=ha,
        va=va,
        color=colour,
      )
      box = label.get_window_extent(renderer).expanded(1.05, 1.1)
      inside = (
        frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
      )
      if inside and not _overlaps(box, occupied):
        occupied.append(box)
        break
      label.remove()


def _panels(
  selections: list[Selection], singles: dict[str, list]
) -> list[tuple[str, list[Selection], list]]:
  """``(title, curves, methods at their own points)`` of each panel, in `FAMILIES` order: a
  family's curves split evenly into panels of at most `CURVES_PER_PANEL`, its methods at
  their own points in its first panel."""
  curves: dict[str, list] = defaultdict(list)
  for s in selections:
    curves[method_family(s.points[0].runs[0])].append(s)
  families = {f: curves.get(f, []) for f in (*curves, *singles) if curves.get(f) or singles.get(f)}
  return [
    (title, mine, singles.get(family, []) if first else [])
    for family, title, mine, first in family_panels(families, CURVES_PER_PANEL)
  ]


def plot_frontier(
  results: dict[str, Any], path: Path, selections: list[Selection] | None = None
) -> None:
  """Final old-task accuracy against last-task accuracy: panels by method family
  (`_panels`), the top right best.

  Each frontier curve (a method and knob) is a line through its points in
  grid order, with the std over seeds as error bars. A diverged point is not
  drawn and breaks the line; the legend names it. The selected point is a
  star (outlined in red at a grid edge), its value in the legend; the grey band
  is the Pareto front over every method, the same in every panel; hollow
  circles are methods at their own points, named where the name collides with
  nothing.

  Args:
    results: a results dict.
    path: the PNG to write.
    selections: `select_points` of the runs (default: automatic selection).
  """
  plt = pyplot()
  selections = select_points(results["runs"]) if selections is None else selections
  singles: dict[str, list] = defaultdict(list)
  for method, runs in runs_by_method(results["runs"]).items():
    if not is_variant(runs[0]):
      singles[method_family(runs[0])].append((method, runs))
  panels = _panels(selections, singles)
  everything = [_mean_point(p.runs) for s in selections for p in s.points]
  everything += [_mean_point(runs) for family in singles.values() for _, runs in family]
  front = pareto_front([(p.x, p.y) for p in everything if p is not None])

  columns = min(PANELS_PER_ROW, len(panels))
  rows = -(-len(panels) // columns)
  fig, axes = plt.subplots(
    rows, columns, figsize=(4.6 * columns, 6.0 * rows), squeeze=False, layout="constrained"
  )
  for ax in axes.flat[len(panels) :]:
    ax.axis("off")
  axes = list(axes.flat[: len(panels)])
  candidates: dict[int, list] = defaultdict(list)
  for index, (ax, (title, curves, own)) in enumerate(zip(axes, panels)):
    shown_here = []
    for colour, s in zip(COLOURS, curves):
      shown_here += _draw_curve(ax, s, colour)
    shown_here += _draw_singles(ax, own, candidates[index])
    _finish_panel(ax, title, shown_here, front)
    ax.set_xlabel(f"last task ({results['tasks'][-1]}): final accuracy, better →")
    if index % columns == 0:
      ax.set_ylabel("earlier tasks: final accuracy (mean), better →")
  _figure_legend(fig, selections, 4 if columns > 1 else 2)
  fig.suptitle(
    f"{experiment_label(results)}: stability-plasticity frontier"
    + (" " if columns > 2 else "\n")
    + "(mean over seeds, bars: std; the top right is best)"
  )
  fig.canvas.draw()  # lays the figure out, so labels can be placed where they fit
  fig.set_layout_engine("none")
  for index, ax in enumerate(axes):
    occupied = []
    for line in ax.get_lines():
      xy = line.get_xydata()
      if line.get_marker() not in ("None", "", None) and len(xy):
        for point in ax.transData.transform(xy[np.isfinite(xy).all(1)]):
          occupied.append(_box(point, 10 if line.get_marker() == "*" else 4))
    _place_labels(fig, ax, candidates[index], occupied)
  save(fig, path, layout=False)


def _finish_panel(ax, title: str, shown: list[_Point], front: list[tuple[float, float]]) -> None:
  """A panel's limits (its own points and the front, not the other panels' points), the
  Pareto front's band, its title, grid and legend (under it)."""
  _limits(
    ax, [p.x for p in shown] + [x for x, _ in front], [p.y for p in shown] + [y for _, y in front]
  )
  if front:
    ax.plot(
      *zip(*front),
      color="grey",
      lw=6,
      alpha=0.3,
      solid_capstyle="round",
      zorder=0,
      scalex=False,
      scaley=False,
    )
  ax.set_title(title)
  ax.grid(alpha=0.25, lw=0.5)
  if ax.get_legend_handles_labels()[0]:
    ax.legend(loc="upper left", bbox_to_anchor=(-0.02, -0.12), frameon=False)


def _draw_curve(ax, s: Selection, colour: str) -> list[_Point]:
  """Draws one frontier curve, its error bars and its selected point (a star; its value
  is in the legend, not beside it, where labels of crowded curves collide); returns the
  points drawn."""
  points = [_mean_point(p.runs) for p in s.points]
  x = [p.x if p else np.nan for p in points]  # NaN breaks the line at a diverged point
  y = [p.y if p else np.nan for p in points]
  shown = [p for p in points if p]
  label = f"{s.method}: {s.knob}"
  if s.selected is not None:
    label += f", ★ {shown_value(s.selected.value)}" + (
      f" at the grid's {s.edge[4:]} edge" if s.edge.startswith("yes") else ""
    )
  broken = [
    f"{shown_value(p.value)}"
    + (
      ""
      if all(map(is_diverged, p.runs))
      else f" ({sum(map(is_diverged, p.runs))}/{len(p.runs)} seeds)"
    )
    for p, q in zip(s.points, points)
    if q is None
  ]
  if broken:
    label += "\n" + textwrap.fill(
      f"× diverged at {', '.join(broken)}", 44, initial_indent="  ", subsequent_indent="    "
    )
  ax.plot(x, y, "-o", color=colour, ms=4, lw=1.5, label=label)
  ax.errorbar(
    [p.x for p in shown],
    [p.y for p in shown],
    xerr=[p.xerr for p in shown],
    yerr=[p.yerr for p in shown],
    fmt="none",
    ecolor=colour,
    alpha=0.35,
    lw=0.8,
  )
  if s.selected is not None:
    best = points[s.points.index(s.selected)]
    edge = s.edge.startswith("yes")
    ax.plot(
      best.x,
      best.y,
      "*",
      ms=14,
      mfc=colour,
      mec="red" if edge else "black",
      mew=1.8 if edge else 0.8,
      zorder=5,
    )
  return shown


def _draw_singles(
  ax, singles: list[tuple[str, list[dict[str, Any]]]], candidates: list
) -> list[_Point]:
  """Draws the methods at their own points as hollow circles, their labels appended to
  ``candidates`` (`_place_labels`); returns the points drawn."""
  shown = []
  for method, runs in singles:
    point = _mean_point(runs)
    if point is None:
      ax.plot([], [], "x", color="black", label=f"{method}: {diverged_note(runs)}, not drawn")
      continue
    shown.append(point)
    ax.plot(point.x, point.y, "o", mfc="none", mec="black", ms=6, zorder=4)
    candidates.append((point.x, point.y, method, "black"))
  return shown


def _figure_legend(fig, selections: list[Selection], columns: int) -> None:
  """The legend of the markers every panel shares, under the panels."""
  from matplotlib.lines import Line2D

  selected_on = sorted({s.selected_on for s in selections})
  handles = [
    Line2D([], [], color="grey", lw=6, alpha=0.3, label="Pareto front (all methods)"),
    Line2D(
      [],
      [],
      ls="none",
      marker="*",
      ms=11,
      mfc="white",
      mec="black",
      label=f"selected on {' / '.join(selected_on) or 'validation'}",
    ),
    Line2D(
      [],
      [],
      ls="none",
      marker="*",
      ms=11,
      mfc="white",
      mec="red",
      mew=1.8,
      label="selected at a grid edge",
    ),
    Line2D(
      [], [], ls="none", marker="o", ms=6, mfc="none", mec="black", label="method at its own point"
    ),
  ]
  fig.legend(handles=handles, loc="outside lower center", ncol=columns, frameon=False)


def _limits(ax, xs, ys) -> None:
  """Fits a panel's axes to its points, with a margin and at least 0.1 across."""
  for values, setter in ((xs, ax.set_xlim), (ys, ax.set_ylim)):
    if values:
      low, high = min(values), max(values)
      pad = max(0.08 * (high - low), (0.1 - (high - low)) / 2, 0.02)
      setter(low - pad, high + pad)


def _box(centre, radius):
  from matplotlib.transforms import Bbox

  return Bbox.from_extents(
    centre[0] - radius, centre[1] - radius, centre[0] + radius, centre[1] + radius
  )
