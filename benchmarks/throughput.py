"""Training throughput of the paper CNN per step-loop strategy, against PyTorch.

What it measures: training examples per second of ``classp_jax.models.PaperCNN``
(dropout on, cross-entropy, SGD) on synthetic random data of MNIST shape
(28x28x1 float32 in [0, 1], 10 classes; the values do not affect speed). The
whole dataset sits on the device; each call receives only its batches'
indices, and nothing blocks on the host until the end of a timed round. The
training state is donated.

On CPU it also runs the loop compiled with XLA's default options, YNNPACK on
for convolutions, dots and reductions (the project keeps it for reductions only:
`classp_jax.mesh.CPU_COMPILER_OPTIONS`), and
for batches above 32 the loop with ``microbatch_size=32``: the same gradient,
averaged over micro-batches whose activations stay in cache.

JAX step-loop strategies (``--strategies``), all through the project's own
training step (`classp_jax.training.make_train_chunk`, as ``classp-jax run``
uses it, with ``LoopConfig.steps_per_call`` and ``unroll``):
  loop      a Python loop calling the jitted step once per batch.
  unrolled  one jitted call running a round's K steps as a fully unrolled
            ``lax.scan``.
  scan      the same scan, rolled, for the record: on XLA:CPU it is an order of
            magnitude slower, so it is not in the default set.

``--ablations`` adds loop variants that show what each design choice is worth:
the same CNN with Flax's ``nn.max_pool`` (``reduce_window``, whose backward is
the slow ``select_and_scatter`` on CPU), with dropout off, with the ``rbg``
PRNG for the dropout masks, and with ``classp_jax.classp`` instead of SGD.

Beside them, in the same process, runs the equivalent PyTorch eager loop
(skipped when torch is absent or with ``--no-torch``): the same network,
``torch.optim.SGD``, pre-made in-memory tensors, torch's default thread count
(one per core), and again on one thread, which wins when other processes
compete for the cores. Contenders run in interleaved rounds and the medians are
reported, since the machine is shared and noisy; the ratio columns are against
PyTorch measured in that run: at its default thread count, and the faster
of its two rows. ``--xla-flags=FLAGS`` (with the ``=``) runs everything twice in
fresh processes, without and with ``FLAGS`` in ``XLA_FLAGS``.

Usage::

  python benchmarks/throughput.py [--batches 32,256] [--steps N] [--rounds R]
      [--strategies loop,unrolled] [--ablations] [--no-torch] [--xla-flags=FLAGS]

On a GPU (both JAX and torch on the accelerator), e.g. ``--batches 32,256,1024``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from unittest import mock

import flax.linen as nn
import jax
import numpy as np
import optax

from classp_jax import mesh as device_mesh
from classp_jax.mesh import data_mesh, replicate, shard_batch
from classp_jax.methods import NO_REGULARIZER
from classp_jax.models import PaperCNN
from classp_jax.optimizer import classp
from classp_jax.training import TrainState, make_train_chunk
from classp_jax.training import steps as training_steps

LEARNING_RATE = 0.05
NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28, 1)

# Runs one timed round: a contender's K steps, then one wait for the device.
Round = Callable[[], None]


class ReduceWindowPaperCNN(nn.Module):
  """PaperCNN with Flax's ``nn.max_pool`` (the plain Flax way), for the ablation."""

  num_classes: int = NUM_CLASSES

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = nn.relu(nn.Conv(32, (3, 3), padding="VALID", name="conv1")(x))
    x = nn.relu(nn.Conv(64, (3, 3), padding="VALID", name="conv2")(x))
    x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = nn.Dropout(0.25, deterministic=not train)(x)
    x = x.reshape(x.shape[0], -1)
    x = nn.relu(nn.Dense(128, name="fc1")(x))
    x = nn.Dropout(0.5, deterministic=not train)(x)
    return nn.Dense(self.num_classes, name="fc2")(x)


class NoDropoutPaperCNN(PaperCNN):
  """PaperCNN with dropout always off, for the ablation."""

  def __call__(self, x, *, train: bool):
    return super().__call__(x, train=False)


