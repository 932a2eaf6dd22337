"""The ``classp-jax`` command.

``classp-jax run`` with no arguments is the project's main job: the embedded
``digits`` stream, offline, comparing CLASSP with SGD and Adam. ``classp-jax
run NAME`` runs a named experiment; ``classp-jax list`` shows them;
``classp-jax report RUN_DIR...`` writes the markdown report of finished runs;
``classp-jax select RUN_DIR...`` prints each method's selected frontier point.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import os
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Sequence

EPILOG = """\
overrides (--set, repeatable):
  KEY=VALUE           a training setting, e.g. batch_size=64, epochs=4,1,
                      loss_target=0.005, steps_per_call=8, checkpoint_every=500,
                      validation_fraction=0.1, reset_optimizer_state=true (every
                      method re-initialises its optimizer state at each task), or the
                      scenario: scenario=domain|class|task (split streams)
  METHOD.KEY=VALUE    a method's hyperparameter, e.g. classp.learning_rate=0.1,
                      classp.threshold=0.5,0.0 (one value per task), ewc.strength=100,
                      er.buffer_size=500, classp.reset_optimizer_state=true
  Values are Python literals; a comma-separated list gives one value per task.

data (--data-dir ROOT):
  Each dataset is read from ROOT itself or from a subfolder of ROOT named after
  it, with '_' or '-', or that name followed by '-' or '_' and anything:
  ROOT/mnist or ROOT/mnist-10k, ROOT/fashion_mnist or ROOT/fashion-mnist,
  ROOT/imdb or ROOT/imdb_reviews, ROOT/financial_phrasebank or
  ROOT/financial-phrasebank. ('fashion-mnist' never counts as 'mnist'.) An
  experiment with two datasets needs them in separate subfolders. Without local
  files, datasets come from TFDS (Financial PhraseBank is not in TFDS).

frontier (--frontier):
  Each method with a frontier in the experiment is run at every value of its
  knobs (one knob at a time, around a centre) instead of its own point, as
  METHOD[KNOB=VALUE] (e.g. classp[threshold=1e-06]); without --methods, all of
  them. --methods also takes one such point, e.g. to give it more seeds;
  --knobs restricts the sweep. `classp-jax select` prints each method's point
  selected on validation accuracy; `classp-jax report` plots final old-task
  against last-task accuracy, one curve per method and knob.

examples:
  classp-jax run                                   # the offline default (digits)
  classp-jax run digits --methods classp,sgd+ewc --seeds 0,1,2 --out runs/digits
  classp-jax run digits --set classp.threshold=0.1 --set epochs=3
  classp-jax run mnist_fashion --quick --data-dir ~/data  # a smoke run
  classp-jax run split_mnist --frontier --methods classp,ewc --seeds 0,1,2
  classp-jax run split_mnist --frontier --methods 'ewc[strength=10]' --seeds 3,4
  classp-jax select runs/split_mnist
  classp-jax report runs/mnist_fashion runs/split_mnist --out report
