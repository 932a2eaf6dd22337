"""The ``classp-jax`` command: the main job, errors, and multi-process runs."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from classp_jax.cli import main

QUICK = ["run", "digits", "--quick", "--no-progress"]


def test_main_job_writes_results_and_plot(tmp_path, capsys):
  assert main([*QUICK, "--methods", "classp,sgd", "--seeds", "0,1", "--out", str(tmp_path)]) == 0
  results = json.loads((tmp_path / "results.json").read_text())
  assert [(r["method"], r["seed"]) for r in results["runs"]] == [
      ("classp", 0), ("classp", 1), ("sgd", 0), ("sgd", 1)]
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


@pytest.mark.parametrize("argv, message", [
    (["run", "nope"], "unknown experiment 'nope'; known: digits"),
    ([*QUICK, "--methods", "sgd,bogus"], "unknown method 'bogus'"),
    ([*QUICK, "--seeds", "one"], "--seeds must be a comma-separated list"),
    ([*QUICK, "--set", "epochz=1"], "unknown setting 'epochz'"),
    ([*QUICK, "--set", "classp.lr=1"], "classp has no hyperparameter 'lr'"),
    ([*QUICK, "--set", "batch_size=30", "--methods", "sgd"], "multiple of the"),
    ([*QUICK, "--coordinator", "localhost:1"], "need --distributed"),
])
def test_bad_options_give_one_line_errors(argv, message, capsys):
  assert main(argv) == 2
  err = capsys.readouterr().err
  assert message in err
  assert err.count("\n") == 1 and "Traceback" not in err


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
  args = [sys.executable, "-m", "classp_jax.cli", *QUICK, "--methods", "sgd",
          "--set", "epochs=1", "--set", "batch_size=16"]
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  single = subprocess.run([*args, "--out", str(tmp_path / "single")], capture_output=True,
                          text=True, timeout=300, env={**env, "JAX_NUM_CPU_DEVICES": "2"})
  assert single.returncode == 0, single.stderr
  port = _free_port()
  processes = [subprocess.Popen(
      [*args, "--out", str(tmp_path / "multi"), "--distributed", "--coordinator",
       f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i)],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
      env={**env, "JAX_NUM_CPU_DEVICES": "1"}) for i in range(2)]
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
  methods = ["ewc", "ewc_online", "si", "mas", "l2", "classp+ewc", "adam+si"]
  assert main([*QUICK, "--methods", ",".join(methods), "--out", str(tmp_path)]) == 0
  runs = {r["method"]: r for r in json.loads((tmp_path / "results.json").read_text())["runs"]}
  assert list(runs) == methods
  fp32_params = 4 * runs["l2"]["param_count"]
  ratio = {m: runs[m]["state_bytes"] / fp32_params for m in methods}
  # measured from the pytrees: accumulators, Fisher + anchor, SI's three trees, ...
  expected = {"ewc": 2, "ewc_online": 2, "si": 3, "mas": 2, "l2": 1, "classp+ewc": 3,
              "adam+si": 5}
  for m in methods:
    assert expected[m] <= ratio[m] < expected[m] + 0.01, (m, ratio[m])
  for m in ("ewc", "si", "mas", "l2"):
    assert any(p > 0 for p in runs[m]["logs"]["penalty"]), m  # the penalty is active after task 1
