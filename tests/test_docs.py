"""docs/derivation.md points at code by function name and line range; keep those true."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REF = re.compile(r"`(\w+)`[ ,(]+(?:(?:jaxbackprop/)?(\w+\.py) )?lines? (\d+)[–-](\d+)")
FILE = re.compile(r"(?:jaxbackprop/)?(\w+\.py)")


def _spans(path: Path) -> dict:
    tree = ast.parse(path.read_text())
    nodes = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    # a function's lines start at its first decorator
    return {n.name: (min([n.lineno] + [d.lineno for d in n.decorator_list]), n.end_lineno) for n in nodes}


def test_every_line_reference_in_the_derivation_lands_in_its_function():
    text = (ROOT / "docs" / "derivation.md").read_text()
    checked, wrong, current = 0, [], None
    for lineno, line in enumerate(text.splitlines(), 1):
        for match in REF.finditer(line):
            name, file, a, b = match.group(1), match.group(2), int(match.group(3)), int(match.group(4))
            files = FILE.findall(line[: match.start()])
            current = file or (files[-1] if files else current)
            path = ROOT / "jaxbackprop" / (current or "")
            spans = _spans(path) if path.is_file() else {}
            if name not in spans:
                continue  # a name that is not a function of that file (a variable, a key)
            start, end = spans[name]
            checked += 1
            if a < start or b > end:  # the cited lines must lie inside the function
                wrong.append(f"derivation.md:{lineno}: `{name}` cites {current} lines {a}-{b}, but it spans {start}-{end}")
        current = (FILE.findall(line) or [current])[-1]
    assert checked >= 20, f"only {checked} references recognised: has the format changed?"
    assert not wrong, "\n".join(wrong)
