"""The method registry: every optimizer, regularizer and memory a method can name,
with what it is.

A method is what `--methods` names on the command line. Its optimizer is any
`optax.GradientTransformation` (CLASSP, SGD, Adam, ...). Its regularizer, if
any, adds a penalty to the task loss and consolidates what it has learned after
each task (EWC, SI, MAS, L2; `classp_jax.methods.regularizers`). Its memory, if
any, keeps past data or the past model and uses them in every step (ER, DER++,
A-GEM, LwF; `classp_jax.methods.memories`). Either combines with any optimizer,
so ``classp+ewc`` is the CLASSP optimizer with the EWC regularizer and
``classp+er`` CLASSP with experience replay. ``finetune`` is plain SGD (the
lower bound) and ``joint`` SGD trained on the union of the tasks so far (the
upper bound); ``OPTIMIZER+joint`` trains another optimizer that way.

Each entry of `OPTIMIZERS`, `REGULARIZERS` and `MEMORIES` is everything about a
component in one place: its name, its factory with its default
hyperparameters, and its `MethodInfo` (its family, for the report's plot
panels; its reference; its roles in the studies). A method built from several
components takes its metadata by `method_info`; a named method of an
experiment may declare its own (`MethodSpec.info`). Adding a method is its
factory in its own module plus one entry here.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any, Callable, Mapping

import numpy as np
import optax

from classp_jax.continual_backprop import continual_backprop
from classp_jax.methods import memories as mems
from classp_jax.methods import regularizers as regs
from classp_jax.methods.base import NO_REGULARIZER, Memory, Regularizer
from classp_jax.optimizer import classp, classp_as_released
from classp_jax.plasticity import shrink_perturb, upgd
from classp_jax.results.schema import (
  CLASSP_FAMILY,
  DISTILLATION_FAMILY,
  LOWER_BOUND,
  OPTIMIZERS_FAMILY,
  PAPER_BASELINE,
  PLASTICITY_FAMILY,
  REFERENCE,
  REGULARIZERS_FAMILY,
  REPLAY_FAMILY,
  UPPER_BOUND,
  MethodInfo,
)


@dataclasses.dataclass(frozen=True)
class Component:
  """An optimizer, regularizer or memory a method can name.

  Attributes:
    factory: builds it from keyword hyperparameters; its signature's defaults
      are the defaults.
    info: what it is (`MethodInfo`).
    activations: the optimizer's ``update`` takes the step's hidden activations
      (``activations=``, see `classp_jax.continual_backprop`), which the engine then
      passes.
  """

  factory: Callable[..., Any]
  info: MethodInfo
  activations: bool = False


_CLASSP = "Ludwig, CLASSP, 2024, https://arxiv.org/abs/2405.09637"
_PYTORCH_DEFAULTS = "as in PyTorch, whose default learning rates the paper's baselines used"

OPTIMIZERS: Mapping[str, Component] = {
  # The method this project is about: the paper's claims are CLASSP's at its point.
  "classp": Component(
    functools.partial(classp, learning_rate=0.1), MethodInfo(CLASSP_FAMILY, _CLASSP, (REFERENCE,))
  ),
  "classp_as_released": Component(
    functools.partial(classp_as_released, learning_rate=0.1),
    MethodInfo(CLASSP_FAMILY, f"{_CLASSP}; the authors' released code"),
  ),
  "sgd": Component(
    functools.partial(optax.sgd, learning_rate=0.1),
    MethodInfo(OPTIMIZERS_FAMILY, "Robbins and Monro, 1951", (PAPER_BASELINE,)),
  ),
  "adam": Component(
    functools.partial(optax.adam, learning_rate=1e-3),
    MethodInfo(
      OPTIMIZERS_FAMILY, "Kingma and Ba, 2015, https://arxiv.org/abs/1412.6980", (PAPER_BASELINE,)
    ),
  ),
  "adagrad": Component(
    functools.partial(optax.adagrad, learning_rate=0.1),
    MethodInfo(OPTIMIZERS_FAMILY, "Duchi, Hazan and Singer, JMLR 2011", (PAPER_BASELINE,)),
  ),
  # Gated SGD: the learning rate of `sgd` above; the paper's utility_decay and sigma.
  "upgd": Component(
    functools.partial(upgd, learning_rate=0.1),
    MethodInfo(
      PLASTICITY_FAMILY, "Elsayed and Mahmood, ICLR 2024, https://arxiv.org/abs/2404.00781"
    ),
  ),
  # SGD with shrink and perturb every step; at task boundaries: shrink_perturb_tasks below.
  "shrink_perturb": Component(
    functools.partial(shrink_perturb, learning_rate=0.1),
    MethodInfo(
      PLASTICITY_FAMILY,
      "Ash and Adams, NeurIPS 2020, https://arxiv.org/abs/1910.08475; every step, as in "
      "Dohare et al., Nature 2024",
    ),
  ),
  # SGD, then reinitialising mature units of low utility: needs the activations.
  "cbp": Component(
    functools.partial(continual_backprop, learning_rate=0.1),
    MethodInfo(
      PLASTICITY_FAMILY,
      "Dohare et al., Nature 2024, https://www.nature.com/articles/s41586-024-07711-7",
    ),
    activations=True,
  ),
}

REGULARIZERS: Mapping[str, Component] = {
  "ewc": Component(
    regs.ewc,
    MethodInfo(
      REGULARIZERS_FAMILY,
      "Kirkpatrick et al., PNAS 2017, https://arxiv.org/abs/1612.00796",
      (PAPER_BASELINE,),
    ),
  ),
  "ewc_online": Component(
    functools.partial(regs.ewc, mode="online"),
    MethodInfo(REGULARIZERS_FAMILY, "Schwarz et al., ICML 2018, https://arxiv.org/abs/1805.06370"),
  ),
  "si": Component(
    regs.si,
    MethodInfo(
      REGULARIZERS_FAMILY, "Zenke, Poole and Ganguli, ICML 2017, https://arxiv.org/abs/1703.04200"
    ),
  ),
  "mas": Component(
    regs.mas,
    MethodInfo(REGULARIZERS_FAMILY, "Aljundi et al., ECCV 2018, https://arxiv.org/abs/1711.09601"),
  ),
  "l2": Component(
    regs.l2, MethodInfo(REGULARIZERS_FAMILY, "an L2 penalty towards the previous tasks' params")
  ),
  "l2_init": Component(
    regs.l2_init,
    MethodInfo(
      PLASTICITY_FAMILY,
      "Kumar, Marklund and Van Roy, CoLLAs 2024, https://arxiv.org/abs/2308.11958",
    ),
  ),
  "shrink_perturb_tasks": Component(
    regs.shrink_perturb_tasks,
    MethodInfo(
      PLASTICITY_FAMILY,
      "Ash and Adams, NeurIPS 2020, https://arxiv.org/abs/1910.08475; at task boundaries",
    ),
  ),
}

MEMORIES: Mapping[str, Component] = {
  "er": Component(
    mems.er, MethodInfo(REPLAY_FAMILY, "Chaudhry et al., 2019, https://arxiv.org/abs/1902.10486")
  ),
  "derpp": Component(
    mems.derpp,
    MethodInfo(REPLAY_FAMILY, "Buzzega et al., NeurIPS 2020, https://arxiv.org/abs/2004.07211"),
  ),
  "agem": Component(
    mems.agem,
    MethodInfo(REPLAY_FAMILY, "Chaudhry et al., ICLR 2019, https://arxiv.org/abs/1812.00420"),
  ),
  "lwf": Component(
    mems.lwf,
    MethodInfo(DISTILLATION_FAMILY, "Li and Hoiem, TPAMI 2017, https://arxiv.org/abs/1606.09282"),
  ),
}

# Names the field uses for plain SGD (the lower bound) and joint training (the upper bound).
ALIASES: Mapping[str, MethodInfo] = {
  "finetune": MethodInfo(OPTIMIZERS_FAMILY, "plain SGD on each task in turn", (LOWER_BOUND,)),
  "joint": MethodInfo(OPTIMIZERS_FAMILY, "SGD on the union of the tasks so far", (UPPER_BOUND,)),
}


def per_task(value: Any, task_index: int) -> Any:
  """A per-task setting: a tuple or list gives one value per task, the last repeating."""
  if isinstance(value, (tuple, list)):
    if not value:
      raise ValueError("a per-task setting needs at least one value")
    return value[min(task_index, len(value) - 1)]
  return value


@dataclasses.dataclass(frozen=True)
class MethodSpec:
  """A named method of an experiment: an optimizer and an optional regularizer or memory.

  Attributes:
    optimizer: a key of `optimizers()`.
    hparams: the optimizer's keyword arguments; a tuple gives one value per
      task (the last repeating), e.g. ``{"threshold": (0.5, 0.0)}``.
    regularizer: a key of `regularizers()`, or None.
    reg_hparams: the regularizer's keyword arguments.
    memory: a key of `memories()`, or None.
    memory_hparams: the memory's keyword arguments.
    joint: train each task on the union of the tasks so far (the upper bound;
      `classp_jax.data.joint_stream`).
    loss_targets: per-task training-loss targets for this method, replacing
      the experiment's loss and accuracy targets (the paper's "controlled"
      sentiment protocol stops each method at its own target; a run with an
      accuracy target finds them).
    reset_optimizer_state: re-initialise the optimizer state at each task
      boundary (the params, and the regularizer's or memory's state, carry
      over). A study of CLASSP under this intervention found that it raises
      plasticity and forgetting.
    info: what the method is, for the report (its family, reference and roles
      in the studies); None: from its components (`method_info`). Not a
      setting: it never changes what a run computes, so run settings leave
      it out.
    dropout: the model's dropout rate for this method (Stable SGD's), set on a
      model with a ``dropout`` field (`classp_jax.models.MLP`); None: the
      experiment's model as it is.
  """

  optimizer: str
  hparams: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  regularizer: str | None = None
  reg_hparams: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  loss_targets: tuple[float | None, ...] | None = None
  memory: str | None = None
  memory_hparams: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  joint: bool = False
  reset_optimizer_state: bool = False
  info: MethodInfo | None = dataclasses.field(default=None, compare=False)
  dropout: float | None = None


@dataclasses.dataclass(frozen=True)
class Method:
  """A method ready to train: built by `build_method`.

  Attributes:
    name: what results and plots call it.
    tx: the optimizer, wrapped in ``optax.inject_hyperparams`` so that
      per-task hyperparameters change its state, not its code.
    task_hparams: for each task, the injected hyperparameter values.
    regularizer: the regularizer (one that does nothing for plain optimizers).
    spec: what it was built from.
    memory: the replay or distillation memory, or None.
    activations: the optimizer takes the step's hidden activations (`Component`).
  """

  name: str
  tx: optax.GradientTransformation
  task_hparams: tuple[dict[str, Any], ...]
  regularizer: Regularizer
  spec: MethodSpec
  memory: Memory | None = None
  activations: bool = False

  @property
  def info(self) -> MethodInfo:
    """What the method is (`method_info`)."""
    return method_info(self.spec)

  @property
  def loss_targets(self) -> tuple[float | None, ...] | None:
    """Per-task loss targets replacing the experiment's targets, or None."""
    return self.spec.loss_targets


