"""Summaries of results: tables for the terminal and markdown, plots, and the report.

A results dict is what ``classp-jax run`` writes to ``results.json``: the
experiment's name, its task names, and ``runs``, one entry per (method, seed)
as returned by `classp_jax.loop.run_continual`; a frontier variant's entry
also has ``base_method``, ``knob`` and ``value``
(`classp_jax.experiments.frontier`). ``classp-jax report`` (`write_report`)
turns the results of any number of runs into one markdown report with plots.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

import numpy as np

METRICS = ("acc", "bwt", "forgetting", "fwt")


def runs_by_method(runs: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
  """Groups runs by method, keeping first-seen order."""
  groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
  for run in runs:
    groups[run["method"]].append(run)
  return dict(groups)


def mean_std(values: Iterable[float]) -> str:
  """``mean ± std`` (sample std over seeds; no ± for a single value)."""
  values = np.asarray(list(values), dtype=np.float64)
  if values.size == 1:
    return f"{values[0]:.3f}"
  return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"


def format_table(header: list[str], rows: list[list[str]]) -> str:
  """A plain-text table with aligned columns."""
  widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
  lines = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)) for line in [header, *rows]]
  lines.insert(1, "  ".join("-" * w for w in widths))
  return "\n".join(lines)


def accuracy_matrix_table(runs: list[dict[str, Any]], tasks: list[str], key="accuracy_matrix") -> str:
  """The mean (± std over seeds) accuracy matrix: rows = after task i, columns = task j."""
  matrices = np.array([r[key] if key == "accuracy_matrix" else r[key]["accuracy_matrix"]
                       for r in runs])
  rows = [[f"after {tasks[i]}", *(mean_std(matrices[:, i, j]) for j in range(len(tasks)))]
          for i in range(len(tasks))]
  return format_table(["", *tasks], rows)


def print_summary(results: dict[str, Any]) -> None:
  """Prints each method's accuracy matrix and the metrics table."""
  tasks = results["tasks"]
  for method, runs in runs_by_method(results["runs"]).items():
    print(f"\n{method}: test accuracy R[i][j] (mean ± std over {len(runs)} seed(s))")
    print(accuracy_matrix_table(runs, tasks))
  print()
  print(format_table(report_header(results["runs"]), report_rows(results["runs"])))


