"""Time and peak memory of the exact Fisher of the paper CNN, per chunk size.

Each chunk size runs in its own subprocess, so its peak resident memory
(``ru_maxrss``) is its own; the table reports it minus the process's RSS
before the first Fisher call, next to XLA's compile-time size of the
temporary buffers of one chunk, all classes, on the fast layer path
(``memory_analysis().temp_size_in_bytes``), the largest compiled piece.

Usage:
  python benchmarks/fisher_memory.py [--num-examples 1000]
      [--batch-sizes 32 128 1000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _rss_bytes() -> int:
  # ru_maxrss is in KiB on Linux.
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _worker(num_examples: int, batch_size: int) -> dict:
  import jax
  import jax.numpy as jnp
  import numpy as np

  from classp_jax.methods import fisher
  from classp_jax.models import PaperCNN

  model = PaperCNN(num_classes=10)
  inputs = jnp.asarray(
    np.random.default_rng(0).uniform(size=(num_examples, 28, 28, 1)),
    jnp.float32,
  )
  params = model.init(jax.random.key(0), inputs[:1], train=False)

  def apply_fn(p, x):
    return model.apply(p, x, train=False)

  baseline = _rss_bytes()
  batch_size = min(batch_size, num_examples)
  start = time.perf_counter()
  jax.block_until_ready(
    fisher.fisher_diagonal(apply_fn, params, inputs[:batch_size], batch_size=batch_size)
  )
  first_chunk_s = time.perf_counter() - start
  start = time.perf_counter()
  jax.block_until_ready(fisher.fisher_diagonal(apply_fn, params, inputs, batch_size=batch_size))
  run_s = time.perf_counter() - start
  peak = _rss_bytes() - baseline

  total = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
  x = inputs[:batch_size]
  compiled = (
    fisher._jitted(fisher._compiler_options())
    .fast_chunk.lower(
      apply_fn,
      fisher._find_layers(apply_fn, params, x),
      params,
      total,
      x,
      jnp.zeros((batch_size,), jnp.int32),
      jax.random.split(jax.random.key(0), batch_size),
      jnp.ones((batch_size,), bool),
      cotangents="exact",
      elementwise="square",
    )
    .compile()
  )
  analysis = compiled.memory_analysis()
  temp = None if analysis is None else analysis.temp_size_in_bytes
  return {
    "batch_size": batch_size,
    "run_s": run_s,
    "first_chunk_s": first_chunk_s,
    "peak_rss_bytes": peak,
    "xla_temp_bytes": temp,
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--num-examples", type=int, default=1000)
  parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128, 1000])
  parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker is not None:
    print(json.dumps(_worker(args.num_examples, args.worker)))
    return

  import jax

  print(
    f"exact Fisher, PaperCNN (1,199,882 params), {args.num_examples} "
    f"examples, {jax.devices()[0].platform}, jax {jax.__version__}"
  )
  print(
    f"{'chunk':>6} {'time (s)':>9} {'ex/s':>7} {'compile+1 chunk (s)':>20}"
    f" {'peak RSS - base (MiB)':>22} {'XLA temp/chunk (MiB)':>21}"
  )
  for batch_size in args.batch_sizes:
    proc = subprocess.run(
      [
        sys.executable,
        __file__,
        "--num-examples",
        str(args.num_examples),
        "--worker",
        str(batch_size),
      ],
      capture_output=True,
      text=True,
      check=False,
    )
    if proc.returncode != 0:
      print(
        f"{batch_size:>6} failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}"
      )
      continue
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    temp = "n/a" if r["xla_temp_bytes"] is None else (f"{r['xla_temp_bytes'] / 2**20:.0f}")
    print(
      f"{r['batch_size']:>6} {r['run_s']:>9.1f} "
      f"{args.num_examples / r['run_s']:>7.1f} {r['first_chunk_s']:>20.1f}"
      f" {r['peak_rss_bytes'] / 2**20:>22.0f} {temp:>21}",
      flush=True,
    )


if __name__ == "__main__":
  main()