"""


class UsageError(Exception):
  """A bad command-line value: reported in one line, without a traceback."""


def _build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
    prog="classp-jax", description="CLASSP and baselines on continual-learning task streams."
  )
  commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
  _add_run_parser(commands)
  commands.add_parser("list", help="list the named experiments")
  _add_report_parsers(commands)
  return parser


def _add_run_parser(commands) -> None:
  run = commands.add_parser(
    "run",
    help="run an experiment (default: the offline digits stream)",
    description="Train each method and seed on an experiment's task stream, evaluate every "
    "task's held-out test split after each task, print the accuracy matrices and metrics, "
    "and write results.json and plots to --out.",
    epilog=EPILOG,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  run.add_argument(
    "experiment",
    nargs="?",
    default="digits",
    help="experiment name (see `classp-jax list`; default: digits)",
  )
  run.add_argument(
    "--methods",
    help="comma-separated methods, e.g. classp,sgd,adam,classp+ewc (default: the experiment's)",
  )
  run.add_argument("--seeds", default="0", help="comma-separated seeds (default: 0)")
  run.add_argument("--out", help="output folder (default: runs/EXPERIMENT)")
  run.add_argument(
    "--source",
    choices=("auto", "tfds", "local"),
    default="auto",
    help="where datasets come from (default: auto: local files in --data-dir "
    "if present, else TFDS)",
  )
  run.add_argument(
    "--data-dir",
    metavar="ROOT",
    help="folder with the datasets' standard files, each in ROOT or a subfolder "
    "named after it (see below), or the TFDS data_dir",
  )
  run.add_argument(
    "--set",
    dest="overrides",
    action="append",
    default=[],
    metavar="KEY=VALUE",
    help="override a setting or hyperparameter (see below)",
  )
  run.add_argument(
    "--quick", action="store_true", help="a smoke run: a few hundred examples per task, one epoch"
  )
  run.add_argument(
    "--subsample",
    metavar="TRAIN[,TEST]",
    help="keep a seeded random TRAIN training (and TEST test) examples per task, to fit a budget",
  )
  run.add_argument(
    "--frontier", action="store_true", help="run each method along its frontier knobs (see below)"
  )
  run.add_argument(
    "--knobs",
    metavar="KNOB,...",
    help="with --frontier: sweep only these knobs, e.g. learning_rate",
  )
  run.add_argument(
    "--checkpoint-dir",
    help="checkpoint here and resume from it (a checkpoint "
    "of other settings is refused; a finished one is reused)",
  )
  run.add_argument(
    "--skip-finished",
    action="store_true",
    help="skip each method and seed whose run with these exact settings is "
    "already in OUT/results.json (finished or diverged): a long sweep "
    "stopped part-way goes on where it stopped",
  )
  run.add_argument(
    "--restart",
    action="store_true",
    help="with --checkpoint-dir: delete the planned runs' checkpoints and start afresh",
  )
  run.add_argument(
    "--log",
    default="csv",
    metavar="FORMATS",
    help="experiment logs per method and seed under OUT/logs: comma-separated "
    "csv, tensorboard, wandb, or none (default: csv)",
  )
  run.add_argument(
    "--distributed",
    action="store_true",
    help="call jax.distributed.initialize() to run across hosts",
  )
  run.add_argument(
    "--coordinator",
    help="with --distributed: coordinator address host:port "
    "(default: detected from the cluster environment)",
  )
  run.add_argument("--num-processes", type=int, help="with --distributed: number of processes")
  run.add_argument("--process-id", type=int, help="with --distributed: this process's index")
  run.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _add_report_parsers(commands) -> None:
  report = commands.add_parser(
    "report",
    help="write the markdown report and plots of finished runs",
    description="Merge the results.json of run folders (folders of the same experiment, e.g. "
    "its methods and its frontier, are merged) into one markdown report: per experiment, "
    "tables of ACC/BWT/forgetting/FWT over seeds, memory and time, the paper-protocol "
    "numbers apart, and PNG plots (accuracy matrices, accuracy over training, the "
    "stability-plasticity frontier, CLASSP's update fraction and capacity used), and each "
    "frontier's selected point (see --select). Runs of one method name with different "
    "settings are refused; diverged runs are shown as diverged.",
  )
  report.add_argument(
    "runs",
    nargs="+",
    metavar="RUN_DIR",
    help="a run folder (holding results.json) or a results.json",
  )
  report.add_argument("--out", default="report", help="report folder (default: report)")
  report.add_argument("--notes", help="a markdown file to put after the title, e.g. conclusions")
  report.add_argument(
    "--select",
    metavar="validation|test|first-tasks:K",
    help="what each frontier's best point is chosen on: validation (the "
    "validation split carved from each task's training data), test "
    "(optimistic), or first-tasks:K (validation accuracy on tasks 1..K after "
    "task K, test accuracy on the full stream). Default: validation for every "
    "frontier whose runs all recorded it, else test; the report says which",
  )
  select = commands.add_parser(
    "select",
    help="print each method's selected frontier point, one per line",
    description="For the frontier runs in RUN_DIRs, print each method's best point over all "
    "its knobs as METHOD[KNOB=VALUE], the name `classp-jax run --frontier --methods` takes "
    "(e.g. to run it on more seeds). A point selected at its grid's edge, or a method whose "
    "every point diverged, is named on stderr.",
  )
  select.add_argument(
    "runs",
    nargs="+",
    metavar="RUN_DIR",
    help="a run folder (holding results.json) or a results.json",
  )
  select.add_argument(
    "--select",
    metavar="validation|test|first-tasks:K",
    help="what the best point is chosen on, as for `report` (default: validation where recorded)",
  )
  points = select.add_mutually_exclusive_group()
  points.add_argument(
    "--next-points",
    action="store_true",
    help="print instead, for each method selected at its grid's edge, the "
    "next point beyond that edge (run it, and select again, until no "
    "selected point is at an edge)",
  )
  points.add_argument(
    "--neighbours",
    action="store_true",
    help="print instead each method's selected point and the points either "
    "side of it on its grid (to run them on other data, e.g. all of it when "
    "the frontier ran on a --subsample, and select there)",
  )


def _initialize_distributed(args) -> None:
  import jax

  if args.coordinator and (args.num_processes is None or args.process_id is None):
    raise UsageError("--coordinator needs --num-processes and --process-id")
  jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU hosts talk over gloo
  jax.distributed.initialize(
    coordinator_address=args.coordinator,
    num_processes=args.num_processes,
    process_id=args.process_id,
  )


def _parse_seeds(text: str) -> list[int]:
  from classp_jax.planning import parse_list

  seeds = parse_list(text, int, "--seeds")
  if any(seed < 0 for seed in seeds):
    raise UsageError(f"--seeds must be non-negative, got {text!r}")
  if len(set(seeds)) != len(seeds):
    raise UsageError(f"--seeds must be distinct, got {text!r}")
  return seeds


@contextlib.contextmanager
def _exclusive(folder: Path):
  """Holds ``folder/.lock`` for the whole run; a second run on the same folder is refused."""
  folder.mkdir(parents=True, exist_ok=True)
  with open(folder / ".lock", "a") as lock:
    try:
      fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise UsageError(
        f"--checkpoint-dir {folder} is in use by another classp-jax run: "
        "wait for it, or use another folder"
      ) from None
    yield


@contextlib.contextmanager
def _remembered_interrupts():
  """Yields a list that gains an entry at each Ctrl-C, which still raises KeyboardInterrupt.

  Python raises KeyboardInterrupt in whatever Python code runs when the signal lands, and
  inside a garbage-collector callback (JAX installs one) it is printed and dropped. The
  loop checks the list between runs, so a Ctrl-C is never lost, at worst one run late.
  """
  interrupts = []
  if (
    threading.current_thread() is not threading.main_thread()
    or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
  ):
    yield interrupts  # SIGINT is ignored, or someone else's: leave it alone
    return

  def handler(signum, frame):
    interrupts.append(signum)
    signal.default_int_handler(signum, frame)

  signal.signal(signal.SIGINT, handler)
  try:
    yield interrupts
  finally:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _plan(args):
  """The run's `classp_jax.planning.RunPlan` from the command line, and its output folder."""
  from classp_jax.experiments import DataOptions, get_experiment
  from classp_jax.planning import parse_list, plan_runs
  from classp_jax.results import check_writable

  get_experiment(args.experiment)  # an unknown name fails before its --out is made
  seeds = _parse_seeds(args.seeds)
  out = Path(args.out or f"runs/{args.experiment}")
  if jax_lead():
    check_writable(out)
  plan = plan_runs(
    args.experiment,
    methods=parse_list(args.methods, str, "--methods") if args.methods else None,
    seeds=seeds,
    overrides=args.overrides,
    quick=args.quick,
    subsample=args.subsample,
    frontier=args.frontier,
    knobs=parse_list(args.knobs, str, "--knobs") if args.knobs else None,
    data=DataOptions(args.source, args.data_dir),
    out=out if args.skip_finished else None,
    checkpoint_dir=args.checkpoint_dir,
    restart=args.restart,
  )
  return plan, out, seeds