def jax_round(
  strategy: str,
  model: nn.Module,
  optimizer: optax.GradientTransformation,
  data: tuple[np.ndarray, np.ndarray],
  batch_size: int,
  steps: int,
  prng_impl: str | None = None,
  microbatch_size: int | None = None,
  xla_default: bool = False,
) -> Round:
  """Compiles and warms up one JAX contender: the project's own training step.

  It runs `classp_jax.training.make_train_chunk`, exactly as ``classp-jax run``
  does: ``shard_map`` over the local devices, the dataset replicated on them,
  each call given its batches' indices.

  Args:
    strategy: ``loop`` (one step per call), ``unrolled`` (a round's steps in one
      call, scan unrolled) or ``scan`` (the same, rolled).
    model: the Linen model.
    optimizer: the optax transformation.
    data: host (images, labels).
    batch_size: examples per step.
    steps: steps per round.
    prng_impl: PRNG implementation of the dropout keys (None: JAX's default).
    microbatch_size: ``LoopConfig.microbatch_size``.
    xla_default: compile with XLA's default options instead of the project's
      (`classp_jax.mesh.CPU_COMPILER_OPTIONS` on CPU: YNNPACK for reductions only).

  Returns:
    A function running one round of ``steps`` steps, blocking once at its end.
  """
  mesh = data_mesh(jax.local_devices())
  images, labels = replicate(data, mesh)
  params = model.init(jax.random.key(0), data[0][:1], train=False)["params"]
  state = {
    "train": replicate(
      TrainState(params, optimizer.init(params), NO_REGULARIZER.init(params)), mesh
    ),
    "step": 0,
  }
  with mock.patch.object(
    training_steps,
    "compiler_options",
    (lambda mesh: None) if xla_default else device_mesh.compiler_options,
  ):
    chunk = make_train_chunk(
      lambda p, s, x, rng: (model.apply({"params": p}, x, train=True, rngs={"dropout": rng}), s),
      optimizer,
      NO_REGULARIZER,
      mesh,
      unroll=strategy != "scan",
      microbatch_size=microbatch_size,
    )
  steps_per_call = 1 if strategy == "loop" else steps
  num_batches = len(data[1]) // batch_size
  order = np.arange(num_batches * batch_size).reshape(num_batches, batch_size)
  rng = jax.random.key(1, impl=prng_impl)
  label_masks = replicate(np.ones((NUM_CLASSES, NUM_CLASSES), bool), mesh)  # no task identity

  def run_round():
    for first in range(state["step"], state["step"] + steps, steps_per_call):
      batches = order[np.arange(first, first + steps_per_call) % num_batches]
      state["train"], metrics = chunk(
        state["train"],
        images,
        labels,
        shard_batch(batches, mesh),
        rng,
        np.int32(first),
        label_masks,
        np.int32(0),
      )
    jax.block_until_ready(metrics["loss"])
    state["step"] += steps

  run_round()  # compile and warm up
  return run_round


def torch_round(
  batch_size: int, steps: int, num_examples: int, num_threads: int | None = None
) -> Round | None:
  """The authors' PyTorch eager loop for the same CNN, or None without torch.

  Args:
    batch_size: examples per step.
    steps: steps per round.
    num_examples: size of the in-memory dataset.
    num_threads: torch's intra-op threads during this contender's rounds
      (None: torch's default, one per core).

  Returns:
    A function running one round, or None when torch is not installed.
  """
  try:
    import torch
    from torch import nn as tnn
  except ImportError:
    return None
  device = "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"
  torch.manual_seed(0)
  model = (
    tnn.Sequential(
      tnn.Conv2d(1, 32, 3),
      tnn.ReLU(),
      tnn.Conv2d(32, 64, 3),
      tnn.ReLU(),
      tnn.MaxPool2d(2),
      tnn.Dropout(0.25),
      tnn.Flatten(),
      tnn.Linear(9216, 128),
      tnn.ReLU(),
      tnn.Dropout(0.5),
      tnn.Linear(128, NUM_CLASSES),
    )
    .to(device)
    .train()
  )
  optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
  images = torch.rand(num_examples, 1, 28, 28, device=device)
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
      loss = tnn.functional.cross_entropy(model(x), y)
      loss.backward()
      optimizer.step()
    loss.item()  # waits for the device
    state["step"] += steps
    torch.set_num_threads(default_threads)

  run_round()
  return run_round


