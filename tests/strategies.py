"""Hypothesis strategies shared by the optimizer tests."""

import hypothesis.strategies as st
import numpy as np

# A gradient entry: zero, or a float32 magnitude in [1e-6, 3]. Far smaller
# ones are out of float32's reach for the rule itself: with p = 0.5,
# S**(1/p) underflows below |g| ~ 1e-19, where a float64 model does not.
_TINY = float(np.float32(1e-6))
GRADIENT_VALUES = st.one_of(
  st.just(0.0), st.floats(_TINY, 3.0, width=32), st.floats(-3.0, -_TINY, width=32)
)
