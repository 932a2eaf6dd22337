"""results.json's store: merged under a lock that leaves no file behind, never replacing a
record of other settings, and never losing runs it cannot write."""

import json
import tempfile
import threading

import pytest

from classp_jax.results import ResultsNotSaved, save_results


def results(*runs):
  return {"experiment": "digits", "scenario": "class", "tasks": ["a", "b"], "runs": list(runs)}


def run(method, seed, settings_id="s1", lr=0.1):
  return {
    "method": method,
    "seed": seed,
    "settings_id": settings_id,
    "settings": {"method": {"hparams": {"learning_rate": lr}}, "seed": seed},
  }


def test_writers_at_once_keep_every_run_and_leave_no_lock_file(tmp_path):
  # Each writer's lock file is removed on release: one that waited on a removed file must
  # not write beside one that locked the new file, or a run would be lost.
  start = threading.Barrier(6)

  def writer(w):
    start.wait()
    finished = []
    for seed in range(8):
      finished.append(run(f"m{w}", seed))
      save_results(tmp_path, results(*finished))

  threads = [threading.Thread(target=writer, args=(w,)) for w in range(6)]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  kept = json.loads((tmp_path / "results.json").read_text())["runs"]
  assert sorted((r["method"], r["seed"]) for r in kept) == [
    (f"m{w}", s) for w in range(6) for s in range(8)
  ]
  assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_a_record_of_other_settings_is_replaced_only_when_asked(tmp_path, monkeypatch):
  monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "elsewhere"))
  (tmp_path / "elsewhere").mkdir()
  out = tmp_path / "out"
  out.mkdir()
  save_results(out, results(run("sgd", 0), run("adam", 0)))
  save_results(out, results(run("sgd", 0)))  # the same settings: the same record, made again
  with pytest.raises(ResultsNotSaved) as refused:
    save_results(out, results(run("sgd", 0, "s2", lr=0.5)))
  message = str(refused.value)
  assert "holds a run of sgd seed 0 with other settings" in message
  assert "settings s1 kept, s2 now; method.hparams.learning_rate: kept 0.1, now 0.5" in message
  (elsewhere,) = (tmp_path / "elsewhere").iterdir()  # what did not go in is kept, and named
  assert str(elsewhere) in message
  assert json.loads(elsewhere.read_text())["runs"] == [run("sgd", 0, "s2", lr=0.5)]
  kept = json.loads((out / "results.json").read_text())["runs"]
  assert [r["settings_id"] for r in kept] == ["s1", "s1"]
  save_results(out, results(run("sgd", 0, "s2", lr=0.5)), replace=True)
  kept = json.loads((out / "results.json").read_text())["runs"]
  assert [(r["method"], r["settings_id"]) for r in kept] == [("adam", "s1"), ("sgd", "s2")]
