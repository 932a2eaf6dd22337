"""The ``classp-jax`` command's arguments and their help: its grammar, apart from what the
commands do (`classp_jax.cli`)."""

from __future__ import annotations

import argparse
import difflib
import sys

from classp_jax.cli_study import add_study_parser

EPILOG = """\
overrides (--set, repeatable):
  KEY=VALUE           a training setting, e.g. batch_size=64, epochs=4,1,
                      loss_target=0.005, steps_per_call=8, checkpoint_every=500,
                      validation_fraction=0.1, reset_optimizer_state=true (every
                      method re-initialises its optimizer state at each task), or the
                      scenario: scenario=domain|class|task (split streams), or a
                      long stream's length: num_tasks=200 (long_permuted_mnist,
                      label_permuted_*, rotated_mnist)
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


class _Parser(argparse.ArgumentParser):
  """A parser that takes no abbreviated option (``--method`` is no ``--methods``; its
  subcommands' parsers are of its class), and refuses an unknown option with the usage of
  the command it was given to, and a hint where one fits (`_hint`)."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **{"allow_abbrev": False, **kwargs})

  def parse_args(self, args=None, namespace=None):
    argv = list(sys.argv[1:] if args is None else args)
    parsed, unknown = self.parse_known_args(argv, namespace)
    if unknown:
      command = _innermost(self, parsed)
      hints = [h for h in (_hint(arg, argv, command) for arg in unknown) if h]
      command.error(
        f"unrecognized arguments: {' '.join(unknown)}"
        + (f"; did you mean {' and '.join(hints)}?" if hints else "")
      )
    return parsed


def _innermost(parser: argparse.ArgumentParser, parsed) -> argparse.ArgumentParser:
  """The parser of the (sub)command that ``parsed`` was parsed with."""
  for action in parser._actions:
    if isinstance(action, argparse._SubParsersAction):
      chosen = action.choices.get(getattr(parsed, action.dest, None) or "")
      if chosen is not None:
        return _innermost(chosen, parsed)
  return parser


def _hint(arg: str, argv: list[str], parser: argparse.ArgumentParser) -> str | None:
  """For an unknown ``--NAME[=VALUE]``: ``--set NAME=VALUE`` where NAME is a training
  setting (`LoopConfig`'s fields, the scenario), else the closest of the command's options."""
  if not arg.startswith("--"):
    return None
  name, given, value = arg[2:].partition("=")
  if not given:  # the value, if any, follows (argparse may have taken it as a positional)
    after = argv[argv.index(arg) + 1 :] if arg in argv else []
    value = after[0] if after and not after[0].startswith("-") else "VALUE"
  key = name.replace("-", "_")
  options = [o for action in parser._actions for o in action.option_strings if o[:2] == "--"]
  if "--set" in options and key in _setting_names():
    return f"--set {key}={value}"
  close = difflib.get_close_matches(f"--{name}", options, n=1, cutoff=0.7)
  return close[0] if close else None


def _setting_names() -> set[str]:
  """What ``--set KEY=VALUE`` takes as KEY besides METHOD.KEY (`classp_jax.planning`)."""
  import dataclasses

  from classp_jax.training import LoopConfig  # JAX: only on this error path

  return {"scenario", "reset_optimizer_state", *(f.name for f in dataclasses.fields(LoopConfig))}


def build_parser() -> argparse.ArgumentParser:
  """The parser of ``classp-jax`` and its commands: run, list, report, select."""
  parser = _Parser(
    prog="classp-jax", description="CLASSP and baselines on continual-learning task streams."
  )
  commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
  _add_run_parser(commands)
  commands.add_parser("list", help="list the named experiments")
  _add_report_parsers(commands)
  add_study_parser(commands)
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
  _add_record_options(run)
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


def _add_record_options(run) -> None:
  """The run's options on what it finds already done: checkpoints, kept runs."""
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
    "--replace",
    action="store_true",
    help="let a run replace the run of the same method and seed kept in OUT/results.json "
    "with other settings (refused otherwise, before training, so no record is lost)",
  )
  run.add_argument(
    "--restart",
    action="store_true",
    help="with --checkpoint-dir: delete the planned runs' checkpoints and start afresh "
    "(their runs of other settings in OUT/results.json are then replaced, as with --replace)",
  )


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
