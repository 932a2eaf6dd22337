"""Named experiments: configs, data roots, the frontier, and --quick runs on tiny fixtures."""

import json
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import PHRASEBANK_LINES, phrasebank_bytes, write_aclimdb_tree, write_idx_folder

from classp_jax.cli import main
from classp_jax.data import CACHE_DIR_ENV, dataset_folders
from classp_jax.experiments import DataOptions, Sweep, experiments, get_experiment
from classp_jax.experiments.common import NARROW_HALF_DECADES, comparison_frontier
from classp_jax.experiments.datasets import load_datasets
from classp_jax.methods import build_method
from classp_jax.planning import plan_methods

PAPER_STUDIES = ("mnist_fashion", "fpb_imdb", "fpb_imdb_cpu", "split_mnist", "permuted_mnist")


def write_data_root(root):
  """One folder per dataset, named as the copies on the project's machines are."""
  write_idx_folder(root / "mnist-10k", n_train=200, n_test=40, size=28, seed=1)
  write_idx_folder(root / "fashion-mnist", n_train=80, n_test=40, size=28, seed=2)
  words = ["great film", "awful plot", "lovely acting", "boring scenes"]
  reviews = [
    (split, label, f"{i}_{7 if label == 'pos' else 2}.txt", f"{words[i % 4]} {i}")
    for split in ("train", "test")
    for label in ("neg", "pos")
    for i in range(24)
  ]
  write_aclimdb_tree(root / "imdb", reviews)
  (root / "financial-phrasebank").mkdir()
  (root / "financial-phrasebank" / "Sentences_50Agree.txt").write_bytes(
    phrasebank_bytes(lines=PHRASEBANK_LINES * 3)
  )
  return root


@pytest.fixture
def data_root(tmp_path, monkeypatch):
  monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
  return write_data_root(tmp_path / "data")


@pytest.mark.parametrize("name", PAPER_STUDIES)
def test_every_method_and_frontier_point_builds(name):
  experiment = get_experiment(name)
  assert experiment.name in experiments()
  num_tasks = 10 if name == "permuted_mnist" else 2
  planned = [
    *plan_methods(experiment.default_methods, experiment.methods),
    *plan_methods(list(experiment.frontier), experiment.methods, experiment.frontier),
  ]
  for plan in planned:
    method = build_method(plan.name, plan.spec, num_tasks)
    assert method.name == plan.name
  variants = [p for p in planned if p.knob is not None]
  assert {p.base_method for p in variants} >= {
    "classp",
    "sgd",
    "adam",
    "adagrad",
    "ewc",
    "si",
    "mas",
  }
  assert {(p.base_method, p.knob) for p in variants if p.base_method.startswith("classp")} >= {
    ("classp", "threshold"),
    ("classp_no_threshold", "learning_rate"),
  }
  for base, knobs in experiment.frontier.items():
    curves = [p for p in variants if p.base_method == base]
    assert "learning_rate" in knobs.knobs  # every method's learning rate is swept
    for knob, values in knobs.knobs.items():
      points = [p for p in curves if p.knob == knob]
      assert [p.value for p in points] == list(values)
      if knob in knobs.at:  # the centre is an interior point of every grid
        assert knobs.at[knob] in values[1:-1]
      for point in points:  # every point shares the centre but for its own knob
        hparams = {**point.spec.hparams, **point.spec.reg_hparams, **point.spec.memory_hparams}
        assert hparams[knob] == point.value
        assert all(hparams[k] == v for k, v in knobs.at.items() if k != knob)


def test_a_frontiers_learning_rate_centre_can_be_set_per_method():
  frontier = comparison_frontier(
    learning_rate=0.03,
    classp_learning_rate=0.02,
    thresholds=(0.0, 1e-6, 0.5),
    threshold=1e-6,
    learning_rate_factors=NARROW_HALF_DECADES,
    learning_rate_centres={"adam": 3e-5, "ewc": 0.003},
  )
  assert frontier["adam"].knobs["learning_rate"] == (9e-6, 3e-5, 9e-5)
  assert dict(frontier["ewc"].at) == {"learning_rate": 0.003, "strength": 100.0}
  assert frontier["sgd"].knobs["learning_rate"] == (0.009, 0.03, 0.09)  # the default centre
  with pytest.raises(ValueError, match=r"without a frontier: \['classp_as_released'\]"):
    comparison_frontier(
      learning_rate=0.03,
      classp_learning_rate=0.02,
      thresholds=(0.0,),
      threshold=0.0,
      learning_rate_centres={"classp_as_released": 0.1},
    )


