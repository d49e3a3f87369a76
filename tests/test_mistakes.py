"""Every classic mistake, written as a student would in a small numpy step, gets its exact verdict from
`jaxbackprop check --impl`: named, with its fix (mistakes.py), at its step."""

import textwrap

import numpy as np
import pytest

from jaxbackprop import cli

SCORE_HEAD = """
def score_head_bwd(params, residuals):
    h, hc, margin, w = (np.asarray(r) for r in residuals)
    u = np.asarray(params["u"])
    active = {active}
    return {{"u": {du}}}, -active[:, None] * u, active[:, None] * u
"""
CRF_HEAD = """
from jaxbackprop import crf


def crf_head_bwd(params, residuals):
    e, alpha, beta, log_z, labels, mask, w = residuals
    p = np.asarray(crf.marginals(alpha, beta, log_z, mask))
    xi = np.asarray(crf.pair_marginals(alpha, beta, e, mask, params["T"], log_z))
    mask, w = np.asarray(mask), np.asarray(w)
    gold = (np.asarray(labels)[:, :, None] == np.arange(p.shape[2])) * mask[:, :, None]
    pairs = gold[:, :-1, :, None] * gold[:, 1:, None, :]
    last = np.asarray(crf.last_token(mask), float)
    dT = {dT}
    dend = {dend}
    return {{"T": dT, "start": w @ (p[:, 0] - gold[:, 0]), "end": dend}}, w[:, None, None] * (p - gold)
"""
RIGHT_DU = "hc.T @ active - h.T @ active"
RIGHT_DT = 'np.einsum("s,stij->ij", w, xi - pairs)'
RIGHT_DEND = 'np.einsum("s,st,stc->c", w, last, p - gold)'

# mistake, activation and head checked, the student's step (numpy); its verdict is in VERDICTS
MISTAKES = [
    (
        "one-hot not subtracted",
        "tanh",
        "softmax",
        """
def softmax_bwd(probs, labels, w):
    return np.asarray(w)[:, None] * np.array(probs)
""",
    ),
    (
        "f applied twice",
        "tanh",
        "softmax",
        """
def activation_bwd(params, z, a, da, cfg):
    a = np.tanh(np.asarray(a))
    return np.asarray(da) * (1 - a**2)
""",
    ),
    (
        "one window instead of the batch sum",
        "tanh",
        "softmax",
        """
def linear_bwd(params, x, delta):
    x, delta = np.asarray(x), np.asarray(delta)
    for b in range(len(x)):
        dW = np.outer(delta[b], x[b])
    return {"W": dW, "b": delta.sum(axis=0)}, delta @ np.asarray(params["W"])
""",
    ),
    (
        "off-by-one window slicing",
        "tanh",
        "softmax",
        """
def split_windows(dx, cfg):
    n, d = cfg.window, cfg.embed_dim
    return np.stack([np.asarray(dx)[:, (i + 1) * d : (i + 2) * d] for i in range(n)], axis=1)
""",
    ),
    ("margin counted twice", "relu", "score", SCORE_HEAD.format(active="w * (margin > 1)", du=RIGHT_DU)),
    ("hinge margin >= 0", "relu", "score", SCORE_HEAD.format(active="w * (margin >= 0)", du=RIGHT_DU)),
    ("hinge value", "relu", "score", SCORE_HEAD.format(active="w * np.maximum(margin, 0)", du=RIGHT_DU)),
    ("u on the true path only", "relu", "score", SCORE_HEAD.format(active="w * (margin > 0)", du="-h.T @ active")),
    (
        "relu f'(0) = 1",
        "relu",
        "softmax",
        """
def activation_bwd(params, z, a, da, cfg):
    return np.asarray(da) * (np.asarray(z) >= 0)
""",
    ),
    (
        "crf expected counts without the gold counts",
        "tanh",
        "crf",
        CRF_HEAD.format(dT='np.einsum("s,stij->ij", w, xi)', dend=RIGHT_DEND),
    ),
    (
        "crf end score at the wrong token",
        "tanh",
        "crf",
        CRF_HEAD.format(dT=RIGHT_DT, dend="w @ (p[:, -1] - gold[:, -1])"),
    ),
]

