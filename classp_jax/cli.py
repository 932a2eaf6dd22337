"""The ``classp-jax`` command.

``classp-jax run`` with no arguments is the project's main job: the embedded
``digits`` stream, offline, comparing CLASSP with SGD and Adam. ``classp-jax
run NAME`` runs a named experiment; ``classp-jax list`` shows them.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import sys
from pathlib import Path
from typing import Any, Sequence

EPILOG = """\
overrides (--set, repeatable):
  KEY=VALUE           a training setting, e.g. batch_size=64, epochs=4,1,
                      loss_target=0.005, steps_per_call=8, checkpoint_every=500
  METHOD.KEY=VALUE    a method's hyperparameter, e.g. classp.learning_rate=0.1,
                      classp.threshold=0.5,0.0 (one value per task), ewc.strength=100
  Values are Python literals; a comma-separated list gives one value per task.

examples:
  classp-jax run                                   # the offline default (digits)
  classp-jax run digits --methods classp,sgd+ewc --seeds 0,1,2 --out runs/digits
  classp-jax run digits --set classp.threshold=0.1 --set epochs=3
"""


class UsageError(Exception):
  """A bad command-line value: reported in one line, without a traceback."""


def _parse_value(text: str) -> Any:
  values = [_parse_scalar(v) for v in text.split(",")]
  return tuple(values) if len(values) > 1 else values[0]


def _parse_scalar(text: str) -> Any:
  lowered = text.strip().lower()
  if lowered in ("true", "false"):
    return lowered == "true"
  if lowered == "none":
    return None
  try:
    return ast.literal_eval(text.strip())
  except (ValueError, SyntaxError):
    return text.strip()


def _parse_list(text: str, convert, what: str) -> list:
  try:
    items = [convert(x) for x in text.split(",") if x.strip()]
  except ValueError:
    raise UsageError(f"{what} must be a comma-separated list, got {text!r}") from None
  if not items:
    raise UsageError(f"{what} is empty")
  return items


def apply_overrides(experiment, overrides: Sequence[str]):
  """Applies ``--set`` overrides to an experiment (see the epilog)."""
  from classp_jax.methods import optimizers, regularizers, resolve_method

  loop_fields = {f.name for f in dataclasses.fields(experiment.loop)}
  loop_changes, methods = {}, dict(experiment.methods)
  for item in overrides:
    key, sep, text = item.partition("=")
    if not sep or not key:
      raise UsageError(f"--set takes KEY=VALUE or METHOD.KEY=VALUE, got {item!r}")
    value = _parse_value(text)
    if "." not in key:
      if key not in loop_fields:
        raise UsageError(f"unknown setting {key!r}; known: {', '.join(sorted(loop_fields))}")
      loop_changes[key] = value
      continue
    method_name, _, name = key.partition(".")
    try:
      spec = resolve_method(method_name, methods)
    except ValueError as e:
      raise UsageError(str(e)) from None
    reg_params = (inspect.signature(regularizers()[spec.regularizer]).parameters
                  if spec.regularizer else {})
    opt_params = inspect.signature(optimizers()[spec.optimizer]).parameters
    if name in reg_params:
      spec = dataclasses.replace(spec, reg_hparams={**spec.reg_hparams, name: value})
    elif name in opt_params:
      spec = dataclasses.replace(spec, hparams={**spec.hparams, name: value})
    else:
      raise UsageError(
          f"{method_name} has no hyperparameter {name!r}; known: "
          f"{', '.join(sorted(set(opt_params) | set(reg_params)))}")
    methods[method_name] = spec
  return dataclasses.replace(
      experiment, loop=dataclasses.replace(experiment.loop, **loop_changes), methods=methods)


def _build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="classp-jax", description="CLASSP and baselines on continual-learning task streams.")
  commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

  run = commands.add_parser(
      "run", help="run an experiment (default: the offline digits stream)",
      description="Train each method and seed on an experiment's task stream, evaluate every "
      "task's held-out test split after each task, print the accuracy matrices and metrics, "
      "and write results.json and plots to --out.",
      epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
  run.add_argument("experiment", nargs="?", default="digits",
                   help="experiment name (see `classp-jax list`; default: digits)")
  run.add_argument("--methods", help="comma-separated methods, e.g. classp,sgd,adam,classp+ewc "
                   "(default: the experiment's)")
  run.add_argument("--seeds", default="0", help="comma-separated seeds (default: 0)")
  run.add_argument("--out", help="output folder (default: runs/EXPERIMENT)")
  run.add_argument("--source", choices=("auto", "tfds", "local"), default="auto",
                   help="where datasets come from (default: auto: local files in --data-dir "
                   "if present, else TFDS)")
  run.add_argument("--data-dir", help="folder with the datasets' standard files, or TFDS data_dir")
  run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting or hyperparameter (see below)")
  run.add_argument("--quick", action="store_true", help="a scaled-down smoke run")
  run.add_argument("--checkpoint-dir", help="checkpoint here and resume from it")
  run.add_argument("--distributed", action="store_true",
                   help="call jax.distributed.initialize() to run across hosts")
  run.add_argument("--coordinator", help="with --distributed: coordinator address host:port "
                   "(default: detected from the cluster environment)")
  run.add_argument("--num-processes", type=int, help="with --distributed: number of processes")
  run.add_argument("--process-id", type=int, help="with --distributed: this process's index")
  run.add_argument("--no-progress", action="store_true", help="hide progress bars")

  commands.add_parser("list", help="list the named experiments")
  return parser


def _initialize_distributed(args) -> None:
  import jax

  if args.coordinator and (args.num_processes is None or args.process_id is None):
    raise UsageError("--coordinator needs --num-processes and --process-id")
  jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU hosts talk over gloo
  jax.distributed.initialize(coordinator_address=args.coordinator,
                             num_processes=args.num_processes, process_id=args.process_id)


def _loop_for(experiment, method):
  """The experiment's loop settings, with the method's own loss targets if it has any."""
  if method.loss_targets is None:
    return experiment.loop
  return dataclasses.replace(experiment.loop, loss_target=method.loss_targets)


def run_command(args) -> int:
  if args.distributed:
    _initialize_distributed(args)
  elif args.coordinator or args.num_processes is not None or args.process_id is not None:
    raise UsageError("--coordinator, --num-processes and --process-id need --distributed")

  import jax

  from classp_jax import experiments as registry
  from classp_jax.loop import check_config, run_continual
  from classp_jax.methods import build_method, resolve_method
  from classp_jax.report import print_summary, write_run_outputs

  # Set-up errors are the user's (a name, a value, a missing file): one line each.
  # Errors once training runs are bugs and keep their traceback.
  try:
    experiment = registry.get_experiment(args.experiment)
    if args.quick:
      experiment = experiment.quick(experiment)
    experiment = apply_overrides(experiment, args.overrides)
    seeds = _parse_list(args.seeds, int, "--seeds")
    method_names = (_parse_list(args.methods, str, "--methods") if args.methods
                    else list(experiment.default_methods))
    specs = {name: resolve_method(name, experiment.methods) for name in method_names}
    stream = experiment.stream(registry.DataOptions(args.source, args.data_dir))
    methods = [build_method(name, spec, len(stream.tasks)) for name, spec in specs.items()]
    for method in methods:
      check_config(_loop_for(experiment, method), stream, jax.device_count())
  except (ValueError, TypeError, FileNotFoundError) as e:
    raise UsageError(str(e)) from None
  model = experiment.model(stream)
  out = Path(args.out or f"runs/{experiment.name}")
  lead = jax.process_index() == 0
  if lead:
    print(f"{experiment.name}: {experiment.description}")
    print(f"tasks: {', '.join(t.name for t in stream.tasks)}; devices: {jax.device_count()} "
          f"x {jax.devices()[0].platform}; methods: {', '.join(method_names)}; seeds: {seeds}")
  runs = []
  for method in methods:
    loop = _loop_for(experiment, method)
    for seed in seeds:
      checkpoint_dir = (None if args.checkpoint_dir is None else
                        str(Path(args.checkpoint_dir).absolute() / f"{method.name}-seed{seed}"))
      runs.append(run_continual(model, stream, method, loop, seed=seed,
                                checkpoint_dir=checkpoint_dir,
                                progress=lead and not args.no_progress))
  if lead:
    results = {
        "experiment": experiment.name,
        "description": experiment.description,
        "tasks": [t.name for t in stream.tasks],
        "devices": jax.device_count(),
        "platform": jax.devices()[0].platform,
        "loop": dataclasses.asdict(experiment.loop),
        "runs": runs,
    }
    print_summary(results)
    for path in write_run_outputs(results, out):
      print(f"wrote {path}")
  return 0


def main(argv: Sequence[str] | None = None) -> int:
  """Entry point of the ``classp-jax`` command."""
  parser = _build_parser()
  args = parser.parse_args(argv)
  try:
    if args.command == "list":
      from classp_jax.experiments import experiments

      for name, experiment in sorted(experiments().items()):
        print(f"{name:16s} {experiment.description}")
      return 0
    return run_command(args)
  except UsageError as e:
    print(f"classp-jax: error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print("classp-jax: interrupted", file=sys.stderr)
    return 130


if __name__ == "__main__":
  sys.exit(main())
