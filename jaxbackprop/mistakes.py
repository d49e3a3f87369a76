"""The classic mistakes of a hand-written backward pass, recognised by name from the tensor they produce.

:func:`diagnose` compares a student's output ``got`` with the reference's ``want`` (float64 arrays of
one step, for one case of the check matrix) and tries each rule of :data:`MISTAKES` in turn, the
most telling first: a transposed outer product, a row assigned instead of added for a repeated word,
a missing f' (or f applied twice), the one-hot not subtracted, one window instead of the batch sum, off-by-one
window slicing, the hinge's slips (the margin counted twice, its kink, its value for its slope, u on one
path only), the crf's expected counts without the gold ones and its end score at the wrong token, a missing
(halved, doubled or misplaced) L2 term, a flipped sign, missing mean weights, float32. A rule returns one
sentence a student can act on, or None. :mod:`jaxbackprop.impl_check`
runs the steps and prints the table.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jaxbackprop import backprop, crf, model
from jaxbackprop import nonlinearities as nl
from jaxbackprop.gradcheck import MANUAL_VS_AUTODIFF_RTOL as RTOL
from jaxbackprop.gradcheck import REL_FLOOR

WHOLE = "value_and_grad"  # a student's whole pass; "assembled": the student's steps run as one pass
UNNAMED = "differs from the reference"  # a difference no rule of MISTAKES recognises
# the lecture's letters for each tensor's shape (B rows: windows, or the S L tokens of the crf head)
SHAPES = backprop.GRAD_SHAPES | {"J": "()"}
HINTS = {"W": "dJ/dW = delta^T x sums the outer products delta_b x_b^T", "U": "dJ/dU = dlogits^T h"}
HINTS |= {"b": "dJ/db = sum_b delta_b", "c": "dJ/dc = sum_b dlogits_b"}
FPRIME_IN_A = {"sigmoid": "sigmoid' = a (1 - a)", "tanh": "tanh' = 1 - a^2"}


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


def _fprime_kink(got, want, ctx):
    """relu-like f at z = 0 exactly: the right-hand slope 1 where the check (and jax) takes the left-hand one."""
    if ctx.step != "activation_bwd" or ctx.cfg.activation not in ("relu", "leaky_relu", "prelu"):
        return None
    z, da = np.asarray(ctx.args[1]), np.asarray(ctx.args[3])
    if np.any(z == 0) and _close(got, np.where(z == 0, da, want)):
        left = {"relu": "0", "leaky_relu": "0.01", "prelu": "alpha"}[ctx.cfg.activation]
        return (
            f"f' at the kink: at z = 0 exactly your {ctx.cfg.activation}'(0) is 1; the check takes jax's "
            f"{ctx.cfg.activation}'(0) = {left} (the slope 1 only where z > 0)"
        )


def _one_hot_kept(got, want, ctx):
    if ctx.step != "softmax_bwd":
        return None
    probs, labels, w = (np.asarray(x) for x in ctx.args)
    if _close(got, w[:, None] * probs):
        r, c = differences(got, want)[2]
        return (
            f"the one-hot is not subtracted: your dJ/dlogits_b is w_b y_hat_b, not w_b (y_hat_b - y_b); each row is "
            f"wrong only in its gold class's cell (the worst, [{r},{c}], is row {r}'s gold class {int(labels[r])})"
        )


def _f_twice(got, want, ctx):
    if ctx.step != "activation_bwd":
        return None
    params, z, a, da, cfg = ctx.args
    alpha = params.get("alpha")
    twice = np.asarray(da) * np.asarray(nl.derivative(cfg.activation, a, nl.apply(cfg.activation, a, alpha), alpha))
    if _close(got, twice):
        how = FPRIME_IN_A.get(cfg.activation, f"{cfg.activation}' from z")
        return f"f applied twice: your f' is taken at f(a) = f(f(z)); a is already f(z), use it as given ({how})"


def _one_window(got, want, ctx):
    """A batch's gradient of a weight is the sum of every window's term; one window's term alone is a loop's slip."""
    sums = {
        ("linear_bwd", "dJ/dW"),
        ("linear_bwd", "dJ/db"),
        ("output_layer_bwd", "dJ/dU"),
        ("output_layer_bwd", "dJ/dc"),
    }
    if (ctx.step, ctx.tensor) not in sums:
        return None
    _, inputs, upstream = (np.asarray(x) if i else x for i, x in enumerate(ctx.args))
    if len(upstream) < 2:
        return None
    matrix = ctx.tensor in ("dJ/dW", "dJ/dU")
    for b in (0, len(upstream) - 1):  # the first window, or the last: a loop that assigned instead of summing
        term = np.outer(upstream[b], inputs[b]) if matrix else upstream[b]
        if _close(got, term):
            name = ctx.tensor[4:]
            return (
                f"one window instead of the batch sum: your {ctx.tensor} is window {b}'s term alone; "
                f"{HINTS[name]} over all {len(upstream)} windows"
            )


def _window_slicing(got, want, ctx):
    if ctx.step != "split_windows" or got.shape != want.shape:
        return None
    dx = np.asarray(ctx.args[0])
    B, n, d = want.shape
    for shift in (1, -1, d, -d):
        columns = np.arange(n * d).reshape(n, d) + shift
        inside = (columns >= 0) & (columns < dx.shape[1])
        shifted = dx[:, np.clip(columns, 0, dx.shape[1] - 1)]
        if _close(got[:, inside], shifted[:, inside]):
            by = f"one word ({shift:+d} columns)" if abs(shift) == d else f"{shift:+d} column"
            return (
                f"off by one in the window slicing: your slices are shifted by {by}; word i's slice of dJ/dx is "
                f"columns i d .. (i+1) d - 1, dx[:, i*d:(i+1)*d] for i = 0 .. n-1 (n = {n}, d = {d})"
            )


def _score_head(params, residuals, active, paths=("true", "corrupt")):
    """The score head's gradients, numpy, with the hinge's derivative ``active`` (B,) given, and u's paths chosen."""
    h, h_c = np.asarray(residuals[0]), np.asarray(residuals[1])
    u = np.asarray(params["u"])
    ds, ds_c = -active, active
    du = sum(({"true": h.T @ ds, "corrupt": h_c.T @ ds_c}[p] for p in paths), np.zeros_like(u))
    return {"dJ/du": du, "dJ/dh": ds[:, None] * u[None, :], "dJ/dh_corrupt": ds_c[:, None] * u[None, :]}


