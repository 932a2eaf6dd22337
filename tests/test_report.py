"""``classp-jax report`` and the terminal summary, from synthetic results."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from classp_jax.cli import main
from classp_jax.metrics import continual_metrics
from classp_jax.report import print_summary, write_report
from classp_jax.report.claims import ablation_rows, matched_plasticity_rows
from classp_jax.report.markdown import file_in
from classp_jax.report.plots import method_family, plot_classp_diagnostics
from classp_jax.report.tables import (
  cpu_time,
  paired_rows,
  report_header,
  report_rows,
  selection_sentence,
  time_rows,
)
from classp_jax.results import (
  best_per_method,
  load_results,
  neighbour_points,
  next_points,
  read_results,
  select_points,
  tuned_runs,
  write_json_atomically,
)

TASKS = ["mnist", "fashion_mnist"]

# What each method is, as its registry entry declares it (`MethodInfo`): the metadata the
# paper's comparison gives them. A method not named here records none.
_CLASSP_ABLATION = {"family": "CLASSP", "ablation_of": "classp_no_threshold"}
METHOD_INFO = {
  "classp": {**_CLASSP_ABLATION, "roles": ["reference"], "changes": "an absolute threshold"},
  "classp_no_threshold": {"family": "CLASSP"},
  "classp_relative": {**_CLASSP_ABLATION, "changes": "a relative threshold"},
  "classp_p2": {**_CLASSP_ABLATION, "changes": "p = 2 instead of p = 1"},
  "classp_eq1": {**_CLASSP_ABLATION, "changes": "Eq. (1) instead of Algorithm 1"},
  "classp_reset": {**_CLASSP_ABLATION, "changes": "the optimizer state reset at each task"},
  **{m: {"family": "optimizers", "roles": ["paper_baseline"]} for m in ("sgd", "adam", "adagrad")},
  "ewc": {"family": "regularizers", "roles": ["paper_baseline"]},
  **{m: {"family": "regularizers"} for m in ("si", "mas", "l2")},
  **{m: {"family": "replay"} for m in ("er", "derpp", "agem")},
  "lwf": {"family": "distillation"},
  "joint": {"family": "optimizers", "roles": ["upper_bound"]},
  "finetune": {"family": "optimizers", "roles": ["lower_bound"]},
}


def fake_run(
  method,
  seed,
  rng=None,
  *,
  classp=False,
  matrix=None,
  validation=None,
  diverged_at=None,
  settings_id=None,
  **variant,
):
  """A run entry shaped as `run_continual` returns it, with made-up accuracies.

  Args:
    method: its name.
    seed: its seed.
    rng: jitters the default accuracy matrix (None: no jitter).
    classp: log an update fraction and capacity used, and keep state.
    matrix: the 2 x 2 test accuracy matrix (default: a forgetting learner).
    validation: the validation accuracy matrix, or None (no validation split).
    diverged_at: ``(task, step)``: the run diverged there; its matrix keeps
      the rows of the tasks before, and its metrics are null.
    settings_id: its settings digest, or None (an older results file).
    **variant: ``base_method``, ``knob`` and ``value`` of a frontier point, or other keys.

  Its ``method_info`` is `METHOD_INFO`'s for its base method (a frontier point's) or its
  method.
  """
  if matrix is None:
    matrix = np.array([[0.9, 0.1], [0.6, 0.8]])
    if rng is not None:
      matrix = np.clip(matrix + rng.normal(0, 0.02, (2, 2)), 0, 1)
  matrix = np.asarray(matrix, dtype=float)
  baseline = [0.1, 0.1]
  fraction = [0.5, 0.4, 0.3, 0.2, 0.1] if classp else [None] * 5
  run = {
    "method": method,
    "seed": seed,
    "accuracy_matrix": matrix.tolist(),
    "baseline": baseline,
    **continual_metrics(matrix, np.array(baseline)),
    "param_count": 100,
    "state_bytes": 400 if classp else 0,
    "steps": [20, 20],
    "epochs": [4, 1],
    "epoch_loss": [0.3, 0.4],
    "epoch_accuracy": [0.9, 0.8],
    "wall_time_s": 12.0,
    "history": {
      "step": [10, 20, 30, 40],
      "task": [0, 0, 1, 1],
      "accuracy": [[0.5, 0.1], matrix[0].tolist(), [0.7, 0.5], matrix[1].tolist()],
    },
    "logs": {
      "step": [0, 10, 20, 30, 40],
      "task": [0, 0, 0, 1, 1],
      "loss": [1.0] * 5,
      "penalty": [0.0] * 5,
      "update_fraction": fraction,
      "capacity_used": [0.5, 0.6, 0.7, 0.8, 0.9] if classp else [None] * 5,
    },
    "paper_protocol": {
      "accuracy_matrix": (matrix + 0.05).clip(0, 1).tolist(),
      **continual_metrics(matrix + 0.05),
    },
    **variant,
  }
  info = METHOD_INFO.get(variant.get("base_method") or method)
  if info is not None:
    run["method_info"] = info
  if validation is not None:
    run["validation_accuracy_matrix"] = np.asarray(validation, dtype=float).tolist()
  if settings_id is not None:
    run.update(settings_id=settings_id, settings={"method": {"optimizer": "sgd"}, "seed": seed})
  if diverged_at is not None:
    task, step = diverged_at
    run.update(
      diverged=True,
      diverged_at={"task": task, "step": step},
      acc=None,
      bwt=None,
      forgetting=None,
      fwt=None,
      accuracy_matrix=run["accuracy_matrix"][:task],
      steps=run["steps"][: task + 1],
      epochs=run["epochs"][: task + 1],
      epoch_loss=[0.3, None][: task + 1],
      epoch_accuracy=[0.9, 0.1][: task + 1],
      paper_protocol=None,
    )
    run["history"] = {k: v[: 2 * task] for k, v in run["history"].items()}
    run["logs"] = {k: v[: 2 + 2 * task] for k, v in run["logs"].items()}
    if validation is not None:
      run["validation_accuracy_matrix"] = run["validation_accuracy_matrix"][:task]
  return run


def results_dict(runs, **extra):
  return {
    "experiment": "mnist_fashion",
    "description": "a synthetic study",
    "tasks": TASKS,
    "devices": 1,
    "platform": "cpu",
    "loop": {"batch_size": 32, "epochs": [4, 1], "loss_target": None, "max_epochs": 50},
    "options": {"command": "classp-jax run mnist_fashion"},
    "runs": runs,
    **extra,
  }


def write_results(folder, runs, **extra):
  folder.mkdir(parents=True)
  (folder / "results.json").write_text(json.dumps(results_dict(runs, **extra), allow_nan=False))
  return folder


def frontier_point(
  value, seed, test_acc, validation_acc, *, method="classp", knob="learning_rate", **kwargs
):
  """A frontier run whose final test row averages to ``test_acc`` and validation row to
  ``validation_acc`` (old task 0.1 above, last task 0.1 below each)."""
  test = [[0.9, 0.1], [test_acc + 0.1, test_acc - 0.1]]
  validation = [[0.9, 0.1], [validation_acc + 0.1, validation_acc - 0.1]]
  return fake_run(
    f"{method}[{knob}={value:g}]",
    seed,
    matrix=test,
    validation=validation,
    base_method=method,
    knob=knob,
    value=value,
    **kwargs,
  )


@pytest.fixture
def run_folders(tmp_path):
  rng = np.random.default_rng(0)
  methods = write_results(
    tmp_path / "methods",
    [
      fake_run(m, s, rng, classp=m.startswith("classp"))
      for m in ("classp", "sgd", "ewc")
      for s in range(3)
    ],
  )
  frontier = write_results(
    tmp_path / "frontier",
    [
      fake_run(
        f"classp[threshold={t:g}]",
        s,
        rng,
        classp=True,
        base_method="classp",
        knob="threshold",
        value=t,
      )
      for t in (0.0, 1e-6, 1e-4)
      for s in range(2)
    ],
  )
  return methods, frontier


def test_report_writes_markdown_tables_and_plots(run_folders, tmp_path, capsys):
  notes = tmp_path / "notes.md"
  notes.write_text("## Conclusions\n\nNone yet.")
  out = tmp_path / "report"
  assert main(["report", *map(str, run_folders), "--out", str(out), "--notes", str(notes)]) == 0
  report = (out / "report.md").read_text()
  # The headline table first (one study, one tuned method), then the notes.
  assert report.startswith("# CLASSP-JAX results\n\n## Headline: test ACC")
  assert report.index("| classp at the paper's point | 0.") < report.index("## Conclusions")
  assert "## mnist_fashion" in report and "`classp-jax run mnist_fashion`: batch 32" in report
  assert "| classp | 3 |" in report and "| ewc | 3 |" in report  # the methods' table
  assert "paper protocol, training-split accuracy, dropout on" in report
  assert "| classp | threshold | 1e-06 | 2 |" in report  # the frontier's table
  assert "classp[threshold" not in report.split("stability-plasticity frontier")[0]
  # No validation split was recorded: the selection says it used the test data.
  assert "selected on TEST ACC" in report and "| classp | threshold |" in report
  plots = sorted(p.name for p in out.glob("*.png"))
  assert plots == [
    f"mnist_fashion_{kind}.png"
    for kind in ("accuracy_matrices", "accuracy_over_training", "classp_diagnostics", "frontier")
  ]
  for name in plots:
    assert f"]({name})" in report
    assert 2_000 < (out / name).stat().st_size < 150_000
  assert "wrote" in capsys.readouterr().out


def test_folders_of_one_experiment_merge_without_duplicates(run_folders):
  methods, frontier = run_folders
  (merged,) = load_results([methods, frontier, methods / "results.json"])
  assert len(merged["runs"]) == 9 + 6
  assert [s["path"] for s in merged["sources"]][:2] == [
    str(methods / "results.json"),
    str(frontier / "results.json"),
  ]


def test_seeds_of_one_setting_merge_across_files_and_repeats_count_once(tmp_path):
  a = write_results(tmp_path / "a", [fake_run("sgd", s, settings_id="abc123") for s in (0, 1)])
  b = write_results(tmp_path / "b", [fake_run("sgd", s, settings_id="abc123") for s in (1, 2)])
  (merged,) = load_results([a, b])
  assert sorted(r["seed"] for r in merged["runs"]) == [0, 1, 2]


def test_one_method_name_with_different_settings_is_refused(tmp_path):
  a = write_results(tmp_path / "a", [fake_run("classp", 0, settings_id="aaaa")])
  b = write_results(tmp_path / "b", [fake_run("classp", 0, settings_id="bbbb")])
  with pytest.raises(ValueError) as error:
    load_results([a, b])
  message = str(error.value)
  assert "\n" not in message and "'classp'" in message
  assert str(a / "results.json") in message and str(b / "results.json") in message
  old = write_results(tmp_path / "old", [fake_run("classp", 1)])  # no settings recorded
  with pytest.raises(ValueError, match="no recorded settings"):
    load_results([a, old])


@pytest.mark.parametrize(
  "text, expected",
  [
    ('{"experiment": "mnist_fashion", "runs": [', "not valid JSON"),
    ('{"experiment": "x", "acc": NaN}', "NaN is not JSON"),
    ('{"experiment": "x", "acc": -Infinity}', "-Infinity is not JSON"),
    ('{"experiment": "x"}', "lacks description, tasks"),
  ],
)
def test_a_damaged_results_file_is_an_error_naming_it(tmp_path, text, expected):
  path = tmp_path / "results.json"
  path.write_text(text)
  with pytest.raises(ValueError, match=expected) as error:
    load_results([tmp_path])
  assert str(error.value).startswith(f"{path}: ")


def test_a_run_missing_a_key_or_with_null_metrics_is_an_error_naming_it(tmp_path):
  run = fake_run("sgd", 3)
  del run["accuracy_matrix"]
  bad = write_results(tmp_path / "bad", [run])
  with pytest.raises(ValueError, match=r"run 0 \(sgd, seed 3\) lacks accuracy_matrix"):
    read_results(bad)
  nulls = write_results(tmp_path / "nulls", [{**fake_run("sgd", 0), "acc": None}])
  with pytest.raises(ValueError, match="acc null but the run is not marked diverged"):
    read_results(nulls)
  short = write_results(tmp_path / "short", [fake_run("sgd", 0, validation=[[0.9, 0.1]])])
  with pytest.raises(ValueError, match="validation_accuracy_matrix is not 2 x 2"):
    read_results(short)
  (tmp_path / "flat.json").write_text(json.dumps({**results_dict([]), "runs": {"sgd": 1}}))
  with pytest.raises(ValueError, match="flat.json: tasks and runs must be lists"):
    read_results(tmp_path / "flat.json")


def test_results_are_written_as_strict_json_without_temporary_files(tmp_path):
  run = {**fake_run("sgd", 0, diverged_at=(1, 35)), "logs": {"loss": [1.0, float("nan")]}}
  path = tmp_path / "results.json"
  write_json_atomically(results_dict([run]), path)
  assert "NaN" not in path.read_text() and [p.name for p in tmp_path.iterdir()] == ["results.json"]
  assert read_results(path)["runs"][0]["logs"]["loss"] == [1.0, None]


def diverging_study():
  """classp: 3 seeds, none diverged; ewc: seed 1 diverged in task 2; si: every seed
  diverged, in task 1 (no finished task at all)."""
  classp = [fake_run("classp", s, matrix=[[0.9, 0.1], [0.8, 0.7 + 0.1 * s]]) for s in range(3)]
  ewc = [fake_run("ewc", s, matrix=[[0.9, 0.1], [0.5, 0.6]]) for s in (0, 2)]
  ewc.insert(1, fake_run("ewc", 1, diverged_at=(1, 35)))
  si = [fake_run("si", s, diverged_at=(0, 2)) for s in range(2)]
  return results_dict(classp + ewc + si)


def terminal_rows(table: str) -> dict[str, list[str]]:
  """Each row of a terminal table (`fit_table`: headers and long cells wrapped, columns in
  blocks each led by the row's name) as its name and its cells, the wrapped ones rejoined,
  read off each block's rule line."""
  rows: dict[str, list[str]] = {}
  for block in table.split("\n\n"):
    lines = block.splitlines()
    rule = next(i for i, line in enumerate(lines) if set(line) <= {"-", " "} and "-" in line)
    spans = [m.span() for m in re.finditer(r"-+", lines[rule])]
    names, cells = [], []
    for line in lines[rule + 1 :]:
      parts = [
        line[a : b + 1].strip() if j < len(spans) - 1 else line[a:].strip()
        for j, (a, b) in enumerate(spans)
      ]
      if parts[0] and not line.startswith(" "):
        names.append(parts[0])
        cells.append(parts)
      else:  # a wrapped cell's next line
        cells[-1] = [f"{c} {more}".strip() for c, more in zip(cells[-1], parts)]
    for row in cells:
      rows.setdefault(row[0], [row[0]]).extend(row[1:])
  return rows


def test_the_terminal_summary_shows_diverged_seeds_not_zero_forgetting(capsys):
  print_summary(diverging_study())
  out = capsys.readouterr().out
  assert "nan" not in out.lower()
  assert max(map(len, out.splitlines())) <= 100  # fits a terminal
  metrics = out.split("held-out test metrics\n", 1)[1].split("\n\nWhere they differ")[0]
  cells = terminal_rows(metrics)
  lines = {name: "  ".join(row) for name, row in cells.items()}
  si = lines["si"]
  assert "diverged (2/2 seeds)" in si and "0.000" not in si
  assert "seeds 0, 1 in task 1 (mnist), steps 2, 2 into it (2, 2 of the run)" in si
  ewc = lines["ewc"]
  assert "diverged (1/3 seeds)" in ewc
  # Its first task took 20 steps: step 35 of the run is step 15 of the second.
  assert "seed 1 in task 2 (fashion_mnist), step 15 into it (35 of the run)" in ewc
  # ACC of [[0.9, 0.1], [0.5, 0.6]] is 0.55, BWT -0.4, forgetting 0.4, on both seeds.
  assert cells["ewc: the 2 seed(s) that did not diverge"][1:5] == [
    "2",
    "0.550 ± 0.000",
    "-0.400 ± 0.000",
    "0.400 ± 0.000",
  ]
  assert "si: diverged (2/2 seeds)" in out  # its (absent) accuracy matrix


def test_the_report_shows_diverged_seeds_and_pairs_only_sound_seeds(tmp_path):
  folder = write_results(tmp_path / "runs", diverging_study()["runs"])
  out = tmp_path / "report"
  write_report([folder], out)
  report = (out / "report.md").read_text()
  assert "nan" not in report.lower()
  assert (
    "| si | 2 | diverged (2/2 seeds) | — | — | — | — | — | diverged: seeds 0, 1 in task 1" in report
  )
  assert "| ewc: the 2 seed(s) that did not diverge | 2 | 0.550 ± 0.000 |" in report
  # classp's ACC: 0.5 * (0.8 + 0.7 + 0.1 s) = 0.75, 0.8, 0.85; ewc's 0.55 on seeds 0 and 2.
  assert "| ewc | 2 | 0.250 ± 0.071 | 2/2 | 1 |" in report
  assert "| si | 0 | — | 0/0 | 2 |" in report
  rows = {row[0]: row for row in paired_rows(diverging_study()["runs"])}
  assert rows["ewc"][1:] == ["2", "0.250 ± 0.071", "2/2", "1"]


def test_classp_is_compared_with_each_method_seed_by_seed(run_folders):
  runs = load_results([run_folders[0]])[0]["runs"]
  rows = {row[0]: row for row in paired_rows(runs)}
  assert set(rows) == {"sgd", "ewc"} and rows["sgd"][1] == "3"
  assert rows["sgd"][3].endswith("/3") and rows["sgd"][4] == "0"


def validation_frontier():
  """A learning-rate grid where validation and test disagree: validation ACC peaks at 0.01,
  test ACC at 0.1; 1.0 diverged on one seed with the highest validation ACC of all."""
  runs = []
  for seed in range(2):
    runs += [
      frontier_point(0.001, seed, 0.60, 0.62),
      frontier_point(0.01, seed, 0.70, 0.80),
      frontier_point(0.1, seed, 0.75 + 0.02 * seed, 0.70),
    ]
  runs += [
    frontier_point(1.0, 0, 0.9, 0.95),
    {**frontier_point(1.0, 1, 0.9, 0.95, diverged_at=(1, 50))},
  ]
  return runs


def test_frontier_selection_is_on_validation_and_reports_test_there():
  (selection,) = select_points(validation_frontier())
  assert selection.selected_on == "validation" and selection.selected.value == 0.01
  assert selection.edge == "no"
  (on_test,) = select_points(validation_frontier(), "test")
  assert on_test.selected.value == 0.1 and on_test.edge == "no"


def test_the_selected_points_table_reports_test_accuracy_at_the_validation_choice(tmp_path):
  folder = write_results(tmp_path / "frontier", validation_frontier())
  out = tmp_path / "report"
  write_report([folder], out)
  report = (out / "report.md").read_text()
  assert "selected on validation ACC (held out from the training data)" in report
  # At lr 0.01: validation ACC 0.80, test ACC 0.70, old tasks 0.80, last task 0.60.
  assert (
    "| classp | learning_rate | 0.01 | validation | 0.800 ± 0.000 | 0.700 ± 0.000 | "
    "0.800 ± 0.000 | 0.600 ± 0.000 | 2 | no |"
  ) in report
  assert "| classp | learning_rate | 1 | 2 | diverged (1/2 seeds) | — | — | — |  |" in report
  write_report([folder], out, select="test")
  report = (out / "report.md").read_text()
  assert "selected on TEST ACC" in report
  assert "| classp | learning_rate | 0.1 | test | 0.700 ± 0.000 | 0.760 ± 0.014 |" in report


@pytest.mark.parametrize(
  "scores, edge",
  [
    ({0.001: 0.9, 0.01: 0.8, 0.1: 0.7}, "yes-low"),
    ({0.001: 0.7, 0.01: 0.8, 0.1: 0.9}, "yes-high"),
    ({0.001: 0.7, 0.01: 0.9, 0.1: 0.8}, "no"),
  ],
)
def test_a_selected_point_at_the_edge_of_its_grid_is_flagged(tmp_path, scores, edge):
  runs = [frontier_point(lr, 0, 0.5, score) for lr, score in scores.items()]
  (selection,) = select_points(runs)
  assert selection.edge == edge
  out = tmp_path / "report"
  write_report([write_results(tmp_path / "frontier", runs)], out)
  report = (out / "report.md").read_text()
  assert report.count(f"| 1 | {edge} |") == 1
  if edge != "no":
    assert f"selected (grid edge: {edge[4:]})" in report
    # The exception is named: the next point past the edge, not yet run.
    following = {"yes-low": "0.0001", "yes-high": "1"}[edge]
    assert (
      f"- `classp[learning_rate={following}]`, the next point past an edge or one "
      "missing seeds, was not run" in report
    )
  else:
    assert "Exceptions to the rule" not in report


def test_first_tasks_selection_scores_the_first_tasks_and_reports_the_full_stream(tmp_path):
  # After task 1, lr 0.1 learned task 1 best (validation 0.95 against 0.85); after both,
  # lr 0.01 is best (0.8 against 0.7).
  def point(lr, after_first, final):
    run = frontier_point(lr, 0, 0.6, final)
    run["validation_accuracy_matrix"][0] = [after_first, 0.1]
    return run

  runs = [point(0.01, 0.85, 0.8), point(0.1, 0.95, 0.7), point(1.0, 0.5, 0.5)]
  assert select_points(runs)[0].selected.value == 0.01
  (selection,) = select_points(runs, "first-tasks:1")
  assert selection.selected.value == 0.1 and selection.selected_on == "validation, first 1 tasks"
  out = tmp_path / "report"
  write_report([write_results(tmp_path / "frontier", runs)], out, select="first-tasks:1")
  assert "| 0.1 | validation, first 1 tasks | 0.700 | 0.600 |" in (out / "report.md").read_text()
  with pytest.raises(ValueError, match="fewer than 3 tasks"):
    select_points(runs, "first-tasks:3")
  with pytest.raises(ValueError, match="first-tasks:K"):
    select_points(runs, "first-tasks:0")


def test_validation_selection_needs_validation_accuracy():
  runs = [fake_run("sgd[learning_rate=0.1]", 0, base_method="sgd", knob="learning_rate", value=0.1)]
  assert select_points(runs)[0].selected_on == "test"
  with pytest.raises(ValueError, match=r"sgd \(learning_rate\) has runs without a validation"):
    select_points(runs, "validation")


def test_a_curve_whose_every_point_diverged_selects_nothing():
  runs = [frontier_point(v, 0, 0.5, 0.5, diverged_at=(0, 3)) for v in (1.0, 10.0)]
  (selection,) = select_points(runs)
  assert selection.selected is None and selection.edge == "n/a"


def matched_point(value, seed, validation_acc, reached, *, method="sgd"):
  """A frontier run of an accuracy-matched study (task 2 chases a training target), which
  stopped at its target or, short of it, at the epoch cap with training accuracy
  ``reached``."""
  return {
    **frontier_point(value, seed, validation_acc, validation_acc, method=method),
    "epochs": [5, 3 if reached is True else 10],
    "epoch_accuracy": [0.95, 0.85 if reached is True else reached],
    "targets_met": [None, reached is True],
  }


def test_accuracy_matched_selection_skips_points_that_missed_the_target(tmp_path, capsys):
  # sgd: lr 0.01 has the best validation ACC but missed its target on one seed.
  # adam: no point reached it; lr 1e-3 came closest (0.8 against 0.6).
  runs = [matched_point(0.001, s, 0.6, True) for s in range(2)]
  runs += [matched_point(0.01, 0, 0.9, True), matched_point(0.01, 1, 0.9, 0.7)]
  runs += [matched_point(0.1, s, 0.7, True) for s in range(2)]
  runs += [
    matched_point(v, 0, acc, reached, method="adam")
    for v, acc, reached in ((1e-4, 0.8, 0.6), (1e-3, 0.5, 0.8))
  ]
  sgd, adam = select_points(runs)
  assert sgd.selected.value == 0.1 and sgd.closest is None and sgd.edge == "yes-high"
  assert adam.selected is None and adam.closest.value == 1e-3 and adam.edge == "yes-high"
  # Both grids grow past the edge: sgd's selected point, adam's closest one.
  assert next_points([sgd, adam]) == (["adam[learning_rate=0.01]", "sgd[learning_rate=1]"], [])
  out = tmp_path / "report"
  write_report([write_results(tmp_path / "frontier", runs)], out)
  report = (out / "report.md").read_text()
  assert "1 method(s) reached the training target at no point" in report
  assert "| adam | learning_rate | 0.001 | 1 | 0.800 | 15 | 0.500 | yes-high |" in report
  assert "closest to the training target, missed the training target (1/1 seeds)" in report
  assert (
    "| adam | learning_rate | none: no point reached the training target (closest: 0.001)" in report
  )
  assert "| sgd | learning_rate | 0.01 | 2 |" in report
  assert "missed the training target (1/2 seeds)" in report
  # `classp-jax select` names adam's closest point too (for the 5-seed runs), and says so.
  assert main(["select", str(tmp_path / "frontier")]) == 0
  printed = capsys.readouterr()
  assert printed.out.split() == ["adam[learning_rate=0.001]", "sgd[learning_rate=0.1]"]
  assert (
    "adam (learning_rate): no point met its training target; the closest is 0.001" in printed.err
  )


def test_the_closest_point_is_judged_on_the_seeds_every_point_has():
  # No point reaches the target. On seeds 0-1, lr 0.1 comes closer (0.8 against 0.7); the
  # 5-seed runs of lr 0.1 add two seeds that came less close, which must not move it.
  runs = [matched_point(0.01, s, 0.5, 0.7) for s in range(2)]
  runs += [matched_point(0.1, s, 0.5, 0.8) for s in range(2)]
  runs += [matched_point(0.1, s, 0.5, 0.4) for s in (2, 3, 4)]
  (selection,) = select_points(runs)
  assert selection.selected is None and selection.closest.value == 0.1


def test_the_report_shows_commands_without_the_machines_paths(tmp_path):
  command = (
    "classp-jax run split_mnist --data-dir /home/me/data --out "
    "/scratch/me/runs-v2/split_mnist_class/frontier --seeds 0,1"
  )
  folder = write_results(
    tmp_path / "frontier",
    [fake_run("sgd", 0)],
    options={"command": command, "data_dir": "/home/me/data"},
  )
  write_report([folder], tmp_path / "report")
  report = (tmp_path / "report" / "report.md").read_text()
  assert (
    "`classp-jax run split_mnist --data-dir ROOT --out RUNS/split_mnist_class/frontier --seeds 0,1`"
  ) in report
  assert "/home/me" not in report and "/scratch" not in report


def test_the_headline_table_gives_each_studys_selected_points_and_the_papers_point(tmp_path):
  # Two studies: lr 0.01 is selected in both; the second also has CLASSP at its own point.
  first = [
    frontier_point(v, s, 0.5 + v, 0.9 - abs(v - 0.01), method="sgd")
    for v in (0.001, 0.01, 0.1)
    for s in range(2)
  ]
  second = [{**run, "acc": run["acc"] - 0.1} for run in first]
  second += [fake_run("classp", s, matrix=[[0.9, 0.1], [0.3, 0.2]]) for s in range(2)]
  folders = [
    write_results(tmp_path / "a", first),
    write_results(tmp_path / "b", second, scenario="class"),
  ]
  write_report(folders, tmp_path / "report")
  report = (tmp_path / "report" / "report.md").read_text()
  assert (
    "| method | MNIST → Fashion | MNIST → Fashion (class) |\n"
    "| --- | --- | --- |\n"
    "| classp at the paper's point | not run | 0.250 ± 0.000 (2) |\n"
    "| sgd | 0.510 ± 0.000 (2) | 0.410 ± 0.000 (2) |"
  ) in report
  # Wall time per method: 6 frontier runs of sgd at 12 s each.
  assert "| sgd | 6 | 1.2 min | — | 12 |" in report


def test_a_selected_points_matrix_is_not_averaged_with_the_methods_own_point(tmp_path):
  # CLASSP tuned (lr 0.01 selected: final row 0.6, 0.4) beside CLASSP at its own point,
  # which froze (final row 0.1, 0.1): two matrices of 2 seeds each, not one of 4.
  runs = [
    frontier_point(v, s, 0.5, 0.9 - abs(v - 0.01)) for v in (0.001, 0.01, 0.1) for s in range(2)
  ]
  runs += [fake_run("classp", s, matrix=[[0.1, 0.1], [0.1, 0.1]]) for s in range(2)]
  write_report([write_results(tmp_path / "a", runs)], tmp_path / "report")
  matrices = (tmp_path / "report" / "report.md").read_text().split("Accuracy matrices")[-1]
  tuned, own = matrices.split("classp[learning_rate=0.01]: ")[1].split("classp: ")
  assert tuned.startswith("test accuracy R[i][j] (mean ± std over 2 seed(s))")
  assert "after fashion_mnist  0.600 ± 0.000  0.400 ± 0.000" in tuned
  assert own.startswith("test accuracy R[i][j] (mean ± std over 2 seed(s))")
  assert "after fashion_mnist  0.100 ± 0.000  0.100 ± 0.000" in own


def test_the_settings_listing_gives_a_swept_methods_other_points_as_differences(tmp_path):
  def settings(lr, threshold):
    return {
      "method": {
        "name": f"classp[threshold={threshold:g}]",
        "optimizer": "classp",
        "hparams": {"learning_rate": lr, "threshold": threshold},
      }
    }

  runs = [
    {
      **frontier_point(t, 0, 0.5, 0.5, knob="threshold"),
      "settings": settings(0.1, t),
      "settings_id": f"id{i}",
    }
    for i, t in enumerate((0.0, 1e-6))
  ]
  runs.append(
    {
      **fake_run("sgd", 0),
      "settings": {"method": {"hparams": {"learning_rate": 0.1}}},
      "settings_id": "id2",
    }
  )
  write_report([write_results(tmp_path / "a", runs)], tmp_path / "report")
  report = (tmp_path / "report" / "report.md").read_text()
  # The first point in full, the second as its knob only (not its name), other methods in full.
  assert (
    '- classp[threshold=0] `id0`: `{"name": "classp[threshold=0]", "optimizer": "classp", '
    '"hparams": {"learning_rate": 0.1, "threshold": 0.0}}`\n'
    "- classp[threshold=1e-06] `id1`: as classp[threshold=0], but "
    '`{"hparams.threshold": 1e-06}`\n'
    '- sgd `id2`: `{"hparams": {"learning_rate": 0.1}}`'
  ) in report


def test_the_headline_says_when_the_papers_point_missed_its_training_target(tmp_path):
  # An accuracy-matched study: CLASSP at the paper's point stopped at the epoch cap on one
  # seed (1), at 0.55 training accuracy: its ACC is not accuracy-matched.
  runs = [matched_point(v, s, 0.6, True) for v in (0.001, 0.01, 0.1) for s in range(2)]
  paper = [
    {
      **fake_run("classp", s, matrix=[[0.9, 0.1], [0.3, 0.2]]),
      "epochs": [5, 10 if s else 3],
      "epoch_accuracy": [0.95, 0.55 if s else 0.85],
      "targets_met": [None, not s],
    }
    for s in range(2)
  ]
  write_report([write_results(tmp_path / "a", runs + paper)], tmp_path / "report")
  report = (tmp_path / "report" / "report.md").read_text()
  assert (
    "| classp at the paper's point | 0.250 ± 0.000 (2); target missed (1/2 seeds, reached 0.550) |"
  ) in report


def test_a_frontier_tuned_on_a_subsample_and_its_points_on_all_the_data_are_two_sections(tmp_path):
  # sgd ran on all the data at its subsample point only; adam at its point (0.01) and the
  # neighbours either side, where validation selects 0.001 instead.
  tuning = [
    frontier_point(v, s, 0.5, 0.9 - abs(v - 0.01), method=m)
    for m in ("sgd", "adam")
    for v in (0.001, 0.01, 0.1)
    for s in range(2)
  ]
  full = [frontier_point(0.01, s, 0.7, 0.8, method="sgd") for s in range(5)]
  full += [
    frontier_point(v, s, 0.6, score, method="adam")
    for v, score in ((0.001, 0.85), (0.01, 0.8), (0.1, 0.7))
    for s in range(3)
  ]
  folders = [
    write_results(
      tmp_path / "frontier",
      tuning,
      options={"command": "classp-jax run mnist_fashion --subsample 3000", "subsample": "3000"},
    ),
    write_results(tmp_path / "selected", full),
  ]
  written = write_report(folders, tmp_path / "report")
  report = (tmp_path / "report" / "report.md").read_text()
  assert "## mnist_fashion [--subsample 3000]\n" in report and "## mnist_fashion\n" in report
  assert "| method | MNIST → Fashion (3000 per task) | MNIST → Fashion |" in report
  assert "| sgd | 0.500 ± 0.000 (2) | 0.700 ± 0.000 (5) |" in report
  full_section = report.split("## mnist_fashion\n")[1]
  assert "*one point*: the method ran here at one point only, chosen on another" in full_section
  assert (
    "| sgd | learning_rate | 0.01 | validation | 0.800 ± 0.000 | 0.700 ± 0.000 |" in full_section
    and "| 5 | one point |" in full_section
  )
  assert (
    "| adam | learning_rate | 0.001 | validation | 0.850 ± 0.000 | 0.600 ± 0.000 |" in full_section
  ) and "| 3 | yes-low |" in full_section
  names = {p.name for p in written}
  assert {"mnist_fashion_frontier.png", "mnist_fashion_subsample3000_frontier.png"} <= names


def test_classp_diagnostics_average_seeds_whose_tasks_took_different_steps(tmp_path):
  # Seed 1 stopped task 1 at a target after 10 steps and trained task 2 for 40: its logs
  # are at other steps than seed 0's, and are read on the tasks-trained axis.
  runs = [fake_run("classp", 0, classp=True), fake_run("classp", 1, classp=True)]
  runs[1].update(steps=[10, 40])
  runs[1]["logs"]["step"] = [0, 5, 10, 30, 50]
  assert plot_classp_diagnostics(results_dict(runs), tmp_path / "diagnostics.png")
  assert (tmp_path / "diagnostics.png").stat().st_size > 2_000


def test_the_scenario_heads_every_section_and_table(tmp_path, capsys):
  runs = [
    fake_run("classp", 0, classp=True),
    fake_run("sgd", 0),
    frontier_point(0.1, 0, 0.7, 0.8, classp=True),
    frontier_point(0.01, 0, 0.6, 0.7, classp=True),
  ]
  folder = write_results(tmp_path / "runs", runs, scenario="class")
  out = tmp_path / "report"
  written = write_report([folder], out)
  report = (out / "report.md").read_text()
  # After the title and the headline (whose columns name the study and its scenario).
  headings = [line for line in report.splitlines() if line.startswith("#")][2:]
  assert "| method | MNIST → Fashion (class) |" in report
  assert headings and all("mnist_fashion (class-incremental)" in h for h in headings)
  # The tuned methods lead (with the plots); the named ones follow in their own table.
  assert [h.split(": ", 1)[1] for h in headings[1:]] == [
    "each method at its selected point",
    "stability-plasticity frontier",
    "the named methods at their own points",
    "paper protocol, training-split accuracy, dropout on",
  ]
  assert "4 runs, 48 s of wall time in all; CPU time (all threads): —." in report
  assert {p.name for p in written[1:]} == {
    f"mnist_fashion_class_{kind}.png"
    for kind in ("accuracy_matrices", "accuracy_over_training", "classp_diagnostics", "frontier")
  }
  print_summary(results_dict(runs, scenario="class"))
  assert "mnist_fashion (class-incremental): held-out test metrics" in capsys.readouterr().out


def test_plots_are_written_with_diverged_runs_and_points(tmp_path):
  runs = (
    diverging_study()["runs"]
    + validation_frontier()
    + [
      frontier_point(s, 0, 0.5 + 0.1 * k, 0.5 + 0.1 * k, method="ewc", knob="strength")
      for k, s in enumerate((1.0, 10.0))
    ]
    + [frontier_point(100.0, 0, 0.5, 0.5, method="ewc", knob="strength", diverged_at=(1, 7))]
  )
  out = tmp_path / "report"
  written = write_report([write_results(tmp_path / "runs", runs)], out)
  assert {p.name for p in written if p.suffix == ".png"} == {
    f"mnist_fashion_{kind}.png"
    for kind in ("accuracy_matrices", "accuracy_over_training", "frontier")
  }
  for path in written[1:]:
    assert 2_000 < path.stat().st_size < 150_000


def test_a_missing_folder_is_a_one_line_error(tmp_path, capsys):
  assert main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "out")]) == 2
  error = capsys.readouterr().err
  assert "cannot read" in error and str(tmp_path / "nope") in error


