"""``classp-jax report``: the markdown report and its plots, from synthetic results."""

import json

import numpy as np
import pytest

from classp_jax.cli import main
from classp_jax.metrics import continual_metrics
from classp_jax.report import load_results, paired_rows


def fake_run(method, seed, rng, *, classp=False, **variant):
  """A run entry shaped as `run_continual` returns it, with made-up accuracies."""
  matrix = np.clip(np.array([[0.9, 0.1], [0.6, 0.8]]) + rng.normal(0, 0.02, (2, 2)), 0, 1)
  baseline = [0.1, 0.1]
  steps = [0, 10, 20, 30, 40]
  fraction = [0.5, 0.4, 0.3, 0.2, 0.1] if classp else [None] * 5
  return {
      "method": method, "seed": seed, "accuracy_matrix": matrix.tolist(), "baseline": baseline,
      **continual_metrics(matrix, np.array(baseline)), "param_count": 100,
      "state_bytes": 400 if classp else 0, "steps": [20, 20], "epochs": [4, 1],
      "wall_time_s": 12.0,
      "history": {"step": [10, 20, 30, 40], "task": [0, 0, 1, 1],
                  "accuracy": [[0.5, 0.1], matrix[0].tolist(), [0.7, 0.5], matrix[1].tolist()]},
      "logs": {"step": steps, "loss": [1.0] * 5, "penalty": [0.0] * 5,
               "update_fraction": fraction,
               "capacity_used": [0.5, 0.6, 0.7, 0.8, 0.9] if classp else [None] * 5},
      "paper_protocol": {"accuracy_matrix": (matrix + 0.05).clip(0, 1).tolist(),
                         **continual_metrics(matrix + 0.05)},
      **variant,
  }


def write_results(folder, runs):
  folder.mkdir(parents=True)
  results = {"experiment": "mnist_fashion", "description": "a synthetic study",
             "tasks": ["mnist", "fashion_mnist"], "devices": 1, "platform": "cpu",
             "loop": {"batch_size": 32, "epochs": [4, 1], "loss_target": None, "max_epochs": 50},
             "options": {"command": "classp-jax run mnist_fashion"}, "runs": runs}
  (folder / "results.json").write_text(json.dumps(results))
  return folder


@pytest.fixture
def run_folders(tmp_path):
  rng = np.random.default_rng(0)
  methods = write_results(tmp_path / "methods", [
      fake_run(m, s, rng, classp=m.startswith("classp"))
      for m in ("classp", "sgd", "ewc") for s in range(3)])
  frontier = write_results(tmp_path / "frontier", [
      fake_run(f"classp[threshold={t:g}]", s, rng, classp=True, base_method="classp",
               knob="threshold", value=t)
      for t in (0.0, 1e-6, 1e-4) for s in range(2)])
  return methods, frontier


def test_report_writes_markdown_tables_and_plots(run_folders, tmp_path, capsys):
  notes = tmp_path / "notes.md"
  notes.write_text("## Conclusions\n\nNone yet.")
  out = tmp_path / "report"
  assert main(["report", *map(str, run_folders), "--out", str(out), "--notes", str(notes)]) == 0
  report = (out / "report.md").read_text()
  assert report.startswith("# CLASSP-JAX results\n\n## Conclusions")
  assert "## mnist_fashion" in report and "`classp-jax run mnist_fashion`: batch 32" in report
  assert "| classp | 3 |" in report and "| ewc | 3 |" in report  # the methods' table
  assert "Paper protocol: training-split accuracy, dropout on" in report
  assert "| classp | threshold | 1e-06 | 2 |" in report  # the frontier's table
  assert "classp[threshold" not in report.split("### Stability-plasticity frontier")[0]
  plots = sorted(p.name for p in out.glob("*.png"))
  assert plots == [f"mnist_fashion_{kind}.png" for kind in (
      "accuracy_matrices", "accuracy_over_training", "classp_diagnostics", "frontier")]
  for name in plots:
    assert f"]({name})" in report
    assert 2_000 < (out / name).stat().st_size < 150_000
  assert "wrote" in capsys.readouterr().out


def test_folders_of_one_experiment_merge_without_duplicates(run_folders):
  methods, frontier = run_folders
  (merged,) = load_results([methods, frontier, methods / "results.json"])
  assert len(merged["runs"]) == 9 + 6
  assert [s["path"] for s in merged["sources"]][:2] == [
      str(methods / "results.json"), str(frontier / "results.json")]


def test_classp_is_compared_with_each_method_seed_by_seed(run_folders):
  runs = load_results([run_folders[0]])[0]["runs"]
  rows = {row[0]: row for row in paired_rows(runs)}
  assert set(rows) == {"sgd", "ewc"} and rows["sgd"][1] == "3"
  assert rows["sgd"][3].endswith("/3")


def test_a_missing_folder_is_a_one_line_error(tmp_path, capsys):
  assert main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "out")]) == 2
  assert "cannot read the runs" in capsys.readouterr().err


def test_report_shows_where_each_task_stopped_under_targets(tmp_path):
  rng = np.random.default_rng(1)
  runs = []
  for method, loss in (("classp", 0.31), ("sgd", 0.42), ("ewc", float("nan"))):
    for seed in range(2):
      run = fake_run(method, seed, rng)
      runs.append({**run, "epochs": [7, 3 + seed], "epoch_loss": [0.004, loss + 0.01 * seed],
                   "epoch_accuracy": [1.0, 0.85 + 0.01 * seed]})
  folder = write_results(tmp_path / "targets", runs)
  results = json.loads((folder / "results.json").read_text())
  results["loop"].update(loss_target=[0.005, None], accuracy_target=[None, 0.85])
  (folder / "results.json").write_text(json.dumps(results))
  out = tmp_path / "report"
  assert main(["report", str(folder), "--out", str(out)]) == 0
  report = (out / "report.md").read_text()
  assert "accuracy target [None, 0.85]" in report
  table = report.split("### Where each task stopped")[1]
  assert "| classp | 7 ep, loss 0.004 ± 0.000, acc 1.000 ± 0.000 | 3.5 ep, loss 0.315 ± 0.007" in table
  assert "| sgd |" in table and "| ewc | 7 ep, loss 0.004 ± 0.000, acc 1.000 ± 0.000 | 3.5 ep, loss NaN (diverged)" in table


def test_report_has_no_stopping_table_without_targets(run_folders, tmp_path):
  out = tmp_path / "report"
  assert main(["report", str(run_folders[0]), "--out", str(out)]) == 0
  assert "Where each task stopped" not in (out / "report.md").read_text()
