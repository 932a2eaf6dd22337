"""The markdown report: ``classp-jax report RUN_DIR... --out DIR`` (`write_report`).

Any number of run folders become one ``report.md`` with its PNG plots: the
headline (each method at its selected point, and the tuned reference against
the paper's baselines), then a section per experiment. The best point of a
frontier is chosen on validation accuracy whenever its runs recorded one
(`classp_jax.results.select_points`), and its test accuracy is reported there.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any, Iterable

from classp_jax.report.claims import (
  ABLATION_HEADER,
  MATCHED_HEADER,
  ablation_rows,
  claim_rows,
  headline_rows,
  matched_plasticity_rows,
)
from classp_jax.report.frontier_plot import plot_frontier
from classp_jax.report.plasticity import (
  PLASTICITY_HEADER,
  has_plasticity,
  plasticity_caption,
  plasticity_rows,
  plot_plasticity,
)
from classp_jax.report.plots import (
  plot_accuracy_matrices,
  plot_classp_diagnostics,
  plot_seen_tasks_accuracy,
)
from classp_jax.report.tables import (
  FRONTIER_HEADER,
  PAIRED_HEADER,
  SELECTED_HEADER,
  TIME_HEADER,
  UNMATCHED_HEADER,
  accuracy_matrix_table,
  cpu_time,
  duration,
  frontier_rows,
  markdown_table,
  matrix_heading,
  paired_rows,
  reference_method,
  report_header,
  report_rows,
  selected_rows,
  selection_sentence,
  stopping_rows,
  time_rows,
  unmatched_rows,
)
from classp_jax.results import (
  FLAT_MARGIN,
  Selection,
  best_per_method,
  differing_keys,
  experiment_label,
  finished,
  flatten_settings,
  is_diverged,
  is_variant,
  load_results,
  next_points,
  parse_select,
  runs_by_method,
  select_points,
  subsample,
  tuned_runs,
  variant_name,
)


def file_in(folder: Path, name: str) -> Path:
  """``folder / name`` for a file name built from what a results file says (its experiment,
  scenario, subsample), refused if it would leave ``folder``: whatever the records hold,
  nothing is written outside the report folder.

  Examples:
    >>> file_in(Path("report"), "split_mnist_class_frontier.png").as_posix()
    'report/split_mnist_class_frontier.png'
    >>> file_in(Path("report"), "../../x_frontier.png")
    Traceback (most recent call last):
    ...
    ValueError: refusing to write '../../x_frontier.png': a results file's experiment or scenario is not a plain name
  """
  path = folder / name
  if Path(name).name != name or name.startswith(".") or path.resolve().parent != folder.resolve():
    raise ValueError(
      f"refusing to write {name!r}: a results file's experiment or scenario is not a plain name"
    )
  return path


def _shown_command(options: dict[str, Any]) -> str:
  """A run folder's command as a reader can repeat it: the data folder as ROOT, and an
  absolute output folder as RUNS/ and its last two parts (a machine's paths say nothing)."""
  command = options.get("command")
  if command is None:
    return "(not recorded)"
  words = shlex.split(command)
  for i, word in enumerate(words[:-1]):
    if word == "--data-dir":
      words[i + 1] = "ROOT"
    elif word == "--out" and Path(words[i + 1]).is_absolute():
      out = Path(words[i + 1])
      words[i + 1] = f"RUNS/{out.parent.name}/{out.name}"
  return shlex.join(words)


def _settings(results: dict[str, Any]) -> list[str]:
  """The tasks, the devices, how each run folder was made, and each method's settings."""
  lines = [
    f"Tasks: {', '.join(results['tasks'])}; {results['devices']} x "
    f"{results['platform']} device(s)."
    + (f" Scenario: {results['scenario']}-incremental." if results.get("scenario") else ""),
    "",
    f"<details><summary>The commands ({len(results['sources'])} run folder(s))</summary>",
    "",
  ]
  for source in results["sources"]:
    loop = source["loop"]
    validation = loop.get("validation_fraction")
    command = _shown_command(source["options"])
    lines.append(
      f"- `{command}`: batch "
      f"{loop['batch_size']}, epochs {loop['epochs']}, loss target "
      f"{loop.get('loss_target')}, accuracy target {loop.get('accuracy_target')} "
      f"(at most {loop.get('max_epochs')} epochs)"
      + (f", validation fraction {validation}" if validation else "")
    )
  lines += ["", "</details>"]
  recorded = {r["method"]: r for r in results["runs"] if r.get("settings")}
  if recorded:
    lines += [
      "",
      "<details><summary>Each method's settings (settings id: the configuration "
      "without the seed)</summary>",
      "",
    ]
    first_of = {}  # base method -> its first point's name and flattened settings
    for method, run in recorded.items():
      spec = run["settings"].get("method", run["settings"])
      flat = flatten_settings(spec)
      base = run.get("base_method") or method
      if base not in first_of:
        first_of[base] = method, flat
        lines.append(f"- {method} `{run.get('settings_id')}`: `{json.dumps(spec)}`")
        continue
      # Another point of a swept method: only what differs (its knob), not all of it again.
      first, first_flat = first_of[base]
      changed = {key: flat.get(key) for key in differing_keys(first_flat, flat) if key != "name"}
      lines.append(
        f"- {method} `{run.get('settings_id')}`: as {first}, but `{json.dumps(changed)}`"
      )
    lines += ["", "</details>"]
  return lines


def _chases_targets(results: dict[str, Any]) -> bool:
  """Whether any run folder stopped tasks at loss or accuracy targets."""

  def given(value):
    return any(v is not None for v in value) if isinstance(value, list) else value is not None

  return any(
    given(s["loop"].get("loss_target")) or given(s["loop"].get("accuracy_target"))
    for s in results["sources"]
  )


def _metric_tables(
  label: str, runs: list[dict[str, Any]], tasks: list[str], tuned: bool = False
) -> list[str]:
  """The held-out test table of ``runs``, and the reference method's (`reference_method`)
  ACC against each, by seed; ``tuned`` says the runs are at their selected points."""
  parts = [
    "Mean ± std over seeds. *old tasks*: final accuracy on the earlier tasks; *last "
    "task*: on the last one. State: optimizer and regularizer memory as a multiple of "
    "the fp32 parameters. Time: wall seconds per run, with compilation and evaluation "
    "(rough on a shared machine). A method with diverged seeds shows no metrics; its "
    "other seeds follow on their own row.",
    "",
    markdown_table(report_header(runs), report_rows(runs, tasks=tasks)),
    "",
  ]
  if has_plasticity(runs):
    parts += [
      f"{label}: plasticity. Mean ± std over seeds; {plasticity_caption(runs)}.",
      "",
      markdown_table(PLASTICITY_HEADER, plasticity_rows(runs)),
      "",
    ]
  reference = reference_method(runs)
  paired = paired_rows(runs, reference)
  if paired:
    parts += [
      f"{label}: {'tuned ' if tuned else ''}{reference}'s ACC minus each method's, "
      f"paired by seed (wins: seeds where {reference} is higher; a seed where either "
      "diverged is skipped):",
      "",
      markdown_table(PAIRED_HEADER, paired),
      "",
    ]
  return parts


def _stopping_and_protocol(
  label: str, results: dict[str, Any], runs: list[dict[str, Any]], tasks: list[str]
) -> list[str]:
  """Where each task stopped (under targets), and the paper's own protocol, if recorded."""
  parts = []
  if _chases_targets(results) and all("epoch_loss" in r for r in runs):
    parts += [
      f"### {label}: where each task stopped",
      "",
      "Epochs, and the last epoch's mean training loss and accuracy (training split, "
      "dropout on, as the stopping rule measures them), mean ± std over seeds. With an "
      "accuracy target, the loss is the method's own loss target.",
      "",
      markdown_table(["method", *tasks], stopping_rows(runs)),
      "",
    ]
  if any("paper_protocol" in r for r in finished(runs)):
    protocol = [r for r in runs if "paper_protocol" in r or is_diverged(r)]
    parts += [
      f"### {label}: paper protocol, training-split accuracy, dropout on",
      "",
      "As the paper scored it (not held-out data); for comparison with the published numbers only.",
      "",
      markdown_table(
        report_header(protocol, "paper_protocol"), report_rows(protocol, "paper_protocol")
      ),
      "",
    ]
  return parts


def _plots(
  label: str, prefix: str, results: dict[str, Any], runs: list[dict[str, Any]], out: Path
) -> tuple[list[str], list[Path]]:
  """Accuracy matrices, accuracy over training and CLASSP's diagnostics of ``runs``."""
  shown = {**results, "runs": runs}
  parts, plots = [], []
  for suffix, title, draw in (
    ("accuracy_matrices", "Accuracy matrices (mean over seeds)", plot_accuracy_matrices),
    (
      "accuracy_over_training",
      "Mean test accuracy on the tasks seen so far, over training",
      plot_seen_tasks_accuracy,
    ),
  ):
    plots.append(file_in(out, f"{prefix}_{suffix}.png"))
    draw(shown, plots[-1])
    parts += [f"![{label}: {title}]({plots[-1].name})", ""]
  diagnostics = file_in(out, f"{prefix}_classp_diagnostics.png")
  if plot_classp_diagnostics(shown, diagnostics):
    plots.append(diagnostics)
    parts += [f"![{label}: CLASSP update fraction and capacity used]({diagnostics.name})", ""]
  plasticity = file_in(out, f"{prefix}_plasticity.png")
  if plot_plasticity(shown, plasticity):
    plots.append(plasticity)
    parts += [f"![{label}: learning accuracy and dormant units over tasks]({plasticity.name})", ""]
  return parts, plots


def _tuned_section(label: str, selections: list[Selection], tasks: list[str]) -> list[str]:
  """Each method at its selected point; CLASSP's ablations; sparsity at matched plasticity."""
  tuned = tuned_runs(selections)
  parts = [
    f"### {label}: each method at its selected point",
    "",
    f"Each method's knobs are swept one at a time around a centre; its point is the "
    f"best of all its curves: {selection_sentence(selections)}. A point with a diverged "
    "seed is never selected. *grid edge*: the selected value is the smallest (low) or "
    "largest (high) of its grid, so the grid may be too narrow; *flat*: no point "
    f"scored {FLAT_MARGIN} above the untrained model's accuracy, so the selected value "
    "is no better than any other. Test metrics are over every seed the point was run "
    "with.",
    "",
    markdown_table(SELECTED_HEADER, selected_rows(best_per_method(selections))),
    "",
  ]
  grow, stuck = next_points(selections)
  if grow or stuck:
    parts += [
      "Exceptions to the rule that a selected point is interior to its grid:",
      "",
      *[f"- {line}." for line in stuck],
      *[
        f"- `{name}`, the next point past an edge or one missing seeds, was not "
        "run (the grid's growth stopped before it)."
        for name in grow
      ],
      "",
    ]
  if any(s.edge == "one point" for s in selections):
    parts[2] += (
      " *one point*: the method ran here at one point only, chosen on another "
      "frontier's validation ACC (see the commands above, and the section of the "
      "same study with `--subsample`), so its grid edge is that frontier's."
    )
  unmatched = unmatched_rows(selections)
  if unmatched:
    parts += [
      f"{len(unmatched)} method(s) reached the training target at no point of their "
      "grids within the epoch cap, and are not in the matched tables below. Each is "
      "shown at the point whose training accuracy (dropout on, the last epoch's mean "
      "on the tasks with a target) came closest:",
      "",
      markdown_table(UNMATCHED_HEADER, unmatched),
      "",
    ]
  if tuned:
    parts += _metric_tables(label, tuned, tasks, tuned=True)
  ablations = ablation_rows(tuned)
  if ablations:
    parts += [
      f"### {label}: CLASSP's ablations, each at its selected point",
      "",
      "Each variant's ACC minus its reference's, paired by seed (*variant wins*: seeds "
      "where the variant's ACC is higher).",
      "",
      markdown_table(ABLATION_HEADER, ablations),
      "",
    ]
  matched = matched_plasticity_rows(selections)
  if matched:
    parts += [
      f"### {label}: sparse updates against a lower learning rate, at matched plasticity",
      "",
      "Does updating fewer weights forget less than learning more slowly? "
      "*plasticity*: the mean accuracy on each task right after training it; "
      "*forgetting*: the mean drop from each earlier task's best accuracy. Each "
      "threshold point is compared with threshold-free CLASSP's learning-rate curve, "
      "interpolated to the same plasticity (a negative difference means the sparser "
      "update forgot less than learning more slowly), and with threshold 0 at the "
      "same learning rate.",
      "",
      markdown_table(MATCHED_HEADER, matched),
      "",
    ]
  return parts


def _frontier_section(
  label: str, prefix: str, results: dict[str, Any], selections: list[Selection], out: Path
) -> tuple[list[str], Path]:
  """The frontier plot, and every curve's selected point and every point, folded."""
  path = file_in(out, f"{prefix}_frontier.png")
  plot_frontier(results, path, selections)
  several = len(selections) > len(best_per_method(selections))
  return [
    f"### {label}: stability-plasticity frontier",
    "",
    f"![{label}: frontier]({path.name})",
    "",
    *(
      [
        "<details><summary>The selected point of every curve</summary>",
        "",
        markdown_table(SELECTED_HEADER, selected_rows(selections)),
        "",
        "</details>",
        "",
      ]
      if several
      else []
    ),
    "<details><summary>Every frontier point</summary>",
    "",
    markdown_table(FRONTIER_HEADER, frontier_rows(selections)),
    "",
    "</details>",
    "",
  ], path


def _matrices_details(
  groups: Iterable[tuple[str, list[dict[str, Any]]]], tasks: list[str]
) -> list[str]:
  """The accuracy matrices of ``(name, runs)`` groups, each averaged over its own runs."""
  parts = ["<details><summary>Accuracy matrices R[i][j], mean ± std over seeds</summary>", ""]
  for method, group in groups:
    parts += [f"{matrix_heading(method, group, tasks)}:", ""]
    if finished(group):
      parts += ["```", accuracy_matrix_table(finished(group), tasks), "```", ""]
  return parts + ["</details>", ""]


def experiment_report(
  results: dict[str, Any], out: Path, selections: list[Selection]
) -> tuple[str, list[Path]]:
  """The markdown section of one experiment, and the plots it writes to ``out``.

  With frontier runs, each method at its selected point leads, with the plots; the
  named methods (e.g. the paper's points) follow in their own tables. Without, the
  named methods lead, with the plots.

  Args:
    results: merged results (`load_results`).
    out: the report folder.
    selections: its frontier curves' selections (`select_points`).
  """
  label, tasks = experiment_label(results), results["tasks"]
  prefix = "_".join(
    [results["experiment"], *filter(None, [results.get("scenario")])]
    + ([f"subsample{subsample(results).replace(',', '-')}"] if subsample(results) else [])
  )
  named = [r for r in results["runs"] if not is_variant(r)]
  tuned = tuned_runs(selections)
  wall = sum(r.get("wall_time_s") or 0 for r in results["runs"])
  parts = [
    f"## {label}",
    "",
    results["description"],
    "",
    *_settings(results),
    "",
    f"{len(results['runs'])} runs, {duration(wall)} of wall time in all; CPU time "
    f"(all threads): {cpu_time(results['runs'])}.",
    "",
    "<details><summary>Wall time per method</summary>",
    "",
    markdown_table(TIME_HEADER, time_rows(results["runs"])),
    "",
    "</details>",
    "",
  ]
  plots = []
  if selections:
    parts += _tuned_section(label, selections, tasks)
    if tuned:
      shown, drawn = _plots(label, prefix, results, tuned, out)
      parts, plots = parts + shown, plots + drawn
    frontier, path = _frontier_section(label, prefix, results, selections, out)
    parts, plots = parts + frontier, plots + [path]
  if named:
    parts += [
      f"### {label}: "
      + (
        "the named methods at their own points"
        if selections
        else "held-out test accuracy (eval mode, dropout off)"
      ),
      "",
      *_metric_tables(label, named, tasks),
      *_stopping_and_protocol(label, results, named, tasks),
    ]
    if not tuned:
      shown, drawn = _plots(label, prefix, results, named, out)
      parts, plots = parts + shown, plots + drawn
  # Each selected point under its variant name: a method's tuned runs and its runs at its own
  # point (e.g. the paper's) share the method's name, and are not one group.
  selected = [
    (variant_name(s.method, s.knob, s.selected.value), s.selected.runs)
    for s in best_per_method(selections)
    if s.selected
  ]
  parts += _matrices_details([*selected, *runs_by_method(named).items()], tasks)
  return "\n".join(parts), plots


def write_report(
  paths: Iterable[str | os.PathLike],
  out: str | os.PathLike,
  notes: str | os.PathLike | None = None,
  *,
  select: str | None = None,
) -> list[Path]:
  """Writes ``report.md`` and its PNG plots to ``out``.

  Args:
    paths: run folders (or their results.json files).
    out: the report folder.
    notes: a markdown file put after the title (e.g. hand-written conclusions).
    select: what frontier points are selected on: ``validation``, ``test``,
      ``first-tasks:K`` or None (validation where recorded, else test); see
      `select_points`.

  Returns:
    The files written.

  Raises:
    ValueError: a bad ``select``, or results that cannot be read or merged
      (`load_results`); the message names the file.
  """
  parse_select(select)
  experiments = load_results(paths)
  out = Path(out)
  out.mkdir(parents=True, exist_ok=True)
  selections = [select_points(results["runs"], select) for results in experiments]
  sections, written = [], []
  for results, study in zip(experiments, selections):
    section, plots = experiment_report(results, out, study)
    sections.append(section)
    written += plots
  header, rows = headline_rows(experiments, selections)
  every = [s for study in selections for s in study]
  headline = (
    ""
    if not rows
    else "## Headline: test ACC of each method at its selected point\n\n"
    f"Mean ± std over seeds (their number in brackets); {selection_sentence(every)}. "
    "A column is a study (its scenario in brackets); *not run*: the study did not run "
    "the method. Each study's section below has the full tables: "
    + "; ".join(f"*{experiment_label(results)}*" for results in experiments)
    + ".\n\n"
    + markdown_table(header, rows)
    + "\n\n"
  )
  header, rows = claim_rows(experiments, selections)
  if rows:
    headline += (
      "The tuned CLASSP's test ACC minus each baseline the paper compares it with, "
      "each at its selected point, paired by seed (wins: seeds where CLASSP is "
      "higher):\n\n" + markdown_table(header, rows) + "\n\n"
    )
  preamble = Path(notes).read_text().strip() + "\n\n" if notes else ""
  report = out / "report.md"
  report.write_text("# CLASSP-JAX results\n\n" + headline + preamble + "\n".join(sections))
  return [report, *written]