def _hinge(got, want, ctx):
    """The score head's classic slips: the kink's threshold, the hinge's value for its slope, u on one path."""
    if ctx.step != "score_head_bwd":
        return None
    params, residuals = ctx.args
    margin, w = np.asarray(residuals[2]), np.asarray(residuals[3])
    # first: where every margin is 0, margin >= 0 and margin > -1 are the same slip
    if np.any(margin == 0) and _close(got, _score_head(params, residuals, w * (margin >= 0))[ctx.tensor]):
        return (
            "the hinge's kink: at margin = 0 exactly your derivative of max(0, m) is 1; the check takes it to be 0 "
            "([m > 0], as jax does): the hinge is active where margin > 0"
        )
    for threshold in (1.0, -1.0):
        if _close(got, _score_head(params, residuals, w * (margin > threshold))[ctx.tensor]):
            return (
                f"the margin counted twice: the residual margin is already 1 - s + s_c, so the hinge is active "
                f"where margin > 0, not margin > {threshold:g}"
            )
    if _close(got, _score_head(params, residuals, w * np.maximum(margin, 0.0))[ctx.tensor]):
        return "the hinge's value used for its slope: d max(0, m)/dm is the indicator [m > 0], not max(0, m)"
    for path in ("true", "corrupt"):
        if ctx.tensor == "dJ/du" and _close(got, _score_head(params, residuals, w * (margin > 0), (path,))["dJ/du"]):
            return (
                f"u takes only the {path} window's path: u scores both windows (s = u^T h, s_c = u^T h_c), and "
                "where branches of the graph meet their gradients add: dJ/du = h^T ds + h_c^T ds_c"
            )


