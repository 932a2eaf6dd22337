"""The one definition of ``results.json``: typed records, written and read by the same code.

A results file is a `ResultsHeader` (what was run, on what, how) with a list
of ``runs``, one `RunEntry` per (method, seed). `RunEntry.to_json` gives the
dict that is written, key for key; `RunEntry.from_json` reads one back. Keys
that a reader needs (`REQUIRED_TOP_LEVEL_KEYS`, `REQUIRED_RUN_KEYS`) are marked
on the fields themselves, so no other module lists them.

Each run also records what its method is (`MethodInfo`): its family (the
report's plot panel), its reference, and its roles in the studies. The report
reads these instead of knowing methods by name.
"""

from __future__ import annotations

import dataclasses
from typing import Any

# The families a method belongs to, in the order the report shows them.
CLASSP_FAMILY = "CLASSP"
OPTIMIZERS_FAMILY = "optimizers"
# Methods against the loss of plasticity on long streams (UPGD, ...): CLASSP's optimizer-level peers.
PLASTICITY_FAMILY = "plasticity"
REGULARIZERS_FAMILY = "regularizers"
REPLAY_FAMILY = "replay"
DISTILLATION_FAMILY = "distillation"
OTHER_FAMILY = "other"  # a run that records no method_info (older files)
FAMILIES = (
  CLASSP_FAMILY,
  OPTIMIZERS_FAMILY,
  PLASTICITY_FAMILY,
  REGULARIZERS_FAMILY,
  REPLAY_FAMILY,
  DISTILLATION_FAMILY,
  OTHER_FAMILY,
)

# A method's roles in the studies.
REFERENCE = "reference"  # CLASSP at the experiment's point: the paper's claims are about it
PAPER_BASELINE = "paper_baseline"  # a method the paper compares CLASSP with
UPPER_BOUND = "upper_bound"  # joint training on every task so far
LOWER_BOUND = "lower_bound"  # plain fine-tuning
ROLES = (REFERENCE, PAPER_BASELINE, UPPER_BOUND, LOWER_BOUND)


@dataclasses.dataclass(frozen=True)
class MethodInfo:
  """What a method is, as its registry entry or experiment declares it.

  Attributes:
    family: one of `FAMILIES`: the report's plot panel and table order.
    reference: where it comes from (a citation).
    roles: its roles in the studies, among `ROLES`.
    ablation_of: for a variant of another method, that method's name (the
      report compares the two, paired by seed); None otherwise.
    changes: with ``ablation_of``, what the variant changes, e.g.
      ``"p = 2 instead of p = 1"``.
  """

  family: str
  reference: str = ""
  roles: tuple[str, ...] = ()
  ablation_of: str | None = None
  changes: str | None = None

  def __post_init__(self):
    if self.family not in FAMILIES:
      raise ValueError(f"family {self.family!r} is not one of {', '.join(FAMILIES)}")
    unknown = set(self.roles) - set(ROLES)
    if unknown:
      raise ValueError(f"unknown roles {sorted(unknown)}; known: {', '.join(ROLES)}")

  def to_json(self) -> dict[str, Any]:
    return {**dataclasses.asdict(self), "roles": list(self.roles)}

  @classmethod
  def from_json(cls, data: dict[str, Any] | None) -> MethodInfo:
    """The info a run recorded; a run without any reads as family ``other``, no roles."""
    if not data:
      return cls(OTHER_FAMILY)
    return cls(**{**data, "roles": tuple(data.get("roles") or ())})


