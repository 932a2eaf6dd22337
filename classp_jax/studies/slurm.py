"""The Slurm launcher: one job per run, through submitit.

Each run is a `Checkpointable` job, and each run checkpoints at task ends
(`classp_jax.training.Checkpointer`). When Slurm preempts a job or its time
runs out, submitit's signal handler (``SIGUSR2``, sent ``signal_delay_s``
before the end, as submitit arranges it) requeues the same job, which resumes
from the run's checkpoint: a preempted run loses at most one task's work.
``slurm:local`` runs the same jobs as local subprocesses (submitit's local
executor), which is how the tests run this path.

Job parameters (partition, time, GPUs) come from ``--launcher-option
KEY=VALUE``, handed to ``executor.update_parameters`` (e.g. ``timeout_min=60``,
``slurm_partition=gpu``, ``gpus_per_node=1``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from classp_jax.studies.base import Handle, Launcher
from classp_jax.studies.work import WorkItem, run_item

try:
  import submitit
except ImportError:
  raise ValueError("the slurm launcher needs submitit: pip install 'classp-jax[slurm]'") from None

# A cluster queues the jobs itself: the driver keeps this many submitted at once.
CLUSTER_SLOTS = 256


class CheckpointableRun(submitit.helpers.Checkpointable):
  """A run as a submitit job; requeued as it is when preempted (its checkpoint resumes it)."""

  def __call__(self, item: WorkItem) -> dict[str, Any]:
    return run_item(item)


class SlurmLauncher(Launcher):
  checkpoints = True

  def __init__(
    self,
    folder: Path,
    local: bool = False,
    slots: int | None = None,
    parameters: dict[str, Any] | None = None,
  ):
    cluster = "local" if local else "slurm"
    try:
      self._executor = submitit.AutoExecutor(folder=str(folder / "%j"), cluster=cluster)
    except RuntimeError as e:  # e.g. no sbatch on this machine
      raise ValueError(f"cannot submit Slurm jobs from here: {e}") from None
    self._executor.update_parameters(**{"timeout_min": 60, **(parameters or {})})
    self.slots = slots or CLUSTER_SLOTS

  def start(self, item: WorkItem) -> Handle:
    return self._executor.submit(CheckpointableRun(), item)
