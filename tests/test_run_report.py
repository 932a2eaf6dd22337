"""``experiments/run_report.sh``: its ``report`` stage never replaces the report with a part."""

import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "run_report.sh"


def test_report_stage_refuses_runs_that_lack_a_study(tmp_path):
  # A RUNS folder with one study, as experiments/results/runs holds after the reruns. The
  # script writes experiments/results under its working directory: here, tmp_path.
  study = tmp_path / "runs" / "mnist_fashion" / "selected"
  study.mkdir(parents=True)
  (study / "results.json").write_text("{}")
  results = tmp_path / "experiments" / "results"
  results.mkdir(parents=True)
  (results / "report.md").write_text("the full report\n")
  (results / "frontier.png").write_bytes(b"a plot")

  done = subprocess.run(
    ["bash", str(SCRIPT), str(tmp_path / "data"), str(tmp_path / "runs"), "report"],
    cwd=tmp_path,
    capture_output=True,
    text=True,
    check=False,
  )

  assert done.returncode == 2
  assert "has no runs of split_mnist_task" in done.stderr
  assert (results / "report.md").read_text() == "the full report\n"
  assert (results / "frontier.png").read_bytes() == b"a plot"
