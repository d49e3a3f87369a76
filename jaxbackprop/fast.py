"""Machine-specific fast versions of two lines of :mod:`jaxbackprop.model`.

Each function here computes what a plain line of ``model.py`` computes, written the way XLA's
CPU backend runs faster. ``ModelConfig(fast=True)`` makes the model (and with it the
hand-derived backward pass, which calls the same functions) use them; the plain lines stay in
``model.py`` because they are the ones that read like the lecture. ``tests/test_fast.py`` checks
each against its plain version; BENCHMARKS.md has the timings.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def lookup_rows(table, ids):
    """``table[ids]`` with each window's rows side by side: (B, m) ids -> (B, m * width).

    Equal, value for value, to ``model.lookup_rows`` (``table[ids].reshape(B, m * width)``): a
    gather only copies rows, and here the batch is gathered as two halves joined by a
    concatenate. Faster because XLA's CPU backend runs a lone gather on one thread, while
    gathers feeding a concatenate become one loop fusion that it splits across cores. The
    gradient is the same scatter-add of rows.

    Args:
      table: (V, width) rows, e.g. the word vectors ``E``.
      ids: int (B, m) row ids.

    Returns:
      (B, m * width): row ``ids[b, 0]``, then row ``ids[b, 1]``, ... for each window b.

    >>> import jax.numpy as jnp
    >>> lookup_rows(jnp.arange(6.0).reshape(3, 2), jnp.array([[2, 0], [1, 1], [0, 2]])).tolist()
    [[4.0, 5.0, 0.0, 1.0], [2.0, 3.0, 2.0, 3.0], [0.0, 1.0, 4.0, 5.0]]
    """
    B = ids.shape[0]
    halves = [ids] if B < 2 else [ids[: B // 2], ids[B // 2 :]]
    return jnp.concatenate([table[h] for h in halves]).reshape(B, ids.shape[1] * table.shape[1])


def dropout_mask(key, rate, shape, dtype):
    """An inverted-dropout mask: 0 with probability ``rate`` (rounded to a multiple of 2^-16),
    else 1/keep.

    The same distribution as ``model.dropout_mask`` (``bernoulli(key, keep, shape) / keep``) up
    to that rounding, but different draws from the same key. Faster because drawing random
    bits dominates a training step, and ``bernoulli`` draws 32 bits and makes a float per
    entry: here each 32-bit draw gives two 16-bit uniforms, compared as integers against a
    threshold, so half the bits are drawn and no floats are made.

    Args:
      key: a ``jax.random`` key.
      rate: the drop probability, in [0, 1).
      shape: (rows, cols) of the mask.
      dtype: float dtype of the mask.

    Returns:
      A (rows, cols) array of 0 and 1/keep, with keep = 1 - threshold / 2^16.

    >>> import jax, jax.numpy as jnp
    >>> sorted(set(dropout_mask(jax.random.key(0), 0.5, (4, 5), jnp.float32).ravel().tolist()))
    [0.0, 2.0]
    """
    threshold = np.uint32(round(rate * 2**16))  # drop iff a 16-bit uniform < threshold
    keep = 1.0 - threshold / 2**16
    rows, cols = shape
    bits = jax.random.bits(key, (rows, (cols + 1) // 2), jnp.uint32)
    # low and high 16 bits of each draw side by side, then the odd column's spare half cut off
    halves = jnp.stack([bits & 0xFFFF, bits >> 16], axis=-1).reshape(rows, -1)[:, :cols]
    return jnp.where(halves >= threshold, jnp.asarray(1.0 / keep, dtype), jnp.asarray(0.0, dtype))
