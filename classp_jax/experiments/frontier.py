"""The stability-plasticity frontier: each method swept along its main knobs.

One tuned point per method says who wins at that point only. Sweeping each
method's main knob (CLASSP's threshold and learning rate, EWC's and MAS's
lambda, SI's c, the learning rate of a plain optimizer) traces how much
old-task accuracy the method trades for new-task accuracy, and which method
dominates where is a fairer answer. ``classp-jax run NAME --frontier`` expands
each method with an entry in `Experiment.frontier` into variants named
``METHOD[KNOB=VALUE]``, and each run entry records ``base_method``, ``knob``
and ``value``; the report draws one curve per method and knob.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

from classp_jax.methods import MethodSpec, resolve_method, with_hyperparameter


class MethodVariant(NamedTuple):
  """A method to run: a named method, or one point of its frontier.

  Attributes:
    name: what results call it, e.g. ``classp`` or ``classp[threshold=1e-06]``.
    spec: its optimizer, regularizer and hyperparameters.
    base_method: the method it varies (its own name if it is no variant).
    knob: the swept hyperparameter, or None.
    value: the knob's value here, or None.
  """

  name: str
  spec: MethodSpec
  base_method: str
  knob: str | None = None
  value: Any = None


def variant_name(method_name: str, knob: str, value: Any) -> str:
  """``METHOD[KNOB=VALUE]``, e.g. ``classp[threshold=1e-06]``."""
  shown = f"{value:g}" if isinstance(value, float) else str(value)
  return f"{method_name}[{knob}={shown}]"


def plan_methods(method_names: Sequence[str], specs, frontier=None) -> list[MethodVariant]:
  """The methods to run, in order.

  Args:
    method_names: named methods, bare optimizers or regularizers, or ``a+b``
      (see `classp_jax.methods.resolve_method`).
    specs: the experiment's named methods.
    frontier: if given (`Experiment.frontier`), a method with an entry is run
      at each value of each of its knobs instead of at its own point.

  Raises:
    ValueError: an unknown method or knob.
  """
  planned = []
  for method_name in method_names:
    spec = resolve_method(method_name, specs)
    knobs = (frontier or {}).get(method_name)
    if not knobs:
      planned.append(MethodVariant(method_name, spec, method_name))
      continue
    for knob, values in knobs.items():
      for value in values:
        planned.append(MethodVariant(
            variant_name(method_name, knob, value),
            with_hyperparameter(method_name, spec, knob, value), method_name, knob, value))
  return planned
