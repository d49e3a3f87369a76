"""Pickle-free checkpoints: a pytree's leaves and a JSON meta record in one .npz, written atomically.

The tree's structure is not stored as code (no pickle): loading needs a template of the same
structure, and the saved structure's description is compared with the template's.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path

import jax
import numpy as np

from jaxbackprop.files import atomic_path


class CheckpointError(ValueError):
    """A file is not a checkpoint :func:`save_tree` wrote, or does not fit the expected tree."""


def save_tree(path, tree, meta: dict | None = None) -> None:
    """Save a pytree's leaves (in ``jax.tree`` order) and a JSON ``meta`` dict to ``path`` (.npz).

    The tree's structure is not stored: :func:`load_tree` needs a template with the same
    structure (e.g. ``init_params`` and ``tx.init`` output), which is what keeps pickle out.
    A typed PRNG key (``noisy_sgd``'s state holds one) is stored as its raw ``key_data``, and
    the meta records its implementation's name under ``"prng_keys"``.
    """
    leaves, treedef = jax.tree.flatten(tree)
    arrays, keys = {}, {}
    for i, x in enumerate(leaves):
        name = f"leaf_{i:05d}"
        if _is_key(x):  # numpy has no key dtype: the key's words, and how to read them
            keys[name] = str(jax.random.key_impl(x))
            x = jax.random.key_data(x)
        arrays[name] = np.asarray(x)
    record = {"treedef": str(treedef), **({"prng_keys": keys} if keys else {}), **(meta or {})}
    arrays["__meta__"] = np.frombuffer(json.dumps(record).encode(), np.uint8)
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def load_tree(path, template, renamed: dict | None = None):
    """Load what :func:`save_tree` wrote into the structure of ``template``.

    Args:
      path: an .npz file written by :func:`save_tree`.
      template: a pytree of arrays (or ``jax.ShapeDtypeStruct``) with the saved structure and shapes.
      renamed: ``{old key: new key}`` of dict keys renamed since the file was written (e.g.
        ``{"Ecase": "F"}``); a renaming must keep the keys' sorted order, which fixes the leaves' order.

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
    saved = meta.pop("treedef")
    keys = meta.pop("prng_keys", {})
    for old, new in (renamed or {}).items():
        saved = saved.replace(repr(old), repr(new))
    if len(names) != len(leaves) or saved != str(treedef):
        raise CheckpointError(
            f"{path}: checkpoint structure does not match (saved {len(names)} arrays, expected {len(leaves)})"
        )
    loaded = []
    for name, ref in zip(names, leaves):
        if _is_key(ref) != (name in keys):
            kinds = ["PRNG keys" if key else "an array" for key in (name in keys, _is_key(ref))]
            raise CheckpointError(f"{path}: {name} holds {kinds[0]}, expected {kinds[1]}")
        arr = arrays[name]
        shape = tuple(ref.shape) if hasattr(ref, "shape") else np.shape(ref)
        if name in keys:
            loaded.append(_wrap_key(path, name, arr, keys[name], shape))
            continue
        if arr.shape != shape:
            raise CheckpointError(f"{path}: {name} has shape {arr.shape}, expected {shape}")
        loaded.append(jax.numpy.asarray(arr, dtype=getattr(ref, "dtype", arr.dtype)))
    return jax.tree.unflatten(treedef, loaded), meta


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
    meta.pop("treedef")
    meta.pop("prng_keys", None)
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
            arrays = {k: npz[k] for k in npz.files if k.startswith("leaf_")} if with_arrays else {}
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