def test_frontier_variants_are_named_after_their_knob():
  experiment = get_experiment("mnist_fashion")
  variants = plan_methods(
    ["classp", "sgd+ewc"], experiment.methods, {"classp": Sweep({"threshold": (0.0, 1e-6)})}
  )
  assert [v.name for v in variants] == ["classp[threshold=0]", "classp[threshold=1e-06]", "sgd+ewc"]
  assert variants[1].spec.hparams["threshold"] == 1e-6 and variants[1].base_method == "classp"
  assert variants[2].knob is None


def test_the_released_schedule_is_per_task():
  spec = get_experiment("mnist_fashion").methods["classp_as_released"]
  method = build_method("classp_as_released", spec, 2)
  assert method.task_hparams == (
    {"apply_scaling": 0.0, "threshold": 0.5},
    {"apply_scaling": 1.0, "threshold": 0.0},
  )


def test_datasets_are_found_in_conventional_subfolders_of_a_root(tmp_path):
  for folder in ("mnist-10k", "fashion-mnist", "imdb", "financial_phrasebank"):
    (tmp_path / folder).mkdir()
  assert dataset_folders("mnist", tmp_path) == [tmp_path, tmp_path / "mnist-10k"]
  assert dataset_folders("fashion_mnist", tmp_path) == [tmp_path, tmp_path / "fashion-mnist"]
  assert dataset_folders("imdb_reviews", tmp_path) == [tmp_path, tmp_path / "imdb"]
  assert dataset_folders("financial_phrasebank", tmp_path)[1:] == [
    tmp_path / "financial_phrasebank"
  ]


def test_a_root_holding_one_datasets_files_is_not_read_for_two(tmp_path):
  write_idx_folder(tmp_path)
  with pytest.raises(ValueError, match="own subfolder"):
    load_datasets(("mnist", "fashion_mnist"), DataOptions("local", str(tmp_path)))


@pytest.mark.parametrize(
  "name, methods",
  [
    pytest.param("mnist_fashion", "sgd", marks=pytest.mark.slow),  # compiling the CNN: ~20 s
    ("split_mnist", "sgd+ewc"),
    ("permuted_mnist", "classp_as_released"),
    pytest.param("fpb_imdb", "classp", marks=pytest.mark.slow),  # the same model as fpb_imdb_cpu
    ("fpb_imdb_cpu", "sgd+si"),
  ],
)
def test_quick_runs_end_to_end(name, methods, data_root, tmp_path):
  out = tmp_path / "out"
  assert (
    main(
      [
        "run",
        name,
        "--quick",
        "--no-progress",
        "--data-dir",
        str(data_root),
        "--methods",
        methods,
        "--out",
        str(out),
      ]
    )
    == 0
  )
  results = json.loads((out / "results.json").read_text())
  assert [r["method"] for r in results["runs"]] == methods.split(",")
  assert results["options"]["quick"] and "--quick" in results["options"]["command"]
  for run in results["runs"]:
    matrix = np.array(run["accuracy_matrix"])
    assert matrix.shape == (len(results["tasks"]),) * 2 and np.isfinite(matrix).all()
  if name in ("mnist_fashion", "fpb_imdb"):  # the paper's protocol beside held-out accuracy
    assert len(results["runs"][0]["paper_protocol"]["accuracy_matrix"]) == 2