def test_report_shows_where_each_task_stopped_under_targets(tmp_path):
  rng = np.random.default_rng(1)
  runs = []
  for method, loss in (("classp", 0.31), ("sgd", 0.42)):
    for seed in range(2):
      run = fake_run(method, seed, rng)
      runs.append(
        {
          **run,
          "epochs": [7, 3 + seed],
          "epoch_loss": [0.004, loss + 0.01 * seed],
          "epoch_accuracy": [1.0, 0.85 + 0.01 * seed],
        }
      )
  runs += [
    {
      **fake_run("ewc", 0, rng),
      "epochs": [7, 3],
      "epoch_loss": [0.004, 0.3],
      "epoch_accuracy": [1.0, 0.85],
    },
    {
      **fake_run("ewc", 1, diverged_at=(1, 80)),
      "epochs": [7, 2],
      "epoch_loss": [0.004, None],
      "epoch_accuracy": [1.0, 0.1],
    },
  ]
  folder = write_results(tmp_path / "targets", runs)
  results = json.loads((folder / "results.json").read_text())
  results["loop"].update(loss_target=[0.005, None], accuracy_target=[None, 0.85])
  (folder / "results.json").write_text(json.dumps(results))
  out = tmp_path / "report"
  assert main(["report", str(folder), "--out", str(out)]) == 0
  report = (out / "report.md").read_text()
  assert "accuracy target [None, 0.85]" in report
  table = report.split("where each task stopped")[1]
  assert (
    "| classp | 7 ep, loss 0.004 ± 0.000, acc 1.000 ± 0.000 | 3.5 ep, loss 0.315 ± 0.007" in table
  )
  assert "| sgd |" in table
  assert "| ewc | 7 ep, loss 0.004 ± 0.000, acc 1.000 ± 0.000 | diverged (1/2 seeds) |" in table


