"""Strict numerics for the whole suite: implicit rank promotion raises, so a hand-derived
gradient that relies on accidental broadcasting fails loudly instead of silently."""

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def x64():
    """Run a test body with 64-bit floats enabled, scoped to that test."""
    with jax.enable_x64(True):
        yield