# the exact verdict line of each mistake (after the common prefix)
VERDICTS = {
    "one-hot not subtracted": (
        "softmax_bwd. Your dJ/dlogits: the one-hot is not subtracted: your dJ/dlogits_b is w_b y_hat_b, not "
        "w_b (y_hat_b - y_b); each row is wrong only in its gold class's cell (the worst, [6,0], is row 6's "
        "gold class 0) [tanh / softmax / random windows; wrong in 4 of 4 calls]"
    ),
    "f applied twice": (
        "activation_bwd. Your dJ/dz: f applied twice: your f' is taken at f(a) = f(f(z)); a is already f(z), "
        "use it as given (tanh' = 1 - a^2) [tanh / softmax / random windows; wrong in 4 of 4 calls]"
    ),
    "one window instead of the batch sum": (
        "linear_bwd. Your dJ/dW: one window instead of the batch sum: your dJ/dW is window 7's term alone; "
        "dJ/dW = delta^T x sums the outer products delta_b x_b^T over all 8 windows [tanh / softmax / random "
        "windows; wrong in 3 of 4 calls]"
    ),
    "off-by-one window slicing": (
        "split_windows. Your dJ/dx_i: off by one in the window slicing: your slices are shifted by one word "
        "(+4 columns); word i's slice of dJ/dx is columns i d .. (i+1) d - 1, dx[:, i*d:(i+1)*d] for i = 0 .."
        " n-1 (n = 5, d = 4) [tanh / softmax / random windows; wrong in 4 of 4 calls]"
    ),
    "margin counted twice": (
        "score_head_bwd. Your dJ/du, dJ/dh, dJ/dh_corrupt: the margin counted twice: the residual margin is "
        "already 1 - s + s_c, so the hinge is active where margin > 0, not margin > 1 [relu / score / random "
        "windows; wrong in 2 of 4 calls]"
    ),
    "hinge margin >= 0": (
        "score_head_bwd. Your dJ/du, dJ/dh, dJ/dh_corrupt: the hinge's kink: at margin = 0 exactly your "
        "derivative of max(0, m) is 1; the check takes it to be 0 ([m > 0], as jax does): the hinge is active"
        " where margin > 0 [relu / score / at the kinks; wrong in 1 of 4 calls]"
    ),
    "hinge value": (
        "score_head_bwd. Your dJ/du, dJ/dh, dJ/dh_corrupt: the hinge's value used for its slope: d max(0, "
        "m)/dm is the indicator [m > 0], not max(0, m) [relu / score / random windows; wrong in 3 of 4 calls]"
    ),
    "u on the true path only": (
        "score_head_bwd. Your dJ/du: u takes only the true window's path: u scores both windows (s = u^T h, "
        "s_c = u^T h_c), and where branches of the graph meet their gradients add: dJ/du = h^T ds + h_c^T "
        "ds_c [relu / score / random windows; wrong in 3 of 4 calls]"
    ),
    "relu f'(0) = 1": (
        "activation_bwd. Your dJ/dz: f' at the kink: at z = 0 exactly your relu'(0) is 1; the check takes "
        "jax's relu'(0) = 0 (the slope 1 only where z > 0) [relu / softmax / at the kinks; wrong in 1 of 4 "
        "calls]"
    ),
    "crf expected counts without the gold counts": (
        "crf_head_bwd. Your dJ/dT: the gold counts are not subtracted: your dJ/dT holds only the expected "
        "counts (the marginals, from log Z); -score(gold) subtracts the gold path's own counts: expected "
        "minus gold [tanh / crf / random sentences; wrong in 3 of 3 calls]"
    ),
    "crf end score at the wrong token": (
        "crf_head_bwd. Your dJ/dend: the end score at the wrong token: yours is at position L-1 (padding "
        "included); end scores each sentence's last real token, the last True of its mask "
        "(crf.last_token(mask)) [tanh / crf / random sentences; wrong in 2 of 3 calls]"
    ),
}


@pytest.mark.parametrize("mistake, activation, head, step", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_each_classic_mistake_gets_its_verdict(tmp_path, capsys, mistake, activation, head, step):
    path = tmp_path / "backprop.py"
    path.write_text("import numpy as np\n" + textwrap.dedent(step))
    assert cli.main(["check", "--impl", str(path), "--activation", activation, "--head", head]) == 1
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("first step that leaves the reference:"))
    assert line == "first step that leaves the reference: " + VERDICTS[mistake], line


@pytest.mark.parametrize("du, dT, dend", [(RIGHT_DU, RIGHT_DT, RIGHT_DEND)])
def test_the_right_numpy_heads_pass(tmp_path, capsys, du, dT, dend):
    """The templates above, without their mistake, are right: each verdict is the mistake's alone."""
    path = tmp_path / "backprop.py"
    heads = SCORE_HEAD.format(active="w * (margin > 0)", du=du) + CRF_HEAD.format(dT=dT, dend=dend)
    path.write_text("import numpy as np\n" + heads)
    for head in ("score", "crf"):
        cli.main(["check", "--impl", str(path), "--activation", "relu", "--head", head])
        out = capsys.readouterr().out
        assert "first step that leaves" not in out, out


def test_a_constant_factor_is_never_diagnosed_from_a_batch_of_one():
    """One window's gradient is a multiple of almost any wrong formula's ("off by 1.254" for the hinge's value)."""
    from jaxbackprop import check_matrix, mistakes, model

    cfg = model.ModelConfig(**check_matrix.MATRIX_MODEL)
    want = np.array([0.5, -1.0, 2.0])
    one = mistakes.Context(cfg, {}, {"windows": np.zeros((1, 5))}, tensor="dJ/db")
    eight = one._replace(batch={"windows": np.zeros((8, 5))})
    assert "constant factor" not in mistakes.diagnose(1.254 * want, want, one)
    assert mistakes.diagnose(1.254 * want, want, eight) == "off by a constant factor 1.254"
