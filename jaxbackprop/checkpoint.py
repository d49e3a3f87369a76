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


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_jsonl(path, rows) -> None:
    write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


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
    """Load what :func:`save_tree` wrote into the structure of ``template``; returns (tree, meta)."""
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(bytes(data["__meta__"]).decode())
        leaves, treedef = jax.tree.flatten(template)
        names = sorted(k for k in data.files if k.startswith("leaf_"))
        if len(names) != len(leaves) or meta.get("treedef") != str(treedef):
            raise ValueError(f"{path}: checkpoint structure does not match (saved {len(names)} arrays, expected {len(leaves)})")
        loaded = []
        for name, ref in zip(names, leaves):
            arr = data[name]
            shape = tuple(ref.shape) if hasattr(ref, "shape") else np.shape(ref)
            if arr.shape != shape:
                raise ValueError(f"{path}: {name} has shape {arr.shape}, expected {shape}")
            loaded.append(jax.numpy.asarray(arr, dtype=getattr(ref, "dtype", arr.dtype)))
    meta.pop("treedef")
    return jax.tree.unflatten(treedef, loaded), meta
