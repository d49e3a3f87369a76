"""Pickle-free checkpoints: a pytree's leaves and a JSON meta record in one .npz, written atomically.

The tree's structure is not stored as code (no pickle): loading needs a template of the same
structure, and the saved structure's description is compared with the template's.

A leaf is stored whole, or -- given a *base* for it, the value it started from -- as the rows that
differ from the base: a 400,000-word E of which training touched 20,000 rows, or an Adam moment
that is zero wherever no gradient came. The caller provides the same base when loading, and the
file records the base's sha256, so a leaf is rebuilt bit for bit or refused, never silently mixed.
"""

from __future__ import annotations

import hashlib
import json
import weakref
import zipfile
import zlib
from pathlib import Path

import jax
import numpy as np

from jaxbackprop.files import atomic_path


class CheckpointError(ValueError):
    """A file is not a checkpoint :func:`save_tree` wrote, or does not fit the expected tree."""


def save_tree(path, tree, meta: dict | None = None, base=None) -> None:
    """Save a pytree's leaves (in ``jax.tree`` order) and a JSON ``meta`` dict to ``path`` (.npz).

    The tree's structure is not stored: :func:`load_tree` needs a template with the same
    structure (e.g. ``init_params`` and ``tx.init`` output), which is what keeps pickle out.
    A typed PRNG key (``noisy_sgd``'s state holds one) is stored as its raw ``key_data``, and
    the meta records its implementation's name under ``"prng_keys"``.

    Args:
      path: the .npz file, replaced atomically.
      tree: a pytree of arrays.
      meta: JSON-able record stored beside the arrays.
      base: None, or a pytree with ``tree``'s structure down to its leaves (or a callable returning
        one) whose leaves are None (store the leaf whole) or the value the leaf started from, of its
        shape and dtype (:func:`constant_leaves` makes them for constant leaves without memory). A
        leaf with a base is stored as the rows that differ from it, with their indices, when that is
        smaller; :func:`load_tree` then needs the same base.
    """
    leaves, treedef = jax.tree.flatten(tree)
    bases = _flat_base(base, treedef, len(leaves))
    arrays, keys, changes = {}, {}, {}
    for i, (x, b) in enumerate(zip(leaves, bases)):
        name = f"leaf_{i:05d}"
        if _is_key(x):  # numpy has no key dtype: the key's words, and how to read them
            keys[name] = str(jax.random.key_impl(x))
            x = jax.random.key_data(x)
        x = np.asarray(x)
        rows = _changed_rows(x, b)
        if rows is not None:
            changes[name] = {"shape": list(x.shape), "base_sha256": fingerprint(b)}
            arrays[name.replace("leaf_", "rows_")] = rows
            x = x[rows]
        arrays[name] = x
    record = {"treedef": str(treedef), **({"prng_keys": keys} if keys else {})}
    record.update({"changed_rows": changes} if changes else {}, **(meta or {}))
    arrays["__meta__"] = np.frombuffer(json.dumps(record).encode(), np.uint8)
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def _flat_base(base, treedef, n: int) -> list:
    """The base of each of the ``n`` leaves of ``treedef`` (None: no base)."""
    if base is None:
        return [None] * n
    return treedef.flatten_up_to(base() if callable(base) else base)


