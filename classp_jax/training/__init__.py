"""The training engine: jitted data-parallel steps, the continual loop, checkpoints and logs.

* `steps`: `make_train_chunk` and `make_evaluate`, pure steps of (state, batch, rng)
  under `jax.shard_map`;
* `config`: `LoopConfig`, how each task is trained, and `check_config`;
* `settings`: what a run is (`run_settings`, `settings_id`);
* `evaluation`: the `Evaluator` and validation splits;
* `loop`: `ContinualRun` and `run_continual`, task by task;
* `checkpoint` and `metric_logs`.

It runs the methods of `classp_jax.methods` on the mesh of `classp_jax.mesh`,
and knows nothing of experiments, studies or reports.
"""

from classp_jax.training.checkpoint import (
  Checkpointer,
  CheckpointError,
  CheckpointWriteError,
  SettingsMismatchError,
)
from classp_jax.training.config import LoopConfig, check_config
from classp_jax.training.evaluation import split_validation
from classp_jax.training.loop import ContinualRun, run_continual
from classp_jax.training.metric_logs import LOG_FORMATS, make_loggers
from classp_jax.training.settings import run_settings, settings_id, tree_bytes
from classp_jax.training.steps import TrainState, cross_entropy, make_evaluate, make_train_chunk

__all__ = [
  "CheckpointError",
  "CheckpointWriteError",
  "Checkpointer",
  "SettingsMismatchError",
  "LoopConfig",
  "check_config",
  "split_validation",
  "ContinualRun",
  "run_continual",
  "LOG_FORMATS",
  "make_loggers",
  "run_settings",
  "settings_id",
  "tree_bytes",
  "TrainState",
  "cross_entropy",
  "make_evaluate",
  "make_train_chunk",
]