def jax_lead() -> bool:
  """Whether this process writes the results (the first of a multi-host run)."""
  import jax

  return jax.process_index() == 0


def _results_header(args, plan) -> dict[str, Any]:
  """The top-level keys of this command's results.json."""
  import jax

  from classp_jax.results.schema import ResultsHeader

  experiment, stream = plan.experiment, plan.stream
  return ResultsHeader(
    experiment=experiment.name,
    description=experiment.description,
    scenario=stream.scenario,
    tasks=[t.name for t in stream.tasks],
    devices=jax.device_count(),
    platform=jax.devices()[0].platform,
    loop=dataclasses.asdict(experiment.loop),
    options={
      "command": shlex.join(["classp-jax", *args.argv]),
      "quick": args.quick,
      "subsample": args.subsample,
      "frontier": args.frontier,
      "overrides": args.overrides,
      "source": args.source,
      "data_dir": args.data_dir,
    },
  ).to_json()


def _log_formats(text: str) -> list[str]:
  from classp_jax.planning import parse_list
  from classp_jax.training import LOG_FORMATS

  formats = [] if text == "none" else parse_list(text, str, "--log")
  if set(formats) - set(LOG_FORMATS):
    raise ValueError(f"--log takes {', '.join(LOG_FORMATS)} or none, got {text!r}")
  return formats


