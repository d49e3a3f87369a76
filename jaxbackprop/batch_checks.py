"""Input validation for the window model: is a config sized, and does a batch fit it?

The model's functions call these first, so a wrong shape, dtype, key or out-of-range id is
reported by name instead of surfacing as a broadcasting error -- or not at all: under ``jit``,
XLA's gather clamps an out-of-range id to the last row without a word. Every ``cfg`` is a
:class:`jaxbackprop.model.ModelConfig` (model.py imports this module, so it is not imported here).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def check_sized(cfg) -> None:
    """Raise ValueError if ``cfg.vocab_size`` is still None (not yet sized from the data).

    >>> from jaxbackprop.model import ModelConfig
    >>> check_sized(ModelConfig())
    Traceback (most recent call last):
    ...
    ValueError: ModelConfig.vocab_size is not set: ...
    """
    if cfg.vocab_size is None:
        raise ValueError(
            "ModelConfig.vocab_size is not set: size the config from the data first, e.g. "
            "dataclasses.replace(cfg, vocab_size=len(vocab)), before building or running the model"
        )


def _is_concrete(x) -> bool:
    # a traced array (inside jit, grad, vmap) has a shape and a dtype but no values to check
    return not isinstance(x, jax.core.Tracer)


def check_ids(name: str, ids, width: int, upper: int) -> None:
    """Raise ValueError unless ``ids`` is an integer (B, width) array with values in [0, upper).

    Shapes and dtypes are checked always (also under jit); values only for concrete arrays,
    because a traced array has none. Out-of-range ids under jit would be silently clamped by
    XLA's gather, so data is checked once, eagerly, before it enters a jitted loop.

    Args:
      name: what to call the array in the message, e.g. ``"batch['windows']"``.
      ids: the array to check, (B, width).
      width: the number of ids per row it must have.
      upper: one past the largest allowed id (the number of rows of the table it indexes).

    >>> import numpy as np
    >>> check_ids("windows", np.array([[0, 4, 1]]), 3, 4)
    Traceback (most recent call last):
    ...
    ValueError: windows[0, 1] = 4 is out of range [0, 4) (1 id(s) out of range in all)
    """
    shape = getattr(ids, "shape", None)
    dtype = getattr(ids, "dtype", None)
    if shape is None or dtype is None:
        raise ValueError(f"{name} must be an integer array of shape (batch, {width}), got {type(ids).__name__}")
    if not jnp.issubdtype(dtype, jnp.integer):
        raise ValueError(f"{name} must hold integer ids, got dtype {dtype}")
    if len(shape) != 2 or shape[1] != width:
        raise ValueError(f"{name} must have shape (batch, {width}) for a window of {width}, got {tuple(shape)}")
    if shape[0] == 0:
        raise ValueError(f"{name} is empty: a batch needs at least one window")
    if _is_concrete(ids):
        values = np.asarray(ids)
        bad = np.argwhere((values < 0) | (values >= upper))
        if bad.size:
            row, col = bad[0]
            raise ValueError(
                f"{name}[{row}, {col}] = {values[row, col]} is out of range [0, {upper}) "
                f"({len(bad)} id(s) out of range in all)"
            )


def batch_keys(cfg) -> tuple:
    """Required keys of a training batch for ``cfg`` (``"weights"`` is always optional).

    >>> from jaxbackprop.model import ModelConfig
    >>> batch_keys(ModelConfig(10, head="score", feature_vocab_size=3, feature_dim=2))
    ('windows', 'corrupt', 'features', 'corrupt_features')
    """
    keys = ("windows", "labels") if cfg.head == "softmax" else ("windows", "corrupt")
    if cfg.uses_features:
        keys += ("features",) if cfg.head == "softmax" else ("features", "corrupt_features")
    return keys


def _check_keys(batch, cfg) -> None:
    required = batch_keys(cfg)
    if not isinstance(batch, dict):
        raise ValueError(f"batch must be a dict with keys {required}, got {type(batch).__name__}")
    missing = [k for k in required if k not in batch]
    unexpected = [k for k in batch if k not in required + ("weights",)]
    if missing or unexpected:
        raise ValueError(
            f"batch keys do not match the {cfg.head} head"
            f"{' with features' if cfg.uses_features else ''}: expected {list(required)} (+ optional 'weights'), "
            f"missing {missing}, unexpected {unexpected}"
        )


def _check_labels(labels, B: int, num_classes: int) -> None:
    if labels.ndim != 1 or not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(
            f"batch['labels'] must be integer class ids of shape ({B},), got {labels.dtype} {labels.shape}"
        )
    if _is_concrete(labels):
        bad = np.flatnonzero((np.asarray(labels) < 0) | (np.asarray(labels) >= num_classes))
        if bad.size:
            raise ValueError(f"batch['labels'][{bad[0]}] = {int(labels[bad[0]])} is out of range [0, {num_classes})")


def check_batch(batch, cfg) -> None:
    """Raise ValueError naming the problem if ``batch`` does not fit ``cfg``.

    Args:
      batch: as for :func:`jaxbackprop.model.loss`: ``"windows"`` (B, n) and ``"labels"`` (B,)
        or ``"corrupt"`` (B, n); ``"features"`` / ``"corrupt_features"`` (B, n*k) with features;
        optional ``"weights"`` (B,).
      cfg: the model config the batch is meant for.
    """
    check_sized(cfg)
    _check_keys(batch, cfg)
    required = batch_keys(cfg)
    B = batch["windows"].shape[0] if hasattr(batch["windows"], "shape") else None
    for k in required:
        if k in ("windows", "corrupt"):
            check_ids(f"batch[{k!r}]", batch[k], cfg.window, cfg.vocab_size)
        elif k in ("features", "corrupt_features"):
            check_ids(f"batch[{k!r}]", batch[k], cfg.feature_width, cfg.feature_vocab_size)
        if batch[k].shape[0] != B:
            raise ValueError(f"batch[{k!r}] has {batch[k].shape[0]} rows but batch['windows'] has {B}")
    if cfg.head == "softmax":
        _check_labels(batch["labels"], B, cfg.num_classes)
    if "weights" in batch and tuple(batch["weights"].shape) != (B,):
        raise ValueError(f"batch['weights'] must have shape ({B},), got {tuple(batch['weights'].shape)}")
