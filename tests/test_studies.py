"""`classp-jax study`: records, the driver, the launchers, the stages and the rebuilt report.

The records and the driver are tested without JAX, on a launcher that runs in
this process; the launchers and stages on the offline ``digits`` study at its
``--quick`` size. The report is rebuilt from the committed fixture of
records (``tests/fixtures/study_records``) and compared byte for byte with
the committed ``report.md`` made from them.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from classp_jax.experiments import get_experiment
from classp_jax.results.records import (
  compact_run,
  failures,
  kept_ids,
  read_part,
  read_record,
  record_folders,
  write_record,
)
from classp_jax.studies.driver import Driver
from classp_jax.studies.launchers import Launcher, LocalLauncher, make_launcher
from classp_jax.studies.work import WorkItem

FIXTURE = Path(__file__).parent / "fixtures" / "study_records"
HEADER = {
  "experiment": "toy",
  "scenario": "domain",
  "tasks": ["a"],
  "devices": 1,
  "platform": "cpu",
}


def _run(method="sgd", seed=0, settings_id="abc", steps=10):
  return {
    "method": method,
    "seed": seed,
    "settings_id": settings_id,
    "acc": 0.5,
    "logs": {"step": list(range(steps)), "loss": [float(i) for i in range(steps)]},
  }


def _item(method="sgd", seed=0, settings_id="abc"):
  return WorkItem("toy", "frontier", "toy/frontier", "toy", method, seed, settings_id)


# --- records --------------------------------------------------------------------------------


def test_a_record_is_the_same_bytes_each_time_and_reads_back(tmp_path):
  first = write_record(tmp_path / "a", HEADER, _run())
  second = write_record(tmp_path / "b", HEADER, _run())
  assert first.name == "sgd--seed0--abc.json.gz"
  assert first.read_bytes() == second.read_bytes()  # gzip without a timestamp
  header, run = read_record(first)
  assert header == HEADER and run == _run()


def test_runs_of_other_settings_are_kept_beside_each_other(tmp_path):
  write_record(tmp_path, HEADER, _run(settings_id="one"))
  write_record(tmp_path, HEADER, _run(settings_id="two"))
  assert kept_ids(tmp_path) == {("sgd", 0, "one"), ("sgd", 0, "two")}


def test_a_kept_record_is_never_overwritten(tmp_path):
  path = write_record(tmp_path, HEADER, _run())
  write_record(tmp_path, HEADER, {**_run(), "acc": 0.9})
  assert read_record(path)[1]["acc"] == 0.5


def test_step_logs_are_thinned_to_evenly_spaced_points_with_the_last_kept():
  run = compact_run(_run(steps=1000), points=5)
  assert run["logs"]["step"] == [0, 250, 500, 749, 999]
  assert run["logs"]["loss"] == [0.0, 250.0, 500.0, 749.0, 999.0]
  assert compact_run(_run(steps=3), points=5) == _run(steps=3)


def test_a_damaged_record_is_an_error_naming_it(tmp_path):
  path = write_record(tmp_path, HEADER, _run())
  path.write_bytes(path.read_bytes()[:20])
  with pytest.raises(ValueError, match="sgd--seed0--abc.json.gz: not a readable record"):
    read_record(path)
  path.write_bytes(gzip.compress(b'{"run": {}}'))
  with pytest.raises(ValueError, match="no header"):
    read_record(path)


def test_a_part_is_read_as_results_and_hidden_folders_are_not(tmp_path):
  write_record(tmp_path / "s" / "frontier", HEADER, _run(seed=1))
  write_record(tmp_path / "s" / "frontier", HEADER, _run(seed=0))
  write_record(tmp_path / ".quick" / "s" / "frontier", HEADER, _run())
  assert record_folders(tmp_path) == [tmp_path / "s" / "frontier"]
  part = read_part(tmp_path / "s" / "frontier")
  assert [r["seed"] for r in part["runs"]] == [0, 1] and part["experiment"] == "toy"
  write_record(tmp_path / "s" / "frontier", {**HEADER, "tasks": ["b"]}, _run(seed=2))
  with pytest.raises(ValueError, match="header differs"):
    read_part(tmp_path / "s" / "frontier")


# --- the driver, on a launcher in this process ----------------------------------------------


class _Done:
  def __init__(self, outcome):
    self.outcome = outcome

  def done(self):
    return True

  def result(self):
    if isinstance(self.outcome, BaseException):
      raise self.outcome
    return self.outcome


class _InProcess(Launcher):
  """Runs ``outcomes[method]``'s next entry: a record, or an exception to raise."""

  slots = 2

  def __init__(self, outcomes):
    self.outcomes, self.started = outcomes, []

  def start(self, item):
    self.started.append(item.method)
    outcome = self.outcomes[item.method].pop(0)
    if outcome == "ok":
      outcome = {"header": HEADER, "run": _run(item.method, item.seed, item.settings_id)}
    return _Done(outcome)