def _print_plan(plan, seeds: list[int], out: Path) -> None:
  import jax

  experiment = plan.experiment
  print(f"{experiment.name}: {experiment.description}")
  print(
    f"tasks: {', '.join(t.name for t in plan.stream.tasks)}; devices: {jax.device_count()} "
    f"x {jax.devices()[0].platform}; methods: {', '.join(p.name for p in plan.planned)}; "
    f"seeds: {seeds}"
  )
  if plan.skipped:
    print(
      f"skipping {plan.skipped} run(s) already in {out / 'results.json'} with these "
      f"settings (--skip-finished); {len(plan.runs)} to run"
    )


def _run_one(planned_run, plan, header, out: Path, log_formats: list[str], show_progress: bool):
  """Trains one planned run; returns its results entry."""
  from classp_jax.results.schema import RunEntry
  from classp_jax.training import make_loggers, run_continual

  method, seed, lead = planned_run.method, planned_run.seed, jax_lead()
  task_names = header["tasks"]
  loggers = (
    make_loggers(
      log_formats,
      out / "logs" / f"{method.name}-seed{seed}",
      task_names,
      name=f"{plan.experiment.name}/{method.name}/seed{seed}",
      settings=planned_run.settings,
    )
    if lead
    else []
  )
  result = run_continual(
    plan.model,
    plan.stream,
    method,
    plan.experiment.loop,
    seed=seed,
    checkpoint_dir=planned_run.checkpoint_dir,
    progress=lead and show_progress,
    loggers=loggers,
    settings=planned_run.settings,
  )
  entry = RunEntry.from_json(result)
  entry = dataclasses.replace(entry, command=header["options"]["command"], **planned_run.variant)
  return entry.to_json()


def _report_run(result: dict[str, Any], checkpoint_dir: str | None) -> None:
  """The lines a finished run prints: a reused checkpoint, a divergence."""
  name, seed = result["method"], result["seed"]
  if result["reused_checkpoint"]:
    print(f"{name} seed {seed}: the finished run in {checkpoint_dir} has these settings: reused it")
  if result["diverged"]:
    where = result["diverged_at"]
    print(
      f"{name} seed {seed}: DIVERGED (non-finite loss or params) at step {where['step']}, "
      f"task {where['task'] + 1}; stopped it, going on with the rest"
    )


def _train(
  plan,
  header,
  out: Path,
  log_formats: list[str],
  show_progress: bool,
  interrupts: list,
  finished: list[dict[str, Any]],
) -> None:
  """Runs every planned run in turn, appending each entry to ``finished`` and saving
  results.json after each (the lead process)."""
  import jax

  from classp_jax.results import save_results

  for previous, planned_run in zip([None, *plan.runs], plan.runs):
    if interrupts:
      raise KeyboardInterrupt
    if previous is not None and previous.method is not planned_run.method:
      # Each method (each frontier point) compiles its own steps, and XLA:CPU maps each
      # executable's code separately: a long frontier in one process ran out of memory
      # mappings (Linux allows 65,530) and LLVM failed with "Cannot allocate memory".
      jax.clear_caches()
    finished.append(_run_one(planned_run, plan, header, out, log_formats, show_progress))
    if jax_lead():
      _report_run(finished[-1], planned_run.checkpoint_dir)
      save_results(out, {**header, "runs": finished})


