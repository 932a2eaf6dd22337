"""The selection protocol: each frontier curve's best point, and where its grid must grow.

A frontier is a method's knobs swept one at a time around a centre, each point
a run named ``METHOD[KNOB=VALUE]`` (`classp_jax.results.naming`). `select_points`
chooses each curve's best point on validation accuracy whenever its runs
recorded one, and its test accuracy is reported there; `best_per_method` keeps
each method's best curve; `next_points` and `neighbour_points` name the points
to run next, as ``classp-jax run --frontier --methods`` takes them.

Methods are ordered by what their runs record of them (`MethodInfo`), never by
name: by family, the upper bound last.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any, NamedTuple

import numpy as np

from classp_jax.results.loading import diverged_note, finished
from classp_jax.results.naming import is_variant, variant_name
from classp_jax.results.schema import FAMILIES, UPPER_BOUND, MethodInfo


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
  chased = [
    a
    for a, met in zip(run["epoch_accuracy"], run.get("targets_met") or ())
    if met is not None and a is not None
  ]
  return float(np.mean(chased)) if chased else float("nan")


def has_validation(run: dict[str, Any]) -> bool:
  """Whether a run recorded a validation accuracy matrix (it ran with a validation split)."""
  return bool(run.get("validation_accuracy_matrix"))


def _selection_accuracy(run: dict[str, Any], protocol: str, k: int | None) -> float:
  """What a run scores under a selection protocol (see `select_points`)."""
  if protocol == "test":
    return run["acc"]
  matrix = run["validation_accuracy_matrix"]
  if protocol == "first-tasks":
    return float(np.mean(matrix[k - 1][:k]))
  return float(np.mean(matrix[-1]))


def shown_value(value: Any) -> str:
  """A knob's value as the tables and messages show it (as in `variant_name`)."""
  return f"{value:g}" if isinstance(value, float) else str(value)


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
  return all(
    p.score < np.mean([np.mean(r["baseline"]) for r in p.runs]) + FLAT_MARGIN for p in points
  )


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
    validated = all(map(has_validation, ok or [r for g in groups for r in g]))
    used = protocol or ("validation" if validated else "test")
    if used != "test" and not validated:
      raise ValueError(
        f"--select {select}: {method} ({knob}) has runs without a "
        f"validation_accuracy_matrix (run with a validation split, or use "
        f"--select test)"
      )
    if used == "first-tasks" and any(k > len(r["validation_accuracy_matrix"]) for r in ok):
      raise ValueError(f"--select {select}: {method} ({knob}) has fewer than {k} tasks")
    # Scored on the seeds every point has, so that a point given extra seeds (the
    # selected one, for the tables) is compared on the same seeds as the others.
    shared = set.intersection(*({r["seed"] for r in g} for g in groups))
    points = [
      FrontierPoint(
        g[0]["value"],
        g,
        None
        if diverged_note(g) or not shared
        else float(np.mean([_selection_accuracy(r, used, k) for r in g if r["seed"] in shared])),
        all(map(met_targets, g)),
      )
      for g in groups
    ]
    scored = [p for p in points if p.score is not None]
    eligible = [p for p in scored if p.matched]
    best = max(eligible, key=lambda p: p.score) if eligible else None
    closest = (
      None
      if best is not None or not scored
      else max(
        scored,
        key=lambda p: np.nan_to_num(
          np.mean([target_accuracy(r) for r in p.runs if r["seed"] in shared]), nan=-np.inf
        ),
      )
    )
    edge, marked = "n/a", best or closest
    if marked is not None and len(points) == 1:
      edge = "one point"
    elif marked is not None and isinstance(marked.value, (int, float)):
      index = points.index(marked)
      edge = "yes-low" if index == 0 else "yes-high" if index == len(points) - 1 else "no"
    shown = {"first-tasks": f"validation, first {k} tasks"}.get(used, used)
    selections.append(
      Selection(
        method, knob, points, best, shown, edge, closest, bool(scored) and _learned_nothing(scored)
      )
    )
  return selections


