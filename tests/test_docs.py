"""docs/derivation.md cites code by name, as `module.name`; keep every cited name real.

A citation is an inline code span holding a dotted name whose first part is a module of the
package: `backprop.window_bwd` means ``window_bwd`` in jaxbackprop/backprop.py, and
`model.ModelConfig.input_dim` an attribute of a class there (a leading ``jaxbackprop.`` is also
accepted). Any other dotted name in a code span must start with a known outside library, so a
misspelt module (`nonlinearity.apply`) fails instead of being skipped. Line numbers are not
allowed: they go stale with every refactor that keeps the behaviour.
"""

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "derivation.md"
PACKAGE = ROOT / "jaxbackprop"
MODULES = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"} | {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
OUTSIDE = {"jax", "jnp", "np", "numpy", "optax"}  # dotted names of other libraries, not citations
DOTTED = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+)`")
_MISSING = object()
LINE_NUMBER = re.compile(r"\blines?\s+\d+|\.py\W{0,3}\d", re.IGNORECASE)  # "lines 12–30", "model.py 107"


def _citations():
    """(line number, module, attribute path) of every citation in the derivation."""
    found, unknown = [], []
    for lineno, line in enumerate(DOC.read_text().splitlines(), 1):
        for match in DOTTED.finditer(line):
            parts = match.group(1).split(".")
            if parts[0] == "jaxbackprop" and len(parts) > 2:
                parts = parts[1:]
            if parts[0] in MODULES:
                found.append((lineno, parts[0], parts[1:]))
            elif parts[0] not in OUTSIDE and parts[-1] not in ("py", "md"):
                unknown.append(f"derivation.md:{lineno}: `{match.group(1)}`: no module jaxbackprop.{parts[0]}")
    return found, unknown


def test_every_cited_name_exists():
    found, unknown = _citations()
    missing = []
    for lineno, module, attrs in found:
        obj = importlib.import_module(f"jaxbackprop.{module}")
        for attr in attrs:
            obj = getattr(obj, attr, _MISSING)
            if obj is _MISSING:
                missing.append(f"derivation.md:{lineno}: `{'.'.join([module, *attrs])}` does not exist")
                break
    assert len(found) >= 20, f"only {len(found)} citations recognised: has the `module.name` format changed?"
    assert not unknown + missing, "\n".join(unknown + missing)


def test_no_line_numbers():
    stale = [
        f"derivation.md:{lineno}: {line.strip()}"
        for lineno, line in enumerate(DOC.read_text().splitlines(), 1)
        if LINE_NUMBER.search(line)
    ]
    assert not stale, "cite code by name, not by line number:\n" + "\n".join(stale)
