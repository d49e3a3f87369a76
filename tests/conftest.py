"""Strict numerics for the whole suite: implicit rank promotion raises, so a hand-derived
gradient that relies on accidental broadcasting fails loudly instead of silently; and float32
matrix products are true float32 on every backend (on recent NVIDIA GPUs XLA's default is TF32,
~1e-3 relative, which float32 tolerances written on a CPU do not allow for)."""

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture
def x64():
    """Run a test body with 64-bit floats enabled, scoped to that test."""
    with jax.enable_x64(True):
        yield