def test_the_driver_keeps_records_retries_failures_and_skips_what_is_kept(tmp_path):
  launcher = _InProcess(
    {"sgd": ["ok"], "adam": [RuntimeError("lost node"), "ok"], "ewc": [ValueError("bad")] * 3}
  )
  driver = Driver(tmp_path, launcher, retries=2, stream=None)
  items = [_item("sgd"), _item("adam"), _item("ewc"), _item("sgd")]  # one twice
  tally = driver.execute(items, "toy")
  assert tally.finished == 2 and tally.skipped == 1
  assert launcher.started.count("adam") == 2 and launcher.started.count("ewc") == 3
  assert kept_ids(tmp_path / "toy" / "frontier") == {("sgd", 0, "abc"), ("adam", 0, "abc")}
  (failed,) = failures(tmp_path)
  assert failed["method"] == "ewc" and failed["attempts"] == 3
  assert "ValueError: bad" in failed["error"]
  # Started again: the kept runs are skipped, the failed one is tried again and its mark
  # goes once it finishes.
  again = _InProcess({"ewc": ["ok"]})
  tally = Driver(tmp_path, again, stream=None).execute(items, "toy")
  assert again.started == ["ewc"] and tally.skipped == 3 and not failures(tmp_path)


def _die_once(item):
  """A worker that is killed on its first attempt (as by the OOM killer), then succeeds."""
  marker = Path(item.data_dir) / "died"
  if not marker.exists():
    marker.touch()
    os._exit(9)
  return {"header": HEADER, "run": _run(item.method, item.seed, item.settings_id)}


def test_a_killed_worker_is_retried_in_a_new_pool(tmp_path):
  item = WorkItem("toy", "frontier", "toy/frontier", "toy", "sgd", 0, "abc", data_dir=str(tmp_path))
  with LocalLauncher(1, fn=_die_once) as launcher:
    tally = Driver(tmp_path, launcher, retries=1, stream=None).execute([item], "toy")
  assert tally.finished == 1 and (tmp_path / "died").exists()


# --- bad input: one line, exit status 2, before any run ------------------------------------


@pytest.mark.parametrize(
  "args, message",
  [
    (("study", "nope"), "unknown study 'nope'; known: digits,"),
    (("study", "digits", "--stages", "frontier,grow"), "unknown stage 'grow'"),
    (("study", "digits", "--launcher", "mpi"), "unknown launcher 'mpi'"),
    (("study", "digits", "--launcher", "local:0"), "positive number of workers"),
    (("study", "digits", "--launcher", "ray:127.0.0.1:1"), "cannot reach the Ray cluster"),
    (("study", "digits", "--launcher-option", "x=1"), "is for the slurm launcher"),
  ],
)
def test_bad_study_input_is_one_line_and_status_2(tmp_path, capsys, args, message):
  from classp_jax.cli import main

  assert main([*args, "--runs", str(tmp_path / "runs")]) == 2
  err = capsys.readouterr().err
  assert message in err and len(err.strip().splitlines()) == 1
  assert not (tmp_path / "runs").exists()


def test_an_unwritable_runs_folder_is_refused(tmp_path, capsys):
  from classp_jax.cli import main

  (tmp_path / "runs").write_text("a file, not a folder")
  assert main(["study", "digits", "--runs", str(tmp_path / "runs")]) == 2
  assert "cannot write to --runs" in capsys.readouterr().err


def test_a_missing_extra_names_the_command_to_install_it(monkeypatch):
  monkeypatch.setitem(sys.modules, "ray", None)  # import ray then raises ImportError
  with pytest.raises(ValueError, match=r"pip install 'classp-jax\[ray\]'"):
    make_launcher("ray:local", Path("unused"))
  monkeypatch.setitem(sys.modules, "submitit", None)
  monkeypatch.delitem(sys.modules, "classp_jax.studies.slurm", raising=False)
  with pytest.raises(ValueError, match=r"pip install 'classp-jax\[slurm\]'"):
    make_launcher("slurm", Path("unused"))


