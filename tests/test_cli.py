"""The ``classp-jax`` command: the main job, errors, and multi-process runs."""

import errno
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from classp_jax.cli import main

QUICK = ["run", "digits", "--quick", "--no-progress"]


def test_main_job_writes_results_and_plot(tmp_path, capsys):
  assert main([*QUICK, "--methods", "classp,sgd", "--seeds", "0,1", "--out", str(tmp_path)]) == 0
  results = json.loads((tmp_path / "results.json").read_text())
  assert [(r["method"], r["seed"]) for r in results["runs"]] == [
    ("classp", 0),
    ("classp", 1),
    ("sgd", 0),
    ("sgd", 1),
  ]
  for run in results["runs"]:
    r = np.array(run["accuracy_matrix"])
    assert r.shape == (5, 5) and ((0 <= r) & (r <= 1)).all()
    assert run["acc"] == pytest.approx(r[-1].mean())
    for key in ("bwt", "forgetting", "fwt", "param_count", "state_bytes"):
      assert key in run
  classp_run = results["runs"][0]
  # CLASSP keeps one accumulator per weight; its sparsity is logged
  assert classp_run["state_bytes"] >= 4 * classp_run["param_count"]
  assert 0 < classp_run["logs"]["capacity_used"][-1] <= 1
  assert (tmp_path / "accuracy_over_training.png").stat().st_size > 1000
  out = capsys.readouterr().out
  assert "classp: test accuracy" in out and "forgetting" in out
  # The summary fits a terminal, and says where the methods differ (means over seeds, as
  # computed here from results.json), how to read it and what to try next.
  assert max(len(line) for line in out.splitlines() if not line.startswith("wrote ")) <= 100
  guide = " ".join(out.split("Where they differ: ", 1)[1].split("How to read:")[0].split())
  forgetting = {
    m: round(float(np.mean([r["forgetting"] for r in results["runs"] if r["method"] == m])), 3)
    for m in ("classp", "sgd")
  }
  low, high = sorted(forgetting, key=forgetting.get)
  if forgetting[low] < forgetting[high]:
    expected = f"forgetting {forgetting[low]:.3f} ({low}) to {forgetting[high]:.3f} ({high})"
  else:
    expected = f"forgetting {forgetting[low]:.3f} for all"
  assert guide.startswith(expected), (guide, forgetting)
  assert "old tasks " in guide and "last task " in guide
  assert "How to read: row i of a matrix" in out and "\nTry next: add --methods " in out


@pytest.mark.parametrize(
  "argv, message",
  [
    (["run", "nope"], "unknown experiment 'nope'; known: digits"),
    ([*QUICK, "--methods", "sgd,bogus"], "unknown method 'bogus'"),
    ([*QUICK, "--seeds", "one"], "--seeds must be a comma-separated list"),
    ([*QUICK, "--set", "epochz=1"], "unknown setting 'epochz'"),
    ([*QUICK, "--set", "classp.lr=1"], "classp has no hyperparameter 'lr'"),
    ([*QUICK, "--set", "batch_size=30", "--methods", "sgd"], "multiple of the"),
    ([*QUICK, "--coordinator", "localhost:1"], "need --distributed"),
    ([*QUICK, "--set", "epochs=abc"], "epochs must be a positive integer"),
    ([*QUICK, "--set", "epochs=-1"], "epochs must be a positive integer"),
    (
      [*QUICK, "--set", "validation_fraction=1.5"],
      "validation_fraction must be a number in [0, 1)",
    ),
    ([*QUICK, "--seeds", "0,-1"], "--seeds must be non-negative"),
    ([*QUICK, "--seeds", "0,0"], "--seeds must be distinct"),
    (
      [*QUICK, "--methods", "sgd", "--set", "sgd.learning_rate=nan"],
      "learning_rate must be finite",
    ),
    (
      [*QUICK, "--methods", "sgd", "--set", "sgd.learning_rate=fast"],
      "must be a number, got 'fast'",
    ),
    ([*QUICK, "--methods", "sgd,classp", "--set", "classp.threshold=-1"], "threshold must be >= 0"),
    ([*QUICK, "--log", "csv,xml"], "--log takes csv, tensorboard, wandb or none"),
    (
      [*QUICK, "--set", "reset_optimizer_state=maybe"],
      "reset_optimizer_state must be true or false",
    ),
    ([*QUICK, "--set", "classp.reset_optimizer_state=1"], "must be true or false, got 1"),
    # One seed would be summarised as two, with a std of 0.
    ([*QUICK, "--methods", "sgd,sgd"], "--methods names sgd more than once"),
    ([*QUICK, "--methods", ""], "--methods is empty"),  # not silently the defaults
    # JAX's PRNG key keeps 32 bits: 2**32 would be seed 0's run; 2**64 was a traceback.
    ([*QUICK, "--seeds", "4294967296"], "seed 4294967296 is out of range"),
    ([*QUICK, "--seeds", "0,18446744073709551616"], "an integer in [0, 4294967295]"),
  ],
)
def test_bad_options_give_one_line_errors(argv, message, capsys, tmp_path):
  assert main([*argv, "--out", str(tmp_path / "out")]) == 2
  captured = capsys.readouterr()
  assert message in captured.err
  assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
  assert "seed" not in captured.out  # refused before any training
  assert not (tmp_path / "out" / "results.json").exists()


