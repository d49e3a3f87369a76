"""Measurements of a trained (or untrained) window model that experiments reuse.

The lecture makes claims about what happens *inside* the network: zero-initialised hidden units
stay identical (symmetry), a ReLU unit that is off on every input never learns again (dead
units), sigmoid units saturate and pass little gradient back to the first layer. Each function
here measures one of these on given parameters; nothing trains. Shapes: B windows, n words per
window, D = input_dim, H hidden units, C classes.

The array functions take numpy or JAX arrays and return Python floats/ints (computed on the
host in float64 where they reduce), so their results go straight into a result.json.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxbackprop import backprop, model
from jaxbackprop import nonlinearities as nl

# Two hidden units are "the same" when they agree to this fraction of the largest |entry|. Not 0:
# in float32 zero-initialised units pick up round-off differences (~eps32 relative), while a
# random start differs by O(1). sqrt(eps32) ~ 3.5e-4, the geometric mean of eps32 and 1, is as
# far from both regimes (a factor 2^11.5 each way) on any machine's float32.
SAME_UNIT_RTOL = math.sqrt(float(np.finfo(np.float32).eps))
# |f'(z)| at or below this is "flat": sigmoid'(z) <= 1e-3 for |z| >= 6.9, tanh'(z) <= 1e-3 for |z| >= 3.8
FLAT_SLOPE = 1e-3


# ----------------------------------------------------------------------------- symmetry of hidden units


def hidden_units(params) -> np.ndarray:
    """Each hidden unit's own parameters as a row: ``[W_i, b_i, U_:i]``, (H, D + 1 + C).

    >>> p = {"W": np.ones((2, 3)), "b": np.zeros(2), "U": np.full((4, 2), 2.0)}
    >>> hidden_units(p).shape, hidden_units(p)[0].tolist()
    ((2, 8), [1.0, 1.0, 1.0, 0.0, 2.0, 2.0, 2.0, 2.0])
    """
    W, b, U = (np.asarray(params[k]) for k in ("W", "b", "U"))
    return np.concatenate([W, b[:, None], U.T], axis=1)


def max_pairwise_difference(rows) -> float:
    """``max_{i, j, k} |a_ik - a_jk|`` over pairs of rows of ``a`` (R, K), without forming the pairs.

    The largest difference of two rows in any coordinate is, per column, its max minus its min.

    >>> max_pairwise_difference(np.array([[0.0, 1.0], [2.0, -1.0], [1.0, 0.0]]))
    2.0
    """
    a = np.asarray(rows, np.float64)
    return float(np.max(a.max(axis=0) - a.min(axis=0)))


def unit_symmetry(rows) -> float:
    """How far apart the rows are, relative to their scale: max pairwise difference / max |entry|.

    0 when every row is the same (the symmetric units of a zero start); of order 1 for random
    rows. All-zero rows give 0.

    >>> unit_symmetry(np.ones((5, 3)))
    0.0
    >>> unit_symmetry(np.array([[1.0, -2.0], [1.0, 2.0]]))
    2.0
    """
    a = np.asarray(rows, np.float64)
    scale = float(np.max(np.abs(a)))
    return max_pairwise_difference(a) / scale if scale > 0 else 0.0


def count_distinct(rows, rtol: float = SAME_UNIT_RTOL) -> int:
    """Rows that differ (max |difference|) by more than ``rtol * max |entry|`` from every row kept before.

    >>> count_distinct(np.array([[1.0, 0.0], [1.0, 1e-6], [0.0, 1.0]]))
    2
    """
    a = np.asarray(rows, np.float64)
    tol = rtol * max(float(np.max(np.abs(a))), 1e-30)
    kept: list = []
    for r in a:
        if not kept or np.min(np.max(np.abs(np.asarray(kept) - r), axis=1)) > tol:
            kept.append(r)
    return len(kept)


def rank_and_gap(matrix, rtol: float = SAME_UNIT_RTOL) -> tuple[int, float]:
    """Numerical rank of ``matrix`` (singular values above ``rtol * sigma_1``) and ``sigma_2 / sigma_1``.

    A matrix whose rows are all multiples of one row has rank 1 and ``sigma_2 / sigma_1`` at
    float64 round-off (~1e-16); a zero matrix has rank 0 and gap 0.

    >>> rank, gap = rank_and_gap(np.outer([1.0, 2.0, 3.0], [1.0, -1.0]))
    >>> rank, gap < 1e-15
    (1, True)
    """
    sv = np.linalg.svd(np.asarray(matrix, np.float64), compute_uv=False)  # largest first
    if sv[0] == 0:
        return 0, 0.0
    return int(np.sum(sv > rtol * sv[0])), float(sv[1] / sv[0]) if len(sv) > 1 else 0.0


# ----------------------------------------------------------------------------- unit activity


def pre_activations(params, windows, model_cfg: model.ModelConfig, features=None):
    """z = W x + b of every hidden unit on every window, (B, H); no dropout.

    Args:
      params: the model's parameters.
      windows: int (B, n) word ids; features: int (B, n*k) feature ids iff the model uses features.
      model_cfg: the model config.
    """
    x = model.window_vectors(params, windows, model_cfg, features)  # (B, D)
    return x @ params["W"].T + params["b"][None, :]


def local_gradients(params, windows, model_cfg: model.ModelConfig, features=None):
    """f'(z): the local gradient of every hidden unit on every window, (B, H); no dropout."""
    z = pre_activations(params, windows, model_cfg, features)
    alpha = params.get("alpha")
    return nl.derivative(model_cfg.activation, z, nl.apply(model_cfg.activation, z, alpha), alpha)


