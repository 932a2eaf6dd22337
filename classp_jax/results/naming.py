"""The one home of the ``METHOD[KNOB=VALUE]`` rule: how a frontier point is named.

``classp-jax run --frontier`` names each point of a method's sweep this way,
results record it as the run's ``method`` (with ``base_method``, ``knob`` and
``value``), and ``classp-jax select`` prints it back for ``--methods``.
"""

from __future__ import annotations

import re
from typing import Any

_VARIANT = re.compile(r"(?P<method>[^\[\]]+)\[(?P<knob>[^=\]]+)=(?P<value>[^\]]+)\]")


def variant_name(method_name: str, knob: str, value: Any) -> str:
  """``METHOD[KNOB=VALUE]``, e.g. ``classp[threshold=1e-06]``.

  Examples:
    >>> variant_name("classp", "threshold", 1e-6)
    'classp[threshold=1e-06]'
    >>> variant_name("er", "buffer_size", 200)
    'er[buffer_size=200]'
  """
  shown = f"{value:g}" if isinstance(value, float) else str(value)
  return f"{method_name}[{knob}={shown}]"


def parse_variant(name: str) -> tuple[str, str, str] | None:
  """``(method, knob, value text)`` of a ``METHOD[KNOB=VALUE]`` name, or None for another name.

  Examples:
    >>> parse_variant("classp[threshold=1e-06]")
    ('classp', 'threshold', '1e-06')
    >>> parse_variant("classp+er") is None
    True
  """
  match = _VARIANT.fullmatch(name)
  return None if match is None else (match["method"], match["knob"], match["value"])


def is_variant(run: dict[str, Any]) -> bool:
  """Whether a run entry is a frontier point (it records the ``knob`` it varies)."""
  return run.get("knob") is not None