def test_a_read_only_results_file_is_refused_before_training(tmp_path, capsys):
  out = tmp_path / "out"
  out.mkdir()
  (out / "results.json").write_text('{"runs": []}')
  (out / "results.json").chmod(0o444)
  assert main([*QUICK, "--methods", "sgd", "--out", str(out)]) == 2
  assert "results.json is read-only" in capsys.readouterr().err
  assert (out / "results.json").read_text() == '{"runs": []}'


def test_a_run_of_other_settings_is_refused_before_training_unless_replace(tmp_path, capsys):
  out = tmp_path / "out"
  args = [*QUICK, "--methods", "sgd", "--out", str(out), "--log", "none"]
  assert main(args) == 0
  kept = (out / "results.json").read_text()
  capsys.readouterr()
  for more in ([], ["--skip-finished"]):  # a smoke run must not wipe a long run's record
    assert main([*args, "--set", "sgd.learning_rate=0.5", *more]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert "holds a run of sgd seed 0 with other settings" in captured.err
    assert "method.hparams.learning_rate: kept 0.05, now 0.5" in captured.err
    assert "--replace" in captured.err and "seed" not in captured.out  # before training
    assert (out / "results.json").read_text() == kept
  assert main([*args, "--set", "sgd.learning_rate=0.5", "--replace"]) == 0
  assert "replacing 1 run(s) of other settings in" in capsys.readouterr().out
  (run,) = json.loads((out / "results.json").read_text())["runs"]
  assert run["settings"]["method"]["hparams"]["learning_rate"] == 0.5
  assert sorted(p.name for p in out.iterdir()) == ["accuracy_over_training.png", "results.json"]


def test_every_kept_run_entry_is_checked_before_training(tmp_path, capsys):
  out = tmp_path / "out"
  args = [*QUICK, "--methods", "sgd", "--out", str(out), "--log", "none"]
  assert main(args) == 0
  results = json.loads((out / "results.json").read_text())
  no_seed = {k: v for k, v in results["runs"][0].items() if k != "seed"}
  for runs, message in (
    ([1, 2], "results.json: run 0 is 1, not a run entry (a dict)"),
    ([no_seed], "results.json: run 0 (sgd, seed ?) lacks seed"),
  ):
    (out / "results.json").write_text(json.dumps({**results, "runs": runs}))
    capsys.readouterr()
    assert main(args) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.err.count("\n") == 1
    assert "seed" not in captured.out  # refused before any training


@pytest.mark.parametrize(
  "code, reason", [(errno.ENOSPC, "No space left on device"), (errno.EACCES, "Permission denied")]
)
def test_a_results_write_failure_is_one_line_and_the_runs_are_kept_elsewhere(
  tmp_path, capsys, monkeypatch, code, reason
):
  import classp_jax.results.store as store

  def refused(data, path):
    raise OSError(code, reason)

  monkeypatch.setattr(store, "write_json_atomically", refused)
  monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the runs are kept instead
  out = tmp_path / "out"
  assert main([*QUICK, "--methods", "sgd", "--out", str(out), "--log", "none"]) == 1
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "Traceback" not in err
  assert f"cannot write {out / 'results.json'} ({reason}); this command's 1 finished" in err
  kept = Path(err.rstrip().rsplit(" kept in ", 1)[1])
  assert kept.parent == tmp_path
  assert [(r["method"], r["seed"]) for r in json.loads(kept.read_text())["runs"]] == [("sgd", 0)]
  assert sorted(p.name for p in out.iterdir()) == []  # no lock, no temporary file


@pytest.mark.parametrize("where", ["orbax's save", "the free space"])
def test_a_full_checkpoint_disk_is_one_line_naming_the_folder(tmp_path, capsys, monkeypatch, where):
  import orbax.checkpoint as ocp

  import classp_jax.training.checkpoint as checkpoint

  if where == "orbax's save":

    def full(*args, **kwargs):
      raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ocp.CheckpointManager, "save", full)
  else:
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda path: SimpleNamespace(free=1000))
  ck = tmp_path / "ck"
  args = [*QUICK, "--methods", "sgd", "--out", str(tmp_path / "out"), "--log", "none"]
  assert main([*args, "--checkpoint-dir", str(ck)]) == 1
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "Traceback" not in err
  assert f"cannot write the checkpoint of step 8 to {ck / 'sgd-seed0'}: No space left" in err
  assert err.rstrip().endswith("; no run had finished")


