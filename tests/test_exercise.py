"""The exercise: the skeleton holds every reference step with its docstring and an unfinished body;
`jaxbackprop exercise` writes it without overwriting a student's work; filled with the project's
own steps it passes `jaxbackprop check --impl` on the whole check matrix."""

import ast
import inspect

import pytest

from jaxbackprop import backprop, cli, exercise


def _functions(text: str) -> dict:
    return {node.name: node for node in ast.parse(text).body if isinstance(node, ast.FunctionDef)}


def test_skeleton_has_every_step_with_its_docstring_and_an_unfinished_body():
    assert sorted(exercise.ORDER) == sorted(backprop.Steps._fields)
    functions = _functions(exercise.skeleton())
    assert list(functions) == list(exercise.ORDER)
    for name, node in functions.items():
        reference = getattr(backprop, name)
        assert ast.get_docstring(node) == exercise.STEP_DOCS[name], name
        wanted = [p for p in inspect.signature(reference).parameters]
        assert [a.arg for a in node.args.args] == wanted, name
        (body,) = node.body[1:]  # the docstring, then one statement
        assert isinstance(body, ast.Raise) and body.exc.func.id == "NotImplementedError", name


# the equations a student is to derive: none in the default skeleton, each with --hints
SPOILERS = ("delta^T x", "delta_b x_b^T", "W^T delta", "dlogits^T h", "y_hat_b - y_b", "P_t - onehot", "*added*")
SPOILERS += ("l2 W", "o f'(z)", "a (1 - a)", "1 - a^2", "-w [m > 0]", "marginals minus the gold")


def test_the_skeleton_gives_shapes_not_the_equations_and_hints_give_them():
    text = exercise.skeleton()
    assert [s for s in SPOILERS if s in text] == []
    for needle in ("(H, D)", "dJ/dx_i, (B, n, d)", "s = u^T h", "J  --score_head_bwd-->", "per-word feature table"):
        assert needle in text
    hinted = exercise.skeleton(hints=True)
    assert [s for s in SPOILERS if s not in hinted] == []
    assert "Hint, the reference's derivation:" in hinted


def test_exercise_hints_writes_the_derivations(tmp_path, capsys):
    assert cli.main(["exercise", "--out", str(tmp_path), "--hints"]) == 0
    assert "delta^T x" in (tmp_path / "backprop.py").read_text()


def test_solved_skeleton_is_the_reference_code():
    functions = _functions(exercise.skeleton(solved=True))
    for name in exercise.ORDER:
        assert "NotImplementedError" not in ast.unparse(functions[name])
    assert "dW = delta.T @ x" in exercise.skeleton(solved=True)


def test_exercise_writes_once_and_refuses_to_overwrite_work(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["exercise", "--out", "mine"]) == 0
    path = tmp_path / "mine" / "backprop.py"
    assert "wrote mine/backprop.py" in capsys.readouterr().out
    assert "jaxbackprop check --impl mine/backprop.py" in path.read_text()
    assert cli.main(["exercise", "--out", "mine"]) == 0  # the fresh skeleton again: nothing to lose
    assert "unchanged" in capsys.readouterr().out
    path.write_text(path.read_text().replace('raise NotImplementedError("softmax_bwd', 'return 0  # ("'))
    assert cli.main(["exercise", "--out", "mine"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mine/backprop.py already exists" in err and "--force" in err
    assert "return 0" in path.read_text()
    assert cli.main(["exercise", "--out", "mine", "--force"]) == 0
    assert path.read_text() == exercise.skeleton("mine/backprop.py")
    assert [p.name for p in path.parent.iterdir()] == ["backprop.py"]  # no temporary left behind


def test_exercise_defaults_to_the_current_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["exercise"]) == 0
    assert (tmp_path / "backprop.py").is_file()


def test_unfilled_skeleton_is_all_todo_and_fails(tmp_path, capsys):
    path = tmp_path / "backprop.py"
    path.write_text(exercise.skeleton())
    assert cli.main(["check", "--impl", str(path), "--activation", "relu", "--head", "softmax"]) == 5
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(exercise.ORDER)]
    assert rows and all(line.endswith("todo") for line in rows)
    assert "not implemented (the reference stood in): softmax_bwd, output_layer_bwd" in out
    assert "INCOMPLETE: 0 right, 0 wrong, 7 not implemented, 0 not in your file (of 7 steps checked)" in out


def test_filled_skeleton_passes_the_whole_check_matrix(tmp_path, capsys):
    """The acceptance test: from `exercise` to a green table, every activation x head x case."""
    path = tmp_path / "backprop.py"
    path.write_text(exercise.skeleton(solved=True))
    assert cli.main(["check", "--impl", str(path), "--assembled", "--timeout", "120"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(exercise.ORDER)]
    assert {line.split()[0] for line in rows} == set(exercise.ORDER)
    assert all(line.endswith(" ok") and " yes   yes " in line for line in rows), "\n".join(rows)
    assert "on 66 cases of the check matrix" in out  # 6 activations x (2 window heads x 4 cases + crf x 3)
    assert "assembled into the whole backward pass: the loss and every gradient within 1e-10" in out
    assert "PASSED: 9 right, 0 wrong, 0 not implemented, 0 not in your file (of 9 steps checked)" in out


@pytest.mark.parametrize("name", exercise.ORDER)
def test_one_step_filled_in_is_checked_and_the_rest_is_todo(tmp_path, capsys, name):
    """Working one step at a time: the filled one is ok, the others stand in as the reference."""
    unfinished = exercise.step_source(name)
    text = exercise.skeleton().replace(unfinished, exercise.step_source(name, solved=True))
    path = tmp_path / "backprop.py"
    path.write_text(text)
    head = {"score_head_bwd": "score", "crf_head_bwd": "crf"}.get(name, "softmax")
    assert cli.main(["check", "--impl", str(path), "--activation", "tanh", "--head", head, "--timeout", "60"]) == 5
    out = capsys.readouterr().out
    mine = [line for line in out.splitlines() if line.startswith(name + " ")]
    assert mine and all(line.endswith(" ok") for line in mine), out
    assert "INCOMPLETE: 1 right, 0 wrong" in out
