"""notebooks/backprop_walkthrough.ipynb and backprop_exercise.ipynb: kept in git without outputs; the exercise
is the walkthrough with its solutions blank (notebooks/make_exercise.py) and nothing else changed, so running
the walkthrough -- top to bottom, on a CPU, in under a minute, showing what its text says -- runs the very
cells that check an exercise's answers."""

import ast
import importlib.util
import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOK = NOTEBOOKS / "backprop_walkthrough.ipynb"
EXERCISE = NOTEBOOKS / "backprop_exercise.ipynb"
BUDGET_S = 60  # the notebook's own cells, first to last (it prints the time it took)
START_S = 120  # and a wall-clock limit on the whole run, starting the kernel included


@pytest.fixture(scope="module")
def make_exercise():
    spec = importlib.util.spec_from_file_location("make_exercise", NOTEBOOKS / "make_exercise.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read(path):
    return json.loads(path.read_text(encoding="utf-8"))


def tagged(cell):
    return "solution" in cell["metadata"].get("tags", [])


@pytest.mark.parametrize("path", [NOTEBOOK, EXERCISE], ids=lambda p: p.name)
def test_committed_notebook_has_no_outputs(path):
    code = [c for c in read(path)["cells"] if c["cell_type"] == "code"]
    assert len(code) >= 6
    for i, cell in enumerate(code):
        assert cell["outputs"] == [] and cell["execution_count"] is None, f"code cell {i} keeps outputs: strip them"


def test_the_exercise_is_made_from_the_walkthrough(make_exercise):
    walkthrough = read(NOTEBOOK)
    expected = make_exercise.notebook_text(make_exercise.exercise_from(walkthrough))
    assert EXERCISE.read_text(encoding="utf-8") == expected, "run python notebooks/make_exercise.py"
    exercise = read(EXERCISE)
    assert len(exercise["cells"]) == len(walkthrough["cells"]) + 1  # its header first
    for theirs, ours in zip(walkthrough["cells"], exercise["cells"][1:]):
        assert (theirs == ours) != tagged(theirs)  # every cell but the solutions is the walkthrough's own


def test_the_blanks_give_nothing_away_and_still_parse(make_exercise):
    walkthrough, exercise = read(NOTEBOOK), read(EXERCISE)
    solutions = [(c, e) for c, e in zip(walkthrough["cells"], exercise["cells"][1:]) if tagged(c)]
    assert sorted(c["cell_type"] for c, _ in solutions) == ["code", "code", "markdown", "markdown"]
    for cell, blank in solutions:
        lines = make_exercise.lines_of(cell["source"])
        hidden = [
            line.strip()
            for begin, end, _ in make_exercise.solution_regions(lines, "walkthrough")
            for line in lines[begin + 1 : end]
            if line.strip()
        ]
        kept = {line.strip() for line in make_exercise.lines_of(blank["source"])}
        assert hidden and not kept & set(hidden), cell["id"]
        assert any("TODO" in line for line in kept)
    for i, cell in enumerate(exercise["cells"]):
        if cell["cell_type"] == "code":
            ast.parse("".join(cell["source"]), f"exercise cell {i}")


def test_each_solution_is_checked_against_jax_grad_by_the_next_cell():
    cells = read(NOTEBOOK)["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    answers = [i for i, c in enumerate(code) if tagged(c)]
    assert len(answers) == 2
    for i in answers:
        check = "".join(code[i + 1]["source"])
        assert not tagged(code[i + 1]) and "jax.grad" in check and "max |by hand - jax.grad|" in check


def test_a_marker_out_of_place_is_one_line_naming_the_cell(make_exercise):
    def notebook(source, tags=("solution",)):
        return {"cells": [{"cell_type": "code", "id": "a1", "metadata": {"tags": list(tags)}, "source": source}]}

    with pytest.raises(ValueError, match=r"cell 0 \(id a1\), line 2: BEGIN SOLUTION without its END SOLUTION"):
        make_exercise.exercise_from(notebook("x = 1\n# BEGIN SOLUTION\ny = 2"))
    with pytest.raises(ValueError, match=r"line 1: END SOLUTION without its pair"):
        make_exercise.exercise_from(notebook("# END SOLUTION\n"))
    with pytest.raises(ValueError, match="holds a solution region but is not tagged 'solution'"):
        make_exercise.exercise_from(notebook("# BEGIN SOLUTION\ny = 2\n# END SOLUTION", tags=()))
    with pytest.raises(ValueError, match="tagged 'solution' but holds no BEGIN SOLUTION"):
        make_exercise.exercise_from(notebook("y = 2"))


def test_a_blank_keeps_its_indent_and_the_lines_around_it(make_exercise):
    source = "def f(x):\n    y = x\n    # BEGIN SOLUTION\n    dy = 2 * y\n    # END SOLUTION\n    return dy"
    (_, cell) = make_exercise.exercise_from(
        {"cells": [{"cell_type": "code", "metadata": {"tags": ["solution"]}, "source": source}]}
    )["cells"]
    assert "".join(cell["source"]) == (
        "def f(x):\n    y = x\n"
        "    # TODO: your code here; the next cell compares it with jax.grad\n"
        '    raise NotImplementedError("TODO")\n'
        "    return dy"
    )


def test_check_says_when_the_exercise_is_out_of_date(make_exercise, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(make_exercise, "EXERCISE", tmp_path / "exercise.ipynb")
    assert make_exercise.main(["--check"]) == 1
    assert "exercise.ipynb is out of date: run python notebooks/make_exercise.py" in capsys.readouterr().err
    assert make_exercise.main([]) == 0
    assert make_exercise.main(["--check"]) == 0
    assert (tmp_path / "exercise.ipynb").read_text(encoding="utf-8") == EXERCISE.read_text(encoding="utf-8")


def table_row(text, name):
    """(pretrained, frozen mean, frozen sd, fine-tuned mean, fine-tuned sd) from a row of the vectors' table."""
    m = re.search(rf"^{re.escape(name)}\s+(\S+)\s+(\S+) ± (\S+)\s+(\S+) ± (\S+)$", text, re.M)
    assert m, name
    return tuple(float(v) for v in m.groups())


@pytest.mark.slow
def test_notebook_runs_top_to_bottom_within_a_minute(monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")  # jupyter_core's warning about its paths moving
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=START_S, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()  # raises CellExecutionError, naming the cell, on the first error
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "by hand: {'x': 2.0, 'y': 5.0, 'z': 0.0}   jax.grad: {'x': 2.0, 'y': 5.0, 'z': 0.0}" in text
    s_hand, s_model = re.search(r"s = (\S+)   model.forward: (\S+)", text).groups()
    assert s_hand == s_model
    assert "unused rows of E get exactly zero: True" in text
    differences = re.findall(r"^(d[sJ]/d\w+) .* max \|by hand - jax.grad\| = (\S+)", text, re.M)
    assert sorted(name for name, _ in differences) == sorted(
        ["ds/dE", "ds/dW", "ds/db", "ds/du", "dJ/dE", "dJ/dW", "dJ/db", "dJ/dU", "dJ/dc"]
    )
    assert max(float(d) for _, d in differences) < 1e-14

    # "close together", quantified: frozen keeps the pretrained geometry to the printed digit; fine-tuning
    # moves tv and telly together (measured: cos 0.914 -> 0.907) and away from the unseen television
    # (measured: cos 0.93 -> 0.84, distance 0.38 -> 0.63); margins about half the measured change
    for pair in ("tv, television", "telly, television"):
        pretrained, frozen, frozen_sd, tuned, _ = table_row(text, f"cos({pair})")
        assert (frozen, frozen_sd) == (pretrained, 0.0) and tuned < pretrained - 0.04
        pretrained, frozen, _, tuned, _ = table_row(text, f"distance({pair})")
        assert frozen == pretrained and tuned > pretrained + 0.1
    pretrained, frozen, _, tuned, _ = table_row(text, "cos(tv, telly)")
    assert frozen == pretrained > 0.8 and abs(tuned - pretrained) < 0.04
    assert "television's row, largest change in any of the 10 runs: 0.0\n" in text  # its gradient is exactly 0
    moved = dict(re.findall(r"(\w+) (\S+) ± \S+", text.split("fine-tuned rows moved by:")[1].splitlines()[0]))
    assert float(moved["tv"]) > 0.1 and float(moved["telly"]) > 0.1 and float(moved["television"]) == 0.0

    # five seeds, mean ± sd: frozen better on the held-out words (measured: 0.988 vs 0.968, 5 of 5 seeds),
    # level over all tokens (0.995 both)
    accuracy = re.findall(r"frozen (\S+) ± \S+   fine-tuned (\S+) ± \S+", text)
    (frozen_all, tuned_all), (frozen_unseen, tuned_unseen) = [(float(a), float(b)) for a, b in accuracy]
    assert abs(frozen_all - tuned_all) < 0.005 and frozen_unseen - tuned_unseen > 0.01
    assert int(re.search(r"on the (\d+) held-out-word tokens", text).group(1)) > 200
    assert int(re.search(r"frozen better in (\d) of 5 seeds", text).group(1)) >= 4

    assert any(
        o.output_type == "display_data" and "image/png" in o.data for c in nb.cells for o in c.get("outputs", [])
    )
    seconds = float(re.search(r"notebook ran in (\S+) s", text).group(1))
    assert seconds < BUDGET_S