def dead_fraction(fprime) -> float:
    """Fraction of hidden units with f' = 0 on every window of ``fprime`` (B, H): dead units.

    A dead unit passes no gradient to W, b or x on any of these windows, so (on them) it never
    learns again. For leaky ReLU and PReLU f' is never 0, so no unit can die.

    >>> dead_fraction(np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 0.5]]))
    0.3333333333333333
    """
    return float(np.mean(np.all(np.asarray(fprime) == 0, axis=0)))


def off_fraction(fprime) -> float:
    """Fraction of (window, unit) pairs with f' = 0, (B, H) -> float: how often a unit is off.

    >>> off_fraction(np.array([[0.0, 1.0], [0.0, 0.0]]))
    0.75
    """
    return float(np.mean(np.asarray(fprime) == 0))


def saturated_fraction(fprime, flat: float = FLAT_SLOPE) -> float:
    """Fraction of hidden units in the flat region (|f'| <= ``flat``) on every window, (B, H) -> float.

    A saturated sigmoid or tanh unit passes almost no gradient back (its f' is close to 0), the
    lecture's reason why they learn slowly when their inputs are large. A steep negative slope (a
    PReLU whose alpha went below 0) passes gradient back: it is not flat.

    >>> saturated_fraction(np.array([[1e-9, 0.25, -0.5], [1e-4, 0.2, -0.5]]))
    0.3333333333333333
    """
    return float(np.mean(np.all(is_flat(fprime, flat), axis=0)))


def flat_fraction(fprime, flat: float = FLAT_SLOPE) -> float:
    """Fraction of (window, unit) pairs in the flat region (|f'| <= ``flat``), (B, H) -> float.

    >>> flat_fraction(np.array([[1e-9, 0.25], [-1e-4, -0.5]]))
    0.5
    """
    return float(np.mean(is_flat(fprime, flat)))


def is_flat(fprime, flat: float = FLAT_SLOPE) -> np.ndarray:
    """bool (B, H): f' is within ``flat`` of 0 (either sign)."""
    return np.abs(np.asarray(fprime)) <= flat


# ----------------------------------------------------------------------------- gradients


def gradient_norms(grads) -> dict:
    """The Frobenius norm ``sqrt(sum g^2)`` of each tensor's gradient, ``{name: float}``.

    >>> gradient_norms({"W": np.array([[3.0, 4.0]]), "b": np.zeros(1)})
    {'W': 5.0, 'b': 0.0}
    """
    return {k: float(np.linalg.norm(np.asarray(g, np.float64))) for k, g in grads.items()}


def first_windows(ds, n: int, model_cfg: model.ModelConfig) -> dict:
    """The first ``n`` windows of a split, in order, as a batch the model takes (fixed across runs)."""
    batch = {"windows": jnp.asarray(ds.windows[:n]), "labels": jnp.asarray(ds.labels[:n])}
    if model_cfg.uses_features:
        batch["features"] = jnp.asarray(ds.features[:n])
    return batch


@functools.partial(jax.jit, static_argnames="model_cfg")
def _first_layer_arrays(params, batch, windows, features, model_cfg):
    _, grads, (_, rows) = backprop.manual_value_and_row_grads(params, batch, model_cfg)
    B = batch["windows"].shape[0]
    # J is the mean over B windows, so B dJ/dx_b is the gradient of window b's own loss wrt x_b
    dx = B * rows.reshape(B, -1)  # (B, n d): the rows dJ/dE receives, times B
    fprime = local_gradients(params, batch["windows"], model_cfg, batch.get("features"))
    return (
        grads,
        jnp.mean(jnp.linalg.norm(dx, axis=1)),
        jnp.mean(fprime),
        local_gradients(params, windows, model_cfg, features),
    )