def test_a_full_disk_under_the_logs_is_one_line_not_a_hang(tmp_path, capsys, monkeypatch):
  from tensorboardX import record_writer

  def full(self, data):
    raise OSError(errno.ENOSPC, "No space left on device")

  # tensorboardX's own writer thread died on this, and the run then waited on it forever.
  monkeypatch.setattr(record_writer.RecordWriter, "write", full)
  out = tmp_path / "out"
  assert main([*QUICK, "--methods", "sgd", "--out", str(out), "--log", "csv,tensorboard"]) == 1
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "Traceback" not in err
  folder = out / "logs" / "sgd-seed0" / "tensorboard"
  assert f"cannot write {folder}: No space left on device; no run had finished" in err


def test_an_unwritable_out_is_refused_before_training(tmp_path, capsys):
  (tmp_path / "file").write_text("")
  assert main([*QUICK, "--methods", "sgd", "--out", str(tmp_path / "file" / "out")]) == 2
  assert "cannot write to --out" in capsys.readouterr().err


def test_a_checkpoint_of_other_settings_is_refused_and_restart_starts_afresh(tmp_path, capsys):
  args = [
    *QUICK,
    "--methods",
    "sgd",
    "--checkpoint-dir",
    str(tmp_path / "ck"),
    "--out",
    str(tmp_path / "out"),
  ]
  assert main(args) == 0
  assert main([*args, "--set", "sgd.learning_rate=0.5"]) == 2
  err = capsys.readouterr().err
  assert "learning_rate: checkpoint 0.05, now 0.5" in err and "--restart" in err
  assert main([*args, "--set", "sgd.learning_rate=0.5", "--restart"]) == 0
  run = json.loads((tmp_path / "out" / "results.json").read_text())["runs"][0]
  assert run["settings"]["method"]["hparams"]["learning_rate"] == 0.5
  assert not run["reused_checkpoint"]
  assert main([*args, "--set", "sgd.learning_rate=0.5"]) == 0
  assert "reused it" in capsys.readouterr().out


def test_results_are_strict_json_and_a_diverged_run_is_flagged(tmp_path, capsys):
  assert (
    main(
      [*QUICK, "--methods", "sgd,adam", "--set", "sgd.learning_rate=1e9", "--out", str(tmp_path)]
    )
    == 0
  )
  text = (tmp_path / "results.json").read_text()
  assert "NaN" not in text and "Infinity" not in text
  runs = {r["method"]: r for r in json.loads(text)["runs"]}
  assert runs["sgd"]["diverged"] and runs["sgd"]["acc"] is None
  assert not runs["adam"]["diverged"] and runs["adam"]["acc"] > 0.5  # the rest still ran
  assert "DIVERGED" in capsys.readouterr().out