def _pyplot():
  """matplotlib's pyplot, drawing to files only."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  return plt


def plot_accuracy_over_training(results: dict[str, Any], path: Path, dpi: int = 110) -> None:
  """One panel per task: its test accuracy over training steps, a line per method."""
  plt = _pyplot()
  tasks = results["tasks"]
  fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3), sharey=True, squeeze=False)
  for method, runs in runs_by_method(results["runs"]).items():
    steps = np.array(runs[0]["history"]["step"])
    accuracy = np.array([r["history"]["accuracy"] for r in runs])  # (seeds, evals, tasks)
    for j, ax in enumerate(axes[0]):
      mean = accuracy[:, :, j].mean(0)
      line, = ax.plot(steps, mean, label=method)
      if len(runs) > 1:
        std = accuracy[:, :, j].std(0, ddof=1)
        ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2)
  boundaries = np.cumsum(results["runs"][0]["steps"])[:-1]
  for j, ax in enumerate(axes[0]):
    for b in boundaries:
      ax.axvline(b, color="grey", lw=0.5, ls="--")
    ax.set_title(f"task {j + 1}: {tasks[j]}", fontsize=9)
    ax.set_xlabel("training step")
  axes[0][0].set_ylabel("test accuracy")
  axes[0][-1].legend(fontsize=7)
  _save(fig, path, dpi=dpi)


def _save(fig, path: Path, dpi: int) -> None:
  fig.tight_layout()
  fig.savefig(path, dpi=dpi)
  _pyplot().close(fig)


def write_json_atomically(data: Any, path: Path) -> None:
  """Writes JSON to ``path`` via a temporary file, so no half-written file remains."""
  tmp = path.with_suffix(path.suffix + ".tmp")
  tmp.write_text(json.dumps(data, indent=1))
  os.replace(tmp, path)


def write_run_outputs(results: dict[str, Any], out: Path) -> list[Path]:
  """Writes ``results.json`` and ``accuracy_over_training.png`` to ``out``."""
  out.mkdir(parents=True, exist_ok=True)
  paths = [out / "results.json", out / "accuracy_over_training.png"]
  write_json_atomically(results, paths[0])
  plot_accuracy_over_training(results, paths[1])
  return paths


# The report: `classp-jax report RUN_DIR... --out DIR`.

REFERENCE_METHOD = "classp"


def is_variant(run: dict[str, Any]) -> bool:
  """Whether a run is a frontier variant (``METHOD[KNOB=VALUE]``)."""
  return run.get("knob") is not None


def load_results(paths: Iterable[str | os.PathLike]) -> list[dict[str, Any]]:
  """Results of run folders (or results.json files), one dict per experiment.

  Folders of the same experiment (e.g. its methods and its frontier) are
  merged; ``sources`` lists each folder's command-line options and loop
  settings, and a (method, seed) already seen is not added again.
  """
  merged: dict[str, dict[str, Any]] = {}
  for path in map(Path, paths):
    path = path / "results.json" if path.is_dir() else path
    results = json.loads(path.read_text())
    name = results["experiment"]
    if name not in merged:
      merged[name] = {**results, "runs": [], "sources": []}
    elif merged[name]["tasks"] != results["tasks"]:
      raise ValueError(f"{path}: {name}'s tasks differ from an earlier folder's")
    experiment = merged[name]
    experiment["sources"].append(
        {"path": str(path), "options": results.get("options", {}), "loop": results["loop"]})
    seen = {(r["method"], r["seed"]) for r in experiment["runs"]}
    experiment["runs"] += [r for r in results["runs"] if (r["method"], r["seed"]) not in seen]
  return list(merged.values())


def old_and_new_accuracy(run: dict[str, Any], key: str | None = None) -> tuple[float, float]:
  """Final accuracy: the mean over the earlier tasks, and the last task's."""
  matrix = run[key]["accuracy_matrix"] if key else run["accuracy_matrix"]
  last = np.asarray(matrix[-1], dtype=np.float64)
  return float(last[:-1].mean()) if len(last) > 1 else float("nan"), float(last[-1])


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
  """A GitHub-flavoured markdown table."""
  lines = [header, ["---"] * len(header), *rows]
  return "\n".join("| " + " | ".join(str(c) for c in line) + " |" for line in lines)


def report_rows(runs: list[dict[str, Any]], key: str | None = None) -> list[list[str]]:
  """Per method, over seeds: metrics, final old/new-task accuracy, epochs, memory, time.

  With ``key="paper_protocol"``, that protocol's metrics and accuracies only.
  """
  rows = []
  for method, group in runs_by_method(runs).items():
    metrics = [r[key] for r in group] if key else group
    old_new = np.array([old_and_new_accuracy(r, key) for r in group])
    row = [method, str(len(group)),
           *(mean_std(m[name] for m in metrics) for name in METRICS if name in metrics[0]),
           mean_std(old_new[:, 0]), mean_std(old_new[:, 1])]
    if key is None:
      row += [", ".join(f"{e:.3g}" for e in np.mean([r["epochs"] for r in group], axis=0)),
              f"{group[0]['state_bytes'] / (4 * group[0]['param_count']):.2f}x",
              f"{np.mean([r['wall_time_s'] for r in group]):.0f}"]
    rows.append(row)
  return rows


def report_header(runs: list[dict[str, Any]], key: str | None = None) -> list[str]:
  """The columns of `report_rows`."""
  first = runs[0][key] if key else runs[0]
  header = ["method", "seeds", *(m.upper() if m != "forgetting" else m
                                 for m in METRICS if m in first), "old tasks", "last task"]
  if key is None:
    header += ["epochs per task", "state / fp32 params", "time/run (s)"]
  return header


