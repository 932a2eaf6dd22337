"""What the loop measures of plasticity on long streams, and how it bounds their evaluation.

* `PlasticityProbe`: at each task end, the dormant units of the model on a fixed probe
  batch (`classp_jax.metrics.dormant_fraction`) and an accumulator method's effective
  step size (`classp_jax.diagnostics.effective_step_size`);
* `activations_apply`: the train-mode forward pass that also returns the hidden
  activations, for a method whose optimizer takes them (Continual Backprop);
* `scored_tasks`: which tasks a task end evaluates under ``LoopConfig.eval_tasks_sample``.

The models sow their activations (`classp_jax.models.ACTIVATIONS`); a model that sows none
(the Transformer, the ResNet) has no dormant units recorded.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import numpy as np

from classp_jax.data import TaskStream
from classp_jax.diagnostics import effective_step_size
from classp_jax.mesh import to_host
from classp_jax.metrics import dormant_fraction, learning_accuracy
from classp_jax.models import ACTIVATIONS, unit_activations
from classp_jax.training.evaluation import data_parallel_model

# The dormant-unit thresholds recorded: tau = 0 counts the dead ReLU units (zero on every
# probe input), DORMANT_TAU the dormant ones, as Sokar et al. (2023) use for such MLPs.
DORMANT_TAU = 0.01
# Probe inputs, drawn evenly from every task's test split (seed 0): the same for every
# method, seed and task end, and covering every task's input distribution.
PROBE_EXAMPLES = 512


def check_sows_activations(model: nn.Module, stream: TaskStream, method_name: str) -> None:
  """Raises ValueError unless ``model`` sows hidden ReLU activations (`ACTIVATIONS`, as the
  MLP and the paper's CNN do), which a method whose optimizer takes them needs (Continual
  Backprop's units). Abstract evaluation only: nothing is compiled or run."""
  dummy = jax.ShapeDtypeStruct((1, *stream.input_shape), stream.tasks[0].train.inputs.dtype)

  def sown(x):
    variables = model.init({"params": jax.random.key(0)}, x, train=False)
    state = [k for k in variables if k != "params"]
    _, updated = model.apply(
      variables, x, train=True, rngs={"dropout": jax.random.key(1)}, mutable=[*state, ACTIVATIONS]
    )
    return dict(updated).get(ACTIVATIONS, {})

  if not jax.tree.leaves(jax.eval_shape(sown, dummy)):
    raise ValueError(
      f"{method_name} replaces hidden ReLU units, and {type(model).__name__} exposes none "
      "(it sows no activations, `classp_jax.models.sow_relu`); the MLP and the paper's CNN do"
    )


@functools.lru_cache(maxsize=16)
def activations_apply(model: nn.Module, mesh) -> Callable:
  """``(params, model_state, inputs, rng) -> (logits, model_state, activations)`` in train
  mode, ``activations`` by hidden layer (`classp_jax.models.unit_activations`): one forward
  pass, as the engine's ``train_apply`` with the sown activations besides. Cached per model
  and mesh, so that runs of one method share the compiled step."""
  model = data_parallel_model(model, mesh)

  def apply(params, model_state, inputs, rng):
    mutable = [*model_state, ACTIVATIONS]
    logits, updated = model.apply(
      {"params": params, **(model_state or {})},
      inputs,
      train=True,
      rngs={"dropout": rng},
      mutable=mutable,
    )
    updated = dict(updated)
    acts = unit_activations(updated.pop(ACTIVATIONS, {}))
    new_state = {**model_state, **updated} if model_state else model_state
    return logits, new_state, acts

  return apply


def scored_tasks(num_tasks: int, t: int, sample: int | None) -> list[int] | None:
  """The tasks scored at the end of task ``t`` under ``LoopConfig.eval_tasks_sample``.

  None (every task) without a sample, and at the last task (its row gives ACC and BWT).
  Otherwise task ``t`` itself (the learning accuracy, BWT), task ``t + 1`` (forward
  transfer), and a fixed sample of ``sample`` tasks drawn once from all of them by
  ``numpy.random.default_rng(0)``: the same for every method, seed and row, so the sampled
  columns of the accuracy matrix are complete and comparable across methods.

  >>> scored_tasks(50, 3, 4)  # tasks 3 and 4, and the sample 18, 23, 36 and 4
  [3, 4, 18, 23, 36]
  >>> print(scored_tasks(50, 49, 4))
  None
  """
  if sample is None or t == num_tasks - 1 or sample >= num_tasks:
    return None
  fixed = np.random.default_rng(0).permutation(num_tasks)[:sample]
  return sorted({t, *((t + 1,) if t + 1 < num_tasks else ()), *(int(j) for j in fixed)})


def _probe_inputs(stream: TaskStream, size: int) -> np.ndarray:
  """``size`` test inputs, ``ceil(size / T)`` of each task's (the last tasks' cut short)."""
  rng = np.random.default_rng(0)
  per_task = -(-size // len(stream.tasks))
  picked = [
    task.test.inputs[np.sort(rng.permutation(len(task.test.labels))[:per_task])]
    for task in stream.tasks
  ]
  return np.concatenate(picked)[:size]


class PlasticityProbe:
  """Dormant units and the effective step size at a task end (see the module docstring).

  Args:
    model: the model trained (eval mode on the probe: dropout off).
    stream: the stream, whose test splits give the probe batch.
  """

  def __init__(self, model: nn.Module, stream: TaskStream):
    self._probe = None if stream.vocab is not None else _probe_inputs(stream, PROBE_EXAMPLES)

    def activations(params, model_state, inputs):
      _, sown = model.apply(
        {"params": params, **(model_state or {})}, inputs, train=False, mutable=[ACTIVATIONS]
      )
      return unit_activations(sown.get(ACTIVATIONS, {}))

    self._activations = jax.jit(activations)

  def dormant(self, params, model_state) -> dict[str, Any] | None:
    """``{"dead": fraction at tau 0, "dormant": fraction at DORMANT_TAU, "layers": by layer
    at DORMANT_TAU}``, or None for a model that sows no activations."""
    if self._probe is None:
      return None
    acts = self._activations(params, model_state, self._probe)
    if not acts:
      return None
    acts = {name: to_host(h) for name, h in acts.items()}
    dead, _ = dormant_fraction(acts, 0.0)
    dormant, layers = dormant_fraction(acts, DORMANT_TAU)
    return {"dead": dead, "dormant": dormant, "layers": layers}

  @staticmethod
  def step_size(opt_state) -> float | None:
    """`classp_jax.diagnostics.effective_step_size` of the state, on the host."""
    return effective_step_size(jax.tree.map(to_host, opt_state))


def dormant_record(entries: Sequence[dict[str, Any] | None]) -> dict[str, Any] | None:
  """The results' ``dormant_units`` from each task end's `PlasticityProbe.dormant`."""
  if not entries or any(e is None for e in entries):
    return None
  layers = {name: [e["layers"][name] for e in entries] for name in entries[0]["layers"]}
  return {
    "tau": DORMANT_TAU,
    "per_task": [e["dormant"] for e in entries],
    "dead": [e["dead"] for e in entries],
    "layers": layers,
    "probe_examples": PROBE_EXAMPLES,
  }


def new_plasticity_record() -> dict[str, list]:
  """What `RunRecord.plasticity` holds, one entry per finished task."""
  return {"online_accuracy": [], "dormant": [], "effective_step_size": []}


def record_task_end(
  record: dict[str, list], probe: PlasticityProbe, state, means: dict[str, float], epochs: int
) -> None:
  """Appends a task end's plasticity measures to ``record`` (`new_plasticity_record`): the
  online accuracy (the task's mean accuracy on each incoming batch before its update, when
  it trained one pass), the dormant units and the effective step size."""
  one_pass = epochs == 1 and np.isfinite(means["accuracy"])
  record["online_accuracy"].append(float(means["accuracy"]) if one_pass else None)
  record["dormant"].append(probe.dormant(state.params, state.model_state))
  record["effective_step_size"].append(probe.step_size(state.opt_state))


def plasticity_entry(rows: list, record: dict[str, list]) -> dict[str, Any]:
  """The results entry's ``learning_accuracy``, ``online_accuracy``, ``dormant_units`` and
  ``effective_step_size`` (`classp_jax.results.RunEntry`), each None where not measured:
  online accuracy unless every task trained one pass, the step size for a method without
  an accumulator."""
  online, steps = record["online_accuracy"], record["effective_step_size"]
  return {
    "learning_accuracy": learning_accuracy(rows) if rows else None,
    "online_accuracy": online if online and all(a is not None for a in online) else None,
    "dormant_units": dormant_record(record["dormant"]),
    "effective_step_size": steps if steps and all(s is not None for s in steps) else None,
  }
