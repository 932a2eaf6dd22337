"""A continual run from Python: your own task stream and model through `run_continual`.

Builds a custom stream, "rotated digits" (the embedded 8x8 digits rotated by
0, 90 and 180 degrees: three tasks, one shared 10-way head, the same classes
seen anew), as ``classp_jax.data.Task`` and ``TaskStream`` objects from NumPy
arrays, and a small Flax Linen CNN of its own. Then it trains CLASSP and plain
SGD on the stream with ``classp_jax.training.run_continual``, the loop behind
``classp-jax run`` (evaluation of every task's test split after each task,
consolidation, the metrics), prints each method's accuracy matrix
``R[i][j]`` (accuracy on task j after training task i) with ACC, BWT and
forgetting, and saves the accuracy-over-training plot.

Run from the project root (offline, under a minute on a 2-core CPU)::

    python examples/continual_run.py                          # plot under the temp dir
    python examples/continual_run.py --out /tmp/rotated.png
    python examples/continual_run.py --quick                  # smaller (what the tests run)
"""

from __future__ import annotations

import argparse
import pathlib
import tempfile

import flax.linen as nn
import jax
import numpy as np

from classp_jax.data import Split, Task, TaskStream, load_dataset, subsample_stream
from classp_jax.methods import MethodSpec, build_method
from classp_jax.report import plot_accuracy_over_training, print_summary
from classp_jax.training import LoopConfig, run_continual


def rotated_digits(angles=(0, 90, 180)) -> TaskStream:
  """One task per angle: every digit rotated by it, labels 0-9 unchanged."""
  digits = load_dataset("digits")  # uint8 (N, 8, 8, 1)

  def rotate(split: Split, angle: int) -> Split:
    images = np.rot90(split.inputs, k=angle // 90, axes=(1, 2))
    return Split(np.ascontiguousarray(images, np.float32) / 255, split.labels)

  tasks = tuple(
    Task(
      name=f"rot{angle}",
      train=rotate(digits.train, angle),
      test=rotate(digits.test, angle),
      num_classes=10,
      classes=tuple(range(10)),
      class_names=digits.class_names,
    )
    for angle in angles
  )
  return TaskStream(name="rotated_digits", tasks=tasks, num_classes=10, input_shape=(8, 8, 1))


class SmallCNN(nn.Module):
  """Any Linen module called as ``model(inputs, train=...)`` returning logits works."""

  num_classes: int

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    x = nn.relu(nn.Conv(16, (3, 3))(x))
    x = nn.relu(nn.Dense(64)(x.reshape(x.shape[0], -1)))
    x = nn.Dropout(0.1, deterministic=not train)(x)  # the loop passes the "dropout" rng
    return nn.Dense(self.num_classes)(x)


def main(argv=None) -> dict[str, dict]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    "--out",
    type=pathlib.Path,
    default=pathlib.Path(tempfile.gettempdir()) / "classp_jax_examples" / "continual_run.png",
    help="where to save the plot (default: under the temp dir)",
  )
  parser.add_argument(
    "--quick",
    action="store_true",
    help="300 training examples per task and 1 epoch instead of all and 3",
  )
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)

  stream = rotated_digits()
  if args.quick:
    stream = subsample_stream(stream, 300, seed=args.seed)
  model = SmallCNN(stream.num_classes)
  config = LoopConfig(batch_size=32, epochs=1 if args.quick else 3)
  specs = {
    # Every hyperparameter explicit, so the run does not depend on the defaults.
    "classp": MethodSpec(
      "classp", {"learning_rate": 0.05, "threshold": 0.0, "power": 1.0, "eps": 1e-5}
    ),
    "sgd": MethodSpec("sgd", {"learning_rate": 0.05}),
  }
  runs = []
  for name, spec in specs.items():
    method = build_method(name, spec, len(stream.tasks))
    runs.append(run_continual(model, stream, method, config, seed=args.seed, progress=False))

  results = {"experiment": stream.name, "tasks": [t.name for t in stream.tasks], "runs": runs}
  print_summary(results)
  print(
    "(time/run includes compiling each method's step; the first run also compiles the evaluation)"
  )
  args.out.parent.mkdir(parents=True, exist_ok=True)
  plot_accuracy_over_training(results, args.out)
  print(f"\nplot: {args.out}")
  return {run["method"]: run for run in runs}


if __name__ == "__main__":
  main()