def first_layer_probe(params, batch, windows, model_cfg: model.ModelConfig, features=None) -> dict:
    """How much gradient reaches the first layer, and how active the hidden units are.

    Args:
      params: the model's parameters (no dropout is applied).
      batch: a fixed training batch (``windows`` (B, n), ``labels`` (B,), ``features`` iff used).
      windows: int (B', n) windows, e.g. dev, to count dead / saturated units on; features: theirs.
      model_cfg: the model config.

    Returns:
      ``grad_W``, ``grad_U``: ||dJ/dW||, ||dJ/dU|| on ``batch``; ``grad_W_over_grad_U``;
      ``grad_x_per_window``: mean over b of ||d loss_b / d x_b|| (the word-vector rows' gradient);
      ``mean_fprime``: mean f'(z) on ``batch``; on ``windows``: ``dead_fraction``,
      ``saturated_fraction``, ``off_fraction``; ``prelu_alpha`` for prelu.
    """
    grads, dx_norm, mean_fprime, fprime = _first_layer_arrays(params, batch, windows, features, model_cfg)
    norms = gradient_norms({k: grads[k] for k in ("W", "U")})
    fprime = np.asarray(fprime)
    out = {
        "grad_W": norms["W"],
        "grad_U": norms["U"],
        "grad_W_over_grad_U": norms["W"] / norms["U"],
        "grad_x_per_window": float(dx_norm),
        "mean_fprime": float(mean_fprime),
        "dead_fraction": dead_fraction(fprime),
        "saturated_fraction": saturated_fraction(fprime),
        "off_fraction": off_fraction(fprime),
    }
    if "alpha" in params:
        out["prelu_alpha"] = float(params["alpha"])
    return out


@functools.partial(jax.jit, static_argnames="model_cfg")
def _symmetry_arrays(params, batch, windows, features, model_cfg):
    _, grads = backprop.manual_value_and_grad(params, batch, model_cfg)
    return grads["W"], model.hidden(params, windows, model_cfg, features)


def symmetry_probe(params, batch, windows, model_cfg: model.ModelConfig, features=None, rtol=SAME_UNIT_RTOL) -> dict:
    """How alike the hidden units are: by their parameters, their outputs and their gradients.

    Args:
      params: the model's parameters (no dropout is applied).
      batch: a fixed training batch for dJ/dW.
      windows: int (B', n) windows (e.g. dev) for the hidden activations h; features: theirs.
      model_cfg: the model config.
      rtol: two units are the same within ``rtol`` of the largest |entry| (:func:`count_distinct`).

    Returns:
      ``distinct_units`` (rows of :func:`hidden_units`), ``max_unit_difference`` and its
      ``_rel`` version (:func:`unit_symmetry`), ``W_rank`` and ``W_sv2_over_sv1``
      (:func:`rank_and_gap`), ``W_norm``, ``U_norm``, ``h_std_across_units`` (std of h over the
      units, mean over windows: 0 = every unit outputs the same), ``h_mean_abs``, and of dJ/dW:
      ``grad_W_row_spread``, ``grad_W_norm``, ``distinct_grad_W_rows``.
    """
    dW, h = (np.asarray(a, np.float64) for a in _symmetry_arrays(params, batch, windows, features, model_cfg))
    units = hidden_units(params)
    rank, gap = rank_and_gap(params["W"], rtol)
    return {
        "distinct_units": count_distinct(units, rtol),
        "max_unit_difference": max_pairwise_difference(units),
        "max_unit_difference_rel": unit_symmetry(units),
        "W_rank": rank,
        "W_sv2_over_sv1": gap,
        "W_norm": float(np.linalg.norm(np.asarray(params["W"], np.float64))),
        "U_norm": float(np.linalg.norm(np.asarray(params["U"], np.float64))),
        "h_std_across_units": float(np.mean(np.std(h, axis=1))),
        "h_mean_abs": float(np.mean(np.abs(h))),
        "grad_W_row_spread": max_pairwise_difference(dW),
        "grad_W_norm": float(np.linalg.norm(dW)),
        "distinct_grad_W_rows": count_distinct(dW, rtol) if np.any(dW) else 1,
    }
