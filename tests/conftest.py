"""Test-session set-up: simulate 4 CPU devices so multi-device paths are tested.

This must run before JAX initialises its backends, which is why it lives here.
"""

import jax

jax.config.update("jax_num_cpu_devices", 4)
