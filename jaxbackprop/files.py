"""Atomic file writes, and JSON / JSON-lines reading with errors that name the file and line.

Every write goes to a temporary file in the same directory and is then renamed over the target
(``os.replace`` is atomic on POSIX), so an interrupted write never leaves a half-written file
and never destroys the previous version.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import tempfile
from pathlib import Path

# mkstemp makes its files private (0600); results are meant to be read like any file open() makes
FILE_MODE = 0o644
# every temporary's name starts with this, so cleaning up after a killed process can never take a
# user's own file (".config.json.mybackup.tmp" is a user's name, not ours)
TMP_PREFIX = ".jaxbackprop-tmp-"


@contextlib.contextmanager
def atomic_path(path, suffix: str = ""):
    """Yield a temporary path next to ``path``; when the block succeeds, rename it over ``path``.

    Args:
      path: the file to (re)place; its directory is created if needed.
      suffix: the temporary's extension (e.g. ``".npz"``, for writers that look at it); its name
        is ``TMP_PREFIX + path.name + "." + random + suffix``.

    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "note.txt"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("done")
    >>> target.read_text()
    'done'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except OSError as e:
        if e.filename is None:  # a write through a file object (a full disk) names no file: name the target
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_temporaries(path) -> None:
    """Delete the temporary files :func:`atomic_path` left next to ``path`` when a process was
    killed mid-write (SIGKILL, power loss: no ``finally`` ran); only those, named with :data:`TMP_PREFIX`."""
    path = Path(path)
    for tmp in path.parent.glob(f"{glob.escape(TMP_PREFIX + path.name)}.*"):
        tmp.unlink(missing_ok=True)


def write_text(path, text: str) -> None:
    """Write ``text`` (UTF-8, ``\\n`` line ends) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="\n")


def write_json(path, obj) -> None:
    """Write ``obj`` as indented JSON with sorted keys, atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_jsonl(path, rows) -> None:
    """Write one JSON object per line (keys sorted), atomically."""
    write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def read_json(path):
    """The JSON value in ``path``; a malformed file is a ValueError that names it and the position."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}:{e.colno}: not valid JSON ({e.msg})") from None


def read_jsonl(path) -> list:
    """The objects of a JSON-lines file (blank lines skipped; a missing file is empty).

    Raises:
      ValueError: a line that is not JSON, named ``"{path}:{line}: ..."``.
    """
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not a JSON object: {e.msg}") from None
    return rows
