"""The classic mistakes of a hand-written backward pass, recognised by name from the tensor they produce.

:func:`diagnose` compares a student's output ``got`` with the reference's ``want`` (float64 arrays of
one step, for one case of the check matrix) and tries each rule of :data:`MISTAKES` in turn, the
most telling first: a transposed outer product, a row assigned instead of added for a repeated word,
a missing f', a missing (halved, doubled or misplaced) L2 term, a flipped sign, missing mean weights,
float32. A rule returns one sentence a student can act on, or None. :mod:`jaxbackprop.impl_check`
runs the steps and prints the table.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jaxbackprop import model
from jaxbackprop import nonlinearities as nl
from jaxbackprop.gradcheck import MANUAL_VS_AUTODIFF_RTOL as RTOL
from jaxbackprop.gradcheck import REL_FLOOR

WHOLE = "value_and_grad"  # a student's whole pass; "assembled": the student's steps run as one pass
UNNAMED = "differs from the reference"  # a difference no rule of MISTAKES recognises
# the lecture's letters for each tensor's shape (B rows: windows, or the S L tokens of the crf head)
SHAPES = {"logits": "(B, C)", "h": "(B, H)", "h_corrupt": "(B, H)", "e": "(S, L, C)", "z": "(B, H)", "x": "(B, D)"}
SHAPES |= {"E": "(V, d)", "F": "(Vc, dc)", "W": "(H, D)", "b": "(H,)", "U": "(C, H)", "c": "(C,)", "u": "(H,)"}
SHAPES |= {"T": "(C, C)", "start": "(C,)", "end": "(C,)", "alpha": "()", "J": "()"}
HINTS = {"W": "dJ/dW = delta^T x sums the outer products delta_b x_b^T", "U": "dJ/dU = dlogits^T h"}


class Context(NamedTuple):
    """What a diagnosis may look at besides the two tensors."""

    cfg: model.ModelConfig
    params: dict
    batch: dict
    step: str = ""
    tensor: str = ""  # "dJ/dW"
    args: tuple = ()  # the step's inputs


def differences(got, want) -> tuple:
    """``(max abs, max rel, worst index)``; relative to ``max(|got|, |want|, REL_FLOOR max|want|)`` as in gradcheck.

    >>> differences([1.0, 2.0], [1.0, 2.5])
    (0.5, 0.2, (1,))
    """
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    floor = max(REL_FLOOR * float(np.max(np.abs(want), initial=0.0)), np.finfo(np.float64).tiny)
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf, inf / inf: the worst error there is
        diff = np.abs(got - want)
        rel = np.nan_to_num(diff / np.maximum(np.maximum(np.abs(got), np.abs(want)), floor), nan=np.inf)
    if rel.size == 0:
        return 0.0, 0.0, ()
    worst = np.unravel_index(int(np.argmax(rel)), rel.shape)
    return float(np.max(diff)), float(np.max(rel)), tuple(int(i) for i in worst)


def _close(got, want) -> bool:
    got, want = np.asarray(got), np.asarray(want)
    return got.shape == want.shape and differences(got, want)[1] <= RTOL


def _not_finite(got, want, ctx):
    if not np.all(np.isfinite(got)):
        return f"NaN or inf, first at {np.argwhere(~np.isfinite(got))[0].tolist()}"


def _wrong_shape(got, want, ctx):
    if got.shape == want.shape:
        return None
    expected = f"expected {ctx.tensor} {SHAPES.get(ctx.tensor[4:], '')} = {want.shape}, got {got.shape}"
    if got.ndim == 2 and got.shape == want.shape[::-1] and _close(got.T, want):
        return f"transposed: {expected}" + (f"; {HINTS[ctx.tensor[4:]]}" if ctx.tensor[4:] in HINTS else "")
    return f"wrong shape: {expected}"


def _float32(got, want, ctx):
    if got.dtype in (np.float32, np.float16):
        return f"computed in {got.dtype} (relative error ~1e-7 at best): keep the inputs' float64"


def _float32_roundoff(got, want, ctx):
    max_rel = differences(got, want)[1]
    if max_rel <= 1e3 * np.finfo(np.float32).eps:  # far below any mistake's size, far above float64's
        return (
            f"float32 round-off? relative error {max_rel:.1e} (float32's eps is 1.2e-07): compute in float64 throughout"
        )


def _transposed_square(got, want, ctx):
    if got.ndim == 2 and got.shape[0] == got.shape[1] and _close(got.T, want):
        return "transposed" + (f": {HINTS[ctx.tensor[4:]]}" if ctx.tensor[4:] in HINTS else "")


def _missing_fprime(got, want, ctx):
    if ctx.step != "activation_bwd":
        return None
    params, z, a, da, cfg = ctx.args
    if _close(got, da):
        return "f' is missing: your dJ/dz equals the upstream dJ/da; delta = dJ/da o f'(z)"
    if cfg.activation in ("sigmoid", "tanh") and _close(got, da * nl.derivative(cfg.activation, z, z)):
        return (
            f"f' evaluated at z: {cfg.activation}'s derivative is written in a = f(z) (sigmoid a (1 - a), tanh 1 - a^2)"
        )


def _unweighted(got, want, ctx):
    if ctx.step == "softmax_bwd" and _close(got * np.asarray(ctx.args[2])[:, None], want):
        return "the weights of the mean are missing: dJ/dlogits_b = w_b (y_hat_b - y_b), w_b = 1/B for a plain mean"


def _assigned(got, want, ctx):
    """Rows of words used once right, rows of repeated words wrong: ``E[ids] = rows`` instead of adding."""
    ids = _row_ids(ctx)
    if ids is None:
        return None
    counts = np.bincount(ids, minlength=len(want))
    scale = max(float(np.max(np.abs(want))), np.finfo(np.float64).tiny)
    right = np.max(np.abs(got - want), axis=1) <= RTOL * scale
    wrong_repeated = np.flatnonzero(~right & (counts > 1))
    if not np.all(right[counts == 1]) or len(wrong_repeated) == 0:
        return None
    r = int(wrong_repeated[0])
    return (
        f"assigned instead of added: rows of words used once are right, but row {r} (used {counts[r]} times) is "
        "not the sum of its gradients; a word used twice gets both (zeros.at[ids].add(rows), np.add.at)"
    )


def _row_ids(ctx):
    if ctx.step == "scatter_rows":
        return np.asarray(ctx.args[0])
    if ctx.tensor == "dJ/dE" and ctx.step in (WHOLE, "assembled"):
        words = [ctx.batch["windows"]] + ([ctx.batch["corrupt"]] if "corrupt" in ctx.batch else [])
        return np.concatenate([np.asarray(w).ravel() for w in words])
    return None


def _l2_term(got, want, ctx):
    name, l2 = ctx.tensor[4:], ctx.cfg.l2
    if not l2 or name not in ctx.params:
        return None
    p = np.asarray(ctx.params[name])
    penalised = name in ("W", "u" if ctx.cfg.head == "score" else "U")
    if penalised and _close(got, want - l2 * p):
        return f"the L2 term is missing: dJ/d{name} = dJ_data/d{name} + l2 {name} (l2 = {l2:g})"
    if penalised and _close(got, want - 0.5 * l2 * p):
        return f"half the L2 term: d/d{name} of (l2/2)||{name}||^2 is l2 {name}, not l2/2 {name}"
    if _close(got, want + l2 * p):
        if not penalised:
            return f"an L2 term on {name}, which is not penalised (only W and U, or u, are)"
        if ctx.step in ("l2_bwd", WHOLE, "assembled"):
            return f"the L2 term l2 {name} is added twice"
        return f"{ctx.step} adds the L2 term l2 {name}; l2_bwd adds it once for the whole pass, so it would count twice"


def _sign(got, want, ctx):
    if np.any(want) and _close(got, -want):
        return "the sign is flipped" + (
            " (dJ/dlogits = y_hat - y, not y - y_hat)" if ctx.tensor == "dJ/dlogits" else ""
        )


def _zeros(got, want, ctx):
    if not np.any(got) and np.any(want):
        return "all zeros: is a placeholder still returned?"


def _factor(got, want, ctx):
    if not np.any(want):
        return None
    k = float(np.vdot(got, want) / np.vdot(want, want))
    if abs(k - 1) > 1e-6 and _close(got, k * want):
        B = len(ctx.batch["windows"])
        mean = abs(k - B) < 1e-6 * B or abs(k * B - 1) < 1e-6
        return f"off by a constant factor {k:.6g}" + (f": the batch size is {B} -- the mean's 1/B?" if mean else "")


# In order, the most telling first: the first rule that recognises the difference names it.
MISTAKES = (_not_finite, _wrong_shape, _float32, _transposed_square, _missing_fprime, _unweighted, _assigned)
MISTAKES += (_l2_term, _sign, _zeros, _factor, _float32_roundoff)


def diagnose(got, want, ctx: Context) -> str:
    """The classic mistake that turns ``want`` into ``got``, by name; else where they differ most."""
    for rule in MISTAKES:
        text = rule(got, want, ctx)
        if text:
            return text
    _, max_rel, worst = differences(got, want)
    return f"{UNNAMED}: relative error {max_rel:.1e} at [{','.join(map(str, worst))}]"