def test_help_documents_overrides(capsys):
  with pytest.raises(SystemExit) as exit_info:
    main(["run", "--help"])
  assert exit_info.value.code == 0
  out = capsys.readouterr().out
  assert "--methods" in out and "METHOD.KEY=VALUE" in out and "--distributed" in out


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path):
  """``--distributed`` over 2 local CPU processes (gloo on loopback) = one process, 2 devices."""
  args = [
    sys.executable,
    "-m",
    "classp_jax.cli",
    *QUICK,
    "--methods",
    "sgd",
    "--set",
    "epochs=1",
    "--set",
    "batch_size=16",
    # No validation split or mid-task evaluations to compile: the task-end ones compare.
    "--set",
    "validation_fraction=0",
    "--set",
    "evals_per_task=0",
    "--log",
    "none",
  ]
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  single = subprocess.run(
    [*args, "--out", str(tmp_path / "single")],
    capture_output=True,
    text=True,
    timeout=300,
    env={**env, "JAX_NUM_CPU_DEVICES": "2"},
  )
  assert single.returncode == 0, single.stderr
  port = _free_port()
  processes = [
    subprocess.Popen(
      [
        *args,
        "--out",
        str(tmp_path / "multi"),
        "--distributed",
        "--coordinator",
        f"127.0.0.1:{port}",
        "--num-processes",
        "2",
        "--process-id",
        str(i),
      ],
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
      env={**env, "JAX_NUM_CPU_DEVICES": "1"},
    )
    for i in range(2)
  ]
  outputs = [p.communicate(timeout=300) for p in processes]
  for p, (_, err) in zip(processes, outputs):
    assert p.returncode == 0, err
  assert "devices: 2" in outputs[0][0]
  one = json.loads((tmp_path / "single" / "results.json").read_text())["runs"][0]
  two = json.loads((tmp_path / "multi" / "results.json").read_text())["runs"][0]
  np.testing.assert_allclose(two["logs"]["loss"], one["logs"]["loss"], rtol=1e-5)
  # equal up to an argmax flipped by float rounding of the gradient all-reduce
  np.testing.assert_allclose(two["accuracy_matrix"], one["accuracy_matrix"], atol=0.02)


def test_every_method_runs_on_the_default_stream(tmp_path):
  methods = ["ewc", "si", "mas", "l2", "classp+ewc", "adam+si"]  # online EWC: test_regularizers
  assert (
    main(
      [
        *QUICK,
        "--methods",
        ",".join(methods),
        "--out",
        str(tmp_path),
        "--log",
        "none",
        "--set",
        "validation_fraction=0",
        "--set",
        "evals_per_task=0",
      ]
    )
    == 0
  )
  runs = {r["method"]: r for r in json.loads((tmp_path / "results.json").read_text())["runs"]}
  assert list(runs) == methods
  fp32_params = 4 * runs["l2"]["param_count"]
  ratio = {m: runs[m]["state_bytes"] / fp32_params for m in methods}
  # measured from the pytrees: accumulators, Fisher + anchor, SI's three trees, ...
  expected = {"ewc": 2, "si": 3, "mas": 2, "l2": 1, "classp+ewc": 3, "adam+si": 5}
  for m in methods:
    assert expected[m] <= ratio[m] < expected[m] + 0.01, (m, ratio[m])
  for m in ("ewc", "si", "mas", "l2"):
    assert any(p > 0 for p in runs[m]["logs"]["penalty"]), m  # the penalty is active after task 1


def _cli(*args):
  return [sys.executable, "-m", "classp_jax.cli", *QUICK, *args]


