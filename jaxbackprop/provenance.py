"""What a result file records about where it came from, without this machine's layout.

Result files (``config.json``, ``result.json``, benchmark JSON) are committed and read on other
machines, so they never hold an absolute path: a path inside the project is written relative to
the project's root, any other path by its name alone (a data set's identity is its hash, not the
folder it sat in on one machine). :func:`environment` says which machine, versions and commit
produced a result; a timing means little without the CPU model beside it.

>>> portable_path(PROJECT_ROOT / "experiments" / "results")
'experiments/results'
>>> portable_path("/somewhere/else/glove.6B.50d.txt")
'glove.6B.50d.txt'
>>> portable_argv(["train", "--conll", "/somewhere/else/conll2003", "--lr=0.1"])
['train', '--conll', 'conll2003', '--lr=0.1']
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import subprocess
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


def environment() -> dict:
    """The machine, library versions and source commit that produced a result.

    Never fails: a fact that cannot be read is None (no /proc/cpuinfo, not a git checkout, no
    git binary, a package not installed).

    Returns:
      ``{"device", "device_count", "jax", "jaxlib", "optax", "flax", "numpy", "python", "machine",
      "processor", "cpu_model", "cpu_count", "git_commit", "git_dirty"}``; ``device`` is JAX's
      first device as ``platform:device_kind`` (``cpu:cpu``, ``gpu:NVIDIA H200``), ``cpu_model``
      the CPU's marketing name (``AMD EPYC 7B13``), ``git_dirty`` whether tracked files differ
      from ``git_commit``.

    >>> env = environment()
    >>> env["device_count"] >= 1 and env["cpu_count"] >= 1
    True
    """
    import jax  # here, not at the top: the path helpers above need no JAX

    dev = jax.devices()[0]
    versions = {name: _version(name) for name in ("jax", "jaxlib", "optax", "flax", "numpy")}
    return {
        "device": f"{dev.platform}:{getattr(dev, 'device_kind', '')}",
        "device_count": jax.device_count(),
        **versions,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        **git_state(),
    }


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_model() -> str | None:
    """The CPU's name: ``model name`` of /proc/cpuinfo on Linux, else ``platform.processor()``
    (often only the architecture there), else None."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


# what runs write, not what they run: a run's own (or an earlier run's) results do not make the code dirty
OUTPUTS = ("experiments/results", "experiments/RESULTS.md", "benchmarks/results", "BENCHMARKS.md", "BENCHMARKS_GPU.md")
# where the code a run runs lives: a new file here that git does not know yet is part of the run too
CODE_FOLDERS = ("jaxbackprop", "experiments", "benchmarks")


def git_state() -> dict:
    """``{"git_commit": HEAD's hash, "git_dirty": the code differs from it}`` of the project checkout:
    a tracked file other than :data:`OUTPUTS` is changed, or an untracked (not ignored) file lies in
    :data:`CODE_FOLDERS` outside them. Both None where the package does not sit in a git checkout or
    git is missing. Read it when a run starts: the code it runs is the code of that moment."""
    unknown = {"git_commit": None, "git_dirty": None}
    if not (PROJECT_ROOT / ".git").exists():  # an installed package: the folder above is not ours
        return unknown
    try:
        commit = _git("rev-parse", "HEAD")
        outputs = [f":(exclude){path}" for path in OUTPUTS]
        changed = _git("status", "--porcelain", "--untracked-files=no", "--", ".", *outputs)
        new = _git("ls-files", "--others", "--exclude-standard", "--", *CODE_FOLDERS, *outputs)
    except (OSError, subprocess.SubprocessError):
        return unknown
    return {"git_commit": commit or None, "git_dirty": bool(changed or new)}


def _git(*args: str) -> str:
    # --no-optional-locks: a status that never writes the index, so it cannot collide with a commit
    cmd = ["git", "--no-optional-locks", "-C", str(PROJECT_ROOT), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True).stdout.strip()
