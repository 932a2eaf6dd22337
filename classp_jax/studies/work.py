"""One unit of a study's work: a (part, method point, seed), and the worker that runs it.

A `WorkItem` is small, plain and picklable, so any launcher can carry it to a
worker process, a Slurm job or a Ray task. The worker (`run_item`) plans the
one run again from the item (the same `classp_jax.planning.plan_runs` the
driver used), checks that it has the settings the driver planned, trains it,
and returns its record. It writes nothing: only the driver writes records.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from classp_jax.experiments import DataOptions

# Runs of one method differ in injected hyperparameters only, so their compiled steps are
# the same: a persistent cache compiles a learning-rate sweep once. Every program is kept,
# however fast it compiled: at a 0.5 s floor, SGD's digits steps compiled again in every
# run (0.8 s a run against 0.45 s from the cache).
_MIN_COMPILE_SECONDS = 0.0


@dataclasses.dataclass(frozen=True)
class WorkItem:
  """One run of a study.

  Attributes:
    study: the study's name.
    part: its part (``frontier``, ``selected`` or ``paper``).
    folder: its record's folder under the records' root (``STUDY/PART``, or
      ``.quick/STUDY/PART`` for a smoke run).
    experiment: the experiment's name.
    method: a method name or frontier point (``METHOD[KNOB=VALUE]``).
    seed: its seed.
    settings_id: the settings id the driver planned (`classp_jax.training.
      settings_id`): a worker that plans other settings refuses to run.
    frontier: whether ``method`` is read against the experiment's frontier.
    overrides: ``--set`` items.
    quick: a smoke-sized run.
    subsample: ``TRAIN[,TEST]`` examples per task, or None.
    source: where datasets come from (`DataOptions.source`).
    data_dir: the data root on the worker's machine, or None.
    checkpoint_dir: where the run checkpoints (a preempted job resumes from
      it), or None.
    cache_dir: JAX's persistent compilation cache, shared by the workers, or
      None.
  """

  study: str
  part: str
  folder: str
  experiment: str
  method: str
  seed: int
  settings_id: str
  frontier: bool = True
  overrides: tuple[str, ...] = ()
  quick: bool = False
  subsample: str | None = None
  source: str = "auto"
  data_dir: str | None = None
  checkpoint_dir: str | None = None
  cache_dir: str | None = None

  @property
  def key(self) -> dict[str, Any]:
    """What identifies its record: study, part, method, seed and settings id."""
    return {
      "study": self.study,
      "part": self.part,
      "method": self.method,
      "seed": self.seed,
      "settings_id": self.settings_id,
    }

  def describe(self) -> str:
    return f"{self.study}/{self.part} {self.method} seed {self.seed}"


def use_compilation_cache(cache_dir: str | None) -> None:
  """Turns on JAX's persistent compilation cache in ``cache_dir`` for this process."""
  if cache_dir is None:
    return
  import jax

  os.makedirs(cache_dir, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", cache_dir)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", _MIN_COMPILE_SECONDS)


def plan_item_runs(item: WorkItem):
  """The `classp_jax.planning.RunPlan` of one item's run."""
  from classp_jax.planning import plan_runs

  return plan_runs(
    item.experiment,
    methods=[item.method],
    seeds=[item.seed],
    overrides=item.overrides,
    quick=item.quick,
    subsample=item.subsample,
    frontier=item.frontier,
    data=DataOptions(item.source, item.data_dir),
    checkpoint_dir=item.checkpoint_dir,
  )


def results_header(plan, options: dict[str, Any]) -> dict[str, Any]:
  """The `ResultsHeader` of a plan's records, as this process sees its devices."""
  import jax

  from classp_jax.results.schema import ResultsHeader

  return ResultsHeader(
    experiment=plan.experiment.name,
    description=plan.experiment.description,
    scenario=plan.stream.scenario,
    tasks=[t.name for t in plan.stream.tasks],
    devices=jax.device_count(),
    platform=jax.devices()[0].platform,
    loop=dataclasses.asdict(plan.experiment.loop),
    options=options,
  ).to_json()


def item_options(item: WorkItem) -> dict[str, Any]:
  """The header's ``options`` of an item's part: how it was made, without machine paths."""
  return {
    "command": f"classp-jax study {item.study}" + (" --quick" if item.quick else ""),
    "study": item.study,
    "part": item.part,
    "quick": item.quick,
    "subsample": item.subsample,
    "frontier": item.frontier,
    "overrides": list(item.overrides),
    "source": item.source,
  }


def run_item(item: WorkItem) -> dict[str, Any]:
  """Runs one item and returns its record, ``{"header": ..., "run": ...}``.

  Raises:
    RuntimeError: the worker plans other settings than the driver did (its
      code or data differ from the driver's).
  """
  import jax

  from classp_jax.results.schema import RunEntry
  from classp_jax.training import run_continual, settings_id

  use_compilation_cache(item.cache_dir)
  plan = plan_item_runs(item)
  (planned,) = plan.runs
  found = settings_id(planned.settings)
  if found != item.settings_id:
    raise RuntimeError(
      f"{item.describe()}: this worker plans settings {found}, the driver planned "
      f"{item.settings_id}: its code or data differ from the driver's"
    )
  try:
    result = run_continual(
      plan.model,
      plan.stream,
      planned.method,
      plan.experiment.loop,
      seed=item.seed,
      checkpoint_dir=planned.checkpoint_dir,
      progress=False,
      settings=planned.settings,
    )
  finally:
    # Each method compiles its own steps; XLA:CPU maps each executable separately (a
    # long-lived worker would run out of memory mappings), and a split_mnist worker that
    # kept them had grown to 5 GB after 16 runs. The persistent cache serves the next run.
    jax.clear_caches()
  options = item_options(item)
  entry = dataclasses.replace(
    RunEntry.from_json(result), command=options["command"], **planned.variant
  )
  return {"header": results_header(plan, options), "run": entry.to_json()}