@pytest.mark.slow
def test_ctrl_c_keeps_the_finished_runs(tmp_path):
  out = tmp_path / "out"
  # A shell starts background jobs with SIGINT ignored, and Python keeps that: give the
  # command the handler it has in a terminal, wherever the tests run.
  interactive = (
    "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "import sys; from classp_jax.cli import entry_point; "
    "sys.argv[0] = 'classp-jax'; entry_point()"
  )
  # 40 runs: however slow the machine, the signal comes long before the last one.
  process = subprocess.Popen(
    [
      sys.executable,
      "-c",
      interactive,
      *QUICK,
      "--methods",
      "sgd,adam,adagrad,classp",
      "--seeds",
      ",".join(map(str, range(10))),
      "--out",
      str(out),
    ],
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )
  deadline = time.monotonic() + 240
  while not (out / "results.json").exists() and time.monotonic() < deadline:
    time.sleep(0.2)
  process.send_signal(signal.SIGINT)
  _, err = process.communicate(timeout=120)
  assert process.returncode == 130, err
  assert "finished run(s) are kept in" in err and str(out / "results.json") in err
  runs = json.loads((out / "results.json").read_text())["runs"]
  assert 1 <= len(runs) < 40 and runs[0]["method"] == "sgd"


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # emulated
def test_a_ctrl_c_dropped_inside_a_gc_callback_still_stops_the_runs(tmp_path, capsys):
  # Python drops an exception raised inside a garbage-collector callback ("Exception
  # ignored"), so a Ctrl-C landing there would be lost: emulate one, after the first run.
  out = tmp_path / "out"
  sent = []

  def ctrl_c_during_a_collection(phase, info):
    del info
    if phase == "start" and not sent and (out / "results.json").exists():
      sent.append(True)
      os.kill(os.getpid(), signal.SIGINT)  # the handler runs here, inside the callback

  previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
  gc.callbacks.append(ctrl_c_during_a_collection)
  try:
    status = main([*QUICK, "--methods", "sgd,adam", "--seeds", "0,1,2,3", "--out", str(out)])
  finally:
    gc.callbacks.remove(ctrl_c_during_a_collection)
    signal.signal(signal.SIGINT, previous)
  assert sent and status == 130
  assert "finished run(s) are kept in" in capsys.readouterr().err
  runs = json.loads((out / "results.json").read_text())["runs"]
  assert 1 <= len(runs) < 8


