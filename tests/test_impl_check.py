"""`jaxbackprop check --impl`: each classic mistake, planted in the project's own steps, fails and is
named at its step; a whole value_and_grad is checked tensor by tensor; a file that cannot be
checked ends in one line naming the file and line."""

import json
import os

import jax
import numpy as np
import pytest

from jaxbackprop import backprop, check_matrix, cli, exercise, impl_cache, impl_cli, mistakes, model

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
    # a generous limit: the first call of a step written in jax compiles its ops, on a busy machine too
    return cli.main(["check", "--impl", str(path), "--activation", "tanh", "--timeout", "60", *options])


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
    assert (
        f"FAILED: {right} right, 1 wrong, 0 not implemented, 0 not in your file (of {right + 1} steps checked)" in out
    )


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
    assert "assembled" not in out  # the whole pass is assembled only on request


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


def split_windows(dx, cfg):
    n, d = cfg.window, cfg.embed_dim
    return np.stack([np.asarray(dx)[:, i * d : (i + 1) * d] for i in range(n)], axis=1)


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
    assert len(rows) == 13 and all(line.endswith(" ok") for line in rows.values())
    assert rows["linear_bwd", "dJ/dW"].split()[4:6] == ["no", "yes"]  # not bit-equal, but within 1e-10
    assert "on 24 cases of the check matrix" in out
    assert (
        "PASSED: 7 right, 0 wrong, 0 not implemented, 0 not in your file (of 7 steps checked); not checked (not "
        "called on this part of the matrix): score_head_bwd, crf_head_bwd"
    ) in out
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


def test_one_right_step_is_incomplete_not_passed(tmp_path, capsys):
    """The issue's case: one right step, the rest left to the reference, used to say PASSED with exit 0."""
    path = _write(tmp_path, NUMPY_SCATTER.format(update="np.add.at(out, np.asarray(ids), np.asarray(rows))"))
    assert _check(path, "--head", "softmax") == 5
    out = capsys.readouterr().out
    assert "reference (not in your file)" in out
    assert (
        "INCOMPLETE: 1 right, 0 wrong, 0 not implemented, 6 not in your file (of 7 steps checked); not checked "
        "(not called on this part of the matrix): score_head_bwd, crf_head_bwd"
    ) in out
    assert "not in your file (the reference stood in): softmax_bwd, output_layer_bwd, activation_bwd," in out


def test_the_finished_steps_run_assembled_on_request(tmp_path, capsys):
    path = _write(tmp_path, NUMPY_SCATTER.format(update="np.add.at(out, np.asarray(ids), np.asarray(rows))"))
    assert _check(path, "--head", "softmax", "--step", "scatter_rows", "--assembled") == 0
    out = capsys.readouterr().out
    assert "your finished steps assembled into the whole backward pass" in out
    assert "PASSED: 1 right, 0 wrong, 0 not implemented, 0 not in your file (of 1 steps checked)" in out


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
    assert "activation_bwd. Your dJ/dz: raised ValueError: matmul" in verdict and "backprop.py:2)" in verdict


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