def test_report_has_no_stopping_table_without_targets(run_folders, tmp_path):
  out = tmp_path / "report"
  assert main(["report", str(run_folders[0]), "--out", str(out)]) == 0
  assert "where each task stopped" not in (out / "report.md").read_text()


def test_replay_methods_show_their_buffer_and_get_their_own_panel(tmp_path):
  replay = [
    {**fake_run("sgd+replay", s), "buffer_bytes": 1_250_000, "method_info": {"family": "replay"}}
    for s in range(2)
  ]
  runs = [fake_run("sgd", 0), *replay]
  header = report_header(runs)
  rows = {row[0]: dict(zip(header, row)) for row in report_rows(runs)}
  assert rows["sgd+replay"]["replay buffer"] == "1.25 MB" and rows["sgd"]["replay buffer"] == "0 B"
  assert [method_family(r) for r in runs] == ["optimizers", "replay", "replay"]
  # The panel is the family the run records; a method that records none is "other".
  assert [
    method_family(fake_run(m, 0))
    for m in ("classp", "ewc", "si", "adam", "er", "lwf", "classp+ewc")
  ] == ["CLASSP", "regularizers", "regularizers", "optimizers", "replay", "distillation", "other"]


def test_select_is_a_report_option(tmp_path, capsys):
  folder = write_results(tmp_path / "frontier", validation_frontier())
  out = tmp_path / "report"
  assert main(["report", str(folder), "--out", str(out), "--select", "test"]) == 0
  assert "selected on TEST ACC" in (out / "report.md").read_text()
  assert main(["report", str(folder), "--out", str(out), "--select", "bogus"]) == 2
  assert "first-tasks:K" in capsys.readouterr().err


