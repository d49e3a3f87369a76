"""`jaxbackprop check --impl`: each classic mistake, planted in the project's own steps, fails and is
named at its step; a whole value_and_grad is checked tensor by tensor; a file that cannot be
checked ends in one line naming the file and line."""

import jax
import numpy as np
import pytest

from jaxbackprop import backprop, check_matrix, cli, exercise, impl_check, model

SOLVED = exercise.skeleton(solved=True)

# mistake, head checked, the reference's line, the planted line, then what the verdict must name:
# the step, the tensor, and the mistake
PLANTED = [
    (
        "transposed outer product",
        "softmax",
        "dW = delta.T @ x",
        "dW = x.T @ delta",
        "linear_bwd",
        "dJ/dW",
        "transposed",
    ),
    (
        "assign, not add",
        "softmax",
        ".at[ids].add(rows)",
        ".at[ids].set(rows)",
        "scatter_rows",
        "dJ/dE",
        "assigned instead of added",
    ),
    (
        "missing f'",
        "score",
        'return da * nl.derivative(cfg.activation, z, a, params.get("alpha"))',
        "return da",
        "activation_bwd",
        "dJ/dz",
        "f' is missing",
    ),
    (
        "missing L2 term",
        "softmax",
        '"W": grads["W"] + cfg.l2 * params["W"], ',
        "",
        "l2_bwd",
        "dJ/dW",
        "the L2 term is missing",
    ),
    ("y - y_hat", "softmax", "(probs - y)", "(y - probs)", "softmax_bwd", "dJ/dlogits", "the sign is flipped"),
    (
        "no weights",
        "softmax",
        "w[:, None] * (probs - y)",
        "probs - y",
        "softmax_bwd",
        "dJ/dlogits",
        "weights of the mean",
    ),
    (
        "L2 in linear_bwd",
        "softmax",
        "dW = delta.T @ x",
        "dW = delta.T @ x + 0.01 * params['W']",
        "linear_bwd",
        "dJ/dW",
        "l2_bwd adds it",
    ),
    ("transposed T", "crf", '"s,stij->ij"', '"s,stij->ji"', "crf_head_bwd", "dJ/dT", "transposed"),
]


def _check(path, *options):
    return cli.main(["check", "--impl", str(path), "--activation", "tanh", *options])