def _crf(got, want, ctx):
    """The crf head's classic slips: expected counts without the gold ones, the end score at the wrong token."""
    if ctx.step != "crf_head_bwd":
        return None
    emissions, alpha, beta, log_z, labels, mask, w = ctx.args[1]
    p = np.asarray(crf.marginals(alpha, beta, log_z, mask))
    S, L, C = p.shape
    mask, w, labels = np.asarray(mask), np.asarray(w), np.asarray(labels)
    gold = (labels[:, :, None] == np.arange(C)) * mask[:, :, None]
    expected = {"dJ/de": w[:, None, None] * p, "dJ/dstart": w @ p[:, 0]}
    xi = np.asarray(crf.pair_marginals(alpha, beta, emissions, mask, ctx.args[0]["T"], log_z))
    expected |= {"dJ/dT": np.einsum("s,stij->ij", w, xi)}
    last = mask.sum(axis=1) - 1
    expected |= {"dJ/dend": np.einsum("s,sc->c", w, p[np.arange(S), np.maximum(last, 0)] * (last >= 0)[:, None])}
    if ctx.tensor in expected and _close(got, expected[ctx.tensor]):
        return (
            f"the gold counts are not subtracted: your {ctx.tensor} holds only the expected counts (the marginals, "
            "from log Z); -score(gold) subtracts the gold path's own counts: expected minus gold"
        )
    if ctx.tensor != "dJ/dend":
        return None
    places = {"position L-1 (padding included)": np.full(S, L - 1), "the token before the last": last - 1}
    places |= {"the first padding token": last + 1, "the first token": np.zeros(S, int)}
    for where, t in places.items():
        real = (last >= 0) & (t >= 0) & (t < L)
        t = np.clip(t, 0, L - 1)
        term = (p[np.arange(S), t] - gold[np.arange(S), t]) * real[:, None]
        if not _close(want, w @ term) and _close(got, w @ term):
            return (
                f"the end score at the wrong token: yours is at {where}; end scores each sentence's last real "
                "token, the last True of its mask (crf.last_token(mask))"
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
    B = len(ctx.batch["windows"])  # windows, or sentences for the crf head
    if B == 1:  # one window's gradient is a constant factor of almost any wrong formula's: it proves nothing
        return None
    k = float(np.vdot(got, want) / np.vdot(want, want))
    if abs(k - 1) > 1e-6 and _close(got, k * want):
        mean = abs(k - B) < 1e-6 * B or abs(k * B - 1) < 1e-6
        return f"off by a constant factor {k:.6g}" + (f": the batch size is {B} -- the mean's 1/B?" if mean else "")


# In order, the most telling first: the first rule that recognises the difference names it.
MISTAKES = (_not_finite, _wrong_shape, _float32, _transposed_square, _fprime_kink, _missing_fprime, _f_twice)
MISTAKES += (_unweighted,)
MISTAKES += (_one_hot_kept, _assigned, _one_window, _window_slicing, _hinge, _crf)
MISTAKES += (_l2_term, _sign, _zeros, _factor, _float32_roundoff)


def diagnose(got, want, ctx: Context) -> str:
    """The classic mistake that turns ``want`` into ``got``, by name; else where they differ most."""
    import jax

    with jax.enable_x64(True):  # the rules recompute candidates from float64 inputs: in float32 none would match
        for rule in MISTAKES:
            text = rule(got, want, ctx)
            if text:
                return text
    _, max_rel, worst = differences(got, want)
    return f"{UNNAMED}: relative error {max_rel:.1e} at [{','.join(map(str, worst))}]"
