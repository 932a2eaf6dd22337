"""CLASSP for JAX: Continual Learning through Adjustment Suppression and Sparsity Promotion.

Ludwig (2024), https://arxiv.org/abs/2405.09637
"""

# --- optimizer (optimizer.py) ---
# --- diagnostics (diagnostics.py) ---
# --- baselines (fisher.py, regularizers.py) ---

__version__ = "0.1.0"
