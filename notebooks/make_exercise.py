"""Make notebooks/backprop_exercise.ipynb: the walkthrough with its solutions blank.

A cell of backprop_walkthrough.ipynb tagged ``solution`` holds one or more regions between a
``BEGIN SOLUTION`` and an ``END SOLUTION`` line (``# ...`` in code, ``<!-- ... -->`` in markdown).
The exercise is the walkthrough with a TODO in each region's place and everything else kept line
for line, so the cell after a blank -- the one that compares it with jax.grad -- is the
walkthrough's own check, and the walkthrough's run in tests/test_notebook.py tests it::

    python notebooks/make_exercise.py           # after editing the walkthrough
    python notebooks/make_exercise.py --check   # exit 1 if the exercise is out of date

Only the standard library and jaxbackprop.files (which imports no JAX) are needed.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
WALKTHROUGH = HERE / "backprop_walkthrough.ipynb"
EXERCISE = HERE / "backprop_exercise.ipynb"
TAG = "solution"
MARKER = re.compile(r"^(?P<indent>\s*)(?:# |<!-- )(?P<which>BEGIN|END) SOLUTION(?: -->)?\s*$")
TODO = {
    "code": [
        "{indent}# TODO: your code here; the next cell compares it with jax.grad\n",
        '{indent}raise NotImplementedError("TODO")\n',
    ],
    "markdown": ["*TODO: derive this part yourself; `backprop_walkthrough.ipynb` has it worked out.*\n"],
}
HEADER = {
    "cell_type": "markdown",
    "id": "exercise-header",
    "metadata": {},
    "source": [
        "**Exercise.** This is `backprop_walkthrough.ipynb` with the gradients blank: fill in each `TODO`,\n",
        "then run the cell after it, which compares your gradients with `jax.grad`. Made from the walkthrough\n",
        "by `python notebooks/make_exercise.py`: edit the walkthrough, not this file.",
    ],
}


def lines_of(source) -> list[str]:
    """A cell's source as lines that keep their newlines (nbformat stores a string or a list)."""
    return "".join(source).splitlines(keepends=True)


def solution_regions(lines: list[str], where: str) -> list[tuple[int, int, str]]:
    """``(begin, end, indent)`` of each BEGIN/END SOLUTION pair, the marker lines' indices.

    Raises:
      ValueError: naming ``where`` and the line, for an unpaired or nested marker.
    """
    regions, begin = [], None
    for i, line in enumerate(lines):
        m = MARKER.match(line)
        if m is None:
            continue
        if (m["which"] == "BEGIN") != (begin is None):
            raise ValueError(f"{where}, line {i + 1}: {m['which']} SOLUTION without its pair")
        if m["which"] == "BEGIN":
            begin, indent = i, m["indent"]
        else:
            regions.append((begin, i, indent))
            begin = None
    if begin is not None:
        raise ValueError(f"{where}, line {begin + 1}: BEGIN SOLUTION without its END SOLUTION")
    return regions


def blank_cell(cell: dict, where: str) -> dict:
    """The cell with each solution region, markers included, replaced by its TODO lines."""
    lines = lines_of(cell["source"])
    regions = solution_regions(lines, where)
    if not regions:
        raise ValueError(f"{where}: tagged {TAG!r} but holds no BEGIN SOLUTION ... END SOLUTION region")
    out, start = [], 0
    for begin, end, indent in regions:
        out += lines[start:begin] + [t.format(indent=indent) for t in TODO[cell["cell_type"]]]
        start = end + 1
    out += lines[start:]
    out[-1] = out[-1].rstrip("\n")  # nbformat's convention: no newline after a cell's last line
    return {**copy.deepcopy(cell), "source": out}


def exercise_from(walkthrough: dict) -> dict:
    """The exercise notebook (a dict) made from the walkthrough notebook (a dict)."""
    cells = [copy.deepcopy(HEADER)]
    for i, cell in enumerate(walkthrough["cells"]):
        where = f"{WALKTHROUGH.name}: cell {i} (id {cell.get('id')})"
        tagged = TAG in cell.get("metadata", {}).get("tags", [])
        if not tagged and solution_regions(lines_of(cell["source"]), where):
            raise ValueError(f"{where}: holds a solution region but is not tagged {TAG!r}")
        cells.append(blank_cell(cell, where) if tagged else copy.deepcopy(cell))
    return {**walkthrough, "cells": cells}


def notebook_text(nb: dict) -> str:
    """A notebook as nbformat writes it (one-space indent, sorted keys), so git diffs stay small."""
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether the exercise is up to date")
    args = parser.parse_args(argv)
    try:
        walkthrough = json.loads(WALKTHROUGH.read_text(encoding="utf-8"))
    except ValueError as e:  # json's message names the line and column
        print(f"error: {WALKTHROUGH.name}: {e}", file=sys.stderr)
        return 2
    try:
        text = notebook_text(exercise_from(walkthrough))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.check:
        current = EXERCISE.read_text(encoding="utf-8") if EXERCISE.exists() else ""
        if current != text:
            print(f"{EXERCISE.name} is out of date: run python notebooks/make_exercise.py", file=sys.stderr)
            return 1
        return 0
    sys.path.insert(0, str(HERE.parent))  # the repository's jaxbackprop, for its atomic write
    from jaxbackprop import files

    files.write_text(EXERCISE, text)
    print(f"wrote {EXERCISE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