def _changed_rows(x: np.ndarray, base) -> np.ndarray | None:
    """int (k,) the rows (along axis 0) where ``x`` differs bit for bit from ``base``, if storing only
    those is smaller than storing ``x``; else None."""
    if base is None or x.ndim == 0 or base.shape != x.shape or base.dtype != x.dtype:
        return None
    words = f"u{x.dtype.itemsize}" if x.dtype.itemsize in (1, 2, 4, 8) else None
    a, b = (x, base) if words is None else (x.view(words), np.asarray(base).view(words))  # bits: -0.0, nan
    differ = (a != b).reshape(len(x), -1).any(axis=1)
    rows = np.flatnonzero(differ).astype(np.int64)
    row_bytes = x.itemsize * (x.size // max(len(x), 1))
    return rows if len(rows) * (row_bytes + rows.itemsize) < x.nbytes else None


# fingerprints of read-only arrays, computed once per array (a run's bases are hashed at every save)
_FINGERPRINTS: dict[int, tuple] = {}


def fingerprint(a) -> str:
    """sha256 of an array's dtype, shape and bytes in C order (a broadcast view as if materialised)."""
    a = np.asarray(a)
    cached = _FINGERPRINTS.get(id(a))
    if cached is not None and cached[0]() is a:
        return cached[1]
    digest = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    flat = a.reshape(len(a), -1) if a.ndim else a.reshape(1, 1)
    for start in range(0, len(flat), 1 << 16):  # a block at a time: a broadcast view is never materialised whole
        digest.update(np.ascontiguousarray(flat[start : start + (1 << 16)]).data)
    if not a.flags.writeable:  # an array that cannot change keeps its fingerprint
        key = id(a)
        _FINGERPRINTS[key] = (weakref.ref(a, lambda _: _FINGERPRINTS.pop(key, None)), digest.hexdigest())
    return digest.hexdigest()


def constant_leaves(tree):
    """A base for :func:`save_tree`: a leaf (of at least one axis) whose elements are all equal becomes
    a read-only broadcast of that value, which takes no memory; any other leaf None (stored whole).

    An optimizer's fresh state is such a base: Adam's moments start at 0, Adagrad's sums at 0.1.

    >>> import jax.numpy as jnp
    >>> base = constant_leaves({"m": jnp.zeros((3, 2)), "w": jnp.arange(2.0), "count": jnp.zeros(())})
    >>> base["m"].shape, base["m"].strides, base["w"], base["count"]
    ((3, 2), (0, 0), None, None)
    """

    def constant(x):
        if _is_key(x) or np.ndim(x) == 0 or np.size(x) == 0:
            return None
        a = np.asarray(x)
        first = a.reshape(-1)[:1].copy()
        return np.broadcast_to(first.reshape(()), a.shape) if (a == first).all() else None

    return jax.tree.map(constant, tree)


def load_tree(path, template, renamed: dict | None = None, base=None):
    """Load what :func:`save_tree` wrote into the structure of ``template``.

    Args:
      path: an .npz file written by :func:`save_tree`.
      template: a pytree of arrays (or ``jax.ShapeDtypeStruct``) with the saved structure and shapes.
      renamed: ``{old key: new key}`` of dict keys renamed since the file was written (e.g.
        ``{"Ecase": "F"}``); a renaming must keep the keys' sorted order, which fixes the leaves' order.
      base: what :func:`save_tree` was given as ``base`` (a callable is called only if the file
        stores a leaf as changed rows); files with whole leaves need none.

    Returns:
      ``(tree, meta)``: the tree with ``template``'s structure and dtypes, and the saved meta dict.

    Raises:
      FileNotFoundError: there is no ``path``.
      CheckpointError: ``path`` is not a jaxbackprop checkpoint (empty, truncated, corrupted,
        another program's file, a directory), or its arrays do not fit ``template``, or a leaf
        stored as changed rows has no base, or another base than the one it was saved against.
    """
    meta, arrays = _read_checkpoint(path, with_arrays=True)
    leaves, treedef = jax.tree.flatten(template)
    rows = {k.replace("rows_", "leaf_"): arrays.pop(k) for k in list(arrays) if k.startswith("rows_")}
    names = sorted(arrays)
    saved = meta.pop("treedef")
    keys = meta.pop("prng_keys", {})
    changes = meta.pop("changed_rows", {})
    for old, new in (renamed or {}).items():
        saved = saved.replace(repr(old), repr(new))
    if len(names) != len(leaves) or saved != str(treedef):
        raise CheckpointError(
            f"{path}: checkpoint structure does not match (saved {len(names)} arrays, expected {len(leaves)})"
        )
    bases = _flat_base(base, treedef, len(leaves)) if changes else [None] * len(leaves)
    where = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(template)[0]]
    loaded = []
    for name, ref, b, at in zip(names, leaves, bases, where):
        if _is_key(ref) != (name in keys):
            kinds = ["PRNG keys" if key else "an array" for key in (name in keys, _is_key(ref))]
            raise CheckpointError(f"{path}: {name} holds {kinds[0]}, expected {kinds[1]}")
        arr = arrays[name]
        if name in changes:
            arr = _with_changed_rows(path, f"{name} {at}", b, rows.get(name), arr, changes[name])
        shape = tuple(ref.shape) if hasattr(ref, "shape") else np.shape(ref)
        if name in keys:
            loaded.append(_wrap_key(path, name, arr, keys[name], shape))
            continue
        if arr.shape != shape:
            raise CheckpointError(f"{path}: {name} has shape {arr.shape}, expected {shape}")
        loaded.append(jax.numpy.asarray(arr, dtype=getattr(ref, "dtype", arr.dtype)))
    return jax.tree.unflatten(treedef, loaded), meta