def two_knob_study():
  """classp over learning_rate and threshold (centre lr 0.01, threshold 1e-6), sgd over
  learning_rate. By validation over seeds 0-2, classp's best is threshold 0 (0.90), beating
  its lr curve (0.85 at the centre); sgd's best is lr 0.1 (0.80), which was then run on
  seeds 3 and 4 too, where its validation accuracy is low: they must not move the choice."""
  runs = []
  for seed in range(3):
    runs += [
      frontier_point(lr, seed, test, val)
      for lr, test, val in ((0.001, 0.60, 0.70), (0.01, 0.70, 0.85), (0.1, 0.65, 0.80))
    ]
    runs += [
      frontier_point(t, seed, test, val, knob="threshold")
      for t, test, val in ((0.0, 0.74 + 0.01 * seed, 0.90), (1e-6, 0.70, 0.85), (1e-3, 0.50, 0.60))
    ]
    runs += [
      frontier_point(lr, seed, test, val, method="sgd")
      for lr, test, val in ((0.01, 0.50, 0.75), (0.1, 0.60, 0.80), (1.0, 0.55, 0.78))
    ]
  runs += [frontier_point(0.1, seed, 0.58, 0.10, method="sgd") for seed in (3, 4)]
  return runs


def test_each_method_is_tuned_over_all_its_knobs_on_shared_seeds(tmp_path, capsys):
  best = {s.method: s for s in best_per_method(select_points(two_knob_study()))}
  assert (best["classp"].knob, best["classp"].selected.value) == ("threshold", 0.0)
  assert best["classp"].edge == "yes-low"
  assert (best["sgd"].knob, best["sgd"].selected.value, best["sgd"].edge) == (
    "learning_rate",
    0.1,
    "no",
  )
  tuned = {r["method"]: r for r in tuned_runs(select_points(two_knob_study()))}
  assert set(tuned) == {"classp", "sgd"}
  out = tmp_path / "report"
  write_report([write_results(tmp_path / "frontier", two_knob_study())], out)
  report = (out / "report.md").read_text()
  # The tuned table: classp at threshold 0 on 3 seeds, sgd at lr 0.1 on all 5 (validation
  # and test ACC over all 5: (0.8 * 3 + 0.1 * 2) / 5 = 0.52; test
  # (0.60 * 3 + 0.58 * 2) / 5 = 0.592), and classp's ACC minus sgd's paired on seeds 0-2:
  # (0.74 + 0.75 + 0.76) / 3 - 0.60 = 0.15.
  assert "| classp | threshold | 0 | validation | 0.900 ± 0.000 | 0.750 ± 0.010 |" in report
  assert "| sgd | learning_rate | 0.1 | validation | 0.520 ± 0.383 | 0.592 ± 0.011 |" in report
  assert "| sgd | 3 | 0.150 ± 0.010 | 3/3 | 0 |" in report
  # The same difference heads the report; the paper's other baselines were not run here, and
  # a report knows a baseline only from its runs.
  assert (
    "| CLASSP (tuned) minus | MNIST → Fashion |\n| --- | --- |\n| sgd | 0.150 ± 0.010 (3/3) |\n\n"
  ) in report
  assert "The selected point of every curve" in report  # classp has two curves
  # Threshold 0 is the lowest possible threshold: the exception says why it cannot grow.
  assert "- classp (threshold) selected 0, at its grid's low edge, which cannot grow." in report
  # `classp-jax select` names each method's point as `run --frontier --methods` takes it,
  # and the edge on stderr.
  assert main(["select", str(tmp_path / "frontier")]) == 0
  printed = capsys.readouterr()
  assert printed.out.split() == ["classp[threshold=0]", "sgd[learning_rate=0.1]"]
  assert "classp (threshold): selected at the grid's low edge" in printed.err


