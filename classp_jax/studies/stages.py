"""A study's stages, in Python, calling the selection protocol directly.

* ``frontier``: every tuned method's knobs swept around its centre on the
  tuning seeds; then each grid whose selected point is at an edge grows past
  it (`classp_jax.results.next_points`), for at most ``growth_rounds`` rounds.
* ``selected``: for a study tuned on a subsample, selection again on all the
  data (the ``selected`` part): each method's selected point runs there; a
  method whose point diverged there, or was selected at its grid's edge on
  the subsample, also runs the grid values either side of it; then the grids
  grow as the frontier's do. No method is named by hand. A no-op for a study
  tuned on all its data.
* ``seeds``: each method's selected point on every seed of the study. A seed
  that diverges disqualifies its point and the selection moves on: the new
  point gets its seeds too, until the selection stands.
* ``paper``: the paper's methods at their own points, every seed.
* ``report``: the report of every study under the records' root.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

from classp_jax.experiments import DataOptions, Study
from classp_jax.results import (
  best_per_method,
  neighbour_points,
  next_points,
  parse_variant,
  select_points,
  selected_variants,
  variant_name,
)
from classp_jax.results.records import holds_own_records, read_part
from classp_jax.studies.driver import Driver
from classp_jax.studies.work import WorkItem

STAGES = ("frontier", "selected", "seeds", "paper", "report")
# Rounds of the seeds stage: each round runs the seeds of a selection that moved.
SELECTION_ROUNDS = 4


@dataclasses.dataclass
class StudyContext:
  """What every stage of one study run shares."""

  study: Study
  data: DataOptions
  runs: Path
  driver: Driver
  select: str
  quick: bool = False
  checkpoints: bool = False
  cache_dir: str | None = None
  report_out: Path | None = None
  notes: str | None = None
  written: list[Path] = dataclasses.field(default_factory=list)

  @property
  def folder_name(self) -> str:
    """The study's folder under the records' root. Smoke runs keep apart, in a hidden folder
    that a report of the root does not read."""
    return f".quick/{self.study.name}" if self.quick else self.study.name

  def runs_of(self, part: str) -> list[dict[str, Any]]:
    folder = self.runs / self.folder_name / part
    return read_part(folder)["runs"] if holds_own_records(folder) else []

  @property
  def tuning_part(self) -> str:
    """Where the selected points get their seeds: all the data's part."""
    return "selected" if self.study.tune_subsample else "frontier"


def plan_items(
  ctx: StudyContext,
  part: str,
  methods: Sequence[str] | None,
  seeds: Sequence[int],
  *,
  frontier: bool = True,
  subsample: str | None = None,
) -> list[WorkItem]:
  """The work items of ``methods`` (names or frontier points) on ``seeds`` in ``part``,
  planned and checked by `classp_jax.planning.plan_runs` before any runs."""
  from classp_jax.planning import plan_runs
  from classp_jax.training import settings_id

  study = ctx.study
  overrides = (*study.overrides, *(study.tuning_overrides if part != "paper" else ()))
  plan = plan_runs(
    study.experiment,
    methods=methods,
    seeds=seeds,
    overrides=overrides,
    quick=ctx.quick,
    subsample=subsample,
    frontier=frontier,
    knobs=study.knobs if frontier else None,
    data=ctx.data,
  )
  checkpoint_dir = (
    str((ctx.runs / ".cache" / "checkpoints" / ctx.folder_name / part).absolute())
    if ctx.checkpoints
    else None
  )
  return [
    WorkItem(
      study=study.name,
      part=part,
      folder=f"{ctx.folder_name}/{part}",
      experiment=study.experiment,
      method=run.method.name,
      seed=run.seed,
      settings_id=settings_id(run.settings),
      frontier=frontier,
      overrides=overrides,
      quick=ctx.quick,
      subsample=subsample,
      source=ctx.data.source,
      data_dir=ctx.data.data_dir,
      checkpoint_dir=checkpoint_dir,
      cache_dir=ctx.cache_dir,
    )
    for run in plan.runs
  ]


def _tuned(ctx: StudyContext, points: Sequence[str]) -> list[str]:
  """The points of the methods the study tunes."""
  methods = ctx.study.methods
  return [p for p in points if methods is None or (parse_variant(p) or (p,))[0] in methods]


