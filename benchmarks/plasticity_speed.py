"""Speed of one jitted step of the plasticity methods: UPGD and CLASSP's forgetting accumulator.

What it measures: at one parameter count (1e7 by default), the wall time of one
jitted ``update`` + ``optax.apply_updates`` (params and optimizer state
donated, so the step works in place) on a single float32 vector with
standard-normal gradients, compiled with the training loop's compiler options
(`classp_jax.mesh.compiler_options`). The contenders are timed in interleaved
rounds in one process and the medians reported, since the machine is shared and
noisy:

* ``upgd`` (`classp_jax.plasticity.upgd`, its defaults: utility decay 0.999,
  noise sigma 0.001) against ``optax.adagrad``. UPGD reads the params and its
  utility trace, takes a global maximum, draws one Gaussian per weight and
  writes the trace: target at most 2x AdaGrad's step. ``upgd sigma=0`` (no
  noise drawn) shows what the noise costs. On XLA:CPU the draw dominates: one
  run on this project's 2-core machine measured upgd at 21.6x AdaGrad and
  ``upgd sigma=0`` at 2.0x, as ``jax.random`` spends ~20 ns per weight there on
  the bits alone (threefry, rbg and unsafe_rbg alike). The noise stays
  ``jax.random.normal`` (exact and keyed) rather than a cheaper home-made
  generator; `benchmarks/gpu_check.sh` measures the ratio on an accelerator.
* ``classp`` with ``accumulator_decay=0.999`` against ``classp`` at its default
  (1.0, the paper's rule): target at most 1.05x. ``classp injected`` is
  ``inject_hyperparams(classp)``, as the training loop runs it, where the
  decay is traced and always multiplied (by 1.0 here).

Usage::

  python benchmarks/plasticity_speed.py [--size 1e7] [--rounds 30]
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
from classp_jax.plasticity import upgd

# (contender, baseline, target ratio)
RATIOS = (
  ("upgd", "adagrad", 2.0),
  ("upgd sigma=0", "adagrad", None),
  ("classp decay=0.999", "classp", 1.05),
  ("classp injected decay=0.999", "classp injected", 1.05),
)


def contenders():
  return {
    "adagrad": optax.adagrad(0.01, initial_accumulator_value=0.0, eps=1e-5),
    "upgd": upgd(0.01),
    "upgd sigma=0": upgd(0.01, sigma=0.0),
    "classp": classp_jax.classp(0.01),
    "classp decay=0.999": classp_jax.classp(0.01, accumulator_decay=0.999),
    "classp injected": optax.inject_hyperparams(classp_jax.classp)(0.01),
    "classp injected decay=0.999": optax.inject_hyperparams(classp_jax.classp)(
      0.01, accumulator_decay=0.999
    ),
  }


def make_step(tx):
  def step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  options = compiler_options(data_mesh(jax.devices()[:1]))
  return jax.jit(step, donate_argnums=(0, 1), compiler_options=options)


def bench(n: int, rounds: int) -> dict[str, float]:
  """The median step time of each contender, in seconds."""
  key_p, key_g = jax.random.split(jax.random.key(0))
  grads = jax.random.normal(key_g, (n,), jnp.float32)
  runs = {}
  for name, tx in contenders().items():
    params = jax.random.normal(key_p, (n,), jnp.float32)
    state = tx.init(params)
    step = make_step(tx)
    params, state = jax.block_until_ready(step(params, state, grads))  # compile, warm up
    runs[name] = [step, params, state, []]
  for _ in range(rounds):
    for run in runs.values():
      step, params, state, times = run
      t0 = time.perf_counter()
      params, state = jax.block_until_ready(step(params, state, grads))
      times.append(time.perf_counter() - t0)
      run[1], run[2] = params, state
  return {name: statistics.median(run[3]) for name, run in runs.items()}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--size", type=float, default=1e7)
  parser.add_argument("--rounds", type=int, default=30)
  args = parser.parse_args()
  n = int(args.size)
  print(
    f"jax {jax.__version__}, optax {optax.__version__}, "
    f"backend {jax.default_backend()}, devices {jax.device_count()}"
  )
  medians = bench(n, args.rounds)
  print(f"\n== {n:.0e} float32 params, median of {args.rounds} interleaved rounds ==")
  for name, seconds in medians.items():
    print(f"{name:30s} {seconds * 1e3:9.3f} ms")
  print()
  for name, baseline, target in RATIOS:
    ratio = medians[name] / medians[baseline]
    verdict = (
      "" if target is None else f"  (target <= {target}x: {'ok' if ratio <= target else 'OVER'})"
    )
    print(f"{name + ' / ' + baseline:45s} {ratio:.3f}x{verdict}")


if __name__ == "__main__":
  main()