def principles_study():
  """Threshold-free CLASSP's lr curve, relative thresholds at one lr, and a p = 2 variant,
  with hand-made 2-task matrices: plasticity is the diagonal's mean, forgetting the first
  task's drop."""

  def point(method, knob, value, matrix, seed=0, validation=0.5):
    return fake_run(
      f"{method}[{knob}={value:g}]",
      seed,
      matrix=matrix,
      validation=[[0.9, 0.1], [validation, validation]],
      base_method=method,
      knob=knob,
      value=value,
    )

  dense = {
    0.001: [[0.6, 0.1], [0.55, 0.6]],  # plasticity 0.6, forgetting 0.05
    0.01: [[0.8, 0.1], [0.6, 0.8]],  # 0.8, 0.2
    0.1: [[0.9, 0.1], [0.5, 0.9]],
  }  # 0.9, 0.4
  sparse = {
    1.0: [[0.7, 0.1], [0.65, 0.7]],  # 0.7, 0.05
    4.0: [[0.5, 0.1], [0.5, 0.5]],
  }  # 0.5: below the dense curve's plasticities
  runs = [
    point("classp_no_threshold", "learning_rate", lr, m, validation=0.7 if lr == 0.01 else 0.5)
    for lr, m in dense.items()
  ]
  runs += [
    {
      **point("classp_relative", "threshold", t, m),
      "settings": {"method": {"hparams": {"learning_rate": 0.01}}},
    }
    for t, m in sparse.items()
  ]
  # p = 2 over two seeds: ACC 0.65 and 0.75 against threshold-free p = 1's 0.7 (seed 0)
  # and 0.6 (seed 1, its selected lr 0.01 at a second seed).
  runs += [
    point("classp_p2", "learning_rate", 0.01, [[0.9, 0.1], [acc, acc]], seed=seed)
    for seed, acc in ((0, 0.65), (1, 0.75))
  ]
  runs.append(
    point(
      "classp_no_threshold", "learning_rate", 0.01, [[0.8, 0.1], [0.6, 0.6]], seed=1, validation=0.7
    )
  )
  return runs