def stopping_rows(runs: list[dict[str, Any]]) -> list[list[str]]:
  """Per method, over seeds: each task's epochs and its last epoch's training loss and accuracy.

  Under loss or accuracy targets this is where each method stopped: with an
  accuracy target, the loss column is each method's own loss target.
  """
  rows = []
  for method, group in runs_by_method(runs).items():
    cells = []
    for t in range(len(group[0]["epochs"])):
      losses = [r["epoch_loss"][t] for r in group]
      loss = mean_std(losses) if np.all(np.isfinite(losses)) else "NaN (diverged)"
      cells.append(f"{np.mean([r['epochs'][t] for r in group]):.3g} ep, loss {loss}, acc "
                   f"{mean_std(r['epoch_accuracy'][t] for r in group)}")
    rows.append([method, *cells])
  return rows


def paired_rows(runs: list[dict[str, Any]], reference: str = REFERENCE_METHOD) -> list[list[str]]:
  """``reference``'s ACC minus each other method's, paired by seed, and how often it wins."""
  by_method = runs_by_method(runs)
  base = {r["seed"]: r["acc"] for r in by_method.get(reference, [])}
  rows = []
  for method, group in by_method.items():
    pairs = [(base[r["seed"]], r["acc"]) for r in group if r["seed"] in base]
    if method == reference or not pairs:
      continue
    differences = [a - b for a, b in pairs]
    rows.append([method, str(len(pairs)), mean_std(differences),
                 f"{sum(d > 0 for d in differences)}/{len(pairs)}"])
  return rows


def frontier_rows(runs: list[dict[str, Any]]) -> list[list[str]]:
  """Per frontier variant, over seeds: old-task, last-task accuracy and ACC."""
  rows = []
  for method, group in runs_by_method([r for r in runs if is_variant(r)]).items():
    old_new = np.array([old_and_new_accuracy(r) for r in group])
    rows.append([group[0]["base_method"], group[0]["knob"], f"{group[0]['value']:g}",
                 str(len(group)), mean_std(old_new[:, 0]), mean_std(old_new[:, 1]),
                 mean_std(r["acc"] for r in group)])
  return rows


def plot_accuracy_matrices(results: dict[str, Any], path: Path) -> None:
  """One heatmap per method: the mean accuracy matrix over seeds."""
  plt = _pyplot()
  groups = runs_by_method(results["runs"])
  tasks = len(results["tasks"])
  columns = min(4, len(groups))
  rows = -(-len(groups) // columns)
  size = 1.1 + 0.35 * tasks
  fig, axes = plt.subplots(rows, columns, figsize=(size * columns, size * rows), squeeze=False)
  for ax in axes.flat[len(groups):]:
    ax.axis("off")
  for ax, (method, runs) in zip(axes.flat, groups.items()):
    mean = np.mean([r["accuracy_matrix"] for r in runs], axis=0)
    ax.imshow(mean, vmin=0, vmax=1, cmap="viridis")
    if tasks <= 5:
      for (i, j), value in np.ndenumerate(mean):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                color="white" if value < 0.6 else "black")
    ax.set_title(method, fontsize=8)
    ax.set_xticks(range(tasks), [str(j + 1) for j in range(tasks)], fontsize=6)
    ax.set_yticks(range(tasks), [str(i + 1) for i in range(tasks)], fontsize=6)
  fig.supxlabel("evaluated on task j", fontsize=8)
  fig.supylabel("after training task i", fontsize=8)
  _save(fig, path, dpi=72)