def test_a_near_miss_of_a_step_name_is_named_and_does_not_count(tmp_path, capsys):
    text = NUMPY_SCATTER.format(update="np.add.at(out, np.asarray(ids), np.asarray(rows))")
    text += "\n\ndef linear_bwdd(params, x, delta):\n    pass\n"
    assert _check(_write(tmp_path, text), "--head", "softmax", "--step", "scatter_rows", "--step", "linear_bwd") == 5
    out = capsys.readouterr().out
    assert "backprop.py:11 defines linear_bwdd, which is no step's name: did you mean linear_bwd? (not counted)" in out
    assert "INCOMPLETE: 1 right, 0 wrong, 0 not implemented, 1 not in your file (of 2 steps checked)" in out


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
        ("import sys\nsys.exit(0)\n", "nothere.py:2: importing it called sys.exit(0)"),
        (
            "while True:\n    pass\n",
            "nothere.py: importing it still running after 1 s (--timeout), stopped at nothere.py:",
        ),
    ],
    ids=["missing", "syntax", "no steps", "signature", "import", "sys.exit", "endless"],
)
def test_a_file_that_cannot_be_checked_is_one_line(tmp_path, monkeypatch, capsys, text, message):
    monkeypatch.chdir(tmp_path)
    if text is not None:
        _write(tmp_path, text, "nothere.py")
    assert cli.main(["check", "--impl", "nothere.py", "--timeout", "1"]) == 2
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
    J, g = backprop.manual_value_and_grad(params, batch, cfg, steps=impl_cache._recorder(calls))
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
    assert mistakes.differences(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == (0.0, 0.0, (0,))
    max_abs, max_rel, worst = mistakes.differences(np.array([1.0, np.nan]), np.array([1.0, 2.0]))
    assert np.isnan(max_abs) and max_rel == np.inf and worst == (1,)


@pytest.mark.parametrize(
    "body, words",
    [
        ("import sys\n    sys.exit(0)", "called sys.exit(0) ({path}:3)"),
        ("raise KeyboardInterrupt", "raised KeyboardInterrupt: - ({path}:2)"),
        ("while True:\n        pass", "still running after 1 s (--timeout), stopped at {path}:"),
    ],
    ids=["sys.exit", "KeyboardInterrupt", "endless loop"],
)
def test_a_step_cannot_end_or_hang_the_grader(tmp_path, capsys, body, words):
    path = _write(tmp_path, f"def activation_bwd(params, z, a, da, cfg):\n    {body}\n")
    assert _check(path, "--head", "softmax", "--timeout", "1") == 1
    out = capsys.readouterr().out
    assert f"first step that leaves the reference: activation_bwd. Your dJ/dz: {words.format(path=path)}" in out
    assert "FAILED: 0 right, 1 wrong" in out


@pytest.mark.parametrize(
    "text",
    [
        "from jaxbackprop.backprop import linear_bwd\n",
        "from jaxbackprop import backprop\n\n\ndef linear_bwd(params, x, delta):\n"
        "    return backprop.linear_bwd(params, x, delta)\n",
        "def linear_bwd(params, x, delta):\n    from jaxbackprop.backprop import linear_bwd as ref\n\n"
        "    return ref(params, x, delta)\n",
    ],
    ids=["imported", "module", "inside the step"],
)
def test_forwarding_to_the_reference_is_not_your_own_work(tmp_path, capsys, text):
    assert _check(_write(tmp_path, text), "--head", "softmax", "--step", "linear_bwd") == 1
    out = capsys.readouterr().out
    assert "first step that leaves the reference: linear_bwd." in out and "the reference's work" in out
    assert "FAILED: 0 right, 0 wrong, 1 not yours" in out


def test_a_file_that_patches_the_tolerance_changes_nothing(tmp_path, capsys):
    """The tolerance lives in the grader's process; the patch (and the reference it drags in) fails."""
    patch = "from jaxbackprop import impl_check, impl_report, mistakes\nmistakes.RTOL = impl_report.RTOL = 1.0\n"
    path = _write(tmp_path, patch + SOLVED.replace("dW = delta.T @ x", "dW = delta.T @ x * (1 + 1e-6)"))
    assert _check(path, "--head", "softmax", "--step", "linear_bwd") == 1
    out = capsys.readouterr().out
    assert "close: max relative error <= 1e-10" in out and "FAILED: 0 right" in out


def test_an_integer_result_is_called_what_it_is(tmp_path, capsys):
    text = (
        "import numpy as np\n\n\ndef softmax_bwd(probs, labels, w):\n    return np.zeros(probs.shape, dtype=np.int32)\n"
    )
    assert _check(_write(tmp_path, text), "--head", "softmax") == 1
    verdict = _verdict(capsys.readouterr().out)
    assert "Your dJ/dlogits: your dJ/dlogits has dtype int32; expected float64 -- integer arithmetic?" in verdict


def test_a_directory_is_one_line(tmp_path, capsys):
    assert cli.main(["check", "--impl", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"jaxbackprop: error: {tmp_path}: is a directory; give your Python file (`jaxbackprop exercise` writes "
        "backprop.py)\n"
    )


def test_an_unknown_step_is_one_line(tmp_path, capsys):
    assert cli.main(["check", "--impl", str(_write(tmp_path, SOLVED)), "--step", "linear"]) == 2
    assert "argument --step: invalid choice: 'linear' (choose from softmax_bwd," in capsys.readouterr().err


def test_step_narrows_the_rows_and_the_rest_is_not_checked(tmp_path, capsys):
    assert _check(_write(tmp_path, SOLVED), "--head", "softmax", "--step", "linear_bwd") == 0
    out = capsys.readouterr().out
    rows = [line.split()[:2] for line in out.splitlines() if line.startswith(exercise.ORDER)]
    assert rows == [["linear_bwd", "dJ/dW"], ["linear_bwd", "dJ/db"], ["linear_bwd", "dJ/dx"]]
    assert "PASSED: 1 right, 0 wrong, 0 not implemented, 0 not in your file (of 1 steps checked); not checked" in out


def test_json_report_for_graders(tmp_path, capsys):
    path = _write(tmp_path, SOLVED.replace("dW = delta.T @ x", "dW = x.T @ delta"))
    assert _check(path, "--head", "softmax", "--json") == 1
    report = json.loads(capsys.readouterr().out)
    assert (report["grade"], report["exit_code"], report["cases"]) == ("FAILED", 1, 4)
    assert report["totals"] == {
        "right": 6,
        "wrong": 1,
        "not yours": 0,
        "not implemented": 0,
        "not in your file": 0,
        "not checked": 2,
    }
    linear = report["steps"]["linear_bwd"]
    assert linear["status"] == "wrong"
    dW, db = linear["tensors"][:2]
    assert dW["tensor"] == "dJ/dW" and dW["status"] == "WRONG" and dW["mistake"].startswith("transposed")
    assert db["status"] == "ok" and db["max_rel"] <= 1e-10 and db["worst"] == [] or len(db["worst"]) == 1
    assert report["steps"]["crf_head_bwd"] == {"status": "not checked", "tensors": []}


def test_show_prints_expected_and_yours(tmp_path, capsys):
    path = _write(tmp_path, SOLVED.replace("db = jnp.sum(delta, axis=0)", "db = 2 * jnp.sum(delta, axis=0)"))
    assert _check(path, "--head", "softmax", "--show", "db") == 1
    out = capsys.readouterr().out
    shown = out[out.index("dJ/db of linear_bwd, case tanh / softmax / ") :].splitlines()
    assert shown[0].endswith(": WRONG") and shown[1] == "expected:" and "yours:" in shown
    expected = np.array(" ".join(shown[2 : shown.index("yours:")]).strip("[]").split(), float)
    yours = np.array(
        " ".join(shown[shown.index("yours:") + 1 : shown.index("yours - expected:")]).strip("[]").split(), float
    )
    assert expected.shape == (10,) and np.allclose(yours, 2 * expected, rtol=1e-3, atol=1e-4)


def test_watch_checks_again_on_each_save(tmp_path):
    path = _write(tmp_path, NUMPY_SCATTER.format(update="out[np.asarray(ids)] = np.asarray(rows)"))
    args = impl_cli.parse(["check", "--impl", str(path), "--activation", "tanh", "--head", "softmax", "--watch"])
    args.step = ["scatter_rows"]
    printed = []

    def fix(run):
        if run == 1:
            path.write_text(NUMPY_SCATTER.format(update="np.add.at(out, np.asarray(ids), np.asarray(rows))"))
            os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))

    assert impl_cli.watch(args, poll=0.01, runs=2, on_run=fix, out=printed.append) == 0
    tables = [p for p in printed if "your backward steps" in p]
    assert "FAILED: 0 right, 1 wrong" in tables[0] and "PASSED: 1 right, 0 wrong" in tables[1]
    assert sum("-- checked in" in p for p in printed) == 2


