"""Test-session set-up: simulate 4 CPU devices so multi-device paths are tested.

This must run before JAX initialises its backends, which is why it lives here.
"""

import os

import hypothesis
import jax
import pytest

jax.config.update("jax_num_cpu_devices", 4)
# Two test workers share a machine: on a GPU, neither may take most of its memory up front.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

# CI runs the same property-test examples every time; HYPOTHESIS_PROFILE=explore
# draws new ones (and keeps failures in .hypothesis/ to replay).
hypothesis.settings.register_profile("ci", derandomize=True, database=None)
hypothesis.settings.register_profile("explore")
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True, scope="module")
def _free_each_modules_compiled_code():
  """XLA:CPU maps each executable's code separately; one process running the whole suite
  would otherwise keep every module's code (Linux allows 65,530 mappings)."""
  yield
  jax.clear_caches()
