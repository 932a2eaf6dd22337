"""The stability-plasticity frontier: each method swept along its main knobs.

One tuned point per method says who wins at that point only. Sweeping each
method's main knob (CLASSP's threshold and learning rate, EWC's and MAS's
lambda, SI's c, the learning rate of a plain optimizer) traces how much
old-task accuracy the method trades for new-task accuracy, and which method
dominates where is a fairer answer. ``classp-jax run NAME --frontier`` expands
each method with a `Sweep` in `Experiment.frontier` into variants named
``METHOD[KNOB=VALUE]``, and each run entry records ``base_method``, ``knob``
and ``value``; the report draws one curve per method and knob, and selects
each method's best point on validation accuracy.

Knobs are swept one at a time around a centre (`Sweep.at`), not as a product
grid: a method with a learning rate and a strength costs the sum of the two
grids, not their product. The centre is a point of every grid, so a best
point is interior in the knobs its curve holds fixed; whether it is interior
in its own knob is what the report's *grid edge* column says.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, NamedTuple, Sequence

from classp_jax.methods import MethodSpec, resolve_method, with_hyperparameter


class Sweep(NamedTuple):
  """A method's frontier: its knobs, each swept with the others at the centre.

  Attributes:
    knobs: the values of each swept hyperparameter, e.g.
      ``{"learning_rate": (0.01, 0.03, 0.1), "strength": (1, 10, 100)}``.
    at: the centre, hyperparameters set on every point before its knob
      (e.g. ``{"learning_rate": 0.03, "strength": 10}``); empty: the
      method's own point.
  """

  knobs: Mapping[str, Sequence[Any]]
  at: Mapping[str, Any] = {}


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


_VARIANT = re.compile(r"(?P<method>[^\[\]]+)\[(?P<knob>[^=\]]+)=(?P<value>[^\]]+)\]")


def _variant(method_name: str, spec, sweep: Sweep, knob: str, value: Any) -> MethodVariant:
  for name, centre in sweep.at.items():
    spec = with_hyperparameter(method_name, spec, name, centre)
  return MethodVariant(variant_name(method_name, knob, value),
                       with_hyperparameter(method_name, spec, knob, value),
                       method_name, knob, value)


def _point(name: str, specs, frontier: Mapping[str, Sweep]) -> MethodVariant:
  """The variant named ``METHOD[KNOB=VALUE]``: a point of the grid, or beyond it (to extend
  the grid) with the same centre."""
  match = _VARIANT.fullmatch(name)
  base, knob = match["method"], match["knob"]
  sweep = frontier.get(base)
  if sweep is None or knob not in sweep.knobs:
    raise ValueError(f"{name!r}: {base} has no frontier knob {knob!r}"
                     + (f"; its knobs: {', '.join(sweep.knobs)}" if sweep else ""))
  on_grid = [v for v in sweep.knobs[knob] if variant_name(base, knob, v) == name]
  if on_grid:
    value = on_grid[0]
  else:
    try:
      value = float(match["value"])
    except ValueError:
      raise ValueError(f"{name!r}: {match['value']!r} is not a number") from None
    grid = sweep.knobs[knob]
    if all(isinstance(v, int) and not isinstance(v, bool) for v in grid):
      value = int(value) if value.is_integer() else value
  return _variant(base, resolve_method(base, specs), sweep, knob, value)


def plan_methods(method_names: Sequence[str], specs,
                 frontier: Mapping[str, Sweep] | None = None) -> list[MethodVariant]:
  """The methods to run, in order.

  Args:
    method_names: named methods, bare optimizers or regularizers, or ``a+b``
      (see `classp_jax.methods.resolve_method`); with ``frontier``, also one
      point of a frontier, ``METHOD[KNOB=VALUE]`` as `variant_name` writes it
      (e.g. to add seeds to a selected point), on its grid or beyond it with
      the same centre (to extend a grid whose best point is at its edge).
    specs: the experiment's named methods.
    frontier: if given (`Experiment.frontier`), a method with a `Sweep` is
      run at each value of each of its knobs instead of at its own point.

  Raises:
    ValueError: an unknown method or knob, or a point's value that is no number.

  Examples:
    >>> frontier = {"sgd": Sweep({"learning_rate": (0.01, 0.1)})}
    >>> [v.name for v in plan_methods(["sgd"], {}, frontier)]
    ['sgd[learning_rate=0.01]', 'sgd[learning_rate=0.1]']
    >>> plan_methods(["sgd[learning_rate=0.1]"], {}, frontier)[0].spec.hparams
    {'learning_rate': 0.1}
    >>> plan_methods(["sgd[learning_rate=1]"], {}, frontier)[0].value  # beyond the grid
    1.0
  """
  planned = []
  for method_name in method_names:
    if frontier and _VARIANT.fullmatch(method_name):
      planned.append(_point(method_name, specs, frontier))
      continue
    spec = resolve_method(method_name, specs)
    sweep = (frontier or {}).get(method_name)
    planned += ([_variant(method_name, spec, sweep, knob, value)
                 for knob, values in sweep.knobs.items() for value in values] if sweep else
                [MethodVariant(method_name, spec, method_name)])
  return planned
