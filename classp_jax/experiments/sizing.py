"""Scaling an experiment down: fewer examples per task (a CPU budget), or a smoke run."""

from __future__ import annotations

import dataclasses

from classp_jax.data import subsample_stream
from classp_jax.experiments.base import Experiment


def subsampled(
  experiment: Experiment, train_examples: int | None, test_examples: int | None = None
) -> Experiment:
  """``experiment`` on a seeded random subset of each task's train and test examples."""
  build = experiment.stream
  return dataclasses.replace(
    experiment,
    stream=lambda options: subsample_stream(build(options), train_examples, test_examples),
  )


def smoke_sized(
  experiment: Experiment, train_examples: int = 256, test_examples: int = 128, batch_size: int = 32
) -> Experiment:
  """A run that only shows everything works: tiny tasks, one epoch, one mid-task evaluation.

  Loss targets stay (a target is then chased for at most one epoch), so the
  stopping rule is exercised too. One step per call: on a few steps, compiling
  an unrolled chunk costs more than it saves.
  """
  experiment = subsampled(experiment, train_examples, test_examples)
  return dataclasses.replace(
    experiment,
    loop=dataclasses.replace(
      experiment.loop,
      batch_size=min(batch_size, experiment.loop.batch_size),
      epochs=1,
      max_epochs=1,
      evals_per_task=1,
      steps_per_call=1,
      eval_batch_size=min(test_examples, experiment.loop.eval_batch_size),
    ),
  )