def _with_changed_rows(path, name: str, base, rows, values: np.ndarray, record: dict) -> np.ndarray:
    """The leaf ``name``: its ``base`` with ``rows`` replaced by ``values``, once every part is checked."""
    shape = tuple(record["shape"])
    if base is None:
        raise CheckpointError(
            f"{path}: {name} is stored as the rows that changed from its initial value, and none was given "
            "to rebuild it"
        )
    if rows is None or rows.ndim != 1 or values.shape != (len(rows), *shape[1:]) or rows.dtype.kind not in "iu":
        raise CheckpointError(f"{path}: {name}'s changed rows and their indices do not fit a leaf of shape {shape}")
    if len(rows) and (rows[0] < 0 or rows[-1] >= shape[0] or (np.diff(rows) <= 0).any()):
        raise CheckpointError(f"{path}: {name}'s changed-row indices are not increasing rows of 0..{shape[0] - 1}")
    base = np.asarray(base)
    if fingerprint(base) != record["base_sha256"] or base.shape != shape:
        raise CheckpointError(
            f"{path}: {name} is stored as the rows that changed from an initial value of shape {shape}, but the "
            f"initial value given is another (sha256 {fingerprint(base)[:12]}, saved against "
            f"{record['base_sha256'][:12]})"
        )
    arr = np.array(base, dtype=values.dtype)
    arr[rows] = values
    return arr


def _is_key(x) -> bool:
    dtype = getattr(x, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _wrap_key(path, name: str, data: np.ndarray, impl: str, shape: tuple):
    """The typed key array whose raw words :func:`save_tree` stored as ``data``."""
    try:
        key = jax.random.wrap_key_data(data, impl=impl)
    except (TypeError, ValueError) as e:  # an unknown implementation, or words of the wrong width or dtype
        raise CheckpointError(f"{path}: {name} is not a {impl} PRNG key ({' '.join(str(e).split())})") from None
    if key.shape != shape:
        raise CheckpointError(f"{path}: {name} holds PRNG keys of shape {key.shape}, expected {shape}")
    return key


def read_meta(path) -> dict:
    """The meta dict :func:`save_tree` stored in ``path``, without loading the arrays (errors as :func:`load_tree`)."""
    meta, _ = _read_checkpoint(path, with_arrays=False)
    for key in ("treedef", "prng_keys", "changed_rows"):
        meta.pop(key, None)
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
        raise CheckpointError(
            f"{path}: not a jaxbackprop checkpoint (not a complete .npz archive: empty, truncated or another format)"
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(bytes(npz["__meta__"]).decode()) if "__meta__" in npz.files else None
            wanted = [k for k in npz.files if k.startswith(("leaf_", "rows_"))] if with_arrays else []
            arrays = {k: npz[k] for k in wanted}
    except PermissionError:
        raise
    except _CORRUPT as e:
        reason = " ".join(f"{type(e).__name__}: {e}".split())  # one line, whatever the library wrote
        raise CheckpointError(f"{path}: not a jaxbackprop checkpoint (corrupted: {reason})") from None
    if not isinstance(meta, dict) or "treedef" not in meta:
        raise CheckpointError(
            f"{path}: not a jaxbackprop checkpoint (an .npz without the __meta__ record save_tree writes)"
        )
    return meta, arrays
