"""Planning: an experiment, ``--methods``, ``--set`` and ``--frontier`` into a list of runs.

`plan_runs` is what ``classp-jax run`` does before it trains, as one library
function: it resolves the experiment (``--quick``, ``--subsample``, the
overrides), expands each method's frontier, builds and checks every method,
and lists each (method, seed) with its settings, skipping those already kept.
A script that runs studies calls it the same way.

The stability-plasticity frontier: each method swept along its main knobs.

One tuned point per method says who wins at that point only. Sweeping each
method's main knob (CLASSP's threshold and learning rate, EWC's and MAS's
lambda, SI's c, the learning rate of a plain optimizer) traces how much
old-task accuracy the method trades for new-task accuracy, and which method
dominates where is a fairer answer. ``classp-jax run NAME --frontier`` expands
each method with a `Sweep` in `Experiment.frontier` into variants named
``METHOD[KNOB=VALUE]``, and each run entry records ``base_method``, ``knob``
and ``value``; the report draws one curve per method and knob, and selects
each method's best point on validation accuracy.

Knobs are swept one at a time around a centre (`Sweep.at`), not as a product
grid: a method with a learning rate and a strength costs the sum of the two
grids, not their product. The centre is a point of every grid, so a best
point is interior in the knobs its curve holds fixed; whether it is interior
in its own knob is what the report's *grid edge* column says.
"""

from __future__ import annotations

import ast
import dataclasses
import shutil
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import flax.linen as nn
import jax

from classp_jax.data import TaskStream
from classp_jax.experiments import DataOptions, Experiment, Sweep, experiments, get_experiment
from classp_jax.experiments.sizing import subsampled
from classp_jax.methods import Method, MethodSpec, build_method, resolve_method, with_hyperparameter
from classp_jax.results import (
  RESULTS_FILE,
  check_compatible,
  other_settings,
  read_results,
  refuse_other_settings,
)
from classp_jax.results.naming import parse_variant, variant_name
from classp_jax.training import Checkpointer, check_config, run_settings, settings_id
from classp_jax.training.plasticity_probe import check_sows_activations


class MethodVariant(NamedTuple):
  """A method to run: a named method, or one point of its frontier.

  Attributes:
    name: what results call it, e.g. ``classp`` or ``classp[threshold=1e-06]``.
    spec: its optimizer, regularizer and hyperparameters.
    base_method: the method it varies (its own name if it is no variant).
    knob: the swept hyperparameter, or None.
    value: the knob's value here, or None.
  """

  name: str
  spec: MethodSpec
  base_method: str
  knob: str | None = None
  value: Any = None


def _variant(method_name: str, spec, sweep: Sweep, knob: str, value: Any) -> MethodVariant:
  for name, centre in sweep.at.items():
    spec = with_hyperparameter(method_name, spec, name, centre)
  return MethodVariant(
    variant_name(method_name, knob, value),
    with_hyperparameter(method_name, spec, knob, value),
    method_name,
    knob,
    value,
  )


def _point(name: str, specs, frontier: Mapping[str, Sweep]) -> MethodVariant:
  """The variant named ``METHOD[KNOB=VALUE]``: a point of the grid, or beyond it (to extend
  the grid) with the same centre."""
  base, knob, value_text = parse_variant(name)
  sweep = frontier.get(base)
  if sweep is None or knob not in sweep.knobs:
    raise ValueError(
      f"{name!r}: {base} has no frontier knob {knob!r}"
      + (f"; its knobs: {', '.join(sweep.knobs)}" if sweep else "")
    )
  on_grid = [v for v in sweep.knobs[knob] if variant_name(base, knob, v) == name]
  if on_grid:
    value = on_grid[0]
  else:
    try:
      value = float(value_text)
    except ValueError:
      raise ValueError(f"{name!r}: {value_text!r} is not a number") from None
    grid = sweep.knobs[knob]
    if all(isinstance(v, int) and not isinstance(v, bool) for v in grid):
      value = int(value) if value.is_integer() else value
  return _variant(base, resolve_method(base, specs), sweep, knob, value)


