"""The plasticity metrics of long streams in the report: a table and two plots.

They read the runs' ``learning_accuracy``, ``online_accuracy``, ``dormant_units`` and
``effective_step_size`` (`classp_jax.results.RunEntry`), which the training loop records;
runs without them (older files) are left out, and nothing is shown when no run has them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from classp_jax.report.tables import MISSING, mean_std
from classp_jax.results import finished, runs_by_method

PLASTICITY_HEADER = [
  "method",
  "seeds",
  "learning acc. first",
  "learning acc. last",
  "slope / task",
  "online acc.",
  "dormant (end)",
  "dead (end)",
  "eff. step first -> last",
]


def has_plasticity(runs: list[dict[str, Any]]) -> bool:
  """Whether the runs record a learning accuracy over more than one task."""
  return any(len((r.get("learning_accuracy") or {}).get("per_task", ())) > 1 for r in runs)


def _nested(runs, key: str, field: str, index: int | None = None) -> list[float | None]:
  values = []
  for run in runs:
    value = (run.get(key) or {}).get(field)
    if index is not None:
      value = value[index] if value else None
    values.append(value)
  return values


def _step_sizes(runs) -> str:
  steps = [r.get("effective_step_size") for r in runs]
  if not all(steps):
    return MISSING
  first, last = (float(np.mean([s[i] for s in steps])) for i in (0, -1))
  return f"{first:.3g} -> {last:.3g}"


def plasticity_rows(runs: list[dict[str, Any]]) -> list[list[str]]:
  """Per method, over the seeds that did not diverge: the learning accuracy of the first
  and last ``window`` tasks and its slope over tasks, the online accuracy (mean over
  tasks), the dormant and dead units at the last task end, and the effective step size
  at the first and last task ends (means over seeds)."""
  rows = []
  for method, group in runs_by_method(runs).items():
    done = [r for r in finished(group) if r.get("learning_accuracy")]
    if not done:
      continue
    online = [r.get("online_accuracy") for r in done]
    rows.append(
      [
        method,
        str(len(done)),
        mean_std(_nested(done, "learning_accuracy", "first")),
        mean_std(_nested(done, "learning_accuracy", "last")),
        mean_std(_nested(done, "learning_accuracy", "slope")),
        mean_std(float(np.mean(o)) if o else None for o in online),
        mean_std(_nested(done, "dormant_units", "per_task", -1)),
        mean_std(_nested(done, "dormant_units", "dead", -1)),
        _step_sizes(done),
      ]
    )
  return rows


def plasticity_caption(runs: list[dict[str, Any]]) -> str:
  """What the plasticity table shows, with the learning accuracy's window."""
  windows = sorted({r["learning_accuracy"]["window"] for r in runs if r.get("learning_accuracy")})
  window = ", ".join(map(str, windows)) or "10"
  return (
    f"learning accuracy: each task's test accuracy right after training it, mean of the first "
    f"and last {window} tasks, and its least-squares slope per task; online accuracy: the "
    "mean over tasks of the accuracy on each incoming batch before its update (one-pass "
    "runs); dormant / dead: the fraction of ReLU units with a relative mean activation at or "
    "below tau / at 0 on a fixed probe batch, at the last task end; eff. step: the median "
    "over weights of lr / (eps + S)**(1/p) (CLASSP, AdaGrad), at the first and last task ends"
  )


# Methods in one panel of the plasticity plot: a family with more takes several panels.
METHODS_PER_PANEL = 5


def _per_task_curves(group, key: str, field: str) -> np.ndarray | None:
  """A method's per-task curves of ``key``'s ``field``, (seeds, tasks), over its finished
  seeds; None when none recorded it, or its seeds' lengths differ."""
  curves = [(r.get(key) or {}).get(field) for r in finished(group)]
  curves = [c for c in curves if c]
  if not curves or len({len(c) for c in curves}) > 1:
    return None
  return np.array(curves, dtype=np.float64)


def _draw(ax, values: np.ndarray, colour: str, label: str | None) -> None:
  x = np.arange(1, values.shape[1] + 1)
  mean = values.mean(0)
  ax.plot(x, mean, color=colour, label=label, marker="." if len(x) <= 20 else None)
  if len(values) > 1:
    std = values.std(0, ddof=1)
    ax.fill_between(x, mean - std, mean + std, color=colour, alpha=0.2)


def _dormant_tau(runs) -> str:
  taus = {(r.get("dormant_units") or {}).get("tau") for r in runs} - {None}
  return ", ".join(f"{t:g}" for t in sorted(taus)) or "?"


def plot_plasticity(results: dict[str, Any], path: Path) -> bool:
  """Small multiples over the tasks, a column per method family (at most
  `METHODS_PER_PANEL` methods each): the learning accuracy (top) and the dormant units at
  each task end (bottom), a line per method (mean ± std over its finished seeds), with the
  column's legend below it. Returns whether anything was drawn (nothing is written when no
  run records a learning accuracy over several tasks)."""
  if not has_plasticity(results["runs"]):
    return False
  from matplotlib.ticker import MaxNLocator

  from classp_jax.report.plots import (
    COLOURS,
    family_panels,
    figure_title,
    method_family,
    pyplot,
    save,
  )

  by_family: dict[str, list] = {}
  for method, group in runs_by_method(results["runs"]).items():
    learning = _per_task_curves(group, "learning_accuracy", "per_task")
    if learning is not None:
      dormant = _per_task_curves(group, "dormant_units", "per_task")
      by_family.setdefault(method_family(group[0]), []).append((method, learning, dormant))
  panels = family_panels(by_family, METHODS_PER_PANEL)
  plt = pyplot()
  fig, axes = plt.subplots(
    2,
    len(panels),
    figsize=(3.4 * len(panels) + 0.6, 6.4),
    sharex=True,
    sharey="row",
    squeeze=False,
    layout="constrained",
  )
  for column, (_, title, methods, _) in enumerate(panels):
    top, bottom = axes[0][column], axes[1][column]
    for i, (method, learning, dormant) in enumerate(methods):
      colour = COLOURS[i % len(COLOURS)]
      _draw(top, learning, colour, method)
      if dormant is not None:
        _draw(bottom, dormant, colour, None)
    top.set_title(title)
    bottom.set_xlabel("task")
    for ax in (top, bottom):
      ax.grid(alpha=0.25, lw=0.5)
      ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    bottom.legend(
      *top.get_legend_handles_labels(),
      loc="upper center",
      bbox_to_anchor=(0.5, -0.28),
      frameon=False,
    )
  axes[0][0].set_ylabel("learning accuracy\n(test acc. right after training)")
  axes[1][0].set_ylabel(f"dormant ReLU units\n(fraction, tau = {_dormant_tau(results['runs'])})")
  fig.suptitle(figure_title(results, "plasticity over the stream (mean ± std over seeds)"))
  save(fig, path)
  return True
