"""Continual-learning methods: everything about a method, and nothing about the engine.

* `base`: the interfaces (`Regularizer`, `Memory`) and what they see of a run
  (`ConsolidationContext`, `StepBatch`, `ExampleSpec`);
* `regularizers` (EWC, SI, MAS, L2) and `fisher` (their importances);
* `memories` (ER, DER++, A-GEM, LwF), `replay` (the reservoir buffer) and
  `losses` (their loss terms and gradient surgery);
* `registry`: the names ``--methods`` takes, each component's metadata, and
  `build_method`.

A user's own training loop uses these alone; `classp_jax.training` runs them.
"""

from classp_jax.methods.base import (
  NO_REGULARIZER,
  ConsolidationContext,
  ExampleSpec,
  Memory,
  Regularizer,
  StepBatch,
)
from classp_jax.methods.fisher import fisher_diagonal
from classp_jax.methods.memories import agem, derpp, er, lwf, memory_bytes
from classp_jax.methods.registry import (
  Method,
  MethodSpec,
  build_method,
  method_info,
  per_task,
  resolve_method,
  set_hyperparams,
  with_hyperparameter,
)
from classp_jax.methods.regularizers import AnchoredState, EwcState, SiState, ewc, l2, mas, si

__all__ = [
  "NO_REGULARIZER",
  "ConsolidationContext",
  "ExampleSpec",
  "Memory",
  "Regularizer",
  "StepBatch",
  "fisher_diagonal",
  "agem",
  "derpp",
  "er",
  "lwf",
  "memory_bytes",
  "Method",
  "MethodSpec",
  "build_method",
  "method_info",
  "per_task",
  "resolve_method",
  "set_hyperparams",
  "with_hyperparameter",
  "AnchoredState",
  "EwcState",
  "SiState",
  "ewc",
  "l2",
  "mas",
  "si",
]