def test_sparse_updates_are_compared_with_a_lower_learning_rate_at_matched_plasticity():
  rows = {row[0]: row for row in matched_plasticity_rows(select_points(principles_study()))}
  # The dense curve over its seeds: (plasticity, forgetting) (0.6, 0.05), at lr 0.01 (0.8 and
  # 0.7 -> 0.75, 0.2), (0.9, 0.4). At plasticity 0.7: 0.05 + 0.15 * (0.1 / 0.15) = 0.15.
  # The sparse curve ran at lr 0.01, where threshold 0 forgot 0.2 at plasticity 0.75.
  assert rows["classp_relative[threshold=1]"][2:] == [
    "0.700",
    "0.050",
    "0.150 (-0.100)",
    "0.200 at plasticity 0.750",
  ]
  assert rows["classp_relative[threshold=4]"][4:] == [
    "outside its range",
    "0.200 at plasticity 0.750",
  ]


def test_ablations_pair_tuned_variants_by_seed(tmp_path):
  selections = select_points(principles_study())
  rows = ablation_rows(tuned_runs(selections))
  # classp_p2 - classp_no_threshold (lr 0.01): seed 0: 0.65 - 0.7, seed 1: 0.75 - 0.6.
  assert rows == [
    [
      "classp_p2 vs classp_no_threshold",
      "p = 2 instead of p = 1",
      "2",
      "0.050 ± 0.141",
      "1/2",
      "0",
    ],
    ["classp_relative vs classp_no_threshold", "a relative threshold", "1", "-0.025", "0/1", "0"],
  ]
  out = tmp_path / "report"
  write_report([write_results(tmp_path / "frontier", principles_study())], out)
  report = (out / "report.md").read_text()
  assert "CLASSP's ablations, each at its selected point" in report
  assert (
    "| classp_relative[threshold=1] | 1 | 0.700 | 0.050 | 0.150 (-0.100) | "
    "0.200 at plasticity 0.750 |"
  ) in report