# --- the stages, end to end, on the offline digits study -----------------------------------


@pytest.fixture
def sgd_digits(monkeypatch):
  """The digits study cut to SGD's learning-rate curve (3 points) and its paper point."""
  import classp_jax.studies as studies
  from classp_jax.experiments import get_study

  small = dataclasses.replace(get_study("digits"), methods=("sgd",), paper_methods=("sgd",))
  monkeypatch.setattr(studies, "get_study", lambda name: small)
  return small


def _study(runs, stages, launcher="local:2"):
  from classp_jax.studies import run_study

  return run_study("digits", runs=runs, quick=True, stages=stages, launcher=launcher, stream=None)


def test_a_study_tunes_grows_seeds_and_goes_on_where_it_was(sgd_digits, tmp_path):
  from classp_jax.results import select_points

  summary = _study(tmp_path, ["frontier", "seeds"])
  assert summary.ok
  records = read_part(tmp_path / ".quick" / "digits" / "frontier")["runs"]
  values = sorted(r["value"] for r in records if r["seed"] == 0)
  declared = list(get_experiment("digits").frontier["sgd"].knobs["learning_rate"])
  # The declared grid, and at most one value beyond an edge (--quick grows one round).
  assert values[:3] == declared or values[1:] == declared or values == declared
  assert len(values) - len(declared) <= 1
  (selection,) = select_points(records)
  assert [r["value"] for r in records if r["seed"] == 1] == [selection.selected.value]
  # Started again: nothing new runs, everything is kept.
  again = _study(tmp_path, ["frontier", "seeds"], launcher="local:1")
  assert again.tally.finished == 0 and again.tally.skipped >= summary.tally.finished


@pytest.mark.slow
def test_the_cluster_launchers_run_the_same_runs(sgd_digits, tmp_path, monkeypatch):
  """slurm:local (submitit's subprocesses) and ray:local (a Ray started for the study) keep
  the same record of SGD's paper point."""
  import classp_jax.studies as studies

  monkeypatch.setattr(studies, "_quick", lambda study: dataclasses.replace(study, seeds=(0,)))
  kept = {}
  for launcher in ("slurm:local", "ray:local"):
    summary = _study(tmp_path / launcher, ["paper"], launcher=launcher)
    assert summary.ok and summary.tally.finished == 1
    (path,) = (tmp_path / launcher / ".quick" / "digits" / "paper").glob("*.json.gz")
    kept[launcher] = path.name, read_record(path)[1]["accuracy_matrix"]
  assert kept["slurm:local"] == kept["ray:local"]  # the same settings id, the same numbers


# --- the report, rebuilt from committed records ---------------------------------------------


def test_the_report_is_rebuilt_byte_for_byte_from_the_committed_records(tmp_path, monkeypatch):
  from classp_jax.report import write_report

  shutil.copytree(FIXTURE / "runs", tmp_path / "runs")
  monkeypatch.chdir(tmp_path)  # the report names its sources as given: relative, as committed
  written = write_report([Path("runs")], Path("report"))
  assert (tmp_path / "report" / "report.md").read_bytes() == (FIXTURE / "report.md").read_bytes()
  assert all(path.stat().st_size > 0 for path in written)


def test_the_committed_fixture_is_small_and_plain_json_inside():
  files = sorted((FIXTURE / "runs").rglob("*.json.gz"))
  assert files and sum(f.stat().st_size for f in files) < 100_000
  for path in files:
    json.loads(gzip.decompress(path.read_bytes()))


@pytest.mark.slow
def test_sigterm_stops_the_driver_and_keeps_what_finished(tmp_path):
  import signal
  import subprocess
  import time

  command = [sys.executable, "-m", "classp_jax.cli", "study", "digits", "--quick"]
  command += ["--stages", "paper", "--launcher", "local:1", "--runs", str(tmp_path)]
  driver = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
  paper = tmp_path / ".quick" / "digits" / "paper"
  deadline = time.monotonic() + 240
  while not list(paper.glob("*.json.gz")) and time.monotonic() < deadline:
    time.sleep(0.2)
  driver.send_signal(signal.SIGTERM)
  _, err = driver.communicate(timeout=60)
  assert driver.returncode == 130, err
  assert "interrupted; every finished run is kept under" in err
  kept = list(paper.glob("*.json.gz"))
  assert 1 <= len(kept) < 6 and not list(paper.glob(".*.tmp"))  # no half-written record