def plot_frontier(results: dict[str, Any], path: Path) -> None:
  """Final old-task accuracy against last-task accuracy: a curve per method and knob.

  Error bars are the std over seeds; hollow markers are the methods at their
  own points.
  """
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(6.5, 4.8))
  curves: dict[tuple[str, str], list] = defaultdict(list)
  for method, runs in runs_by_method(results["runs"]).items():
    points = np.array([old_and_new_accuracy(r) for r in runs])  # (seeds, [old, new])
    mean, std = points.mean(0), (points.std(0, ddof=1) if len(runs) > 1 else np.zeros(2))
    if is_variant(runs[0]):
      curves[runs[0]["base_method"], runs[0]["knob"]].append((runs[0]["value"], mean, std))
    else:
      ax.plot(mean[1], mean[0], "o", mfc="none", color="black", ms=5)
      ax.annotate(method, (mean[1], mean[0]), fontsize=6, xytext=(3, 3),
                  textcoords="offset points")
  for (method, knob), points in curves.items():
    points.sort(key=lambda p: p[0])
    mean = np.array([p[1] for p in points])
    std = np.array([p[2] for p in points])
    ax.errorbar(mean[:, 1], mean[:, 0], xerr=std[:, 1], yerr=std[:, 0], marker=".",
                capsize=2, lw=1, label=f"{method} ({knob})")
    for value, m, _ in (points[0], points[-1]):
      ax.annotate(f"{value:g}", (m[1], m[0]), fontsize=6, xytext=(3, -8),
                  textcoords="offset points")
  ax.set_xlabel(f"final accuracy on the last task ({results['tasks'][-1]})")
  ax.set_ylabel("final accuracy on the earlier tasks (mean)")
  ax.set_title(f"{results['experiment']}: stability-plasticity frontier", fontsize=9)
  if curves:
    ax.legend(fontsize=7, loc="best")
  _save(fig, path, dpi=80)


def plot_classp_diagnostics(results: dict[str, Any], path: Path) -> bool:
  """CLASSP's fraction of weights updated per step and capacity used, over training.

  Returns:
    False (and draws nothing) when no run logged them.
  """
  groups = {m: runs for m, runs in runs_by_method(results["runs"]).items()
            if not is_variant(runs[0]) and runs[0]["logs"]["capacity_used"]
            and runs[0]["logs"]["capacity_used"][0] is not None}
  if not groups:
    return False
  plt = _pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
  for method, runs in groups.items():
    steps = runs[0]["logs"]["step"]
    for ax, name in zip(axes, ("update_fraction", "capacity_used")):
      ax.plot(steps, np.mean([r["logs"][name] for r in runs], axis=0), label=method, lw=1)
  for b in np.cumsum(results["runs"][0]["steps"])[:-1]:
    for ax in axes:
      ax.axvline(b, color="grey", lw=0.5, ls="--")
  axes[0].set_title("fraction of weights updated in a step", fontsize=9)
  axes[1].set_title("capacity used: fraction of weights ever updated", fontsize=9)
  for ax in axes:
    ax.set_xlabel("training step")
    ax.set_ylim(-0.02, 1.02)
  axes[1].legend(fontsize=7)
  _save(fig, path, dpi=80)
  return True


def _settings(results: dict[str, Any]) -> list[str]:
  """The tasks, the devices, and how each run folder was made."""
  lines = [f"Tasks: {', '.join(results['tasks'])}; {results['devices']} x "
           f"{results['platform']} device(s).", "",
           f"<details><summary>The commands ({len(results['sources'])} run folder(s))</summary>",
           ""]
  for source in results["sources"]:
    loop = source["loop"]
    lines.append(f"- `{source['options'].get('command', '(not recorded)')}`: batch "
                 f"{loop['batch_size']}, epochs {loop['epochs']}, loss target "
                 f"{loop['loss_target']}, accuracy target {loop.get('accuracy_target')} "
                 f"(at most {loop['max_epochs']} epochs)")
  return [*lines, "", "</details>"]


def _chases_targets(results: dict[str, Any]) -> bool:
  """Whether any run folder stopped tasks at loss or accuracy targets."""
  def given(value):
    return any(v is not None for v in value) if isinstance(value, list) else value is not None
  return any(given(s["loop"].get("loss_target")) or given(s["loop"].get("accuracy_target"))
             for s in results["sources"])


