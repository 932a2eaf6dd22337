"""CLASSP for JAX: Continual Learning through Adjustment Suppression and Sparsity Promotion.

Ludwig (2024), https://arxiv.org/abs/2405.09637

The public names below are imported on first use, so that ``import
classp_jax.results`` (reading results, writing a report) does not start JAX.

* the optimizer (`classp_jax.optimizer`) and its diagnostics (`classp_jax.diagnostics`);
* the methods (`classp_jax.methods`): regularizers, memories and the registry;
* the training engine (`classp_jax.training`): `run_continual` and `LoopConfig`.
"""

import importlib

__version__ = "0.1.0"

_HOMES = {
  "classp_jax.optimizer": (
    "ClasspAsReleasedState",
    "ScaleByGeneralizedAdagradState",
    "classp",
    "classp_as_released",
    "scale_by_classp_as_released",
    "scale_by_generalized_adagrad",
    "threshold_mask",
  ),
  "classp_jax.diagnostics": ("Sparsity", "capacity_used", "update_fraction"),
  "classp_jax.methods": (
    "fisher_diagonal",
    "AnchoredState",
    "ConsolidationContext",
    "EwcState",
    "Regularizer",
    "SiState",
    "ewc",
    "l2",
    "mas",
    "si",
    "Memory",
    "er",
    "derpp",
    "agem",
    "lwf",
    "MethodSpec",
    "build_method",
  ),
  "classp_jax.training": ("LoopConfig", "run_continual"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = list(_HOME_OF)


def __getattr__(name: str):
  if name not in _HOME_OF:
    raise AttributeError(f"module 'classp_jax' has no attribute {name!r}")
  value = getattr(importlib.import_module(_HOME_OF[name]), name)
  globals()[name] = value  # imported once
  return value


def __dir__() -> list[str]:
  return sorted([*globals(), *__all__])