def test_next_points_grow_each_grid_past_its_selected_edge(capsys, tmp_path):
  runs = [
    frontier_point(lr, 0, 0.5, score) for lr, score in ((0.001, 0.9), (0.003, 0.8), (0.01, 0.7))
  ]
  runs += [
    frontier_point(lr, 0, 0.5, score, method="sgd") for lr, score in ((0.01, 0.7), (0.1, 0.9))
  ]
  runs += [
    frontier_point(t, 0, 0.5, score, method="classp_relative", knob="threshold")
    for t, score in ((0.0, 0.9), (1.0, 0.8))
  ]
  runs += [
    frontier_point(lr, 0, 0.5, score, method="adam")
    for lr, score in ((1e-4, 0.7), (1e-3, 0.9), (1e-2, 0.8))
  ]
  points, stuck = next_points(select_points(runs))
  # The geometric step continued: 0.001 * (0.001 / 0.003) below, 0.1 * (0.1 / 0.01) above;
  # adam's point is interior, and a threshold of 0 cannot go lower.
  assert points == ["classp[learning_rate=0.000333]", "sgd[learning_rate=1]"]
  assert stuck == [
    "classp_relative (threshold) selected 0, at its grid's low edge, which cannot grow"
  ]
  assert main(["select", str(write_results(tmp_path / "f", runs)), "--next-points"]) == 0
  printed = capsys.readouterr()
  assert printed.out.split() == points and "cannot grow" in printed.err


def test_neighbour_points_are_each_selected_point_and_its_grid_neighbours(capsys, tmp_path):
  # classp's best lr (0.003) is interior: it and both neighbours; sgd's (0.1) is its high
  # edge: it and the one below; si's best curve is its strength's (0.8 against 0.6), whose
  # selected 0.1 is its low edge; ewc diverged everywhere and has nothing to refine.
  runs = [
    frontier_point(lr, 0, 0.5, score)
    for lr, score in ((0.0003, 0.5), (0.001, 0.7), (0.003, 0.9), (0.01, 0.6))
  ]
  runs += [
    frontier_point(lr, 0, 0.5, score, method="sgd") for lr, score in ((0.01, 0.7), (0.1, 0.9))
  ]
  runs += [frontier_point(lr, 0, 0.5, 0.6, method="si") for lr in (0.01, 0.1)]
  runs += [
    frontier_point(c, 0, 0.5, score, method="si", knob="strength")
    for c, score in ((0.1, 0.8), (1.0, 0.7))
  ]
  runs += [frontier_point(lr, 0, 0.5, 0.5, method="ewc", diverged_at=(1, 5)) for lr in (0.1, 1.0)]
  expected = [
    "classp[learning_rate=0.001]",
    "classp[learning_rate=0.003]",
    "classp[learning_rate=0.01]",
    "sgd[learning_rate=0.01]",
    "sgd[learning_rate=0.1]",
    "si[strength=0.1]",
    "si[strength=1]",
  ]
  assert neighbour_points(select_points(runs)) == expected
  assert main(["select", str(write_results(tmp_path / "f", runs)), "--neighbours"]) == 0
  assert capsys.readouterr().out.split() == expected
  with pytest.raises(SystemExit):
    main(["select", str(tmp_path / "f"), "--neighbours", "--next-points"])


def test_a_method_that_diverged_everywhere_grows_its_strength_grid_down():
  # si diverged at every learning rate and strength: a stiffer penalty than its steps
  # allow, so its strength grid grows down (0.01 * 0.01 / 0.1). sgd diverged too and has
  # no strength: its learning rate grid grows down. A threshold alone cannot grow.
  runs = [frontier_point(v, 0, 0.5, 0.5, method="si", diverged_at=(1, 5)) for v in (0.09, 0.3)]
  runs += [
    frontier_point(v, 0, 0.5, 0.5, method="si", knob="strength", diverged_at=(1, 5))
    for v in (0.01, 0.1, 1.0)
  ]
  runs += [frontier_point(v, 0, 0.5, 0.5, method="sgd", diverged_at=(0, 2)) for v in (0.3, 3)]
  runs += [
    frontier_point(v, 0, 0.5, 0.5, method="classp_relative", knob="threshold", diverged_at=(0, 2))
    for v in (1.0, 2.0)
  ]
  assert next_points(select_points(runs)) == (["sgd[learning_rate=0.03]", "si[strength=0.001]"], [])
  # mas ran at one point, chosen on another frontier, and diverged: no step to grow by.
  runs += [frontier_point(0.03, s, 0.5, 0.5, method="mas", diverged_at=(1, 5)) for s in (0, 1)]
  assert next_points(select_points(runs)) == (
    ["sgd[learning_rate=0.03]", "si[strength=0.001]"],
    ["mas (learning_rate) has one value, 0.03, and no step to grow its grid by"],
  )


