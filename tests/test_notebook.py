"""notebooks/backprop_walkthrough.ipynb: kept in git without outputs, and it runs top to bottom on a
CPU in under a minute, showing what its text says."""

import json
import re
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "backprop_walkthrough.ipynb"
BUDGET_S = 60  # the notebook's own cells, first to last (it prints the time it took)
START_S = 120  # and a wall-clock limit on the whole run, starting the kernel included


def test_committed_notebook_has_no_outputs():
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert len(code) >= 6
    for i, cell in enumerate(code):
        assert cell["outputs"] == [] and cell["execution_count"] is None, f"code cell {i} keeps outputs: strip them"


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
    assert "unused rows of E get exactly zero: True" in text
    differences = [float(d) for d in re.findall(r"max \|by hand - jax.grad\| = (\S+)", text)]
    assert len(differences) == 5 and max(differences) < 1e-14
    fine_tuned = next(line for line in text.splitlines() if line.startswith("fine-tuned  |telly - tv|"))
    assert "telly 0.000" in fine_tuned  # no gradient ever reaches a word training never saw
    assert any(
        o.output_type == "display_data" and "image/png" in o.data for c in nb.cells for o in c.get("outputs", [])
    )
    seconds = float(re.search(r"notebook ran in (\S+) s", text).group(1))
    assert seconds < BUDGET_S