def optimizers() -> dict[str, Callable[..., optax.GradientTransformation]]:
  """The optimizers a method can name, with their default hyperparameters."""
  return {name: c.factory for name, c in OPTIMIZERS.items()}


def regularizers() -> dict[str, Callable[..., Regularizer]]:
  """The regularizers a method can name, with their default hyperparameters."""
  return {name: c.factory for name, c in REGULARIZERS.items()}


def memories() -> dict[str, Callable[..., Memory]]:
  """The replay and distillation memories a method can name, with their defaults."""
  return {name: c.factory for name, c in MEMORIES.items()}


def method_info(spec: MethodSpec) -> MethodInfo:
  """What a method is: its own `MethodSpec.info`, else its components'.

  A memory sets the family (replay or distillation), then a CLASSP optimizer,
  then a regularizer, then the optimizer. The roles and reference are those of
  the memory or regularizer if there is one (``sgd+ewc`` is EWC), else the
  optimizer's; a combination of CLASSP with another component (``classp+er``)
  takes no role, since the studies' roles are of single methods, and joint
  training is the upper bound.
  """
  if spec.info is not None:
    return spec.info
  optimizer = OPTIMIZERS[spec.optimizer].info
  addition = (
    MEMORIES[spec.memory].info
    if spec.memory
    else REGULARIZERS[spec.regularizer].info
    if spec.regularizer
    else None
  )
  if spec.joint:
    return ALIASES["joint"]
  if addition is None:
    return optimizer
  family = addition.family if spec.memory or optimizer.family != CLASSP_FAMILY else optimizer.family
  roles = () if optimizer.family == CLASSP_FAMILY else addition.roles
  return dataclasses.replace(addition, family=family, roles=roles)


