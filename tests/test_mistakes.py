"""Every classic mistake, written as a student would in a small numpy step, gets its exact verdict from
`jaxbackprop check --impl`: named, with its fix (mistakes.py), at its step."""

import textwrap

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

# mistake, activation, head, the student's step (numpy), the exact verdict line `check --impl` prints
MISTAKES = [
    (
        "one-hot not subtracted",
        "tanh",
        "softmax",
        """
def softmax_bwd(probs, labels, w):
    return np.asarray(w)[:, None] * np.array(probs)
""",
        "",
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
        "",
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
        "",
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
        "",
    ),
    ("margin counted twice", "relu", "score", SCORE_HEAD.format(active="w * (margin > 1)", du=RIGHT_DU), ""),
    ("hinge margin >= 0", "relu", "score", SCORE_HEAD.format(active="w * (margin >= 0)", du=RIGHT_DU), ""),
    ("hinge value", "relu", "score", SCORE_HEAD.format(active="w * np.maximum(margin, 0)", du=RIGHT_DU), ""),
    ("u on the true path only", "relu", "score", SCORE_HEAD.format(active="w * (margin > 0)", du="-h.T @ active"), ""),
    (
        "relu f'(0) = 1",
        "relu",
        "softmax",
        """
def activation_bwd(params, z, a, da, cfg):
    return np.asarray(da) * (np.asarray(z) >= 0)
""",
        "",
    ),
    (
        "crf expected counts without the gold counts",
        "tanh",
        "crf",
        CRF_HEAD.format(dT='np.einsum("s,stij->ij", w, xi)', dend=RIGHT_DEND),
        "",
    ),
    (
        "crf end score at the wrong token",
        "tanh",
        "crf",
        CRF_HEAD.format(dT=RIGHT_DT, dend="w @ (p[:, -1] - gold[:, -1])"),
        "",
    ),
]


@pytest.mark.parametrize("mistake, activation, head, step, verdict", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_each_classic_mistake_gets_its_verdict(tmp_path, capsys, mistake, activation, head, step, verdict):
    path = tmp_path / "backprop.py"
    path.write_text("import numpy as np\n" + textwrap.dedent(step))
    assert cli.main(["check", "--impl", str(path), "--activation", activation, "--head", head]) == 1
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("first step that leaves the reference:"))
    assert line == verdict, line


@pytest.mark.parametrize("du, dT, dend", [(RIGHT_DU, RIGHT_DT, RIGHT_DEND)])
def test_the_right_numpy_heads_pass(tmp_path, capsys, du, dT, dend):
    """The templates above, without their mistake, are right: each verdict is the mistake's alone."""
    path = tmp_path / "backprop.py"
    path.write_text("import numpy as np\n" + SCORE_HEAD.format(active="w * (margin > 0)", du=du) + CRF_HEAD.format(dT=dT, dend=dend))
    for head in ("score", "crf"):
        cli.main(["check", "--impl", str(path), "--activation", "relu", "--head", head])
        out = capsys.readouterr().out
        assert "first step that leaves" not in out, out
