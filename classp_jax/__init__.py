"""CLASSP for JAX: Continual Learning through Adjustment Suppression and Sparsity Promotion.

Ludwig (2024), https://arxiv.org/abs/2405.09637
"""

# --- optimizer (optimizer.py) ---
from classp_jax.optimizer import ClasspAsReleasedState
from classp_jax.optimizer import ScaleByGeneralizedAdagradState
from classp_jax.optimizer import classp
from classp_jax.optimizer import classp_as_released
from classp_jax.optimizer import scale_by_classp_as_released
from classp_jax.optimizer import scale_by_generalized_adagrad
from classp_jax.optimizer import threshold_mask
# --- diagnostics (diagnostics.py) ---
from classp_jax.diagnostics import Sparsity
from classp_jax.diagnostics import capacity_used
from classp_jax.diagnostics import update_fraction
# --- baselines (fisher.py, regularizers.py) ---
from classp_jax.fisher import fisher_diagonal
from classp_jax.regularizers import AnchoredState
from classp_jax.regularizers import ConsolidationContext
from classp_jax.regularizers import EwcState
from classp_jax.regularizers import Regularizer
from classp_jax.regularizers import SiState
from classp_jax.regularizers import ewc
from classp_jax.regularizers import l2
from classp_jax.regularizers import mas
from classp_jax.regularizers import si

__version__ = "0.1.0"

__all__ = [
    "ClasspAsReleasedState",
    "ScaleByGeneralizedAdagradState",
    "classp",
    "classp_as_released",
    "scale_by_classp_as_released",
    "scale_by_generalized_adagrad",
    "threshold_mask",
    "Sparsity",
    "capacity_used",
    "update_fraction",
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
]
