"""One tree-aware assertion: structure first, then every leaf with its path in the message."""

import jax
import numpy as np


def assert_trees_close(actual, expected, *, rtol, atol=0.0):
    """Assert two pytrees have the same structure, shapes, and values within tolerance."""
    s_a, s_e = jax.tree.structure(actual), jax.tree.structure(expected)
    assert s_a == s_e, f"tree structures differ:\n  actual   {s_a}\n  expected {s_e}"
    for (path, a), (_, e) in zip(jax.tree_util.tree_leaves_with_path(actual), jax.tree_util.tree_leaves_with_path(expected)):
        name = jax.tree_util.keystr(path)
        a, e = np.asarray(a), np.asarray(e)
        assert a.shape == e.shape, f"{name}: shape {a.shape} != expected {e.shape}"
        assert np.all(np.isfinite(a)), f"{name}: non-finite values"
        # relative to the tensor's own scale, so near-zero entries are not judged on their own
        scale = max(float(np.max(np.abs(e))) if e.size else 0.0, 1e-300)
        err = float(np.max(np.abs(a - e))) if a.size else 0.0
        assert err <= atol + rtol * scale, f"{name}: max |actual - expected| = {err:.3e} > {atol:g} + {rtol:g} * {scale:.3e}"