def contenders(args, batch_size: int, steps: int) -> dict[str, Round]:
  """Builds every contender for one batch size.

  Args:
    args: the parsed command line.
    batch_size: examples per step.
    steps: steps per round.

  Returns:
    Round functions by contender name, PyTorch first.
  """
  num_examples = max(2048, 2 * batch_size)
  rng = np.random.default_rng(0)
  data = (
    rng.random((num_examples, *IMAGE_SHAPE), np.float32),
    rng.integers(0, NUM_CLASSES, num_examples).astype(np.int32),
  )
  sgd = optax.sgd(LEARNING_RATE)
  cnn = PaperCNN(NUM_CLASSES)
  rounds: dict[str, Round] = {}
  if not args.no_torch and (torch_run := torch_round(batch_size, steps, num_examples)):
    rounds["torch eager"] = torch_run
    # On a busy machine torch's spinning OpenMP threads can lose to one thread.
    rounds["torch eager, 1 thread"] = torch_round(batch_size, steps, num_examples, 1)
  for strategy in args.strategies:
    rounds[f"jax {strategy}"] = jax_round(strategy, cnn, sgd, data, batch_size, steps)
  if jax.default_backend() == "cpu":
    rounds["jax loop, YNNPACK on (XLA default)"] = jax_round(
      "loop", cnn, sgd, data, batch_size, steps, xla_default=True
    )
  if batch_size > 32:
    rounds["jax loop, micro-batches of 32"] = jax_round(
      "loop", cnn, sgd, data, batch_size, steps, microbatch_size=32
    )
  if args.ablations:
    rounds["jax loop, nn.max_pool"] = jax_round(
      "loop", ReduceWindowPaperCNN(), sgd, data, batch_size, steps
    )
    rounds["jax loop, no dropout"] = jax_round(
      "loop", NoDropoutPaperCNN(NUM_CLASSES), sgd, data, batch_size, steps
    )
    rounds["jax loop, rbg dropout PRNG"] = jax_round(
      "loop", cnn, sgd, data, batch_size, steps, prng_impl="rbg"
    )
    rounds["jax loop, classp"] = jax_round(
      "loop", cnn, classp(LEARNING_RATE), data, batch_size, steps
    )
  return rounds


def measure(rounds: dict[str, Round], num_rounds: int) -> dict[str, float]:
  """Times contenders in interleaved rounds.

  Args:
    rounds: round functions by contender name.
    num_rounds: rounds per contender.

  Returns:
    Median seconds per round, by contender name.
  """
  seconds = {name: [] for name in rounds}
  for _ in range(num_rounds):
    for name, run_round in rounds.items():
      start = time.perf_counter()
      run_round()
      seconds[name].append(time.perf_counter() - start)
  return {name: statistics.median(s) for name, s in seconds.items()}


def run_here(args) -> None:
  """Prints the table of examples/s for every batch size, in this process."""
  print(
    f"jax {jax.__version__} on {jax.default_backend()} ({jax.devices()[0].device_kind}), "
    f"{os.cpu_count()} CPUs, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}"
  )
  print(
    f"{'batch':>5}  {'contender':<36} {'examples/s':>10}  {'vs torch':>8}  {'vs best torch':>13}"
  )
  for batch_size in args.batches:
    steps = args.steps or max(2, 512 // batch_size)
    medians = measure(contenders(args, batch_size, steps), args.rounds)
    rates = {name: batch_size * steps / seconds for name, seconds in medians.items()}
    torch_rate = rates.get("torch eager")
    best_torch_rate = max((r for n, r in rates.items() if n.startswith("torch")), default=None)
    for name, rate in rates.items():
      ratios = [f"{rate / r:.2f}x" if r else "-" for r in (torch_rate, best_torch_rate)]
      print(
        f"{batch_size:>5}  {name:<36} {rate:>10.0f}  {ratios[0]:>8}  {ratios[1]:>13}", flush=True
      )


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batches", default="32,256", type=lambda s: [int(b) for b in s.split(",")])
  parser.add_argument(
    "--steps", type=int, default=0, help="steps per timed round (default: max(2, 512 // batch))"
  )
  parser.add_argument("--rounds", type=int, default=7, help="interleaved timed rounds")
  parser.add_argument(
    "--strategies",
    default="loop,unrolled",
    type=lambda s: s.split(","),
    help="comma-separated subset of loop,unrolled,scan",
  )
  parser.add_argument("--ablations", action="store_true")
  parser.add_argument("--no-torch", action="store_true")
  parser.add_argument(
    "--xla-flags",
    default=None,
    help="also run in a fresh process with these XLA_FLAGS, and compare",
  )
  args = parser.parse_args(argv)
  if args.xla_flags is None:
    run_here(args)
    return
  # XLA reads XLA_FLAGS once, when JAX starts a backend: one process per setting.
  child_argv = list(argv if argv is not None else sys.argv[1:])
  i = child_argv.index("--xla-flags") if "--xla-flags" in child_argv else None
  child_argv = (
    child_argv[:i] + child_argv[i + 2 :]
    if i is not None
    else [a for a in child_argv if not a.startswith("--xla-flags=")]
  )
  base_flags = os.environ.get("XLA_FLAGS", "")
  for flags in (base_flags, f"{base_flags} {args.xla_flags}".strip()):
    env = dict(os.environ, XLA_FLAGS=flags)
    subprocess.run([sys.executable, __file__, *child_argv], env=env, check=True)


if __name__ == "__main__":
  main()