def resolve_method(name: str, specs: Mapping[str, MethodSpec]) -> MethodSpec:
  """The `MethodSpec` a method name stands for.

  ``name`` is a key of ``specs``; a bare optimizer; a regularizer or memory
  (alone it trains with ``specs["sgd"]``'s optimizer); ``finetune`` (SGD) or
  ``joint`` (SGD on the union of the tasks so far); or ``a+b``: ``a``'s
  optimizer with ``b``'s regularizer or memory (``classp+ewc``,
  ``classp+er``), or trained jointly (``adam+joint``).

  Raises:
    ValueError: for an unknown name, listing the known ones.
  """
  sgd = specs.get("sgd", MethodSpec("sgd"))
  if "+" in name:
    optimizer_name, _, addition_name = name.partition("+")
    base = resolve_method(optimizer_name, specs)
    if base.regularizer is not None or base.memory is not None or base.joint:
      raise ValueError(f"in {name!r}, {optimizer_name!r} must be a plain optimizer")
    if addition_name == "joint":
      return dataclasses.replace(base, joint=True, info=None)
    addition = resolve_method(addition_name, specs)
    if addition.regularizer is None and addition.memory is None:
      raise ValueError(f"in {name!r}, {addition_name!r} must be a regularizer, a memory or joint")
    return dataclasses.replace(
      base,
      regularizer=addition.regularizer,
      reg_hparams=addition.reg_hparams,
      memory=addition.memory,
      memory_hparams=addition.memory_hparams,
      info=None,
    )
  if name in specs:
    return specs[name]
  if name in optimizers():
    return MethodSpec(name)
  if name in ALIASES:
    return dataclasses.replace(sgd, joint=name == "joint", info=ALIASES[name])
  if name in PRESETS:
    return PRESETS[name]()
  if name in regularizers():
    return dataclasses.replace(sgd, regularizer=name, info=None)
  if name in memories():
    return dataclasses.replace(sgd, memory=name, info=None)
  known = sorted(
    set(specs) | set(OPTIMIZERS) | set(REGULARIZERS) | set(MEMORIES) | set(ALIASES) | set(PRESETS)
  )
  raise ValueError(
    f"unknown method {name!r}; known: {', '.join(known)}, or "
    "OPTIMIZER+REGULARIZER, OPTIMIZER+MEMORY, OPTIMIZER+joint"
  )


