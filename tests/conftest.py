"""Test-session set-up: simulate 4 CPU devices so multi-device paths are tested.

This must run before JAX initialises its backends, which is why it lives here.
"""

import atexit
import os
import shutil
import tempfile

import hypothesis
import jax
import pytest

jax.config.update("jax_num_cpu_devices", 4)

# Most of the suite's time is XLA compiling, and many tests compile the same steps (the
# digits MLP's, each method's). One persistent compilation cache per test session, made
# fresh by its first process (the xdist controller, or a lone pytest) and removed when it
# exits, is shared by the workers and the commands the tests start, which inherit these
# variables. A size limit turns on the cache's file lock (filelock, a test extra), so
# processes can share it.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _cache = tempfile.mkdtemp(prefix="classp-jax-tests-xla-cache-")
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)
  os.environ.update(
    JAX_COMPILATION_CACHE_DIR=_cache,
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    JAX_COMPILATION_CACHE_MAX_SIZE=str(4 << 30),
  )
# This process read the variables when it imported JAX, before they were set.
for _flag, _kind in (
  ("compilation_cache_dir", str),
  ("persistent_cache_min_compile_time_secs", float),
  ("persistent_cache_min_entry_size_bytes", int),
  ("compilation_cache_max_size", int),
):
  if f"JAX_{_flag.upper()}" in os.environ:
    jax.config.update(f"jax_{_flag}", _kind(os.environ[f"JAX_{_flag.upper()}"]))
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