def _required(**kwargs) -> dataclasses.Field:
  """A field every reader of results.json needs."""
  return dataclasses.field(metadata={"required": True}, **kwargs)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ResultsHeader:
  """The top-level keys of results.json (``runs`` is added when written).

  Attributes:
    experiment: the experiment's name.
    description: its one-line description.
    scenario: ``task``, ``domain`` or ``class``.
    tasks: the task names, in order.
    devices: how many devices trained each run.
    platform: their platform (``cpu``, ``gpu``, ``tpu``).
    loop: the `classp_jax.training.LoopConfig`, as a dict.
    options: the command line: ``command`` and the options that shaped the runs.
  """

  experiment: str = _required()
  description: str = _required()
  scenario: str | None = None
  tasks: list[str] = _required()
  devices: int = _required()
  platform: str = _required()
  loop: dict[str, Any] = _required()
  options: dict[str, Any] = dataclasses.field(default_factory=dict)

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunEntry:
  """One (method, seed) run, as ``classp-jax run`` writes it.

  Attributes:
    method: its name (a frontier point is ``METHOD[KNOB=VALUE]``).
    seed: seeds the init, the data order and dropout.
    settings: the full resolved settings (`classp_jax.training.run_settings`).
    settings_id: their digest without the seed: runs over seeds share it.
    diverged: whether it stopped on a non-finite loss or params.
    diverged_at: the task and first non-finite step, or None.
    accuracy_matrix: ``R[i][j]``, test accuracy on task j after task i (only
      the finished tasks' rows if it diverged).
    baseline: random-init test accuracy per task.
    acc, bwt, forgetting, fwt: the metrics of `classp_jax.metrics` (None if it
      diverged).
    param_count: the model's parameter count.
    scenario: the stream's scenario.
    state_bytes: bytes of the optimizer, regularizer and memory state, replay
      buffers aside (the model's own state aside too).
    buffer_bytes: bytes of the replay buffer (0 without one).
    model_state_bytes: bytes of the model's non-parameter state (BatchNorm's
      running statistics), or None for a model without state.
    steps, epochs: per task, where it stopped.
    epoch_loss, epoch_accuracy: per task, the last epoch's mean training loss and
      accuracy.
    targets_met: per task, whether it stopped at its loss or accuracy target
      (False at ``max_epochs``, None without a target).
    wall_time_s, cpu_time_s: its wall time and the process's CPU time, all its
      threads (a resumed run adds the saved parts).
    history: test accuracy on every task over training (``step``, ``task``,
      ``accuracy``).
    logs: the kept step metrics (``step``, ``task`` and `classp_jax.training.
      metric_logs.STEP_METRICS`).
    reused_checkpoint: whether a finished checkpoint was reused.
    validation_accuracy_matrix: with a validation split, its accuracy matrix.
    paper_protocol: with ``paper_eval``, training-split accuracy with dropout on
      (``accuracy_matrix``, ``acc``, ``bwt``, ``forgetting``).
    command: the command line that made it.
    base_method, knob, value: for a frontier point, the method it varies, the
      knob and its value.
    method_info: what the method is (`MethodInfo.to_json`).
    learning_accuracy: each task's accuracy right after training it (``per_task``, the
      accuracy matrix's diagonal), its ``slope`` over tasks, and the means of the
      ``first`` and ``last`` ``window`` (10) tasks (`classp_jax.metrics.
      learning_accuracy`).
    online_accuracy: per task, the mean accuracy on each incoming training batch before
      its update (dropout on, as the step computes it), for runs whose every task
      trained one pass; None otherwise.
    dormant_units: the ReLU units' dormancy on a fixed probe batch at each task end
      (`classp_jax.metrics.dormant_fraction`): ``per_task`` at ``tau``, ``dead`` (tau
      0), ``layers`` (per layer at ``tau``) and ``probe_examples``; None for a model
      that sows no activations.
    effective_step_size: per task end, the median over weights of ``lr / (eps +
      S)**(1/p)`` for an accumulator method (CLASSP, AdaGrad); None for the others.

  Non-finite values are written as null; optional keys that are None are left out.
  """

  method: str = _required()
  seed: int = _required()
  settings: dict[str, Any] | None = None
  settings_id: str | None = None
  diverged: bool = False
  diverged_at: dict[str, int] | None = None
  accuracy_matrix: list[list[float]] = _required()
  baseline: list[float] | None = None
  acc: float | None = _required()
  bwt: float | None = _required()
  forgetting: float | None = _required()
  fwt: float | None = None
  param_count: int = _required()
  scenario: str | None = None
  state_bytes: int = _required()
  buffer_bytes: int = 0
  model_state_bytes: int | None = None
  steps: list[int] = _required()
  epochs: list[int] = _required()
  epoch_loss: list[float | None] = dataclasses.field(default_factory=list)
  epoch_accuracy: list[float | None] = dataclasses.field(default_factory=list)
  targets_met: list[bool | None] = dataclasses.field(default_factory=list)
  wall_time_s: float = _required()
  cpu_time_s: float | None = None
  history: dict[str, list] = _required()
  logs: dict[str, list] = _required()
  reused_checkpoint: bool = False
  validation_accuracy_matrix: list[list[float]] | None = None
  paper_protocol: dict[str, Any] | None = None
  command: str | None = None
  base_method: str | None = None
  knob: str | None = None
  value: Any = None
  method_info: dict[str, Any] | None = None
  learning_accuracy: dict[str, Any] | None = None
  online_accuracy: list[float] | None = None
  dormant_units: dict[str, Any] | None = None
  effective_step_size: list[float] | None = None

  def to_json(self) -> dict[str, Any]:
    """The entry as written: every field, less the optional ones that are None."""
    data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
    return {k: v for k, v in data.items() if v is not None or k not in _OMITTED_WHEN_NONE}

  @classmethod
  def from_json(cls, data: dict[str, Any]) -> RunEntry:
    """An entry read back; ValueError names a missing key or one the schema does not know."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
      raise ValueError(f"run entry has keys the results schema does not know: {sorted(unknown)}")
    missing = [k for k in REQUIRED_RUN_KEYS if k not in data]
    if missing:
      raise ValueError(f"run entry lacks {', '.join(missing)}")
    return cls(**data)


_OMITTED_WHEN_NONE = frozenset(
  {
    "validation_accuracy_matrix",
    "paper_protocol",
    "command",
    "base_method",
    "knob",
    "value",
    "method_info",
    "model_state_bytes",
    "learning_accuracy",
    "online_accuracy",
    "dormant_units",
    "effective_step_size",
  }
)


def _required_keys(cls) -> tuple[str, ...]:
  return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("required"))


REQUIRED_TOP_LEVEL_KEYS = (*_required_keys(ResultsHeader), "runs")
REQUIRED_RUN_KEYS = _required_keys(RunEntry)
