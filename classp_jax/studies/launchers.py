"""Where a study's runs run: worker processes here, Slurm jobs, or Ray tasks.

A launcher is small: it starts one `WorkItem` and hands back a handle with
``done()`` and ``result()`` (the record, or the worker's exception), and says
how many runs it keeps in flight (``slots``). The driver
(`classp_jax.studies.driver`) does the rest: what to run, retries, records.

``--launcher`` takes:

* ``local[:N]`` (the default): N worker processes on this machine (default:
  one per core);
* ``slurm``: one Slurm job per run through submitit (``pip install
  'classp-jax[slurm]'``); preemption checkpoints the run and requeues it.
  ``slurm:local`` runs the same code path as local subprocesses;
* ``ray[:ADDRESS]``: Ray tasks on a running Ray cluster (``auto``, or
  ``ray://HOST:PORT``; ``pip install 'classp-jax[ray]'``). ``ray:local``
  starts a local Ray for the study and stops it after.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import socket
from pathlib import Path
from typing import Any, Callable

from classp_jax.studies.base import Handle, Launcher, cpu_count
from classp_jax.studies.work import WorkItem, run_item

LAUNCHERS = ("local[:N]", "slurm", "slurm:local", "ray[:ADDRESS]", "ray:local")


def _worker_init() -> None:
  # A worker's Ctrl-C is the driver's to handle: the driver stops the pool.
  import signal

  signal.signal(signal.SIGINT, signal.SIG_IGN)


# A worker process is replaced after this many runs, a guard against what a long-lived
# process accumulates: one that ran 280 split_mnist runs in a row had grown to 18 GB, as the
# stream digest's cache held every run's stream (fixed: `training.settings.stream_digest`
# now holds them weakly; a worker still grows ~0.6 MB a --quick split_mnist run). A new
# worker costs a few seconds.
RUNS_PER_WORKER = 16


class LocalLauncher(Launcher):
  """A pool of worker processes (spawned: JAX must not be forked), one run each at a time.

  A worker that dies (killed, out of memory) breaks the pool: the runs in
  flight fail with `BrokenProcessPool`, and the next run starts a new pool.
  """

  def __init__(self, workers: int, fn: Callable[[WorkItem], dict[str, Any]] = run_item):
    self.slots, self._fn = workers, fn
    self._pool: concurrent.futures.ProcessPoolExecutor | None = None

  def _new_pool(self) -> concurrent.futures.ProcessPoolExecutor:
    return concurrent.futures.ProcessPoolExecutor(
      self.slots,
      mp_context=multiprocessing.get_context("spawn"),
      initializer=_worker_init,
      max_tasks_per_child=RUNS_PER_WORKER,
    )

  def start(self, item: WorkItem) -> Handle:
    if self._pool is None:
      self._pool = self._new_pool()
    try:
      return self._pool.submit(self._fn, item)
    except concurrent.futures.process.BrokenProcessPool:
      self._pool.shutdown(wait=False, cancel_futures=True)
      self._pool = self._new_pool()
      return self._pool.submit(self._fn, item)

  def wait(self, handles: list[Handle], timeout: float) -> None:
    concurrent.futures.wait(handles, timeout, concurrent.futures.FIRST_COMPLETED)

  def __exit__(self, *exc) -> None:
    if self._pool is not None:
      # On an interrupt, the runs in flight are abandoned: their workers are stopped.
      for process in list(getattr(self._pool, "_processes", {}).values()):
        if exc[0] is not None:
          process.terminate()
      self._pool.shutdown(wait=True, cancel_futures=True)


class _RayHandle:
  def __init__(self, ray, ref):
    self._ray, self._ref = ray, ref

  def done(self) -> bool:
    ready, _ = self._ray.wait([self._ref], timeout=0)
    return bool(ready)

  def result(self) -> dict[str, Any]:
    try:
      return self._ray.get(self._ref)
    except self._ray.exceptions.RayTaskError as e:  # the worker's own exception
      raise e.as_instanceof_cause() from None


def _check_reachable(address: str | None, timeout: float = 5.0) -> None:
  """Refuses, in one line, a Ray address ``HOST:PORT`` (or ``ray://HOST:PORT``) that takes
  no connection: ``ray.init`` would retry it for minutes."""
  if address in (None, "auto"):
    return
  host, _, port = address.removeprefix("ray://").rpartition(":")
  if not (host and port.isdigit()):
    raise ValueError(
      f"--launcher ray:ADDRESS takes auto, HOST:PORT or ray://HOST:PORT, got {address!r}"
    )
  try:
    socket.create_connection((host, int(port)), timeout=timeout).close()
  except OSError as e:
    raise ValueError(f"cannot reach the Ray cluster at {address}: {e.strerror or e}") from None


class RayLauncher(Launcher):
  """Ray tasks of one CPU each; ``address`` None starts a local Ray and stops it after."""

  def __init__(self, address: str | None, slots: int | None = None):
    try:
      import ray
    except ImportError:
      raise ValueError("the ray launcher needs Ray: pip install 'classp-jax[ray]'") from None
    _check_reachable(address)
    self._ray, self._address, self._slots = ray, address, slots
    self._remote = None

  def __enter__(self) -> RayLauncher:
    ray = self._ray
    try:
      if self._address is None:
        ray.init(num_cpus=cpu_count(), include_dashboard=False, log_to_driver=False)
      else:
        ray.init(address=self._address, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
      raise ValueError(f"cannot reach the Ray cluster at {self._address}: {e}") from None
    self.slots = self._slots or max(1, int(ray.cluster_resources().get("CPU", 1)))
    self._remote = ray.remote(num_cpus=1, max_retries=0)(run_item)
    return self

  def __exit__(self, *exc) -> None:
    self._ray.shutdown()

  def start(self, item: WorkItem) -> Handle:
    return _RayHandle(self._ray, self._remote.remote(item))


def make_launcher(spec: str, folder: Path, options: dict[str, Any] | None = None) -> Launcher:
  """The launcher ``--launcher SPEC`` names; ``folder`` keeps a cluster's job files, and
  ``options`` are its job parameters (Slurm's; none for the others).

  Raises:
    ValueError: an unknown launcher, a bad worker count, or a missing extra,
      in one line.
  """
  name, _, arg = spec.partition(":")
  if options and name != "slurm":
    raise ValueError(f"--launcher-option is for the slurm launcher, not {spec!r}")
  if name == "local":
    if arg and not (arg.isdigit() and int(arg) >= 1):
      raise ValueError(f"--launcher local:N takes a positive number of workers, got {spec!r}")
    return LocalLauncher(int(arg) if arg else cpu_count())
  if name == "slurm" and arg in ("", "local"):
    from classp_jax.studies.slurm import SlurmLauncher

    return SlurmLauncher(
      folder, local=arg == "local", slots=cpu_count() if arg else None, parameters=options
    )
  if name == "ray":
    return RayLauncher(None if arg == "local" else arg or "auto")
  raise ValueError(f"unknown launcher {spec!r}; known: {', '.join(LAUNCHERS)}")