def with_hyperparameter(method_name: str, spec: MethodSpec, name: str, value: Any) -> MethodSpec:
  """``spec`` with its regularizer's, memory's or else its optimizer's hyperparameter ``name`` set
  (or, for ``reset_optimizer_state``, the method's own setting).

  Raises:
    ValueError: none takes ``name``; the message lists what they take.
  """
  if name == "reset_optimizer_state":
    if not isinstance(value, bool):
      raise ValueError(f"{method_name}: reset_optimizer_state must be true or false, got {value!r}")
    return dataclasses.replace(spec, reset_optimizer_state=value)
  if name == "dropout":
    if value is not None and not (isinstance(value, (int, float)) and 0 <= value < 1):
      raise ValueError(f"{method_name}: dropout must be a rate in [0, 1) or none, got {value!r}")
    return dataclasses.replace(spec, dropout=value)
  reg_params = (
    inspect.signature(regularizers()[spec.regularizer]).parameters if spec.regularizer else {}
  )
  memory_params = inspect.signature(memories()[spec.memory]).parameters if spec.memory else {}
  opt_params = inspect.signature(optimizers()[spec.optimizer]).parameters
  if name in reg_params:
    return dataclasses.replace(spec, reg_hparams={**spec.reg_hparams, name: value})
  if name in memory_params:
    return dataclasses.replace(spec, memory_hparams={**spec.memory_hparams, name: value})
  if name in opt_params:
    return dataclasses.replace(spec, hparams={**spec.hparams, name: value})
  raise ValueError(
    f"{method_name} has no hyperparameter {name!r}; known: "
    f"{', '.join(sorted(set(opt_params) | set(reg_params) | set(memory_params)))}"
  )