def _execute(ctx: StudyContext, part: str, points, seeds, what: str, subsample) -> int:
  items = plan_items(ctx, part, points, seeds, subsample=subsample)
  return ctx.driver.execute(items, f"{ctx.study.name} {what}").finished


def _within_bound(ctx: StudyContext, runs: list[dict[str, Any]], points: list[str]) -> list[str]:
  """The points of ``points`` that complete a point already run, or extend a grid that has
  fewer than ``growth_rounds`` values beyond its declared grid: counted from the records,
  so a study started again never grows further than one run through."""
  from classp_jax.experiments import get_experiment

  frontier = get_experiment(ctx.study.experiment).frontier
  have = {r["method"] for r in runs}
  kept = []
  for point in points:
    base, knob, _ = parse_variant(point)
    declared = {variant_name(base, knob, v) for v in frontier[base].knobs.get(knob, ())}
    curve = {r["method"] for r in runs if r.get("base_method") == base and r.get("knob") == knob}
    if point in have or len(curve - declared) < ctx.study.growth_rounds:
      kept.append(point)
  return kept


def _grow(ctx: StudyContext, part: str, subsample: str | None) -> None:
  """Grows each grid of ``part`` whose selected point is at an edge, until none is or its
  growth bound is reached (`_within_bound`)."""
  for round_ in range(ctx.study.growth_rounds):
    runs = ctx.runs_of(part)
    points, _ = next_points(select_points(runs, ctx.select))
    points = _within_bound(ctx, runs, _tuned(ctx, points))
    if not points:
      return
    what = f"{part}, growth round {round_ + 1}"
    if not _execute(ctx, part, points, ctx.study.tuning_seeds, what, subsample):
      return  # nothing new ran (e.g. its runs failed): another round would ask the same


def frontier_stage(ctx: StudyContext) -> None:
  study = ctx.study
  subsample = study.tune_subsample or study.subsample
  methods = list(study.methods) if study.methods else None
  _execute(ctx, "frontier", methods, study.tuning_seeds, "frontier", subsample)
  _grow(ctx, "frontier", subsample)


def selected_stage(ctx: StudyContext) -> None:
  study = ctx.study
  if not study.tune_subsample:
    return
  tuned = select_points(ctx.runs_of("frontier"), ctx.select)
  if not tuned:
    raise ValueError(f"{study.name}: the selected stage needs the frontier's runs first")
  points = _tuned(ctx, selected_variants(tuned))
  _execute(ctx, "selected", points, study.tuning_seeds, "selected on all the data", study.subsample)
  on_all = best_per_method(select_points(ctx.runs_of("selected"), ctx.select))
  unsettled = {s.method for s in on_all if s.selected is None} | {
    s.method for s in best_per_method(tuned) if s.edge.startswith("yes")
  }
  neighbours = [p for p in neighbour_points(tuned) if parse_variant(p)[0] in unsettled]
  if neighbours:
    what = "grid neighbours on all the data"
    _execute(ctx, "selected", _tuned(ctx, neighbours), study.tuning_seeds, what, study.subsample)
  _grow(ctx, "selected", study.subsample)


def seeds_stage(ctx: StudyContext) -> None:
  study, part = ctx.study, ctx.tuning_part
  subsample = study.subsample if part == "selected" else study.tune_subsample or study.subsample
  previous = None
  for _ in range(SELECTION_ROUNDS):
    points = _tuned(ctx, selected_variants(select_points(ctx.runs_of(part), ctx.select)))
    if not points or points == previous:
      return
    _execute(ctx, part, points, study.seeds, f"{part} points on every seed", subsample)
    previous = points


def paper_stage(ctx: StudyContext) -> None:
  study = ctx.study
  items = plan_items(
    ctx, "paper", list(study.paper_methods), study.seeds, frontier=False, subsample=study.subsample
  )
  ctx.driver.execute(items, f"{study.name} paper points")


def report_stage(ctx: StudyContext) -> None:
  from classp_jax.report import write_report

  # Every study's records under the root, as `classp-jax report RUNS` reads them (a smoke
  # run: its own).
  source = ctx.runs / ctx.folder_name if ctx.quick else ctx.runs
  out = ctx.report_out or ctx.runs / "report"
  ctx.written += write_report([source], out, notes=ctx.notes, select=ctx.select)


STAGE_FUNCTIONS = {
  "frontier": frontier_stage,
  "selected": selected_stage,
  "seeds": seeds_stage,
  "paper": paper_stage,
  "report": report_stage,
}
