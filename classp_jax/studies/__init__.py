"""Studies as code: ``classp-jax study NAME``, on this machine or a cluster.

A study is a declaration next to its experiment (`classp_jax.experiments.Study`):
which experiment, its overrides, the subsample it tunes on, the knobs swept,
the seeds. `run_study` runs its stages (`classp_jax.studies.stages`) in
order, each planning its runs with `classp_jax.planning.plan_runs` and
selecting with `classp_jax.results.selection`, with no text in between; a
launcher (`classp_jax.studies.launchers`) runs them, and the driver
(`classp_jax.studies.driver`) alone writes their records under ``runs``
(`classp_jax.results.records`), so a study stopped at any moment goes on
where it was when started again.

Example, from Python (the CLI is ``classp-jax study``)::

    from classp_jax.studies import run_study
    summary = run_study("split_mnist_task", runs="experiments/results/runs",
                        data_dir="/data", launcher="local:2")
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence, TextIO

from classp_jax.experiments import DataOptions, get_study
from classp_jax.results import check_writable, parse_select
from classp_jax.studies.driver import Driver, Tally
from classp_jax.studies.launchers import LAUNCHERS, make_launcher
from classp_jax.studies.stages import STAGE_FUNCTIONS, STAGES, StudyContext

# What `.cache/` under a records' root holds (compilation cache, checkpoints, job files)
# is never a record: kept out of git by a .gitignore the driver writes there.
_CACHE_GITIGNORE = "# classp-jax study: caches, checkpoints and job files, never records\n.cache/\n"


@dataclasses.dataclass
class StudySummary:
  """What a study run did."""

  study: str
  stages: tuple[str, ...]
  tally: Tally
  seconds: float
  written: list[Path]

  @property
  def ok(self) -> bool:
    return not self.tally.failed

  def lines(self) -> list[str]:
    t = self.tally
    lines = [
      f"{self.study}: stages {', '.join(self.stages)} done in {self.seconds / 60:.1f} min: "
      f"{t.finished} run(s) finished, {t.skipped} kept already, {len(t.failed)} failed"
    ]
    lines += [f"  FAILED {f['part']} {f['method']} seed {f['seed']}: {f['path']}" for f in t.failed]
    lines += [f"  wrote {path}" for path in self.written]
    return lines


def parse_stages(stages: Sequence[str] | None) -> tuple[str, ...]:
  """The stages to run, in their order; ValueError names an unknown one."""
  if not stages:
    return STAGES
  unknown = [s for s in stages if s not in STAGES]
  if unknown:
    raise ValueError(f"unknown stage {unknown[0]!r}; the stages: {', '.join(STAGES)}")
  return tuple(s for s in STAGES if s in stages)


def _quick(study):
  """A study as ``--quick`` runs it: one tuning seed, two seeds, one growth round."""
  return dataclasses.replace(study, tuning_seeds=(0,), seeds=(0, 1), growth_rounds=1)


def run_study(
  name: str,
  *,
  runs: str | os.PathLike,
  data_dir: str | None = None,
  source: str = "auto",
  stages: Sequence[str] | None = None,
  launcher: str = "local",
  launcher_options: dict[str, Any] | None = None,
  quick: bool = False,
  select: str | None = None,
  retries: int = 2,
  report_out: str | os.PathLike | None = None,
  notes: str | None = None,
  stream: TextIO | None = sys.stderr,
) -> StudySummary:
  """Runs a declared study's stages.

  Args:
    name: a declared study (`classp_jax.experiments.studies`).
    runs: the records' root; the study's go in ``runs/NAME/PART``.
    data_dir, source: where the datasets come from (`DataOptions`).
    stages: which of `STAGES` to run (default: all, in order).
    launcher: ``local[:N]``, ``slurm``, ``slurm:local``, ``ray[:ADDRESS]`` or
      ``ray:local`` (`classp_jax.studies.launchers`).
    launcher_options: a cluster launcher's job parameters.
    quick: a smoke run (``run --quick``'s sizes, one tuning seed, two seeds),
      kept apart in ``runs/.quick/NAME`` (a report of ``runs`` does not read it).
    select: the selection mode (default: the study's), ``validation`` or
      ``first-tasks:K``.
    retries: how many times a failed run is tried again.
    report_out: where the report stage writes (default ``runs/report``).
    notes: a markdown file the report puts after its title.
    stream: where progress goes (None: nowhere).

  Returns:
    A `StudySummary`; ``ok`` is false if a run failed.

  Raises:
    ValueError: an unknown study, stage, launcher or selection mode, a
      missing extra, an unreachable Ray cluster or an unwritable ``runs``,
      before any run starts.
  """
  study = get_study(name)
  order = parse_stages(stages)
  parse_select(select or study.select)
  if retries < 0:
    raise ValueError(f"retries must be >= 0, got {retries}")
  runs = Path(runs)
  chosen = make_launcher(launcher, runs / ".cache" / "jobs", launcher_options)
  try:
    check_writable(runs, option="--runs")
  except OSError as e:
    raise ValueError(str(e)) from None
  if not (runs / ".gitignore").exists():
    (runs / ".gitignore").write_text(_CACHE_GITIGNORE)
  started = time.monotonic()
  with chosen:
    ctx = StudyContext(
      study=_quick(study) if quick else study,
      data=DataOptions(source, data_dir),
      runs=runs,
      driver=Driver(runs, chosen, retries, stream),
      select=select or study.select,
      quick=quick,
      checkpoints=chosen.checkpoints,
      cache_dir=str((runs / ".cache" / "xla").absolute()),
      report_out=None if report_out is None else Path(report_out),
      notes=notes,
    )
    for stage in order:
      STAGE_FUNCTIONS[stage](ctx)
  return StudySummary(name, order, ctx.driver.tally, time.monotonic() - started, ctx.written)


__all__ = ["LAUNCHERS", "STAGES", "StudySummary", "parse_stages", "run_study"]
