"""Training throughput of the CIFAR ResNet-18 (width 20 and 64), against PyTorch, and
the cost of the on-device augmentation.

What it measures: training examples per second of ``classp_jax.models.ResNet18``
(BatchNorm in train mode, its running statistics updated, cross-entropy, SGD) on
synthetic 32x32x3 images in [0, 1] with 10 classes (the values do not affect
speed), through the project's own training step
(`classp_jax.training.make_train_chunk`, as ``classp-jax run`` builds it with
`classp_jax.training.evaluation.model_fns`), one step per jitted call, the whole
data set on the device. Contenders per width:

  torch eager             the same network in PyTorch (3x3 stem, no max-pool,
                          bias-free convolutions, BatchNorm2d), ``torch.optim.SGD``,
                          in-memory tensors, torch's default threads (one per core);
  torch eager, 1 thread   the same on one thread, which wins when other processes
                          compete for the cores;
  jax                     the project's step, no augmentation;
  jax, augmented          the same with ``LoopConfig.augment``'s random crop and
                          flip inside the step (`classp_jax.training.augment`).

Contenders run in interleaved rounds and the medians are reported, since the
machine is shared and noisy. The ratio columns: JAX against torch at its default
threads, against the faster torch row, and (for the augmented row) the
augmentation's overhead, its step time over the plain JAX step's, minus 1. torch
is optional (``pip install torch``; it is not a dependency of the project); without
it the JAX rows alone are printed.

Usage::

  python benchmarks/resnet_throughput.py [--widths 20,64] [--batches 32] [--steps N]
      [--rounds R] [--no-torch]

On a GPU (JAX, and torch if it sees CUDA, on the accelerator), e.g. ``--batches
32,256,1024`` (`benchmarks/gpu_check.sh`).
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from throughput import Round, measure  # noqa: E402  (a sibling script)

from classp_jax.mesh import data_mesh, replicate, shard_batch  # noqa: E402
from classp_jax.methods import NO_REGULARIZER  # noqa: E402
from classp_jax.models import ResNet18  # noqa: E402
from classp_jax.training import TrainState, make_train_chunk  # noqa: E402
from classp_jax.training.augment import crop_flip  # noqa: E402
from classp_jax.training.evaluation import model_fns  # noqa: E402

LEARNING_RATE = 0.05
NUM_CLASSES = 10
IMAGE_SHAPE = (32, 32, 3)


def jax_round(width: int, data, batch_size: int, steps: int, augment: bool) -> Round:
  """Compiles and warms up the project's training step for a ResNet-18 of ``width``."""
  mesh = data_mesh(jax.local_devices())
  model = ResNet18(NUM_CLASSES, width=width)
  fns = model_fns(model, mesh, 1000)
  images, labels = replicate(data, mesh)
  variables = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(data[0][:1])
  params, model_state = variables["params"], {"batch_stats": variables["batch_stats"]}
  optimizer = optax.sgd(LEARNING_RATE)
  state = {
    "train": replicate(TrainState(params, optimizer.init(params), (), (), model_state), mesh),
    "step": 0,
  }
  chunk = make_train_chunk(
    fns.train_apply, optimizer, NO_REGULARIZER, mesh, augment=crop_flip if augment else None
  )
  num_batches = len(data[1]) // batch_size
  order = np.arange(num_batches * batch_size).reshape(num_batches, batch_size)
  rng = jax.random.key(1)
  label_masks = replicate(np.ones((NUM_CLASSES, NUM_CLASSES), bool), mesh)

  def run_round():
    for step in range(state["step"], state["step"] + steps):
      state["train"], metrics = chunk(
        state["train"],
        images,
        labels,
        shard_batch(order[[step % num_batches]], mesh),
        rng,
        np.int32(step),
        label_masks,
        np.int32(0),
      )
    jax.block_until_ready(metrics["loss"])
    state["step"] += steps

  run_round()  # compile and warm up
  return run_round


