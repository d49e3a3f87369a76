"""Strict numerics for the whole suite, whatever the shell's environment says.

* Implicit rank promotion raises, so a hand-derived gradient that relies on accidental
  broadcasting fails loudly instead of silently.
* float32 matrix products are true float32 on every backend (on recent NVIDIA GPUs XLA's default
  is TF32, ~1e-3 relative, which float32 tolerances derived from float32's epsilon do not allow for).
* Default floats are float32 even when ``JAX_ENABLE_X64=1`` is set: the suite checks float32
  dtypes, sizes round-off tolerances for float32 and checks that float64 does not leak out of a
  scoped ``jax.enable_x64``. A test that wants float64 asks for the ``x64`` fixture.

The environment variables are set too, so the subprocesses some tests start see the same defaults.
"""

import os

import jax
import pytest

os.environ.pop("JAX_ENABLE_X64", None)
os.environ["JAX_DEFAULT_MATMUL_PRECISION"] = "highest"
jax.config.update("jax_enable_x64", False)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture
def x64():
    """Run a test body with 64-bit floats enabled, scoped to that test."""
    with jax.enable_x64(True):
        yield


@pytest.fixture(autouse=True, scope="session")
def _reference_cache(tmp_path_factory):
    """`check --impl` caches the reference's recordings: in the session's temporary folder, not the user's."""
    old = os.environ.get("JAXBACKPROP_CACHE")
    os.environ["JAXBACKPROP_CACHE"] = str(tmp_path_factory.mktemp("reference-cache"))
    yield
    if old is None:
        os.environ.pop("JAXBACKPROP_CACHE", None)
    else:
        os.environ["JAXBACKPROP_CACHE"] = old