def experiment_report(results: dict[str, Any], out: Path) -> tuple[str, list[Path]]:
  """The markdown section of one experiment, and the plots it writes to ``out``."""
  name = results["experiment"]
  runs = [r for r in results["runs"] if not is_variant(r)]
  main = {**results, "runs": runs}
  parts = [f"## {name}", "", results["description"], "", *_settings(results), ""]
  plots = []
  if runs:
    parts += ["### Held-out test accuracy (eval mode, dropout off)", "",
              "Mean ± std over seeds. *old tasks*: final accuracy on the earlier tasks; "
              "*last task*: on the last one. State: optimizer and regularizer memory "
              "as a multiple of the fp32 parameters. Time: wall seconds per run, with "
              "compilation and evaluation (rough on a shared machine).", "",
              markdown_table(report_header(runs), report_rows(runs)), ""]
    paired = paired_rows(runs)
    if paired:
      parts += [f"{REFERENCE_METHOD}'s ACC minus each method's, paired by seed "
                f"(wins: seeds where {REFERENCE_METHOD} is higher):", "",
                markdown_table(["method", "seeds", "ACC difference", "wins"], paired), ""]
    if _chases_targets(results) and all("epoch_loss" in r for r in runs):
      parts += ["### Where each task stopped", "",
                "Epochs, and the last epoch's mean training loss and accuracy (training "
                "split, dropout on, as the stopping rule measures them), mean ± std over "
                "seeds. With an accuracy target, the loss is the method's own loss target.",
                "", markdown_table(["method", *results["tasks"]], stopping_rows(runs)), ""]
    if "paper_protocol" in runs[0]:
      parts += ["### Paper protocol: training-split accuracy, dropout on", "",
                "As the paper scored it (not held-out data); for comparison with the "
                "published numbers only.", "",
                markdown_table(report_header(runs, "paper_protocol"),
                               report_rows(runs, "paper_protocol")), ""]
    for suffix, title, draw in (
        ("accuracy_matrices", "Accuracy matrices (mean over seeds)", plot_accuracy_matrices),
        ("accuracy_over_training", "Test accuracy over training",
         lambda results, path: plot_accuracy_over_training(results, path, dpi=75))):
      plots.append(out / f"{name}_{suffix}.png")
      draw(main, plots[-1])
      parts += [f"![{title}]({plots[-1].name})", ""]
    diagnostics = out / f"{name}_classp_diagnostics.png"
    if plot_classp_diagnostics(main, diagnostics):
      plots.append(diagnostics)
      parts += [f"![CLASSP update fraction and capacity used]({diagnostics.name})", ""]
  if any(is_variant(r) for r in results["runs"]):
    plots.append(out / f"{name}_frontier.png")
    plot_frontier(results, plots[-1])
    parts += ["### Stability-plasticity frontier", "",
              f"![frontier]({plots[-1].name})", "",
              markdown_table(["method", "knob", "value", "seeds", "old tasks", "last task", "ACC"],
                             frontier_rows(results["runs"])), ""]
  if runs:
    parts += ["<details><summary>Accuracy matrices R[i][j], mean ± std over seeds</summary>", ""]
    for method, group in runs_by_method(runs).items():
      parts += [f"{method}:", "", "```", accuracy_matrix_table(group, results["tasks"]), "```", ""]
    parts += ["</details>", ""]
  return "\n".join(parts), plots


def write_report(paths: Iterable[str | os.PathLike], out: str | os.PathLike,
                 notes: str | os.PathLike | None = None) -> list[Path]:
  """Writes ``report.md`` and its PNG plots to ``out``.

  Args:
    paths: run folders (or their results.json files).
    out: the report folder.
    notes: a markdown file put after the title (e.g. hand-written conclusions).

  Returns:
    The files written.
  """
  out = Path(out)
  out.mkdir(parents=True, exist_ok=True)
  sections, written = [], []
  for results in load_results(paths):
    section, plots = experiment_report(results, out)
    sections.append(section)
    written += plots
  preamble = Path(notes).read_text().strip() + "\n\n" if notes else ""
  report = out / "report.md"
  report.write_text("# CLASSP-JAX results\n\n" + preamble + "\n".join(sections))
  return [report, *written]