def torch_resnet18(width: int, num_classes: int):
  """The same CIFAR ResNet-18 in PyTorch (Mammoth's ``backbone/ResNet18.py`` layout)."""
  from torch import nn

  class BasicBlock(nn.Module):
    def __init__(self, inputs: int, features: int, stride: int):
      super().__init__()
      self.conv1 = nn.Conv2d(inputs, features, 3, stride, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(features)
      self.conv2 = nn.Conv2d(features, features, 3, 1, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(features)
      self.shortcut = nn.Sequential()
      if stride != 1 or inputs != features:
        self.shortcut = nn.Sequential(
          nn.Conv2d(inputs, features, 1, stride, bias=False), nn.BatchNorm2d(features)
        )

    def forward(self, x):
      y = nn.functional.relu(self.bn1(self.conv1(x)))
      return nn.functional.relu(self.bn2(self.conv2(y)) + self.shortcut(x))

  layers = [nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
  inputs = width
  for stage, multiple in enumerate((1, 2, 4, 8)):
    for block in range(2):
      layers.append(BasicBlock(inputs, width * multiple, 2 if stage and not block else 1))
      inputs = width * multiple
  layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(inputs, num_classes)]
  return nn.Sequential(*layers)


def torch_round(
  width: int, batch_size: int, steps: int, num_examples: int, num_threads: int | None = None
) -> Round | None:
  """The PyTorch eager loop for the same network, or None without torch."""
  try:
    import torch
  except ImportError:
    return None
  device = "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"
  torch.manual_seed(0)
  model = torch_resnet18(width, NUM_CLASSES).to(device).train()
  optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
  images = torch.rand(num_examples, 3, 32, 32, device=device)
  labels = torch.randint(0, NUM_CLASSES, (num_examples,), device=device)
  num_batches = num_examples // batch_size
  state = {"step": 0}
  default_threads = torch.get_num_threads()

  def run_round():
    torch.set_num_threads(num_threads or default_threads)
    for s in range(state["step"], state["step"] + steps):
      start = (s % num_batches) * batch_size
      x, y = images[start : start + batch_size], labels[start : start + batch_size]
      optimizer.zero_grad(set_to_none=True)
      loss = torch.nn.functional.cross_entropy(model(x), y)
      loss.backward()
      optimizer.step()
    loss.item()  # waits for the device
    state["step"] += steps
    torch.set_num_threads(default_threads)

  run_round()
  return run_round


def contenders(args, width: int, batch_size: int, steps: int) -> dict[str, Round]:
  """Every contender for one width and batch size, PyTorch first."""
  num_examples = max(256, 2 * batch_size)
  rng = np.random.default_rng(0)
  data = (
    rng.random((num_examples, *IMAGE_SHAPE), np.float32),
    rng.integers(0, NUM_CLASSES, num_examples).astype(np.int32),
  )
  rounds: dict[str, Round] = {}
  if not args.no_torch and (run := torch_round(width, batch_size, steps, num_examples)):
    rounds["torch eager"] = run
    if jax.default_backend() == "cpu":
      rounds["torch eager, 1 thread"] = torch_round(width, batch_size, steps, num_examples, 1)
  rounds["jax"] = jax_round(width, data, batch_size, steps, augment=False)
  rounds["jax, augmented"] = jax_round(width, data, batch_size, steps, augment=True)
  return rounds


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ints = lambda s: [int(v) for v in s.split(",")]  # noqa: E731
  parser.add_argument("--widths", default="20,64", type=ints)
  parser.add_argument("--batches", default="32", type=ints)
  parser.add_argument("--steps", type=int, default=3, help="steps per timed round")
  parser.add_argument("--rounds", type=int, default=5, help="interleaved timed rounds")
  parser.add_argument("--no-torch", action="store_true")
  args = parser.parse_args(argv)
  print(
    f"jax {jax.__version__} on {jax.default_backend()} ({jax.devices()[0].device_kind}), "
    f"{os.cpu_count()} CPUs"
  )
  header = f"{'width':>5} {'batch':>5}  {'contender':<24} {'examples/s':>10}"
  print(f"{header}  {'vs torch':>8}  {'vs best torch':>13}  {'augmentation':>12}")
  for width in args.widths:
    for batch_size in args.batches:
      medians = measure(contenders(args, width, batch_size, args.steps), args.rounds)
      rates = {name: batch_size * args.steps / s for name, s in medians.items()}
      torch_rate = rates.get("torch eager")
      best_torch = max((r for n, r in rates.items() if n.startswith("torch")), default=None)
      for name, rate in rates.items():
        ratios = [
          f"{rate / r:.2f}x" if r and name.startswith("jax") else "-"
          for r in (torch_rate, best_torch)
        ]
        overhead = f"{medians[name] / medians['jax'] - 1:+.1%}" if name == "jax, augmented" else "-"
        print(
          f"{width:>5} {batch_size:>5}  {name:<24} {rate:>10.1f}  {ratios[0]:>8}  "
          f"{ratios[1]:>13}  {overhead:>12}",
          flush=True,
        )


if __name__ == "__main__":
  main()