def plan_methods(
  method_names: Sequence[str], specs, frontier: Mapping[str, Sweep] | None = None
) -> list[MethodVariant]:
  """The methods to run, in order.

  Args:
    method_names: named methods, bare optimizers or regularizers, or ``a+b``
      (see `classp_jax.methods.resolve_method`); with ``frontier``, also one
      point of a frontier, ``METHOD[KNOB=VALUE]`` as `variant_name` writes it
      (e.g. to add seeds to a selected point), on its grid or beyond it with
      the same centre (to extend a grid whose best point is at its edge).
    specs: the experiment's named methods.
    frontier: if given (`Experiment.frontier`), a method with a `Sweep` is
      run at each value of each of its knobs instead of at its own point.

  Raises:
    ValueError: an unknown method or knob, or a point's value that is no number.

  Examples:
    >>> from classp_jax.experiments import Sweep
    >>> frontier = {"sgd": Sweep({"learning_rate": (0.01, 0.1)})}
    >>> [v.name for v in plan_methods(["sgd"], {}, frontier)]
    ['sgd[learning_rate=0.01]', 'sgd[learning_rate=0.1]']
    >>> plan_methods(["sgd[learning_rate=0.1]"], {}, frontier)[0].spec.hparams
    {'learning_rate': 0.1}
    >>> plan_methods(["sgd[learning_rate=1]"], {}, frontier)[0].value  # beyond the grid
    1.0
  """
  planned = []
  for method_name in method_names:
    if frontier and parse_variant(method_name):
      planned.append(_point(method_name, specs, frontier))
      continue
    spec = resolve_method(method_name, specs)
    sweep = (frontier or {}).get(method_name)
    planned += (
      [
        _variant(method_name, spec, sweep, knob, value)
        for knob, values in sweep.knobs.items()
        for value in values
      ]
      if sweep
      else [MethodVariant(method_name, spec, method_name)]
    )
  return planned


# --- ``--set`` overrides -----------------------------------------------------------------------


def _parse_value(text: str) -> Any:
  """A ``--set`` value: a Python literal, or a comma-separated tuple of them (one per task)."""
  values = [parse_scalar(v) for v in text.split(",")]
  return tuple(values) if len(values) > 1 else values[0]


def parse_scalar(text: str) -> Any:
  """One ``--set`` (or ``--launcher-option``) value: a Python literal, true/false, none, a
  float (nan and inf too), or else the text itself."""
  lowered = text.strip().lower()
  if lowered in ("true", "false"):
    return lowered == "true"
  if lowered == "none":
    return None
  try:
    return ast.literal_eval(text.strip())
  except (ValueError, SyntaxError):
    pass
  try:
    return float(text)  # nan, inf: parsed, so that checks reject them as numbers
  except ValueError:
    return text.strip()


def parse_list(text: str, convert, what: str) -> list:
  """A comma-separated option's items, each converted; ValueError names the option."""
  try:
    items = [convert(x) for x in text.split(",") if x.strip()]
  except ValueError:
    raise ValueError(f"{what} must be a comma-separated list, got {text!r}") from None
  if not items:
    raise ValueError(f"{what} is empty")
  return items


def resize(experiment, overrides: Sequence[str]):
  """Applies a ``--set num_tasks=N`` among ``overrides`` (the last one wins): the
  experiment over N tasks, before ``--quick`` and the other overrides apply.

  Returns:
    The experiment, and the other overrides.

  Raises:
    ValueError: N is not an integer of at least 2, or the experiment's length is fixed.
  """
  lengths = [item.partition("=")[2] for item in overrides if item.partition("=")[0] == "num_tasks"]
  if not lengths:
    return experiment, overrides
  value = _parse_value(lengths[-1])
  if isinstance(value, bool) or not isinstance(value, int) or value < 2:
    raise ValueError(f"num_tasks takes an integer of at least 2, got {lengths[-1]!r}")
  if experiment.resized is None:
    with_one = sorted(name for name, e in experiments().items() if e.resized)
    raise ValueError(
      f"{experiment.name} has a fixed number of tasks; these take num_tasks: {', '.join(with_one)}"
    )
  rest = [item for item in overrides if item.partition("=")[0] != "num_tasks"]
  return experiment.resized(value), rest