def best_per_method(selections: list[Selection]) -> list[Selection]:
  """Each method's best selected point over all its curves (its knobs), in `method_order`.

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
  return sorted(best.values(), key=lambda s: method_order(s.method, selection_info(s)))


def method_info(run: dict[str, Any]) -> MethodInfo:
  """What a run's method is, as the run recorded it (a frontier point records its base
  method's); family ``other`` and no roles for a run that recorded nothing."""
  return MethodInfo.from_json(run.get("method_info"))


def selection_info(s: Selection) -> MethodInfo:
  """The `method_info` of a curve's method."""
  return method_info(s.points[0].runs[0])


def method_order(name: str, info: MethodInfo) -> tuple[bool, int, str]:
  """The order of the tables and plots: by family in `FAMILIES` order, then by name, with
  the upper bound (joint training) last.

  Examples:
    >>> infos = {"joint": MethodInfo("optimizers", roles=("upper_bound",)),
    ...          "sgd": MethodInfo("optimizers"), "ewc": MethodInfo("regularizers"),
    ...          "classp": MethodInfo("CLASSP")}
    >>> sorted(infos, key=lambda name: method_order(name, infos[name]))
    ['classp', 'sgd', 'ewc', 'joint']
  """
  return UPPER_BOUND in info.roles, FAMILIES.index(info.family), name


def tuned_runs(selections: list[Selection]) -> list[dict[str, Any]]:
  """The runs of each method's best point (`best_per_method`), named after the method and
  no longer marked as variants, for the tables (`report_rows`, `paired_rows`) and plots."""
  return [
    {**run, "method": s.method, "base_method": None, "knob": None, "value": None}
    for s in best_per_method(selections)
    if s.selected
    for run in s.selected.runs
  ]


def selected_variants(selections: list[Selection]) -> list[str]:
  """Each method's best point as ``METHOD[KNOB=VALUE]``, the name ``classp-jax run
  --frontier --methods`` takes (e.g. to run it on more seeds); for a method that met its
  training targets at no point, the point that came closest (it is reported too)."""
  return [
    variant_name(s.method, s.knob, (s.selected or s.closest).value)
    for s in best_per_method(selections)
    if s.selected or s.closest
  ]


def _unstable_curve(selections: list[Selection], method: str) -> Selection | None:
  """The curve to grow down for a method that diverged at every point: its strength's (a
  penalty too stiff for the step size: EWC needs ``lr * strength * F_i < 2``), or, without
  one, its learning rate's; None if it has neither."""
  curves = {s.knob: s for s in selections if s.method == method}
  return curves.get("strength", curves.get("learning_rate"))


def _incomplete_points(selections: list[Selection]) -> list[str]:
  """The points that lack a seed which most points of their curve have (a growth round
  stopped part-way): until they have it, their whole curve is scored on fewer seeds."""
  names = []
  for s in selections:
    seeds = [frozenset(r["seed"] for r in p.runs) for p in s.points]
    usual = Counter(seeds).most_common(1)[0][0]
    names += [
      variant_name(s.method, s.knob, p.value)
      for p, have in zip(s.points, seeds)
      if not usual <= have
    ]
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
      stuck.append(
        f"{s.method} ({s.knob}) has one value, {shown_value(values[0])}, and no step "
        "to grow its grid by"
      )
      continue
    edge, neighbour = (values[0], values[1]) if s.edge == "yes-low" else (values[-1], values[-2])
    if edge == 0 or neighbour == 0:
      stuck.append(
        f"{s.method} ({s.knob}) selected {shown_value(edge)}, at its grid's "
        f"{s.edge[4:]} edge, which cannot grow"
      )
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
  names = []
  for s in best_per_method(selections):
    marked = s.selected or s.closest
    if marked is None:
      continue
    i = s.points.index(marked)
    names += [variant_name(s.method, s.knob, p.value) for p in s.points[max(0, i - 1) : i + 2]]
  return names