def _check_hyperparameters(name: str, factory: Callable, values: Mapping[str, Any]) -> None:
  """Rejects non-numbers where ``factory`` defaults to a number, non-finite numbers, and a
  negative learning rate or strength."""
  defaults = inspect.signature(factory).parameters
  for key, value in values.items():
    default = defaults[key].default if key in defaults else None
    numeric = key == "learning_rate" or (
      isinstance(default, (int, float)) and not isinstance(default, bool)
    )
    if isinstance(value, str) and numeric:
      raise ValueError(f"{name}: {key} must be a number, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
      continue
    if not np.isfinite(value):
      raise ValueError(f"{name}: {key} must be finite, got {value!r}")
    if key == "learning_rate" and value < 0:
      raise ValueError(f"{name}: learning_rate must be non-negative, got {value!r}")
    if key == "strength" and value < 0:
      raise ValueError(f"{name}: strength must be non-negative, got {value!r}")


def _build_component(
  name: str,
  kind: str,
  registry: Mapping[str, Callable],
  key: str | None,
  hparams: Mapping[str, Any],
) -> Any:
  """The regularizer or memory ``key`` of ``registry`` built with ``hparams``, or None."""
  if key is None:
    return None
  if key not in registry:
    raise ValueError(f"unknown {kind} {key!r}; known: {', '.join(registry)}")
  _check_hyperparameters(name, registry[key], hparams)
  try:
    return registry[key](**hparams)
  except TypeError as error:
    raise ValueError(f"{name}: {error}") from None


def build_method(name: str, spec: MethodSpec, num_tasks: int) -> Method:
  """Builds the optimizer and regularizer of ``spec`` for ``num_tasks`` tasks.

  Hyperparameters that change between tasks are injected; a boolean one (e.g.
  ``apply_scaling``) is injected as 0.0/1.0. Every task's values are checked
  now, by the optimizer's and regularizer's own checks, so that a bad value
  fails before any training.

  Raises:
    ValueError: an unknown optimizer or regularizer, or a bad hyperparameter.
  """
  if spec.optimizer not in optimizers():
    raise ValueError(f"unknown optimizer {spec.optimizer!r}; known: {', '.join(optimizers())}")
  per_task_values = [{k: per_task(v, t) for k, v in spec.hparams.items()} for t in range(num_tasks)]
  factory = optimizers()[spec.optimizer]
  for hparams in per_task_values:
    _check_hyperparameters(name, factory, hparams)
    try:
      factory(**hparams)
    except TypeError as error:
      raise ValueError(f"{name}: {error}") from None
  varying = {k for k in spec.hparams if len({repr(h[k]) for h in per_task_values}) > 1}
  for hparams in per_task_values:
    for k in varying:
      if isinstance(hparams[k], bool):
        hparams[k] = float(hparams[k])
  tx = optax.inject_hyperparams(factory)(**per_task_values[0])
  regularizer = (
    _build_component(name, "regularizer", regularizers(), spec.regularizer, spec.reg_hparams)
    or NO_REGULARIZER
  )
  memory = _build_component(name, "memory", memories(), spec.memory, spec.memory_hparams)
  return Method(
    name,
    tx,
    tuple({k: h[k] for k in varying} for h in per_task_values),
    regularizer,
    spec,
    memory,
    OPTIMIZERS[spec.optimizer].activations,
  )


def set_hyperparams(opt_state: Any, values: Mapping[str, Any], put: Callable[[Any], Any]) -> Any:
  """Sets injected hyperparameters in an ``inject_hyperparams`` state.

  Args:
    opt_state: the state of an ``optax.inject_hyperparams`` optimizer.
    values: new values by name; each keeps its old dtype, so the step does not
      recompile.
    put: places a host array where the state lives (e.g. replicated).

  Returns:
    The state with the new values.
  """
  if not values:
    return opt_state
  unknown = set(values) - set(opt_state.hyperparams)
  if unknown:
    raise ValueError(
      f"cannot change {sorted(unknown)} between tasks: not injectable hyperparameters "
      f"(injectable: {sorted(opt_state.hyperparams)})"
    )
  new = {k: put(np.asarray(v, dtype=opt_state.hyperparams[k].dtype)) for k, v in values.items()}
  return opt_state._replace(hyperparams={**opt_state.hyperparams, **new})


STABLE_SGD_INFO = MethodInfo(
  PLASTICITY_FAMILY, "Mirzadeh et al., NeurIPS 2020, https://arxiv.org/abs/2006.06958"
)


def stable_sgd(
  learning_rate: float = 0.1,
  decay: float = 0.8,
  dropout: float = 0.25,
  min_learning_rate: float = 5e-5,
) -> MethodSpec:
  r"""Stable SGD (Mirzadeh et al. 2020): a named preset of SGD's per-task learning rate and
  the model's dropout.

  Task :math:`t` (from 0) trains with

  .. math::

    \alpha_t = \max(\alpha_0 \gamma^t, \alpha_{\min}),

  as the authors' code decays it (``lr * gamma ** task`` floored at 5e-5), and the
  model's dropout at ``dropout`` (their permuted MNIST: :math:`\alpha_0 = 0.1`,
  :math:`\gamma = 0.8`, dropout 0.25, batch size 10). The learning rates are a
  per-task tuple (`per_task`: its last value, the floor, repeats), so the optimizer
  state carries over and nothing recompiles.

  Args:
    learning_rate: :math:`\alpha_0`.
    decay: :math:`\gamma \in (0, 1]`.
    dropout: the model's dropout rate (`MethodSpec.dropout`).
    min_learning_rate: :math:`\alpha_{\min}`.

  Returns:
    The `MethodSpec` (SGD), with `STABLE_SGD_INFO`.

  Examples:
    >>> spec = stable_sgd(0.1, decay=0.5, min_learning_rate=0.02)
    >>> spec.hparams["learning_rate"], spec.dropout
    ((0.1, 0.05, 0.025, 0.02), 0.25)
  """
  if not 0 < decay <= 1:
    raise ValueError(f"decay must be in (0, 1], got {decay!r}")
  rates = [float(learning_rate)]
  while decay < 1 and learning_rate * decay ** len(rates) > min_learning_rate:
    rates.append(float(f"{learning_rate * decay ** len(rates):.6g}"))
  if decay < 1 and rates[-1] > min_learning_rate:
    rates.append(float(min_learning_rate))
  value = tuple(rates) if len(rates) > 1 else rates[0]
  return MethodSpec("sgd", {"learning_rate": value}, dropout=dropout, info=STABLE_SGD_INFO)


# Named presets of existing knobs, by name: `resolve_method` gives their defaults.
PRESETS: Mapping[str, Callable[[], MethodSpec]] = {"stable_sgd": stable_sgd}
