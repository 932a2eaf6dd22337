"""The ``classp-jax`` command: the main job, errors, and multi-process runs."""

import gc
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

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