def run_command(args) -> int:
  if args.distributed:
    _initialize_distributed(args)
  elif args.coordinator or args.num_processes is not None or args.process_id is not None:
    raise UsageError("--coordinator, --num-processes and --process-id need --distributed")

  from classp_jax.report import plot_accuracy_over_training, print_summary
  from classp_jax.results import RESULTS_FILE, check_compatible

  lead = jax_lead()
  # Set-up errors are the user's (a name, a value, a missing file, a checkpoint of other
  # settings): one line each, before any training. Errors once training runs are bugs and
  # keep their traceback.
  with contextlib.ExitStack() as stack:
    try:
      log_formats = _log_formats(args.log)
      if args.checkpoint_dir is not None:
        stack.enter_context(_exclusive(Path(args.checkpoint_dir)))
      plan, out, seeds = _plan(args)
      if lead:
        check_compatible(
          out, plan.experiment.name, plan.stream.scenario, [t.name for t in plan.stream.tasks]
        )
    except (ValueError, TypeError, FileNotFoundError, OSError) as e:
      raise UsageError(str(e)) from None
    if lead:
      _print_plan(plan, seeds, out)
    if not plan.runs:
      return 0
    header = _results_header(args, plan)
    interrupts = stack.enter_context(_remembered_interrupts())
    finished: list[dict[str, Any]] = []
    try:
      _train(plan, header, out, log_formats, not args.no_progress, interrupts, finished)
    except KeyboardInterrupt:
      if lead:
        kept = (
          f"{len(finished)} finished run(s) are kept in {out / RESULTS_FILE}"
          if finished
          else "no run had finished"
        )
        print(f"classp-jax: interrupted; {kept}", file=sys.stderr)
      return 130
  if lead:
    print_summary({**header, "runs": finished})
    plot = out / "accuracy_over_training.png"
    plot_accuracy_over_training({**header, "runs": finished}, plot)
    print(f"wrote {out / RESULTS_FILE} ({len(finished)} run(s) of this command)")
    print(f"wrote {plot}")
    if log_formats:
      print(f"wrote logs ({', '.join(log_formats)}) under {out / 'logs'}")
  return 0


def report_command(args) -> int:
  from classp_jax.report import write_report

  try:
    written = write_report(args.runs, args.out, notes=args.notes, select=args.select)
  except (OSError, ValueError, KeyError) as e:  # the messages name the file
    raise UsageError(str(e)) from None
  for path in written:
    print(f"wrote {path}")
  return 0


def select_command(args) -> int:
  from classp_jax.report import (
    load_results,
    neighbour_points,
    next_points,
    select_points,
    selected_variants,
  )

  try:
    experiments = load_results(args.runs)
    for results in experiments:
      selections = select_points(results["runs"], args.select)
      if args.next_points:
        points, stuck = next_points(selections)
        for name in points:
          print(name)
        for line in stuck:
          print(f"{results['experiment']}: {line}", file=sys.stderr)
        continue
      if args.neighbours:
        for name in neighbour_points(selections):
          print(name)
        continue
      for name in selected_variants(selections):
        print(name)
      for s in selections:
        if s.selected is None and s.closest is not None:
          print(
            f"{results['experiment']}: {s.method} ({s.knob}): no point met its training "
            f"target; the closest is {s.closest.value}",
            file=sys.stderr,
          )
        elif s.selected is None:
          print(
            f"{results['experiment']}: {s.method} ({s.knob}): every point diverged", file=sys.stderr
          )
        elif s.edge.startswith("yes"):
          print(
            f"{results['experiment']}: {s.method} ({s.knob}): selected at the grid's "
            f"{s.edge[4:]} edge, {s.selected.value}",
            file=sys.stderr,
          )
  except (OSError, ValueError, KeyError) as e:
    raise UsageError(str(e)) from None
  return 0


def main(argv: Sequence[str] | None = None) -> int:
  """Entry point of the ``classp-jax`` command."""
  argv = list(sys.argv[1:] if argv is None else argv)
  args = _build_parser().parse_args(argv)
  args.argv = argv  # recorded in results.json, so a report can show how each run was made
  try:
    if args.command == "list":
      from classp_jax.experiments import experiments

      for name, experiment in sorted(experiments().items()):
        print(f"{name:16s} {experiment.description}")
      return 0
    if args.command == "report":
      return report_command(args)
    if args.command == "select":
      return select_command(args)
    return run_command(args)
  except UsageError as e:
    print(f"classp-jax: error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print("classp-jax: interrupted before any run finished", file=sys.stderr)
    return 130


def entry_point() -> None:
  """The console script: `main`, then exit with its status.

  After Ctrl-C, XLA's threads may still be inside a computation, and the interpreter's
  teardown once crashed on them (a segfault after the runs were saved). So an
  interrupted run exits at once, once its output is flushed.
  """
  status = main()
  if status == 130:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)
  sys.exit(status)


if __name__ == "__main__":
  entry_point()
