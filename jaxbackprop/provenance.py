"""What a result file records about where its inputs came from, without this machine's layout.

Result files (``config.json``, ``result.json``, benchmark JSON) are committed and read on other
machines, so they never hold an absolute path: a path inside the project is written relative to
the project's root, any other path by its name alone (a data set's identity is its hash, not the
folder it sat in on one machine).

>>> portable_path(PROJECT_ROOT / "experiments" / "results")
'experiments/results'
>>> portable_path("/somewhere/else/glove.6B.50d.txt")
'glove.6B.50d.txt'
>>> portable_argv(["train", "--conll", "/somewhere/else/conll2003", "--lr=0.1"])
['train', '--conll', 'conll2003', '--lr=0.1']
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

# the checkout this package was imported from (for an installed package: the folder above it)
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def portable_path(path) -> str:
    """``path`` relative to the project root (POSIX separators) if it lies inside it, else its name.

    Relative paths are taken from the current directory. Symbolic links are checked both as
    written and resolved, so a link inside the project to data elsewhere stays project-relative.
    """
    p = Path(os.path.expanduser(os.fspath(path)))
    written = Path(os.path.abspath(p))
    for candidate in (written, written.resolve()):
        for root in (PROJECT_ROOT, Path(os.path.abspath(PROJECT_ROOT))):
            try:
                return candidate.relative_to(root).as_posix() or "."
            except ValueError:
                continue
    return p.name or written.name


def _portable_arg(arg: str) -> str:
    """An argument that is an absolute path, or a relative one naming an existing file, made portable."""
    if os.path.isabs(os.path.expanduser(arg)) or (os.sep in arg and os.path.exists(arg)):
        return portable_path(arg)
    return arg


def portable_argv(argv) -> list:
    """A command line as :func:`portable_path` would record it: absolute paths, and relative ones
    that name an existing file, are rewritten; every other argument (flags, numbers) is kept.
    ``--flag=PATH`` is rewritten in place."""
    out = []
    for arg in map(str, argv):
        if arg.startswith("-") and "=" in arg:
            flag, value = arg.split("=", 1)
            out.append(f"{flag}={_portable_arg(value)}")
        else:
            out.append(arg if arg.startswith("-") else _portable_arg(arg))
    return out


def sha256_file(path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes: which data a result was computed on, wherever it lay."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
