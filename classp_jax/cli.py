"""The ``classp-jax`` command.

``classp-jax run`` with no arguments is the project's main job: the embedded
``digits`` stream, offline, comparing CLASSP with SGD and Adam. ``classp-jax
run NAME`` runs a named experiment; ``classp-jax list`` shows them;
``classp-jax report RUN_DIR...`` writes the markdown report of finished runs;
``classp-jax select RUN_DIR...`` prints each method's selected frontier point.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import os
import shlex
import signal
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any, Sequence

from classp_jax.cli_args import build_parser


class UsageError(Exception):
  """A bad command-line value: reported in one line, without a traceback."""


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
  """Yields a list that gains an entry at each Ctrl-C or SIGTERM, which raise KeyboardInterrupt.

  SIGTERM (what Slurm and ``kill`` send) is handled as Ctrl-C is: the finished runs are
  kept and said so. Python raises KeyboardInterrupt in whatever Python code runs when the
  signal lands, and inside a garbage-collector callback (JAX installs one) it is printed
  and dropped. The loop checks the list between runs, so an interrupt is never lost, at
  worst one run late.
  """
  interrupts = []
  if threading.current_thread() is not threading.main_thread():
    yield interrupts
    return
  # A signal ignored or handled by someone else is left alone.
  ours = [
    sig
    for sig, default in (
      (signal.SIGINT, signal.default_int_handler),
      (signal.SIGTERM, signal.SIG_DFL),
    )
    if signal.getsignal(sig) is default
  ]

  def handler(signum, frame):
    del frame
    interrupts.append(signum)
    raise KeyboardInterrupt

  previous = {sig: signal.signal(sig, handler) for sig in ours}
  try:
    yield interrupts
  finally:
    for sig, handler_before in previous.items():
      signal.signal(sig, handler_before)


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
    methods=None if args.methods is None else parse_list(args.methods, str, "--methods"),
    seeds=seeds,
    overrides=args.overrides,
    quick=args.quick,
    subsample=args.subsample,
    frontier=args.frontier,
    knobs=parse_list(args.knobs, str, "--knobs") if args.knobs else None,
    data=DataOptions(args.source, args.data_dir),
    out=out,
    skip_finished=args.skip_finished,
    replace=args.replace,
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
  for line in (  # wrapped as the summary's tables (TERMINAL_WIDTH)
    f"tasks: {', '.join(t.name for t in plan.stream.tasks)}",
    f"devices: {jax.device_count()} x {jax.devices()[0].platform}; methods: "
    f"{', '.join(p.name for p in plan.planned)}; seeds: {seeds}",
  ):
    print(textwrap.fill(line, 100, subsequent_indent="  "))
  if plan.skipped:
    print(
      f"skipping {plan.skipped} run(s) already in {out / 'results.json'} with these "
      f"settings (--skip-finished); {len(plan.runs)} to run"
    )
  if plan.replaced:
    print(f"replacing {plan.replaced} run(s) of other settings in {out / 'results.json'}")


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


# A write the machine refused (disk full, quota, permission, read-only, I/O): one line.
_WRITE_ERRORS = frozenset(
  (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EFBIG, errno.EIO)
)


def _kept(finished: list, out: Path) -> str:
  from classp_jax.results import RESULTS_FILE

  if not finished:
    return "no run had finished"
  return f"{len(finished)} finished run(s) are kept in {out / RESULTS_FILE}"


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
      save_results(out, {**header, "runs": finished}, replace=plan.replace)


def run_command(args) -> int:
  if args.distributed:
    _initialize_distributed(args)
  elif args.coordinator or args.num_processes is not None or args.process_id is not None:
    raise UsageError("--coordinator, --num-processes and --process-id need --distributed")

  from classp_jax.report import plot_accuracy_over_training, print_summary
  from classp_jax.results import RESULTS_FILE, ResultsNotSaved

  lead = jax_lead()
  # Set-up errors are the user's (a name, a value, a missing file, a checkpoint of other
  # settings): one line each, before any training. Errors once training runs are bugs and
  # keep their traceback, but for a write the machine refuses (a full disk): one line,
  # saying where the finished runs are.
  with contextlib.ExitStack() as stack:
    try:
      log_formats = _log_formats(args.log)
      if args.checkpoint_dir is not None:
        stack.enter_context(_exclusive(Path(args.checkpoint_dir)))
      plan, out, seeds = _plan(args)
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
        print(f"classp-jax: interrupted; {_kept(finished, out)}", file=sys.stderr)
      return 130
    except OSError as error:  # a full disk or a permission: the machine's, not a bug
      if isinstance(error, ResultsNotSaved):  # it says where the runs are kept
        print(f"classp-jax: error: {error}", file=sys.stderr)
      elif error.errno in _WRITE_ERRORS:
        what = f"cannot write {error.filename}: {error.strerror}" if error.filename else error
        print(f"classp-jax: error: {what}; {_kept(finished, out)}", file=sys.stderr)
      else:
        raise
      return 1
  if lead:
    print_summary({**header, "runs": finished})
    plot = out / "accuracy_over_training.png"
    print(f"wrote {out / RESULTS_FILE} ({len(finished)} run(s) of this command)")
    try:
      plot_accuracy_over_training({**header, "runs": finished}, plot)
    except OSError as error:
      plot.unlink(missing_ok=True)  # not half a PNG
      print(f"classp-jax: error: cannot write {plot}: {error.strerror or error}", file=sys.stderr)
      return 1
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


def _print_selection_table(results: dict[str, Any], selections) -> None:
  """What `select` selected, on what and why, on stderr: its stdout stays the names alone,
  for `classp-jax run --frontier --methods "$(classp-jax select RUN_DIR | paste -sd,)"`."""
  import textwrap

  from classp_jax.report.summary import TERMINAL_WIDTH, selection_table
  from classp_jax.results import experiment_label

  heading = (
    f"{experiment_label(results)}: each method's point of highest accuracy (mean over seeds) "
    "on its knobs' grids; its name follows, as `classp-jax run --frontier --methods` takes it"
  )
  print(textwrap.fill(heading, TERMINAL_WIDTH), file=sys.stderr)
  print(selection_table(selections), file=sys.stderr)
  sys.stderr.flush()


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
      if not selections:
        print(
          f"{results['experiment']}: no frontier runs (METHOD[KNOB=VALUE]) in "
          f"{', '.join(args.runs)}: nothing to select; a frontier runs with "
          f"`classp-jax run {results['experiment']} --frontier`",
          file=sys.stderr,
        )
        continue
      _print_selection_table(results, selections)
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
  args = build_parser().parse_args(argv)
  args.argv = argv  # recorded in results.json, so a report can show how each run was made
  try:
    if args.command == "list":
      from classp_jax.experiments import experiments, studies

      print("experiments (classp-jax run NAME):")
      for name, experiment in sorted(experiments().items()):
        print(f"  {name:20s} {experiment.description}")
      print("studies (classp-jax study NAME):")
      for name, study in studies().items():
        print(f"  {name:20s} {study.description}")
      return 0
    if args.command == "report":
      return report_command(args)
    if args.command == "select":
      return select_command(args)
    if args.command == "study":
      from classp_jax.cli_study import study_command

      return study_command(args)
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
