"""Speed of one jitted optimizer step: CLASSP against optax adagrad and sgd.

What it measures: for each parameter count, the wall time of one jitted
``update`` + ``optax.apply_updates`` (params and optimizer state donated, so
the step works in place) on a single float32 vector with standard-normal
gradients. The contenders: ``classp`` at the paper's absolute threshold 0.5
(about 48% of the weights updated) and powers 1, 2 and 1.5 (the general power
path), ``classp`` with a relative threshold of 1.0 (``g**2`` above the
tensor's mean ``g**2``: about 32% updated; it reads the gradient twice, once
for the mean), ``inject_hyperparams(classp)`` (all hyperparameters traced),
the unfused three-transform chain that ``classp`` replaces,
``classp_as_released``, ``optax.adagrad`` and ``optax.sgd``, each compiled with the training loop's
compiler options (`classp_jax.mesh.compiler_options`). They are timed in interleaved rounds in
one process and the medians reported, since the machine is shared and noisy. Alongside, a jitted
``x + 1`` on a donated buffer of the same size gives the memory bandwidth
achieved by a plain streaming pass in the same run.

GB/s counts the bytes an ideal step must move: params, gradients and state
read, params and state written (4 bytes each). ``state/params`` is the
optimizer state's bytes over the params' bytes (1.0 = one accumulator per
weight, plus a few scalars).

Usage::

  python benchmarks/optimizer_speed.py [--sizes 1e5 1e6 1e7] [--rounds 30]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import optax

import classp_jax
from classp_jax.mesh import compiler_options, data_mesh

# The authors' PyTorch optimizer step, measured elsewhere (not by this script)
# on the machine these numbers were first taken on.
TORCH_REFERENCE_MS_AT_1E7 = 141.0


def contenders():
  return {
    "classp": classp_jax.classp(0.01, threshold=0.5),
    "classp relative": classp_jax.classp(0.01, threshold=1.0, relative_threshold=True),
    "classp p=2": classp_jax.classp(0.01, threshold=0.5, power=2.0),
    "classp p=1.5": classp_jax.classp(0.01, threshold=0.5, power=1.5),
    "classp injected": optax.inject_hyperparams(classp_jax.classp)(0.01, threshold=0.5),
    # The unfused form classp replaces: the masked gradient feeds both the
    # accumulator and the update, and XLA:CPU materialises it every step.
    "classp 3-chain": optax.chain(
      classp_jax.threshold_mask(0.5),
      classp_jax.scale_by_generalized_adagrad(),
      optax.scale_by_learning_rate(0.01),
    ),
    "classp_as_released": classp_jax.classp_as_released(0.01),
    "adagrad": optax.adagrad(0.01, initial_accumulator_value=0.0, eps=1e-5),
    "sgd": optax.sgd(0.01),
  }


def nbytes(tree) -> int:
  return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))


def make_step(tx):
  def step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  # Compiled as the training loop compiles its steps (on CPU: YNNPACK for reductions only).
  options = compiler_options(data_mesh(jax.devices()[:1]))
  return jax.jit(step, donate_argnums=(0, 1), compiler_options=options)


def bench_size(n: int, rounds: int) -> None:
  key_p, key_g = jax.random.split(jax.random.key(0))
  grads = jax.random.normal(key_g, (n,), jnp.float32)
  runs = {}
  for name, tx in contenders().items():
    params = jax.random.normal(key_p, (n,), jnp.float32)
    state = tx.init(params)
    step = make_step(tx)
    params, state = step(params, state, grads)  # compile and warm up
    jax.block_until_ready(params)
    runs[name] = [step, params, state, [], nbytes(state)]
  copy = jax.jit(lambda x: x + 1.0, donate_argnums=0)
  buf = jax.block_until_ready(copy(jnp.zeros((n,), jnp.float32)))
  copy_times = []

  for _ in range(rounds):
    for run in runs.values():
      step, params, state, times, _ = run
      t0 = time.perf_counter()
      params, state = jax.block_until_ready(step(params, state, grads))
      times.append(time.perf_counter() - t0)
      run[1], run[2] = params, state
    t0 = time.perf_counter()
    buf = jax.block_until_ready(copy(buf))
    copy_times.append(time.perf_counter() - t0)

  param_bytes = 4 * n
  copy_s = statistics.median(copy_times)
  print(f"\n== {n:.0e} float32 params ({param_bytes / 1e6:.1f} MB) ==")
  print(f"{'':20s} {'median ms':>10s} {'GB/s':>7s} {'state/params':>13s}")
  print(
    f"{'copy (x + 1)':20s} {copy_s * 1e3:10.3f} {2 * param_bytes / copy_s / 1e9:7.2f} {'':>13s}"
  )
  medians = {}
  for name, (_, _, _, times, state_bytes) in runs.items():
    med = medians[name] = statistics.median(times)
    moved = 3 * param_bytes + 2 * state_bytes  # read p, g, s; write p, s
    print(
      f"{name:20s} {med * 1e3:10.3f} {moved / med / 1e9:7.2f} {state_bytes / param_bytes:13.5f}"
    )
  for name in runs:
    if name.startswith("classp"):
      ratio_adagrad = medians[name] / medians["adagrad"]
      ratio_sgd = medians[name] / medians["sgd"]
      print(f"{name + ' / adagrad':30s} {ratio_adagrad:.3f}x   / sgd {ratio_sgd:.3f}x")
  print(
    f"{'classp relative / classp (absolute)':30s} "
    f"{medians['classp relative'] / medians['classp']:.3f}x"
  )
  if n == 10**7:
    print(
      f"(reference, not measured here: the authors' PyTorch step took "
      f"about {TORCH_REFERENCE_MS_AT_1E7:.0f} ms at 1e7 params)"
    )


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", nargs="+", type=float, default=[1e5, 1e6, 1e7])
  parser.add_argument("--rounds", type=int, default=30)
  args = parser.parse_args()
  print(
    f"jax {jax.__version__}, optax {optax.__version__}, "
    f"backend {jax.default_backend()}, devices {jax.device_count()}"
  )
  for size in args.sizes:
    bench_size(int(size), args.rounds)


if __name__ == "__main__":
  main()