@pytest.mark.slow
def test_two_concurrent_runs_into_one_folder_keep_both(tmp_path):
  out = str(tmp_path / "out")
  processes = [
    subprocess.Popen(
      _cli("--methods", m, "--out", out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    for m in ("sgd", "adam")
  ]
  for p in processes:
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
  runs = json.loads((tmp_path / "out" / "results.json").read_text())["runs"]
  assert sorted(r["method"] for r in runs) == ["adam", "sgd"]
  assert not list((tmp_path / "out").glob("*.tmp"))


def test_logs_are_written_per_method_and_seed(tmp_path):
  assert (
    main([*QUICK, "--methods", "classp", "--out", str(tmp_path), "--log", "csv,tensorboard"]) == 0
  )
  folder = tmp_path / "logs" / "classp-seed0"
  steps = (folder / "steps.csv").read_text().splitlines()
  assert steps[0] == "step,task,loss,accuracy,penalty,update_fraction,capacity_used"
  run = json.loads((tmp_path / "results.json").read_text())["runs"][0]
  assert len(steps) - 1 == len(run["logs"]["step"])
  assert float(steps[1].split(",")[2]) == pytest.approx(run["logs"]["loss"][0])
  evaluations = [line.split(",") for line in (folder / "evaluations.csv").read_text().splitlines()]
  splits = [row[2] for row in evaluations[1:]]
  assert splits.count("test") == len(run["history"]["step"]) - 1  # all but the random init
  assert splits.count("validation") == len(run["validation_accuracy_matrix"]) == 5
  last_validation = [float(v) for v in evaluations[-1][3:]]
  assert evaluations[-1][2] == "validation"
  assert last_validation == pytest.approx(run["validation_accuracy_matrix"][-1])
  assert list((folder / "tensorboard").glob("events.out.tfevents.*"))


def test_reset_optimizer_state_is_set_on_every_method_run(tmp_path):
  assert (
    main(
      [
        *QUICK,
        "--methods",
        "classp,sgd+ewc",
        "--set",
        "reset_optimizer_state=true",
        "--out",
        str(tmp_path),
        "--log",
        "none",
      ]
    )
    == 0
  )
  runs = json.loads((tmp_path / "results.json").read_text())["runs"]
  assert [r["settings"]["method"]["reset_optimizer_state"] for r in runs] == [True, True]


def test_sigterm_keeps_the_finished_runs_as_ctrl_c_does(tmp_path, capsys):
  # What Slurm sends on preemption, and `kill` by default.
  out = tmp_path / "out"

  def terminate_after_the_first_run():
    deadline = time.monotonic() + 240
    while not (out / "results.json").exists() and time.monotonic() < deadline:
      time.sleep(0.05)
    os.kill(os.getpid(), signal.SIGTERM)

  previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
  sender = threading.Thread(target=terminate_after_the_first_run, daemon=True)
  sender.start()
  try:
    status = main([*QUICK, "--methods", "sgd,adam", "--seeds", "0,1,2,3,4,5", "--out", str(out)])
  finally:
    sender.join()
    signal.signal(signal.SIGTERM, previous)
  assert status == 130
  assert "finished run(s) are kept in" in capsys.readouterr().err
  runs = json.loads((out / "results.json").read_text())["runs"]
  assert 1 <= len(runs) < 12 and runs[0]["method"] == "sgd"


# --- the grammar: no abbreviations, a wrong flag's command and a hint ---------------------


@pytest.mark.parametrize(
  "argv, hint",
  [
    (["run", "--epochs", "3"], "did you mean --set epochs=3?"),
    (["run", "digits", "--batch-size=64"], "did you mean --set batch_size=64?"),
    # An abbreviation is no option: --method is not silently --methods.
    (["run", "digits", "--method", "sgd"], "did you mean --methods?"),
    (["select", "runs", "--nextpoints"], "did you mean --next-points?"),
    (["report", "runs", "--note", "notes.md"], "did you mean --notes?"),
  ],
)
def test_a_wrong_flag_prints_its_commands_usage_and_a_hint(argv, hint, capsys):
  with pytest.raises(SystemExit) as exit_info:
    main(argv)
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert err.startswith(f"usage: classp-jax {argv[0]} ")  # not the top-level usage
  assert f"classp-jax {argv[0]}: error: unrecognized arguments: " in err
  assert err.rstrip().endswith(hint)


def test_no_command_takes_an_abbreviated_option(capsys):
  for argv in (["run", "--meth", "sgd"], ["run", "--seed", "1"], ["report", "r", "--sel", "test"]):
    with pytest.raises(SystemExit) as exit_info:
      main(argv)
    assert exit_info.value.code == 2
    assert "unrecognized arguments: " in capsys.readouterr().err


# --- select: what it selected, on what and why --------------------------------------------


def test_select_shows_the_knob_value_score_grid_and_edge_behind_each_choice(tmp_path, capsys):
  from test_report import frontier_point, write_results

  # Validation prefers lr 0.01 (0.8 and 0.81); test ACC would have taken 0.1.
  runs = [
    frontier_point(lr, seed, test, validation + seed / 100)
    for lr, test, validation in ((0.001, 0.5, 0.6), (0.01, 0.6, 0.8), (0.1, 0.9, 0.7))
    for seed in (0, 1)
  ]
  runs += [
    frontier_point(lr, 0, 0.5, validation, method="sgd")
    for lr, validation in ((0.01, 0.5), (0.1, 0.7))
  ]
  assert main(["select", str(write_results(tmp_path / "frontier", runs))]) == 0
  out, err = capsys.readouterr()
  assert out.split() == ["classp[learning_rate=0.01]", "sgd[learning_rate=0.1]"]  # for scripts
  lines = err.splitlines()
  header = next(line for line in lines if line.startswith("method"))
  assert header.split() == "method knob selected validation ACC seeds grid at an edge".split()
  rows = {line.split()[0]: line.split() for line in lines if line.startswith(("classp ", "sgd "))}
  assert rows["classp"] == ["classp", "learning_rate", "0.01", "0.805", "2"] + [
    "0.001,",
    "[0.01],",
    "0.1",
    "no",
  ]
  assert rows["sgd"] == [
    "sgd",
    "learning_rate",
    "0.1",
    "0.700",
    "1",
    "0.01,",
    "[0.1]",
    "yes,",
    "high",
  ]
  assert "sgd (learning_rate): selected at the grid's high edge" in err
  assert max(map(len, lines)) <= 100


def test_select_on_runs_without_a_frontier_says_so_in_one_line(tmp_path, capsys):
  from test_report import fake_run, write_results

  folder = write_results(tmp_path / "plain", [fake_run("sgd", 0)])
  assert main(["select", str(folder)]) == 0
  out, err = capsys.readouterr()
  assert out == "" and err.count("\n") == 1
  assert f"no frontier runs (METHOD[KNOB=VALUE]) in {folder}: nothing to select" in err
  assert "classp-jax run mnist_fashion --frontier" in err
