"""Speed and peak memory of the Fisher and MAS importance of the paper CNN.

For each statistic (the exact, sampled and empirical Fisher, and MAS's
importance) this runs, each in its own subprocess so that its peak resident
memory is its own: our fast layer path, the same without the training step's
CPU compiler options (XLA's default), our general ``vmap`` path, and, when
torch is importable, the same computation in PyTorch with ``torch.func``
(``vmap(grad)`` per example, one pass per class for the exact Fisher). Each
worker computes the statistic once on one chunk (compilation, warm-up), then
times it on all examples. Implementations alternate within each statistic, so
the ratios are side by side. Peak memory is ``ru_maxrss`` minus the RSS before
the first call.

Usage:
  python benchmarks/fisher_speed.py [--num-examples 1000] [--batch-size 32]
      [--stats exact sampled empirical mas] [--impls fast fast_xla_default
      general torch]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

# statistic -> (our cotangents, our elementwise function)
STATS = {
  "exact": ("exact", "square"),
  "sampled": ("sampled", "square"),
  "empirical": ("empirical", "square"),
  "mas": ("output_norm", "abs"),
}
IMPLS = ("fast", "fast_xla_default", "general", "torch")


def _rss_bytes() -> int:
  # ru_maxrss is in KiB on Linux.
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _data(num_examples):
  import numpy as np

  rng = np.random.default_rng(0)
  inputs = rng.uniform(size=(num_examples, 28, 28, 1)).astype(np.float32)
  labels = rng.integers(0, 10, size=num_examples).astype(np.int32)
  return inputs, labels


def _jax_worker(stat, impl, num_examples, batch_size):
  import jax
  import jax.numpy as jnp

  from classp_jax.methods import fisher
  from classp_jax.models import PaperCNN

  if impl == "fast_xla_default":
    fisher._compiler_options = lambda: None  # pylint: disable=protected-access
  model = PaperCNN(num_classes=10)
  inputs, labels = map(jnp.asarray, _data(num_examples))
  params = model.init(jax.random.key(0), inputs[:1], train=False)

  def apply_fn(p, x):
    return model.apply(p, x, train=False)

  cotangents, elementwise = STATS[stat]

  def run(n):
    return jax.block_until_ready(
      fisher.mean_per_example_statistic(
        apply_fn,
        params,
        inputs[:n],
        cotangents=cotangents,
        elementwise=elementwise,
        labels=labels[:n],
        rng=jax.random.key(1),
        batch_size=batch_size,
        path="general" if impl == "general" else "fast",
      )
    )

  baseline = _rss_bytes()
  run(batch_size)
  start = time.perf_counter()
  run(num_examples)
  return time.perf_counter() - start, _rss_bytes() - baseline


def _torch_worker(stat, num_examples, batch_size):
  import torch
  from torch import nn
  from torch.func import functional_call, grad, vmap

  torch.manual_seed(0)
  model = nn.Sequential(
    nn.Conv2d(1, 32, 3),
    nn.ReLU(),
    nn.Conv2d(32, 64, 3),
    nn.ReLU(),
    nn.MaxPool2d(2),
    nn.Flatten(),
    nn.Linear(9216, 128),
    nn.ReLU(),
    nn.Linear(128, 10),
  ).eval()
  params = {k: v.detach() for k, v in model.named_parameters()}
  inputs, labels = _data(num_examples)
  inputs = torch.from_numpy(inputs).permute(0, 3, 1, 2).contiguous()
  labels = torch.from_numpy(labels).long()
  generator = torch.Generator().manual_seed(1)

  def logits_of(p, x):
    return functional_call(model, p, (x[None],))[0]

  def log_prob(p, x, onehot):  # indexing by a batched label breaks vmap
    return torch.sum(torch.log_softmax(logits_of(p, x), -1) * onehot)

  def output_norm(p, x):
    return logits_of(p, x).square().sum()

  per_example_log_prob = vmap(grad(log_prob), in_dims=(None, 0, 0))
  per_example_norm = vmap(grad(output_norm), in_dims=(None, 0))

  def chunk_total(x, y, total):
    if stat == "mas":
      for k, g in per_example_norm(params, x).items():
        total[k] += g.abs().sum(0)
      return
    if stat == "exact":
      with torch.no_grad():
        probs = torch.softmax(model(x), -1)
      for c in range(probs.shape[1]):  # one pass per class
        onehot = torch.zeros_like(probs)
        onehot[:, c] = 1.0
        grads = per_example_log_prob(params, x, onehot)
        weight = probs[:, c]
        for k, g in grads.items():
          total[k] += torch.einsum("n,n...->...", weight, g.square())
      return
    if stat == "sampled":
      with torch.no_grad():
        y = torch.multinomial(torch.softmax(model(x), -1), 1, generator=generator)[:, 0]
    onehot = torch.nn.functional.one_hot(y, 10).float()
    for k, g in per_example_log_prob(params, x, onehot).items():
      total[k] += g.square().sum(0)

  def run(n):
    total = {k: torch.zeros_like(v) for k, v in params.items()}
    for start in range(0, n, batch_size):
      chunk_total(inputs[start : start + batch_size], labels[start : start + batch_size], total)
    return {k: v / n for k, v in total.items()}

  baseline = _rss_bytes()
  run(batch_size)
  start = time.perf_counter()
  run(num_examples)
  return time.perf_counter() - start, _rss_bytes() - baseline


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--num-examples", type=int, default=1000)
  parser.add_argument("--batch-size", type=int, default=32)
  parser.add_argument("--stats", nargs="+", choices=list(STATS), default=list(STATS))
  parser.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS))
  parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker is not None:
    stat, impl = args.worker
    if impl == "torch":
      seconds, peak = _torch_worker(stat, args.num_examples, args.batch_size)
    else:
      seconds, peak = _jax_worker(stat, impl, args.num_examples, args.batch_size)
    print(json.dumps({"seconds": seconds, "peak_rss_bytes": peak}))
    return

  import importlib.util

  import jax

  impls = [i for i in args.impls if i != "torch" or importlib.util.find_spec("torch") is not None]
  print(
    f"PaperCNN (1,199,882 params), {args.num_examples} examples, chunks "
    f"of {args.batch_size}, {jax.devices()[0].platform}, jax "
    f"{jax.__version__}; ratios are examples/s against the first "
    f"implementation ({impls[0]})"
  )
  print(
    f"{'statistic':>10} {'implementation':>17} {'ex/s':>8} {'ratio':>7} "
    f"{'peak RSS - base (MiB)':>22}"
  )
  for stat in args.stats:
    rates = {}
    for impl in impls:
      proc = subprocess.run(
        [
          sys.executable,
          __file__,
          "--num-examples",
          str(args.num_examples),
          "--batch-size",
          str(args.batch_size),
          "--worker",
          stat,
          impl,
        ],
        capture_output=True,
        text=True,
        check=False,
      )
      if proc.returncode != 0:
        print(
          f"{stat:>10} {impl:>17} failed (exit {proc.returncode}): "
          f"{proc.stderr.strip().splitlines()[-1:]}",
          flush=True,
        )
        continue
      r = json.loads(proc.stdout.strip().splitlines()[-1])
      rates[impl] = args.num_examples / r["seconds"]
      ratio = rates[impl] / rates.get(impls[0], float("nan"))
      print(
        f"{stat:>10} {impl:>17} {rates[impl]:>8.1f} {ratio:>7.2f} "
        f"{r['peak_rss_bytes'] / 2**20:>22.0f}",
        flush=True,
      )
    if "fast" in rates and "torch" in rates:
      print(f"{stat:>10} fast / torch.func: {rates['fast'] / rates['torch']:.1f}x", flush=True)


if __name__ == "__main__":
  main()