def test_a_curve_where_no_point_learned_is_marked_flat(tmp_path):
  # Untrained accuracy 0.1 (fake_run's baseline). classp_eq1 scores 0.10-0.14 at every
  # learning rate: its middle point is no tuned point. classp_reset's best is at its low
  # edge, flat too: its grid still grows there. sgd's 0.20 is 0.1 above the untrained
  # model: it learned.
  runs = [
    frontier_point(lr, 0, 0.1, score, method="classp_eq1")
    for lr, score in ((1e-5, 0.10), (1e-4, 0.14), (1e-3, 0.12))
  ]
  runs += [
    frontier_point(lr, 0, 0.1, score, method="classp_reset")
    for lr, score in ((1e-3, 0.14), (1e-2, 0.10))
  ]
  runs += [
    frontier_point(lr, 0, 0.2, score, method="sgd")
    for lr, score in ((0.01, 0.12), (0.1, 0.2), (1.0, 0.13))
  ]
  eq1, reset, sgd = select_points(runs)
  assert [(s.edge, s.flat) for s in (eq1, reset, sgd)] == [
    ("no", True),
    ("yes-low", True),
    ("no", False),
  ]
  assert next_points([eq1, reset, sgd]) == (["classp_reset[learning_rate=0.0001]"], [])
  out = tmp_path / "report"
  write_report([write_results(tmp_path / "frontier", runs)], out)
  report = (out / "report.md").read_text()
  assert (
    "| classp_eq1 | learning_rate | 0.0001 | validation | 0.140 | 0.100 | 0.200 | "
    "0.000 | 1 | no, flat |"
  ) in report
  assert "| sgd | learning_rate | 0.1 | validation | 0.200 | 0.200 |" in report
  assert "*flat*: no point scored 0.05 above the untrained model's accuracy" in report


def test_a_curve_whose_every_point_diverged_does_not_claim_test_selection():
  # sgd was selected on validation; every si point diverged in task 2, after recording
  # task 1's validation row: nothing is selected on test.
  runs = [
    frontier_point(lr, 0, 0.5, score, method="sgd")
    for lr, score in ((0.1, 0.6), (0.3, 0.7), (0.9, 0.6))
  ]
  runs += [
    frontier_point(c, 0, 0.5, 0.5, method="si", knob="strength", diverged_at=(1, 5))
    for c in (0.1, 1.0)
  ]
  selections = select_points(runs)
  assert [s.selected_on for s in selections] == ["validation", "validation"]
  assert selection_sentence(selections).startswith("best points selected on validation ACC")


def test_time_tables_sum_wall_and_cpu_time_and_say_which_runs_lack_cpu_time():
  # Three sgd points of 1,800 s wall and 3,600 s CPU (two threads busy) and one run of an
  # older results file, which recorded no CPU time; classp: one run of each.
  runs = [
    frontier_point(lr, 0, 0.5, 0.5, method="sgd", wall_time_s=1800.0, cpu_time_s=3600.0)
    for lr in (0.01, 0.1, 1.0)
  ]
  runs += [fake_run("sgd", 0, wall_time_s=3600.0), fake_run("classp", 0, cpu_time_s=720.0)]
  assert time_rows(runs) == [
    ["classp", "1", "12 s", "12 min", "12"],
    ["sgd", "4", "2.50 h", "3.00 h (3 runs)", "2250"],
  ]
  assert cpu_time(runs) == "3.20 h (4 runs)"


def test_a_point_missing_seeds_of_its_curve_is_run_again_first():
  # A growth round stopped after lr 1's seed 0: the curve would be scored on seed 0 alone.
  # lr 0.1, the selected point, has seeds 3 and 4 too: it misses nothing.
  runs = [
    frontier_point(lr, seed, 0.5, score, method="sgd")
    for lr, score in ((0.01, 0.6), (0.1, 0.7))
    for seed in range(5 if lr == 0.1 else 3)
  ]
  runs += [frontier_point(1.0, 0, 0.5, 0.5, method="sgd")]
  (sgd,) = select_points(runs)
  assert next_points([sgd]) == (["sgd[learning_rate=1]"], [])


@pytest.mark.parametrize(
  "field, value", [("experiment", "../../x"), ("experiment", "/tmp/x"), ("scenario", "../up")]
)
def test_a_crafted_name_in_a_results_file_writes_nothing_outside_the_report(
  tmp_path, capsys, field, value
):
  # Plot file names are built from these fields: a path in them would escape --out.
  rng = np.random.default_rng(0)
  results = results_dict([fake_run("classp", s, rng) for s in range(2)], **{field: value})
  path = tmp_path / "runs" / "results.json"
  path.parent.mkdir()
  write_json_atomically(results, path)
  out = tmp_path / "deep" / "er" / "report"
  assert main(["report", str(path), "--out", str(out)]) == 2
  err = capsys.readouterr().err
  assert f"its {field} {value!r} is not a plain name" in err and err.count("\n") == 1
  written = {p for p in tmp_path.rglob("*") if p.is_file()}
  assert written == {path}


def test_report_files_stay_inside_their_folder():
  with pytest.raises(ValueError, match="not a plain name"):
    file_in(Path("report"), "../x_frontier.png")
  assert file_in(Path("report"), "a_frontier.png") == Path("report") / "a_frontier.png"


def test_family_panels_split_a_crowded_family_evenly_in_family_order():
  from classp_jax.report.plots import family_panels

  panels = family_panels({"replay": [], "optimizers": list("abcdef"), "CLASSP": ["c"]}, 4)
  assert panels == [
    ("CLASSP", "CLASSP", ["c"], True),
    ("optimizers", "optimizers (1 of 2)", ["a", "b", "c"], True),
    ("optimizers", "optimizers (2 of 2)", ["d", "e", "f"], False),
    ("replay", "replay", [], True),  # a family given without items keeps its panel
  ]


def test_the_plasticity_plot_draws_a_column_per_family_and_skips_streams_without_it(tmp_path):
  from PIL import Image

  from classp_jax.report.plasticity import plot_plasticity

  def with_plasticity(method, seed, learning):
    run = fake_run(method, seed)
    run["learning_accuracy"] = {"per_task": learning, "first": learning[0], "last": learning[-1]}
    run["dormant_units"] = {"per_task": [0.1, 0.2, 0.3], "tau": 0.01}
    return run

  runs = [
    with_plasticity(m, s, [0.9, 0.8 - 0.1 * s, 0.7]) for m in ("classp", "sgd") for s in (0, 1)
  ]
  path = tmp_path / "plasticity.png"
  assert plot_plasticity(results_dict(runs), path)
  with Image.open(path) as image:
    wide, high = image.size
  assert wide > high  # two family columns (CLASSP, optimizers) side by side, two rows
  assert not plot_plasticity(results_dict([fake_run("sgd", 0)]), tmp_path / "none.png")
  assert not (tmp_path / "none.png").exists()
