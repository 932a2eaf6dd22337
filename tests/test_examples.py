"""Every script in examples/ runs (in its reduced mode) and shows what it claims."""

import importlib.util
import pathlib
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def run_example(name, *argv):
  """Loads examples/<name>.py as a module and calls its main(argv)."""
  spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # Linen modules are dataclasses, which look their module up
  spec.loader.exec_module(module)
  return module.main(list(argv))


def test_every_example_is_tested_and_listed():
  scripts = sorted(p.stem for p in EXAMPLES.glob("*.py"))
  tested = sorted(
    name[len("test_") :]
    for name in globals()
    if name.startswith("test_") and (EXAMPLES / f"{name[len('test_') :]}.py").exists()
  )
  assert scripts == tested
  readme = (EXAMPLES / "README.md").read_text()
  for script in scripts:
    assert f"python examples/{script}.py" in readme


def test_nnx_classp(capsys):
  pytest.importorskip("flax", minversion="0.12.7")  # nnx.Optimizer.update returns the updates
  result = run_example("nnx_classp", "--quick")
  assert result["accuracy"] > 0.5  # 10 classes: chance is 0.1
  # The threshold leaves some gradients unapplied, and a weight moved in the last
  # step has been moved at least once.
  assert 0 < result["update_fraction"] < 1
  assert result["update_fraction"] <= result["capacity_used"] <= 1
  assert "CLASSP has updated" in capsys.readouterr().out


@pytest.mark.slow  # three methods, each compiling its step and Fisher: ~15 s
def test_own_loop_ewc(capsys):
  result = run_example("own_loop_ewc", "--quick")
  kept = result["task1_after_task2"]
  # Plain SGD forgets much of task 1 while learning task 2; both penalties keep more.
  assert kept["sgd+ewc"] > kept["sgd (no penalty)"] + 0.1
  assert kept["sgd+si"] > kept["sgd (no penalty)"] + 0.1
  # EWC consolidated exactly the Fisher that fisher_diagonal computes directly.
  assert result["fisher_vs_ewc_importance"] == pytest.approx(0.0, abs=1e-7)
  assert "task 1 after task 2" in capsys.readouterr().out


@pytest.mark.slow  # two methods through the continual loop: ~20 s
def test_continual_run(tmp_path, capsys):
  plot = tmp_path / "plots" / "rotated.png"
  runs = run_example("continual_run", "--quick", "--out", str(plot))
  assert set(runs) == {"classp", "sgd"}
  for run in runs.values():
    assert len(run["accuracy_matrix"]) == 3 and all(len(row) == 3 for row in run["accuracy_matrix"])
  assert runs["classp"]["acc"] > 0.3  # 10 classes: chance is 0.1
  assert plot.read_bytes().startswith(b"\x89PNG")
  out = capsys.readouterr().out
  assert "after rot180" in out and str(plot) in out


def test_per_task_schedule(capsys):
  result = run_example("per_task_schedule", "--quick")
  assert result["compilations"] == 1  # new hyperparameters between tasks, no recompilation
  assert min(result["scheduled"]) > 0.5 and min(result["mixed"]) > 0.3  # 5 classes: chance 0.2
  assert 0 < result["hidden_capacity"] <= 1
  assert "threshold 1e-05" in capsys.readouterr().out
