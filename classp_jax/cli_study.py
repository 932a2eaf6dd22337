"""``classp-jax study``: a declared study's stages, on a launcher, its records kept.

``classp-jax study NAME --data-dir ROOT --runs DIR [--stages ...] [--launcher ...]``
runs `classp_jax.studies.run_study`. Bad input (an unknown study, stage or
launcher, a missing extra, an unreachable Ray cluster, an unwritable
``--runs``) is one line and exit status 2 before any run starts; a study
with failed runs exits 1 and names them.
"""

from __future__ import annotations

import argparse
import signal
import sys

STUDY_EPILOG = """\
stages (in this order; default: all):
  frontier  every method's knobs swept around its centre, on the tuning seeds; each grid
            whose selected point is at an edge grows past it
  selected  for a study tuned on a subsample: each selected point on all the data, with
            the grid neighbours of the methods whose point diverged there or sat at an edge
  seeds     each method's selected point on every seed of the study
  paper     the paper's methods at their own points
  report    the report of every declared study under --runs

launchers:
  local[:N]      N worker processes here (default: one per core)
  slurm          one Slurm job per run, through submitit (pip install 'classp-jax[slurm]');
                 preempted jobs requeue and resume from their checkpoints
  slurm:local    the same jobs as local subprocesses
  ray[:ADDRESS]  Ray tasks on a running cluster (auto, or ray://HOST:PORT;
                 pip install 'classp-jax[ray]')
  ray:local      a local Ray, started for the study and stopped after

examples:
  classp-jax study split_mnist_task --data-dir ~/data --runs experiments/results/runs
  classp-jax study split_mnist_task --quick --stages frontier,seeds
  classp-jax study permuted_mnist --data-dir ~/data --runs runs --launcher slurm \\
      --launcher-option timeout_min=120 --launcher-option slurm_partition=cpu
"""


def add_study_parser(commands) -> None:
  study = commands.add_parser(
    "study",
    help="run a declared study's stages, every run kept as a record",
    description="Run a declared study (see `classp-jax list`): its frontier, grid growth, "
    "selection on all the data, seeds at the selected points, the paper's points and the "
    "report. Each finished run is kept under --runs as a record; a study stopped at any "
    "moment goes on where it was when started again.",
    epilog=STUDY_EPILOG,
    formatter_class=argparse.RawDescriptionHelpFormatter,
    allow_abbrev=False,
  )
  study.add_argument("name", metavar="NAME", help="a declared study")
  study.add_argument("--runs", default="runs", help="the records' root (default: runs)")
  study.add_argument("--data-dir", help="a folder with one subfolder per dataset")
  study.add_argument(
    "--source", default="auto", choices=("auto", "tfds", "local"), help="where datasets come from"
  )
  study.add_argument("--stages", help="comma-separated stages to run (default: all)")
  study.add_argument(
    "--launcher", default="local", help="local[:N], slurm, slurm:local, ray[:ADDRESS], ray:local"
  )
  study.add_argument(
    "--launcher-option",
    action="append",
    default=[],
    metavar="KEY=VALUE",
    help="a Slurm job parameter for submitit (repeatable), e.g. timeout_min=120",
  )
  study.add_argument("--quick", action="store_true", help="a smoke run of a minute or two")
  study.add_argument(
    "--select",
    metavar="validation|first-tasks:K",
    help="how points are selected (default: the study's, validation at the stream's end)",
  )
  study.add_argument("--retries", type=int, default=2, help="tries again per failed run")
  study.add_argument("--report-out", help="where the report stage writes (default: RUNS/report)")
  study.add_argument("--notes", help="a markdown file the report puts after its title")


def _launcher_options(items: list[str]) -> dict:
  from classp_jax.planning import parse_scalar

  options = {}
  for item in items:
    key, sep, value = item.partition("=")
    if not sep or not key:
      raise ValueError(f"--launcher-option takes KEY=VALUE, got {item!r}")
    options[key] = parse_scalar(value)
  return options


def study_command(args) -> int:
  """Runs ``classp-jax study``; returns the exit status."""
  from classp_jax.planning import parse_list
  from classp_jax.studies import run_study

  def terminate(signum, frame):  # SIGTERM (kill, Slurm) stops the study as Ctrl-C does
    del signum, frame
    raise KeyboardInterrupt

  previous = signal.signal(signal.SIGTERM, terminate)
  try:
    summary = run_study(
      args.name,
      runs=args.runs,
      data_dir=args.data_dir,
      source=args.source,
      stages=parse_list(args.stages, str, "--stages") if args.stages else None,
      launcher=args.launcher,
      launcher_options=_launcher_options(args.launcher_option),
      quick=args.quick,
      select=args.select,
      retries=args.retries,
      report_out=args.report_out,
      notes=args.notes,
    )
  except (ValueError, FileNotFoundError) as e:
    print(f"classp-jax: error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print(
      f"classp-jax: interrupted; every finished run is kept under {args.runs}: start the "
      "same command again to go on",
      file=sys.stderr,
    )
    return 130
  finally:
    signal.signal(signal.SIGTERM, previous)
  for line in summary.lines():
    print(line)
  return 0 if summary.ok else 1