def apply_overrides(experiment, overrides: Sequence[str]):
  """Applies ``--set`` overrides to an experiment (see the epilog).

  Returns:
    The experiment, and the `MethodSpec` fields to set on every method run
    (``reset_optimizer_state``).
  """
  loop_fields = {f.name for f in dataclasses.fields(experiment.loop)}
  loop_changes, methods, every_method = {}, dict(experiment.methods), {}
  for item in overrides:
    key, sep, text = item.partition("=")
    if not sep or not key:
      raise ValueError(f"--set takes KEY=VALUE or METHOD.KEY=VALUE, got {item!r}")
    value = _parse_value(text)
    if key == "scenario":
      if value not in experiment.scenarios:
        raise ValueError(
          f"{experiment.name} runs in the scenarios "
          f"{', '.join(experiment.scenarios)}, not {value!r}"
        )
      experiment = dataclasses.replace(
        experiment, scenarios=(value, *(s for s in experiment.scenarios if s != value))
      )
      continue
    if key == "reset_optimizer_state":  # checked where it is set, on each method
      every_method[key] = value
      continue
    if "." not in key:
      if key not in loop_fields:
        raise ValueError(
          f"unknown setting {key!r}; known: scenario, num_tasks, reset_optimizer_state, "
          f"{', '.join(sorted(loop_fields))}"
        )
      loop_changes[key] = value
      continue
    method_name, _, name = key.partition(".")
    methods[method_name] = with_hyperparameter(
      method_name, resolve_method(method_name, methods), name, value
    )
  return dataclasses.replace(
    experiment, loop=dataclasses.replace(experiment.loop, **loop_changes), methods=methods
  ), every_method


# --- the runs -------------------------------------------------------------------------------------


class PlannedRun(NamedTuple):
  """One (method, seed) to run.

  Attributes:
    method: the built method.
    variant: ``base_method``, ``knob`` and ``value`` of a frontier point (empty otherwise),
      as its results entry records them.
    seed: its seed.
    settings: its `classp_jax.training.run_settings`.
    checkpoint_dir: where it checkpoints, or None.
  """

  method: Method
  variant: dict[str, Any]
  seed: int
  settings: dict[str, Any]
  checkpoint_dir: str | None


@dataclasses.dataclass(frozen=True)
class RunPlan:
  """What `plan_runs` planned.

  Attributes:
    experiment: the experiment with its options and overrides applied.
    stream: its task stream.
    model: its model.
    planned: every method variant asked for, in order.
    runs: the (method, seed) runs still to do.
    skipped: how many asked-for runs are already kept with these settings.
    replace: whether the runs may replace kept runs of other settings (save them so).
    replaced: how many runs will replace a kept run of other settings.
  """

  experiment: Experiment
  stream: TaskStream
  model: nn.Module
  planned: list[MethodVariant]
  runs: list[PlannedRun]
  skipped: int
  replace: bool = False
  replaced: int = 0


def _kept_runs(out: Path, stream: TaskStream, experiment: str) -> dict[tuple[str, int], dict]:
  """The runs already in ``out/results.json`` by ``(method, seed)``, each checked as the
  report reads it (`classp_jax.results.read_results`): a malformed entry is found now, not
  when the first run is saved."""
  path = out / RESULTS_FILE
  check_compatible(out, experiment, stream.scenario, [t.name for t in stream.tasks])
  if not path.exists():
    return {}
  return {(r["method"], r["seed"]): r for r in read_results(path)["runs"]}


def _sized(experiment: Experiment, quick: bool, subsample: str | None) -> Experiment:
  """``experiment`` as ``--quick`` and ``--subsample TRAIN[,TEST]`` size it."""
  if quick:
    experiment = experiment.quick(experiment)
  if subsample:
    sizes = parse_list(subsample, int, "--subsample")
    if len(sizes) > 2 or any(size < 1 for size in sizes):
      raise ValueError(f"--subsample takes TRAIN or TRAIN,TEST (positive), got {subsample!r}")
    experiment = subsampled(experiment, *sizes)
  return experiment


def _variants(
  experiment: Experiment,
  methods: Sequence[str] | None,
  frontier: bool,
  knobs: Sequence[str] | None,
  every_method: Mapping[str, Any],
) -> list[MethodVariant]:
  """The method variants to run: ``methods`` (default: the experiment's, or its frontier's),
  each expanded along its frontier with ``frontier``, restricted to ``knobs``."""
  if frontier and not experiment.frontier:
    with_one = sorted(name for name, e in experiments().items() if e.frontier)
    raise ValueError(f"{experiment.name} has no frontier; these have one: {', '.join(with_one)}")
  if knobs and not frontier:
    raise ValueError("--knobs needs --frontier")
  names = (
    list(methods)
    if methods
    else list(experiment.frontier if frontier else experiment.default_methods)
  )
  planned = plan_methods(names, experiment.methods, experiment.frontier if frontier else None)
  for key, value in every_method.items():
    planned = [p._replace(spec=with_hyperparameter(p.name, p.spec, key, value)) for p in planned]
  if knobs:
    planned = [p for p in planned if p.knob is None or p.knob in set(knobs)]
  names = [p.name for p in planned]
  twice = sorted({name for name in names if names.count(name) > 1})
  if twice:  # one seed would be recorded, and summarised, as two
    raise ValueError(f"--methods names {', '.join(twice)} more than once")
  return planned


