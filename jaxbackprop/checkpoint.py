"""Atomic, pickle-free files for a run: checkpoints as .npz, JSON and JSON lines.

Every write goes to a temporary file in the same directory and is then renamed over the target
(``os.replace`` is atomic on POSIX), so an interrupted write never leaves a half-written file
and never destroys the previous version.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path

import jax
import numpy as np


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """Yield a temporary path next to ``path``; on success rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_temporaries(path) -> None:
    """Delete the temporary files :func:`atomic_path` left next to ``path`` when a process was
    killed mid-write (SIGKILL, power loss: no ``finally`` ran)."""
    path = Path(path)
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        tmp.unlink(missing_ok=True)


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_jsonl(path, rows) -> None:
    write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def read_json(path):
    """The JSON value in ``path``; a malformed file is a ValueError that names it and the position."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}:{e.colno}: not valid JSON ({e.msg})") from None


def read_jsonl(path) -> list:
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not a JSON object: {e.msg}") from None
    return rows


class CheckpointError(ValueError):
    """A file is not a checkpoint :func:`save_tree` wrote, or does not fit the expected tree."""


def save_tree(path, tree, meta: dict | None = None) -> None:
    """Save a pytree's leaves (in ``jax.tree`` order) and a JSON ``meta`` dict to ``path`` (.npz).

    The tree's structure is not stored: :func:`load_tree` needs a template with the same
    structure (e.g. ``init_params`` and ``tx.init`` output), which is what keeps pickle out.
    """
    leaves, treedef = jax.tree.flatten(tree)
    arrays = {f"leaf_{i:05d}": np.asarray(x) for i, x in enumerate(leaves)}
    arrays["__meta__"] = np.frombuffer(json.dumps({"treedef": str(treedef), **(meta or {})}).encode(), np.uint8)
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def load_tree(path, template):
    """Load what :func:`save_tree` wrote into the structure of ``template``.

    Args:
      path: an .npz file written by :func:`save_tree`.
      template: a pytree of arrays (or ``jax.ShapeDtypeStruct``) with the saved structure and shapes.

    Returns:
      ``(tree, meta)``: the tree with ``template``'s structure and dtypes, and the saved meta dict.

    Raises:
      FileNotFoundError: there is no ``path``.
      CheckpointError: ``path`` is not a jaxbackprop checkpoint (empty, truncated, corrupted,
        another program's file, a directory), or its arrays do not fit ``template``.
    """
    meta, arrays = _read_checkpoint(path, with_arrays=True)
    leaves, treedef = jax.tree.flatten(template)
    names = sorted(arrays)
    if len(names) != len(leaves) or meta.pop("treedef") != str(treedef):
        raise CheckpointError(f"{path}: checkpoint structure does not match (saved {len(names)} arrays, expected {len(leaves)})")
    loaded = []
    for name, ref in zip(names, leaves):
        arr = arrays[name]
        shape = tuple(ref.shape) if hasattr(ref, "shape") else np.shape(ref)
        if arr.shape != shape:
            raise CheckpointError(f"{path}: {name} has shape {arr.shape}, expected {shape}")
        loaded.append(jax.numpy.asarray(arr, dtype=getattr(ref, "dtype", arr.dtype)))
    return jax.tree.unflatten(treedef, loaded), meta


def read_meta(path) -> dict:
    """The meta dict :func:`save_tree` stored in ``path``, without loading the arrays (errors as :func:`load_tree`)."""
    meta, _ = _read_checkpoint(path, with_arrays=False)
    meta.pop("treedef")
    return meta


# Corruption inside a well-formed zip surfaces as any of these (measured by flipping bytes of a
# checkpoint): a bad CRC, an unknown compression method, a broken .npy header, a missing member.
_CORRUPT = (zipfile.BadZipFile, zlib.error, KeyError, NotImplementedError, ValueError, EOFError, OSError)


def _read_checkpoint(path, with_arrays: bool) -> tuple[dict, dict]:
    """``(meta, {leaf name: array})`` of a :func:`save_tree` file; every way of not being one is a CheckpointError."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a jaxbackprop checkpoint")
    # np.load would try to unpickle a non-zip file; an empty or truncated .npz has no zip directory
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: not a jaxbackprop checkpoint (not a complete .npz archive: empty, truncated or another format)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(bytes(npz["__meta__"]).decode()) if "__meta__" in npz.files else None
            arrays = {k: npz[k] for k in npz.files if k.startswith("leaf_")} if with_arrays else {}
    except PermissionError:
        raise
    except _CORRUPT as e:
        reason = " ".join(f"{type(e).__name__}: {e}".split())  # one line, whatever the library wrote
        raise CheckpointError(f"{path}: not a jaxbackprop checkpoint (corrupted: {reason})") from None
    if not isinstance(meta, dict) or "treedef" not in meta:
        raise CheckpointError(f"{path}: not a jaxbackprop checkpoint (an .npz without the __meta__ record save_tree writes)")
    return meta, arrays
