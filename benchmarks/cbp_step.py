"""Speed of a Continual Backprop training step against an SGD step, on the permuted-MNIST MLP.

What it measures: the engine's jitted training chunk (`classp_jax.training.make_train_chunk`,
as ``classp-jax run`` builds it, 8 steps per call, unrolled) of the 2x256 ReLU MLP on
28x28 inputs in batches of 32 (``permuted_mnist`` and ``long_permuted_mnist``), for
``sgd`` and for ``cbp`` (`classp_jax.continual_backprop.continual_backprop`: SGD, then the
utility update and the replacement of mature low-utility units; the step also returns the
hidden activations of its forward pass), at its defaults (replacement rate 1e-4, maturity
100: after the first 100 steps one unit is replaced every ~40 steps per layer; the
warm-up runs past maturity), and ``cbp stress`` at replacement rate 0.01 and maturity 0,
which replaces units in every step. Interleaved rounds in one process, medians reported
(the machine is shared and noisy). Target: cbp at most 1.3x sgd.

Usage::

  python benchmarks/cbp_step.py [--rounds 40]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from classp_jax.mesh import data_mesh, replicate, shard_batch
from classp_jax.methods import MethodSpec, build_method
from classp_jax.models import MLP
from classp_jax.training.evaluation import cached_train_chunk, model_fns
from classp_jax.training.plasticity_probe import activations_apply
from classp_jax.training.steps import TrainState

STEPS_PER_CALL = 8
BATCH = 32
TARGET = 1.3


def contenders():
  stress = {"learning_rate": 0.05, "replacement_rate": 0.01, "maturity_threshold": 0}
  return {
    "sgd": MethodSpec("sgd", {"learning_rate": 0.05}),
    "cbp": MethodSpec("cbp", {"learning_rate": 0.05}),
    "cbp stress": MethodSpec("cbp", stress),
  }


def prepare(name, spec, model, mesh, inputs, labels):
  method = build_method(name, spec, 1)
  fns = model_fns(model, mesh, 1000)
  chunk = cached_train_chunk(
    fns,
    method.tx,
    method.regularizer,
    method.memory,
    mesh,
    True,
    None,
    False,
    None,
    activations_apply(model, mesh) if method.activations else None,
  )
  params = model.init(jax.random.key(0), inputs[:1], train=False)["params"]
  state = replicate(
    TrainState(params, method.tx.init(params), method.regularizer.init(params), (), {}), mesh
  )
  return [chunk, state, []]


def bench(rounds: int) -> dict[str, float]:
  """The median time of one training step of each contender, in seconds."""
  mesh = data_mesh(jax.devices()[:1])
  rng = np.random.default_rng(0)
  n = BATCH * STEPS_PER_CALL * 4
  x, y = rng.random((n, 28, 28, 1), np.float32), rng.integers(0, 10, n).astype(np.int32)
  inputs, labels = replicate((x, y), mesh)
  masks = replicate(np.ones((10, 10), bool), mesh)
  model = MLP(num_classes=10, hidden=(256, 256))
  runs = {
    name: prepare(name, spec, model, mesh, inputs, labels) for name, spec in contenders().items()
  }
  orders = [
    rng.permutation(n)[: BATCH * STEPS_PER_CALL].reshape(STEPS_PER_CALL, BATCH) for _ in range(4)
  ]
  key = jax.random.key(1)

  def call(run, k):
    chunk, state, _ = run
    state, metrics = chunk(
      state,
      inputs,
      labels,
      shard_batch(orders[k % 4], mesh),
      key,
      jnp.int32(k * 8),
      masks,
      jnp.int32(0),
    )
    jax.block_until_ready(metrics["loss"])
    run[1] = state

  for run in runs.values():  # compile, warm up and pass the maturity threshold (100 steps)
    for k in range(14):
      call(run, k)
  for k in range(rounds):
    for run in runs.values():
      t0 = time.perf_counter()
      call(run, k)
      run[2].append((time.perf_counter() - t0) / STEPS_PER_CALL)
  return {name: statistics.median(run[2]) for name, run in runs.items()}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=40)
  args = parser.parse_args()
  print(f"jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.device_count()}")
  medians = bench(args.rounds)
  print(
    f"\n== 2x256 MLP, batch {BATCH}, {STEPS_PER_CALL} steps per call, median of {args.rounds} =="
  )
  for name, seconds in medians.items():
    print(f"{name:6s} {seconds * 1e3:8.3f} ms per step")
  print()
  for name, target in (("cbp", TARGET), ("cbp stress", None)):
    ratio = medians[name] / medians["sgd"]
    verdict = (
      "" if target is None else f"  (target <= {target}x: {'ok' if ratio <= target else 'OVER'})"
    )
    print(f"{name + ' / sgd':18s} {ratio:.3f}x{verdict}")


if __name__ == "__main__":
  main()
