"""Rows-only ("lazy") updates of the word embedding ``E``.

A batch of B windows of n words names at most B n rows of ``E`` (V, d), and dJ/dE is zero on all
other rows. A dense optimizer step still reads and writes all V d numbers of ``E`` (and, with
Adam, of two moment tables), so its cost grows with V. Here the gradient stays as rows --
:func:`jaxbackprop.backprop.manual_value_and_row_grads` hands them out one per word position --
and only the rows present in the batch are touched:

1. :func:`unique_row_grads`: the batch's distinct ids at a *static* size (jit needs one), first,
   and each id's gradient rows summed, so a word used twice gets both updates at once (for the crf
   head's padded sentences only the words of real tokens count, :func:`counted_positions`);
2. a :class:`RowRule` (:func:`sgd`, :func:`adagrad`, lazy :func:`adam`) gathers the state rows of
   those ids, updates them and scatters them back -- in passes over the slots that stop after the
   last distinct id (:func:`update_rows`), since most slots of a large batch are padding.

For SGD and Adagrad this is *exactly* the dense optax update: a row with zero gradient is left
unchanged by ``optax.sgd`` and ``optax.adagrad``. Lazy Adam is not dense Adam (see :func:`adam`).
:func:`make_sparse_step` puts it together with an optax optimizer for the dense parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxbackprop import backprop, model


def empty_slots(num_rows: int):
    """The scratch table :func:`unique_row_grads` needs: (num_rows,) int32 (contents unused)."""
    return jnp.zeros((num_rows,), jnp.int32)


def unique_row_grads(ids, rows, slots, keep=None, size=None):
    """Each distinct id of ``ids`` once, with the sum of its gradient rows, first in static-size arrays.

    No sort (``jnp.unique`` sorts the ids): a scratch table over the vocabulary maps each id to
    one position holding it. Each position writes itself into its id's entry; where an id
    repeats one write wins, and every position of that id then reads the same winner back.
    Stale entries of other ids are never read, so the table needs no clearing: a training step
    keeps it in its state and does no O(V) work at all (not even filling a fresh (V,) table).
    The winners are then numbered in order (a prefix sum), and each id's rows summed into its
    number's slot, so the distinct ids fill the first slots: a rule can stop at the last of them
    (:func:`update_rows`) rather than work through every slot, most of which are padding.

    Args:
      ids: int (N,) row ids in [0, V), one per gradient row (repeats allowed).
      rows: (N, d) gradient rows; ``rows[i]`` belongs to row ``ids[i]`` of the table.
      slots: (V,) int32 scratch (:func:`empty_slots`, or the one returned last time).
      keep: optional bool (N,): positions where it is false name no row -- their rows (zero for the
        padding tokens of sentence batches, the reason it exists) are dropped, and an id that only
        such positions hold is left out, so no rule touches its row. None: every position counts.
      size: the static length S >= N of the outputs (None: N), e.g. N rounded up to whole passes
        of :func:`update_rows`.

    Returns:
      ``(unique_ids, unique_grads, slots)``, (S,), (S, d) and (V,): slots 0..U-1 hold the U
      distinct ids (in the order of their winning positions) and the sum of all rows of each.
      Every other slot is padding: a distinct id counted down from the int32 maximum -- out of
      range of any table, so ``mode="drop"`` scatters ignore it -- and a zero row.

    >>> import jax.numpy as jnp
    >>> u, g, _ = unique_row_grads(jnp.array([3, 1, 3]), jnp.array([[1.0], [2.0], [4.0]]), empty_slots(5))
    >>> sorted(zip(u[:2].tolist(), g[:2].ravel().tolist()))  # id 1: 2.0, id 3: 1.0 + 4.0; then padding
    [(1, 2.0), (3, 5.0)]
    """
    n = ids.shape[0]
    size = n if size is None else size
    if rows.ndim != 2 or rows.shape[0] != n:
        raise ValueError(f"rows must have shape ({n}, d) to match ids {ids.shape}, got {rows.shape}")
    if size < n:
        raise ValueError(f"size must be at least the {n} ids, got {size}")
    ids = ids.astype(slots.dtype)
    pos = jnp.arange(n, dtype=slots.dtype)
    if keep is None:
        slots = slots.at[ids].set(pos)  # repeated ids: one of their positions wins
        winner = slots[ids]  # (N,): the same winner for every position of an id
        named = winner == pos
    else:
        # a left-out position writes nowhere (an out-of-range index is dropped) and is its own
        # winner, a slot that becomes padding; a kept one reads the winner among the kept
        slots = slots.at[jnp.where(keep, ids, slots.shape[0])].set(pos, mode="drop")
        winner = jnp.where(keep, slots[ids], pos)
        named = (winner == pos) & keep
    # the winners numbered 0..U-1 in position order; a position's slot is its winner's number
    number = jnp.cumsum(named, dtype=slots.dtype) - 1  # (N,)
    slot = jnp.where(named, number, size)  # out of range: dropped below
    target = number[winner] if keep is None else jnp.where(keep, number[winner], size)
    # repeated ids share a slot: dJ/dE[r] = sum of the rows of every position holding r   (S, d)
    grads = jax.ops.segment_sum(rows, target, num_segments=size)
    fill = jnp.iinfo(slots.dtype).max - jnp.arange(size, dtype=slots.dtype)
    return fill.at[slot].set(ids, mode="drop", unique_indices=True), grads, slots


def _get(table, ids):
    # padding ids clip to the last row: harmless, as whatever is computed from it for a padding
    # slot is dropped by the scatters below (and "clip" is XLA's native gather, with no mask)
    return table.at[ids].get(mode="clip", unique_indices=True)


def _add(table, ids, values):
    return table.at[ids].add(values, mode="drop", unique_indices=True)


def _set(table, ids, values):
    return table.at[ids].set(values, mode="drop", unique_indices=True)


class RowRule(NamedTuple):
    """A rows-only update rule, in optax's ``(init, update)`` shape.

    ``init(E) -> state``; ``update(E, state, unique_ids, unique_grads, lr, count) -> (E, state)``
    touches only the rows named by ``unique_ids`` (distinct, from :func:`unique_row_grads`;
    out-of-range ids are padding and change nothing).
    ``lr`` is this step's learning rate and ``count`` the 1-based number of this update.
    """

    init: Callable
    update: Callable


def sgd() -> RowRule:
    """E[r] <- E[r] - lr g_r for each row r in the batch; no state. Equals ``optax.sgd``."""

    def update(E, state, ids, grads, lr, count):
        return _add(E, ids, -lr * grads), state

    return RowRule(lambda E: (), update)


def adagrad(initial_accumulator_value: float = 0.1, eps: float = 1e-7) -> RowRule:
    """Rows-only Adagrad with ``optax.adagrad``'s formula, so the two agree exactly.

    For each row r in the batch::

        acc[r] <- acc[r] + g_r^2
        E[r]   <- E[r] - lr g_r / sqrt(acc[r] + eps)     (0 where acc[r] = 0, as in optax)

    Rows outside the batch have g = 0, which leaves both acc and E unchanged in optax too.
    """

    def init(E):
        return jnp.full_like(E, initial_accumulator_value)

    def update(E, acc, ids, grads, lr, count):
        a = grads * grads + _get(acc, ids)
        scale = jnp.where(a > 0, jax.lax.rsqrt(a + eps), 0.0)
        return _add(E, ids, -lr * (scale * grads)), _set(acc, ids, a)

    return RowRule(init, update)


def adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> RowRule:
    """Lazy Adam (like ``torch.optim.SparseAdam``): moments of absent rows stay frozen.

    State: ``{"moments": (V, 2, d)}`` with m in ``[:, 0]`` and v in ``[:, 1]``.

    For each row r in the batch, at update t (the *global* step count, 1-based)::

        m[r] <- b1 m[r] + (1 - b1) g_r
        v[r] <- b2 v[r] + (1 - b2) g_r^2
        E[r] <- E[r] - lr (m[r] / (1 - b1^t)) / (sqrt(v[r] / (1 - b2^t)) + eps)

    Rows outside the batch keep E, m and v: dense Adam would decay their moments and keep
    moving them along the stale momentum. Bias correction uses the global t, as SparseAdam does,
    so it no longer undoes the zero start of a row first seen late: that row's first step is
    lr (1 - b1) / sqrt(1 - b2) ~ 3.2 lr per coordinate (in the sign of g), where dense Adam's
    first step is lr. The eps placement follows ``optax.adam`` (eps is added to the
    bias-corrected sqrt(v)); ``torch.optim.SparseAdam`` adds it before the correction. When every
    row is in every batch this is exactly ``optax.adam``.
    """

    def init(E):
        # m and v of a row side by side, (V, 2, d): a batch's rows are scattered over the table,
        # and one random access of 2d numbers is cheaper than two of d
        return {"moments": jnp.zeros((E.shape[0], 2, E.shape[1]), E.dtype)}

    def update(E, state, ids, grads, lr, count):
        decay = jnp.array([b1, b2], E.dtype)[None, :, None]  # (1, 2, 1): b1 for m, b2 for v
        # [m; v] <- [b1; b2] [m; v] + [1 - b1; 1 - b2] [g; g^2], both moments in one pass  (N, 2, d)
        new = decay * _get(state["moments"], ids) + (1 - decay) * jnp.stack([grads, grads * grads], axis=1)
        t = jnp.asarray(count, E.dtype)
        mu_hat, nu_hat = new[:, 0] / (1 - b1**t), new[:, 1] / (1 - b2**t)
        step = -lr * (mu_hat / (jnp.sqrt(nu_hat) + eps))
        return _add(E, ids, step), {"moments": _set(state["moments"], ids, new)}

    return RowRule(init, update)


RULES = {"sgd": sgd, "adagrad": adagrad, "adam": adam}

# slots per pass of a rule: each pass gathers, updates and scatters this many rows whatever their
# number, so the last pass's padding is the waste; fewer, longer passes cost less loop overhead
CHUNK = 1024


def passes_size(n: int, chunk: int | None) -> int:
    """The static slot count for ``n`` ids updated in passes of ``chunk``: n rounded up to whole passes
    (n itself when one pass covers it, or without passes).

    >>> passes_size(5120, 1024), passes_size(5000, 1024), passes_size(160, 1024), passes_size(5000, None)
    (5120, 5120, 160, 5000)
    """
    return n if chunk is None or n <= chunk else -(-n // chunk) * chunk


def update_rows(rule: RowRule, E, state, ids, grads, lr, count, chunk: int | None = CHUNK):
    """``rule.update`` over :func:`unique_row_grads`' slots, in passes of ``chunk`` slots that stop
    after the last distinct id: the same rows, the same values as one pass over every slot.

    A batch of B windows has B n slots but far fewer distinct words (a CoNLL batch of 4096
    windows: about 4,700 of 20,480), and a gather or scatter costs as much for a padding slot as
    for a row. The number of passes depends on the data (a ``while_loop``); under ``vmap`` with
    members of different batches a loop runs the most passes of any member and selects whole
    tables after each, so a vmapped caller passes ``chunk=None``: one pass over every slot.

    Args:
      rule: a :class:`RowRule`.
      E, state: the table and the rule's state.
      ids, grads: (S,) and (S, d) from :func:`unique_row_grads` (distinct ids first, then padding),
        S a multiple of ``chunk`` when S > chunk (:func:`passes_size`).
      lr, count: as for ``rule.update``.
      chunk: slots per pass; None: one pass over all S slots.
    """
    n = ids.shape[0]
    if chunk is None or n <= chunk:
        return rule.update(E, state, ids, grads, lr, count)
    if n % chunk:
        raise ValueError(f"{n} slots are not whole passes of {chunk} (see passes_size)")
    distinct = jnp.sum(ids < E.shape[0])  # the distinct ids fill the first slots

    def one_pass(carry):
        i, E, state = carry
        start = i * chunk
        c_ids, c_grads = (
            jax.lax.dynamic_slice_in_dim(ids, start, chunk),
            jax.lax.dynamic_slice_in_dim(grads, start, chunk),
        )
        return (i + 1, *rule.update(E, state, c_ids, c_grads, lr, count))

    _, E, state = jax.lax.while_loop(lambda c: c[0] * chunk < distinct, one_pass, (jnp.int32(0), E, state))
    return E, state


def _without_E(tree):
    return {k: v for k, v in tree.items() if k != "E"}


def counted_positions(batch, cfg: model.ModelConfig):
    """Which word positions of ``manual_value_and_row_grads``' rows may touch E: None (all) for the
    window heads; for the crf head, bool (S L n,), the n word positions of each real token
    (``mask``) of a sentence with nonzero weight -- padding tokens and weight-0 padding sentences
    pass back zero rows, and under lazy Adam even a zero row would move its embedding."""
    if cfg.head not in model.SENTENCE_HEADS:
        return None
    real = batch["mask"]  # (S, L)
    if "weights" in batch:
        real = real & (batch["weights"] != 0)[:, None]
    # the rows run over windows.reshape(S L, n): token (s, t), then its n words
    return jnp.repeat(real.reshape(-1), cfg.window)


def make_sparse_step(
    cfg: model.ModelConfig,
    dense_tx: optax.GradientTransformation,
    rule,
    learning_rate,
    *,
    freeze_embeddings: bool = False,
    frozen_rows=None,
    donate: bool = True,
    chunk: int | None = CHUNK,
):
    """A jitted training step: optax for the dense parameters, a rows-only rule for ``E``.

    Args:
      cfg: the model config.
      dense_tx: optax optimizer for every parameter except ``E`` (it sees a dict without "E").
      rule: a :class:`RowRule`, or one of ``"sgd"``, ``"adagrad"``, ``"adam"`` (defaults).
      learning_rate: E's learning rate, a float or an optax schedule called with the number of
        steps taken so far (0 on the first step, as optax does).
      freeze_embeddings: leave ``E`` untouched (and keep no state for it).
      frozen_rows: bool (V,) or None: rows of ``E`` never updated (those seeded from pretrained
        vectors, ``embeddings_mode="pretrained_frozen"``); their positions name no row, as padding
        does (:func:`unique_row_grads`' ``keep``), so no rule touches them -- lazy Adam included.
      donate: donate ``params`` and ``opt_state`` to the step so XLA updates the (V, d) tables
        in place; without it every step copies them, which costs O(V). The arrays passed in
        are invalid afterwards -- keep the returned ones.
      chunk: the rule runs in passes of this many slots, only as many as the batch has distinct
        ids (:func:`update_rows`); None: one pass over every slot (for a vmapped step).

    Returns:
      ``(init, step)``: ``init(params) -> opt_state`` and jitted
      ``step(params, opt_state, batch, key) -> (params, opt_state, loss)``; ``key`` is the
      dropout key (None: no dropout) and ``loss`` is J before the update.

    >>> import jax, jax.numpy as jnp, optax
    >>> cfg = model.ModelConfig(vocab_size=10, embed_dim=4, window=3, hidden_dim=6)
    >>> params = model.init_params(jax.random.key(0), cfg)
    >>> init, step = make_sparse_step(cfg, optax.sgd(0.1), "sgd", 0.1, donate=False)
    >>> batch = {"windows": jnp.array([[1, 2, 1]]), "labels": jnp.array([3])}
    >>> new, state, J = step(params, init(params), batch, None)
    >>> bool(jnp.all(new["E"][3:] == params["E"][3:]))  # only rows 1 and 2 moved
    True
    """
    if isinstance(rule, str):
        if rule not in RULES:
            raise ValueError(f"rule must be a RowRule or one of {sorted(RULES)}, got {rule!r}")
        rule = RULES[rule]()
    schedule = learning_rate if callable(learning_rate) else (lambda count: learning_rate)
    frozen_rows = None if frozen_rows is None else jnp.asarray(frozen_rows, bool)

    def init(params):
        frozen = freeze_embeddings
        return {
            "dense": dense_tx.init(_without_E(params)),
            "E": () if frozen else rule.init(params["E"]),
            "slots": () if frozen else empty_slots(cfg.vocab_size),
            "count": jnp.zeros((), jnp.int32),
        }

    def step(params, opt_state, batch, key):
        J, grads, (ids, rows) = backprop.manual_value_and_row_grads(params, batch, cfg, key=key)
        dense = _without_E(params)
        grads = {k: grads[k].astype(v.dtype) for k, v in dense.items()}
        updates, dense_state = dense_tx.update(grads, opt_state["dense"], dense)
        new = optax.apply_updates(dense, updates)
        E, E_state, slots, count = params["E"], opt_state["E"], opt_state["slots"], opt_state["count"]
        if not freeze_embeddings:
            keep = counted_positions(batch, cfg)
            if frozen_rows is not None:  # ids (N,): one per gradient row
                free = ~frozen_rows[ids]
                keep = free if keep is None else keep & free
            size = passes_size(ids.shape[0], chunk)
            unique_ids, unique_grads, slots = unique_row_grads(ids, rows.astype(E.dtype), slots, keep, size)
            lr = jnp.asarray(schedule(count), E.dtype)
            E, E_state = update_rows(rule, E, E_state, unique_ids, unique_grads, lr, count + 1, chunk)
        new["E"] = E
        params = {k: new[k] for k in params}
        return params, {"dense": dense_state, "E": E_state, "slots": slots, "count": count + 1}, J

    return init, jax.jit(step, donate_argnums=(0, 1) if donate else ())