def _memory_mappings() -> int:
  return len(Path("/proc/self/maps").read_text().splitlines())


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="counts Linux memory mappings")
def test_frontier_runs_record_their_knob_and_free_each_points_code(data_root, tmp_path):
  args = [
    "run",
    "split_mnist",
    "--quick",
    "--no-progress",
    "--data-dir",
    str(data_root),
    "--methods",
    "sgd",
    "--subsample",
    "64,32",
  ]
  start = _memory_mappings()
  assert main([*args, "--out", str(tmp_path / "one")]) == 0
  one_method = _memory_mappings() - start  # its compiled code, and what every run shares
  out = tmp_path / "out"
  assert main([*args, "--frontier", "--out", str(out)]) == 0
  # XLA:CPU maps each executable's code separately, and Linux allows a process 65,530
  # mappings: a frontier that kept every point's code (7 here) ran out on a long study.
  assert _memory_mappings() - start < 2 * one_method
  runs = json.loads((out / "results.json").read_text())["runs"]
  values = get_experiment("split_mnist").frontier["sgd"].knobs["learning_rate"]
  assert [(r["base_method"], r["knob"], r["value"]) for r in runs] == [
    ("sgd", "learning_rate", v) for v in values
  ]
  assert runs[0]["method"] == f"sgd[learning_rate={values[0]:g}]"


def test_a_frontier_point_gains_seeds_and_finished_runs_are_skipped(data_root, tmp_path, capsys):
  out = tmp_path / "out"
  args = [
    "run",
    "split_mnist",
    "--quick",
    "--no-progress",
    "--data-dir",
    str(data_root),
    "--subsample",
    "64,32",
    "--out",
    str(out),
    "--frontier",
    "--skip-finished",
  ]
  point = "ewc[strength=10]"
  assert main([*args, "--methods", point, "--seeds", "0"]) == 0
  assert main([*args, "--methods", point, "--seeds", "0,1"]) == 0
  assert "skipping 1 run(s)" in capsys.readouterr().out
  runs = json.loads((out / "results.json").read_text())["runs"]
  assert [(r["method"], r["seed"], r["knob"], r["value"]) for r in runs] == [
    (point, 0, "strength", 10.0),
    (point, 1, "strength", 10.0),
  ]
  assert runs[0]["settings_id"] == runs[1]["settings_id"]  # one frontier point, two seeds
  # Every seed done: nothing runs, and the file is unchanged.
  before = (out / "results.json").read_text()
  assert main([*args, "--methods", point, "--seeds", "0,1"]) == 0
  assert (out / "results.json").read_text() == before
  # A point beyond the grid runs with the grid's centre (to grow the grid); a knob that is
  # not swept is refused in one line.
  assert main([*args, "--methods", "ewc[strength=1e+06]", "--seeds", "0"]) == 0
  beyond = json.loads((out / "results.json").read_text())["runs"][-1]
  assert (beyond["method"], beyond["knob"], beyond["value"]) == (
    "ewc[strength=1e+06]",
    "strength",
    1e6,
  )
  assert (
    beyond["settings"]["method"]["hparams"]["learning_rate"]
    == (get_experiment("split_mnist").frontier["ewc"].at["learning_rate"])
  )
  assert main([*args, "--methods", "ewc[gamma=7]"]) == 2
  assert "ewc has no frontier knob 'gamma'" in capsys.readouterr().err


def test_the_offline_digits_frontier_sweeps_ewcs_strength_and_select_picks_on_validation(
  tmp_path, capsys
):
  out = tmp_path / "frontier"
  args = ["run", "digits", "--quick", "--no-progress", "--frontier", "--methods", "ewc"]
  assert main([*args, "--out", str(out), "--log", "none"]) == 0
  runs = json.loads((out / "results.json").read_text())["runs"]
  strengths = get_experiment("digits").frontier["ewc"].knobs["strength"]
  assert [(r["knob"], r["value"]) for r in runs] == [("strength", s) for s in strengths]
  assert {r["settings"]["method"]["hparams"]["learning_rate"] for r in runs} == {0.01}
  # The point selected is the one of highest validation ACC, computed here from the runs.
  validation = {r["value"]: np.mean(r["validation_accuracy_matrix"][-1]) for r in runs}
  capsys.readouterr()
  assert main(["select", str(out)]) == 0
  assert capsys.readouterr().out == f"ewc[strength={max(validation, key=validation.get):g}]\n"
