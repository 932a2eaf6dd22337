"""The study launcher against running the same runs one after another, in one run.

  python benchmarks/launcher_speed.py [--runs 12]

Prints:
* the wall time of ``--runs`` small ``digits`` runs (``--quick`` size, the
  digits study's frontier points) run one after another in this process,
  against the same runs through ``--launcher local:2`` (two worker processes,
  records written by the driver): the target is at most 0.6x;
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


def _items(runs: Path, count: int):
  study = get_study("digits")
  ctx = StudyContext(study, DataOptions(), runs, driver=None, select="validation", quick=True)
  seeds = range((count + 8) // 9)
  return plan_items(ctx, "frontier", None, list(seeds), subsample=None)[:count]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--runs", type=int, default=12)
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    root = Path(tmp)
    items = _items(root / "plan", args.runs)
    start = time.perf_counter()
    for item in items:
      record = run_item(item)
      write_record(root / "sequential" / item.folder, record["header"], record["run"])
    sequential = time.perf_counter() - start

    start = time.perf_counter()
    with LocalLauncher(2) as launcher:
      Driver(root / "pool", launcher, stream=None).execute(items, "benchmark")
    pooled = time.perf_counter() - start

    noop_items = [dataclasses.replace(items[0], seed=seed) for seed in range(60)]
    with LocalLauncher(1, fn=_noop) as launcher:
      Driver(root / "warm", launcher, stream=None).execute(noop_items[:1], "warm-up")
      start = time.perf_counter()
      Driver(root / "noop", launcher, stream=None).execute(noop_items, "noop")
      overhead = (time.perf_counter() - start) / len(noop_items)
  print(f"{len(items)} digits --quick runs, one after another: {sequential:.1f} s")
  print(f"the same runs through --launcher local:2:        {pooled:.1f} s")
  print(f"ratio local:2 / one after another: {pooled / sequential:.2f}x (target <= 0.6x)")
  print(
    f"launcher overhead per run: {overhead * 1000:.1f} ms = {overhead / 30:.2%} of a 30-second "
    "run (target < 2%)"
  )


if __name__ == "__main__":
  main()