def _checkpoint_folder(checkpoint_dir: str, run: PlannedRun, restart: bool) -> str:
  """The run's own subfolder of ``checkpoint_dir``: emptied with ``restart``, else a
  checkpoint of other settings in it is refused (`SettingsMismatchError`)."""
  folder = str(Path(checkpoint_dir).absolute() / f"{run.method.name}-seed{run.seed}")
  if restart:
    shutil.rmtree(folder, ignore_errors=True)
  elif Path(folder).is_dir():
    Checkpointer(folder, run.settings).check_settings()
  return folder


def plan_runs(
  experiment_name: str,
  *,
  methods: Sequence[str] | None = None,
  seeds: Sequence[int] = (0,),
  overrides: Sequence[str] = (),
  quick: bool = False,
  subsample: str | None = None,
  frontier: bool = False,
  knobs: Sequence[str] | None = None,
  data: DataOptions = DataOptions(),
  out: Path | None = None,
  skip_finished: bool = True,
  replace: bool = False,
  checkpoint_dir: str | None = None,
  restart: bool = False,
) -> RunPlan:
  """Every run that ``classp-jax run`` would make, checked, before any training.

  Args:
    experiment_name: a named experiment (`classp_jax.experiments.experiments`).
    methods: method names or frontier points (`plan_methods`); None: the experiment's.
    seeds: the seeds, each run for every method.
    overrides: ``--set`` items (`apply_overrides`).
    quick: a smoke-sized run (``Experiment.quick``).
    subsample: ``TRAIN[,TEST]`` examples per task.
    frontier: expand each method with a frontier along its knobs.
    knobs: with ``frontier``, sweep only these.
    data: where the datasets come from; its scenario is replaced by the experiment's.
    out: the results folder the runs go to (None: none is checked). Its results must be
      of this experiment and stream, and every run in it well-formed; a run of a planned
      method and seed with other settings is refused (its record would be replaced).
    skip_finished: with ``out``, skip each run kept there with these settings (else it
      is run again, and replaces its record).
    replace: let the runs replace runs of other settings kept in ``out``.
    checkpoint_dir: each run checkpoints in its own subfolder of it; a checkpoint of
      other settings is refused now.
    restart: delete the planned runs' checkpoints instead, and start them afresh: as with
      ``replace``, their records of other settings in ``out`` are replaced.

  Raises:
    ValueError: any bad name, value or combination, with a one-line message.
  """
  experiment, overrides = resize(get_experiment(experiment_name), overrides)
  experiment = _sized(experiment, quick, subsample)
  experiment, every_method = apply_overrides(experiment, overrides)
  planned = _variants(experiment, methods, frontier, knobs, every_method)
  stream = experiment.stream(dataclasses.replace(data, scenario=experiment.scenarios[0]))
  built = [build_method(p.name, p.spec, len(stream.tasks)) for p in planned]
  model = experiment.model(stream)
  for method in built:
    check_config(experiment.loop, stream, jax.device_count(), method)
    if method.activations:
      check_sows_activations(model, stream, method.name)
  kept = {} if out is None else _kept_runs(out, stream, experiment.name)
  runs = []
  for method, plan in zip(built, planned):
    variant = (
      {}
      if plan.knob is None
      else {"base_method": plan.base_method, "knob": plan.knob, "value": plan.value}
    )
    for seed in seeds:
      settings = run_settings(model, stream, method, experiment.loop, seed)
      kept_id = kept.get((method.name, seed), {}).get("settings_id")
      if not (skip_finished and kept_id == settings_id(settings)):
        runs.append(PlannedRun(method, variant, seed, settings, None))
  if checkpoint_dir is not None:
    runs = [r._replace(checkpoint_dir=_checkpoint_folder(checkpoint_dir, r, restart)) for r in runs]
  described = [
    dict(
      method=r.method.name, seed=r.seed, settings=r.settings, settings_id=settings_id(r.settings)
    )
    for r in runs
  ]
  # Starting runs afresh at new settings (--restart) replaces their records too.
  replace = replace or (restart and checkpoint_dir is not None)
  if not replace:
    refuse_other_settings(out / RESULTS_FILE if out else None, kept.values(), described)
  return RunPlan(
    experiment,
    stream,
    model,
    planned,
    runs,
    skipped=len(planned) * len(seeds) - len(runs),
    replace=replace,
    replaced=len(other_settings(kept.values(), described)),
  )