def test_the_cache_holds_what_the_reference_recorded(x64):
    label = "tanh / softmax / batch of 1"
    [case] = impl_cache.cases([label], 0, {})
    assert impl_cache.case_file(label, 0).is_file()
    cfg = model.ModelConfig(activation="tanh", head="softmax", **check_matrix.MATRIX_MODEL)
    assert case["cfg"].hidden_dim == cfg.hidden_dim and case["cfg"].input_dim == cfg.input_dim
    params = {k: jax.numpy.asarray(v) for k, v in check_matrix.check_params(0, cfg).items()}
    batch, _ = check_matrix.case_batch("batch of 1", 3, cfg)
    J, grads = backprop.manual_value_and_grad(params, batch, cfg)
    assert case["J"] == J and all(np.array_equal(case["grads"][k], grads[k]) for k in grads)
    assert [name for name, _, _ in case["calls"]][0] == "softmax_bwd"


def test_after_a_step_that_hangs_or_ends_the_child_the_others_are_still_checked(tmp_path, capsys):
    text = NUMPY_SCATTER.format(update="np.add.at(out, np.asarray(ids), np.asarray(rows))")
    text += "\n\ndef l2_bwd(params, grads, cfg):\n    import os\n\n    os._exit(3)\n"
    assert _check(_write(tmp_path, text), "--head", "softmax", "--step", "l2_bwd", "--step", "scatter_rows") == 1
    out = capsys.readouterr().out
    assert "l2_bwd. Your dJ/dW" in out and "ended the checking process (exit code 3): os._exit" in out
    assert "FAILED: 1 right, 1 wrong" in out  # scatter_rows, called after the child was started again