def _write(tmp_path, text, name="backprop.py"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _verdict(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("first step that leaves the reference:"))


@pytest.mark.parametrize("mistake, head, line, planted, step, tensor, words", PLANTED, ids=[p[0] for p in PLANTED])
def test_each_planted_mistake_fails_and_is_named_at_its_step(
    tmp_path, capsys, mistake, head, line, planted, step, tensor, words
):
    assert SOLVED.count(line) == 1, f"the reference no longer holds {line!r}: update the planted mistake"
    path = _write(tmp_path, SOLVED.replace(line, planted))
    assert _check(path, "--head", head) == 1
    out = capsys.readouterr().out
    verdict = _verdict(out)
    assert f"{step}. Your {tensor}" in verdict and words in verdict, verdict
    right = {"softmax": 6, "score": 5, "crf": 6}[head]  # the steps this head's pass calls, but one
    assert f"FAILED: {right} of your steps match the reference, 1 do not" in out


def test_transposed_dW_says_what_before_it_was_right(tmp_path, capsys):
    """ "Your dJ/dz is right, your dJ/dW is transposed" -- not just "W is wrong"."""
    path = _write(tmp_path, SOLVED.replace("dW = delta.T @ x", "dW = x.T @ delta"))
    assert _check(path, "--head", "softmax") == 1
    out = capsys.readouterr().out
    assert "expected dJ/dW (H, D) = (10, 40), got (40, 10)" in _verdict(out)
    assert (
        "right before it: your softmax_bwd (dJ/dlogits), output_layer_bwd (dJ/dU, dJ/dc, dJ/dh), activation_bwd (dJ/dz)"
        in out
    )
    assert "right in linear_bwd itself: your dJ/db, dJ/dx" in out
    row = next(line for line in out.splitlines() if line.startswith("linear_bwd        dJ/dW"))
    assert row.split()[4:6] == ["-", "NO"] and row.endswith("WRONG")
    assert "assembled" not in out  # the whole pass is assembled only from steps that are right


# A student's solution of the softmax path, written independently in numpy: its numbers differ from
# the reference's in the last bits (another order of summation), which "close" must accept.
STUDENT = """
import numpy as np


def softmax_bwd(probs, labels, w):
    d = np.array(probs)
    d[np.arange(len(labels)), labels] -= 1.0
    return d * np.asarray(w)[:, None]


def output_layer_bwd(params, h, dlogits):
    return {"U": np.einsum("bc,bh->ch", dlogits, h), "c": dlogits.sum(axis=0)}, dlogits @ np.asarray(params["U"])


def activation_bwd(params, z, a, da, cfg):
    z, a = np.asarray(z), np.asarray(a)
    slope = {"leaky_relu": 0.01, "prelu": float(params.get("alpha", 0.0))}.get(cfg.activation, 0.0)
    fprime = {
        "sigmoid": a * (1 - a),
        "tanh": 1 - a**2,
        "hardtanh": (np.abs(z) <= 1).astype(float),
        "relu": (z > 0).astype(float),
    }.get(cfg.activation, np.where(z > 0, 1.0, slope))
    return np.asarray(da) * fprime


def linear_bwd(params, x, delta):
    dW = sum(np.outer(d, xb) for d, xb in zip(np.asarray(delta), np.asarray(x)))
    return {"W": dW, "b": np.asarray(delta).sum(axis=0)}, np.asarray(delta) @ np.asarray(params["W"])


def scatter_rows(ids, rows, num_rows):
    out = np.zeros((num_rows, rows.shape[1]))
    np.add.at(out, np.asarray(ids), np.asarray(rows))
    return out


def l2_bwd(params, grads, cfg):
    out = dict(grads)
    for name in ("W", "u" if cfg.head == "score" else "U"):
        out[name] = grads[name] + cfg.l2 * np.asarray(params[name])
    return out
"""


def test_an_independent_solution_passes_every_activation(tmp_path, capsys):
    path = _write(tmp_path, STUDENT)
    assert cli.main(["check", "--impl", str(path), "--head", "softmax"]) == 0
    out = capsys.readouterr().out
    rows = {tuple(line.split()[:2]): line for line in out.splitlines() if line.startswith(exercise.ORDER)}
    assert rows.pop(("split_windows", "dJ/dx_i")).endswith("reference (not in your file)")
    assert len(rows) == 12 and all(line.endswith(" ok") for line in rows.values())
    assert rows["linear_bwd", "dJ/dW"].split()[4:6] == ["no", "yes"]  # not bit-equal, but within 1e-10
    assert "on 24 cases of the check matrix" in out
    assert "PASSED: 6 of your steps match the reference, 0 do not, 0 not implemented yet" in out
    transposed = STUDENT.replace("np.outer(d, xb)", "np.outer(xb, d)")
    assert _check(_write(tmp_path, transposed), "--head", "softmax") == 1
    assert "linear_bwd. Your dJ/dW: transposed" in _verdict(capsys.readouterr().out)


NUMPY_SCATTER = """
import numpy as np


def scatter_rows(ids, rows, num_rows):
    out = np.zeros((num_rows, rows.shape[1]))
    {update}
    return out
"""


def test_numpy_steps_are_checked_and_the_rest_is_the_reference(tmp_path, capsys):
    path = _write(tmp_path, NUMPY_SCATTER.format(update="np.add.at(out, np.asarray(ids), np.asarray(rows))"))
    assert _check(path, "--head", "softmax") == 0
    out = capsys.readouterr().out
    assert "reference (not in your file)" in out
    assert "your finished steps assembled into the whole backward pass" in out
    assert "PASSED: 1 of your steps match the reference, 0 do not, 0 not implemented yet" in out


def test_numpy_assignment_is_named(tmp_path, capsys):
    path = _write(tmp_path, NUMPY_SCATTER.format(update="out[np.asarray(ids)] = np.asarray(rows)"))
    assert _check(path, "--head", "softmax") == 1
    verdict = _verdict(capsys.readouterr().out)
    assert "scatter_rows. Your dJ/dE: assigned instead of added" in verdict and "used 2 times" in verdict


WHOLE = """
import jax
from jaxbackprop import model


def value_and_grad(params, batch, cfg):
    J, g = jax.value_and_grad(model.loss)(params, batch, cfg)
    {mistake}
    return J, g
"""


def test_a_whole_value_and_grad_is_checked_tensor_by_tensor(tmp_path, capsys):
    assert _check(_write(tmp_path, WHOLE.format(mistake="pass")), "--head", "score") == 0
    out = capsys.readouterr().out
    rows = [line.split()[1] for line in out.splitlines() if line.startswith("value_and_grad")]
    assert rows == ["J", "dJ/du", "dJ/dW", "dJ/db", "dJ/dF", "dJ/dE"]  # the loss, then backward order
    mistake = 'g["W"] = g["W"] - cfg.l2 * params["W"]'
    assert _check(_write(tmp_path, WHOLE.format(mistake=mistake)), "--head", "score") == 1
    assert "value_and_grad. Your dJ/dW: the L2 term is missing" in _verdict(capsys.readouterr().out)


def test_a_step_that_raises_is_an_error_at_its_line(tmp_path, capsys):
    text = "def activation_bwd(params, z, a, da, cfg):\n    return da @ z\n"
    assert _check(_write(tmp_path, text), "--head", "softmax") == 1
    verdict = _verdict(capsys.readouterr().out)
    assert "activation_bwd. Your dJ/dz: raised TypeError" in verdict and "backprop.py:2)" in verdict


def test_wrong_containers_say_what_was_expected(tmp_path, capsys):
    text = "def linear_bwd(params, x, delta):\n    return {'W': delta.T @ x, 'b': delta.sum(0)}\n"
    assert _check(_write(tmp_path, text), "--head", "softmax") == 1
    out = capsys.readouterr().out
    assert "linear_bwd returned dict, expected a 2-tuple (dict ['W', 'b'], dJ/dx)" in out
    assert out.count("linear_bwd returned dict") == 1  # once for the step, not once per output


@pytest.mark.parametrize(
    "planted, words",
    [
        ("(w[:, None] * (probs - y)).astype(jnp.float32)", "computed in float32"),
        ("w[:, None] * (probs - y).astype(jnp.float32)", "float32 round-off? relative error"),
    ],
)
def test_float32_is_named(tmp_path, capsys, planted, words):
    path = _write(tmp_path, SOLVED.replace("w[:, None] * (probs - y)", planted))
    assert _check(path, "--head", "softmax") == 1
    assert f"softmax_bwd. Your dJ/dlogits: {words}" in _verdict(capsys.readouterr().out)


def test_a_near_miss_of_a_step_name_gets_a_note(tmp_path, capsys):
    text = NUMPY_SCATTER.format(update="np.add.at(out, np.asarray(ids), np.asarray(rows))")
    text += "\n\ndef linear_bw(params, x, delta):\n    pass\n"
    assert _check(_write(tmp_path, text), "--head", "softmax") == 0
    assert "defines linear_bw, which is no step's name: did you mean linear_bwd?" in capsys.readouterr().out


@pytest.mark.parametrize(
    "text, message",
    [
        (None, "nothere.py: no such file"),
        ("def linear_bwd(params, x, delta)\n    pass\n", "nothere.py:1: syntax error: expected ':'"),
        ("import numpy\n\n\ndef helper():\n    pass\n", "nothere.py: defines none of the steps"),
        (
            "\ndef linear_bwd(params, x):\n    pass\n",
            "nothere.py:2: linear_bwd(params, x) cannot be called as the pass",
        ),
        ("import numpy\nx = 1 / 0\n", "nothere.py:2: importing it raised ZeroDivisionError"),
    ],
    ids=["missing", "syntax", "no steps", "signature", "import"],
)
def test_a_file_that_cannot_be_checked_is_one_line(tmp_path, monkeypatch, capsys, text, message):
    monkeypatch.chdir(tmp_path)
    if text is not None:
        _write(tmp_path, text, "nothere.py")
    assert cli.main(["check", "--impl", "nothere.py"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("jaxbackprop: error: " + message), captured.err


def test_large_does_not_combine_with_impl(tmp_path, capsys):
    assert cli.main(["check", "--impl", str(tmp_path / "x.py"), "--large"]) == 2
    assert "does not combine with --impl" in capsys.readouterr().err


def test_the_pass_calls_its_steps_in_backward_order(x64):
    cfg = model.ModelConfig(activation="tanh", head="softmax", **check_matrix.MATRIX_MODEL)
    params = {k: jax.numpy.asarray(v) for k, v in check_matrix.check_params(0, cfg).items()}
    batch, _ = check_matrix.case_batch("repeated words", 1, cfg)
    calls = []
    J, g = backprop.manual_value_and_grad(params, batch, cfg, steps=impl_check._recorder(calls))
    assert [name for name, _, _ in calls] == [
        "softmax_bwd",
        "output_layer_bwd",
        "activation_bwd",
        "linear_bwd",
        "split_windows",
        "scatter_rows",  # the feature table F, inside the window layer
        "l2_bwd",
        "scatter_rows",  # E
    ]
    J_ref, g_ref = backprop.manual_value_and_grad(params, batch, cfg)
    assert J == J_ref and all(np.array_equal(g[k], g_ref[k]) for k in g)  # recording changes nothing


def test_differences_treat_nan_as_the_worst_error():
    assert impl_check.differences(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == (0.0, 0.0, (0,))
    max_abs, max_rel, worst = impl_check.differences(np.array([1.0, np.nan]), np.array([1.0, 2.0]))
    assert np.isnan(max_abs) and max_rel == np.inf and worst == (1,)
