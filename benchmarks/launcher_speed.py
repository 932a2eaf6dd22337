"""The study launcher against running the same runs one after another, in one run.

  python benchmarks/launcher_speed.py [--runs 12] [--set epochs=40]

Prints:
* the wall time of ``--runs`` small ``digits`` runs (the digits study's
  frontier points, a few seconds each) run one after another in this process,
  and through ``--launcher local:1``, against the same runs through
  ``--launcher local:2`` (two worker processes, records written by the
  driver), each side with its own persistent
  compilation cache, as a study has: the target is at most 0.6x. (At
  ``--quick`` size a run takes ~0.5 s once compiled, and the two workers'
  start-up, ~3 s, is most of the pool's time.)
* the launcher's own overhead per run (submit, return, record), measured on
  runs that do nothing, as a fraction of a 30-second run: the target is under
  2%.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from classp_jax.experiments import DataOptions, get_study
from classp_jax.results.records import write_record
from classp_jax.studies.driver import Driver
from classp_jax.studies.launchers import LocalLauncher
from classp_jax.studies.stages import StudyContext, plan_items
from classp_jax.studies.work import run_item


def _noop(item):
  return {
    "header": {"experiment": "noop"},
    "run": {"method": item.method, "seed": item.seed, "settings_id": item.settings_id},
  }


def _items(runs: Path, count: int, cache_dir: Path, overrides: list[str]):
  study = get_study("digits")
  study = dataclasses.replace(study, overrides=(*study.overrides, *overrides))
  ctx = StudyContext(
    study, DataOptions(), runs, driver=None, select="validation", cache_dir=str(cache_dir)
  )
  seeds = range((count + 8) // 9)
  return plan_items(ctx, "frontier", None, list(seeds), subsample=None)[:count]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--runs", type=int, default=12)
  parser.add_argument(
    "--set", action="append", default=[], metavar="KEY=VALUE", help="e.g. epochs=40: longer runs"
  )
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    root = Path(tmp)
    items = _items(root / "plan", args.runs, root / "sequential-cache", args.set)
    start = time.perf_counter()
    for item in items:
      record = run_item(item)
      write_record(root / "sequential" / item.folder, record["header"], record["run"])
    sequential = time.perf_counter() - start

    pooled = {}
    for workers in (1, 2):
      cache = str(root / f"pool-{workers}-cache")
      pool_items = [dataclasses.replace(i, cache_dir=cache) for i in items]
      start = time.perf_counter()
      with LocalLauncher(workers) as launcher:
        Driver(root / f"pool-{workers}", launcher, stream=None).execute(pool_items, "benchmark")
      pooled[workers] = time.perf_counter() - start

    noop_items = [dataclasses.replace(items[0], seed=seed) for seed in range(60)]
    with LocalLauncher(1, fn=_noop) as launcher:
      Driver(root / "warm", launcher, stream=None).execute(noop_items[:1], "warm-up")
      start = time.perf_counter()
      Driver(root / "noop", launcher, stream=None).execute(noop_items, "noop")
      overhead = (time.perf_counter() - start) / len(noop_items)
  print(f"{len(items)} digits runs, one after another in this process: {sequential:.1f} s")
  print(f"the same runs through --launcher local:1 (one worker):  {pooled[1]:.1f} s")
  print(f"the same runs through --launcher local:2:               {pooled[2]:.1f} s")
  print(f"ratio local:2 / in this process: {pooled[2] / sequential:.2f}x (target <= 0.6x)")
  print(f"ratio local:2 / local:1:         {pooled[2] / pooled[1]:.2f}x")
  print(
    f"launcher overhead per run: {overhead * 1000:.1f} ms = {overhead / 30:.2%} of a 30-second "
    "run (target < 2%)"
  )


if __name__ == "__main__":
  main()
