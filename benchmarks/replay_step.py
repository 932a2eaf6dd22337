"""Step cost of the replay baselines against SGD, on the paper CNN, interleaved in one run.

Contenders, each a jitted data-parallel step (`classp_jax.training.make_train_chunk`,
one step per call, as the loop runs it on CPU) on random 28x28 images:

* ``sgd`` at batch B and at batch 2B (the "combined batch" of B examples and B replayed);
* ``er``, ``derpp`` and ``agem`` (a 200-example buffer, full) at batch B.

Targets (issue 13): the buffer's sampling and insertion add at most 10% to a step on
the combined batch (``er`` / ``sgd 2B`` <= 1.1), so an ``er`` step is at most 2.2x an
SGD step of batch B; an ``agem`` step (an extra pass for the reference gradient) at
most 2.2x too. Rounds alternate between contenders; medians of rounds are quoted.

Usage:
  python benchmarks/replay_step.py [--batch 32] [--steps 40] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import numpy as np

from classp_jax.data import digits_stream, label_class_masks
from classp_jax.mesh import data_mesh, replicate, shard_batch
from classp_jax.methods import ExampleSpec, MethodSpec, build_method
from classp_jax.models import PaperCNN
from classp_jax.training import TrainState, make_train_chunk


def contender(name: str, batch: int, steps: int, mesh, model, inputs, labels, masks):
  spec = MethodSpec("sgd", {"learning_rate": 0.01}, memory=None if name == "sgd" else name)
  method = build_method(name, spec, 1)
  params = model.init(jax.random.key(0), inputs[:1], train=False)["params"]
  memory = (
    ()
    if method.memory is None
    else method.memory.init(params, ExampleSpec(inputs.shape[1:], inputs.dtype, 10))
  )
  state = replicate(
    TrainState(params, method.tx.init(params), method.regularizer.init(params), memory), mesh
  )

  def apply(p, model_state, x, rng):
    return model.apply({"params": p}, x, train=True, rngs={"dropout": rng}), model_state

  chunk = make_train_chunk(
    apply,
    method.tx,
    method.regularizer,
    mesh,
    memory=method.memory,
    eval_apply_fn=lambda p, s, x: model.apply({"params": p}, x, train=False),
  )
  x, y = replicate((inputs, labels), mesh)
  order = np.random.default_rng(0).integers(0, len(labels), (steps + 10, batch))
  key, masks = jax.random.key(1), replicate(masks, mesh)
  holder = {"state": state, "step": 0}

  def run(count):
    for _ in range(count):
      k = holder["step"] % len(order)
      holder["state"], _ = chunk(
        holder["state"],
        x,
        y,
        shard_batch(order[k : k + 1], mesh),
        key,
        np.int32(holder["step"]),
        masks,
        np.int32(1),
      )
      holder["step"] += 1
    jax.block_until_ready(holder["state"].params)

  run(10)  # compile, and fill the 200-example buffer
  return lambda: run(steps)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--steps", type=int, default=40)
  parser.add_argument("--rounds", type=int, default=5)
  args = parser.parse_args()
  mesh = data_mesh()
  model = PaperCNN(num_classes=10)
  inputs = np.round(np.random.default_rng(0).uniform(size=(4096, 28, 28, 1)) * 255) / 255
  inputs = inputs.astype(np.float32)
  labels = np.random.default_rng(1).integers(0, 10, 4096).astype(np.int32)
  masks = label_class_masks(digits_stream("class"))
  b = args.batch
  contenders = {
    f"sgd {b}": contender("sgd", b, args.steps, mesh, model, inputs, labels, masks),
    f"sgd {2 * b}": contender("sgd", 2 * b, args.steps, mesh, model, inputs, labels, masks),
    **{
      f"{m} {b}": contender(m, b, args.steps, mesh, model, inputs, labels, masks)
      for m in ("er", "derpp", "agem")
    },
  }
  times = {name: [] for name in contenders}
  for _ in range(args.rounds):
    for name, run in contenders.items():
      start = time.perf_counter()
      run()
      times[name].append((time.perf_counter() - start) / args.steps)
  step = {name: statistics.median(t) for name, t in times.items()}
  print(
    f"{jax.devices()[0].platform}, {jax.device_count()} device(s), paper CNN, "
    f"median of {args.rounds} interleaved rounds of {args.steps} steps"
  )
  print(
    f"{'contender':12s} {'ms/step':>8s} {'vs sgd ' + str(b):>10s} {'vs sgd ' + str(2 * b):>10s}"
  )
  for name, t in step.items():
    print(
      f"{name:12s} {1e3 * t:8.2f} {t / step[f'sgd {b}']:9.2f}x {t / step[f'sgd {2 * b}']:9.2f}x"
    )


if __name__ == "__main__":
  main()
