"""One training epoch as one jitted function: the data on the device, ``lax.scan`` over the steps.

The training split goes to the device once (:func:`device_data`); the whole epoch -- the
shuffle, batching, word dropout, dropout keys and every optimizer step -- is one XLA program::

    epoch_fn(params, opt_state, data, key) -> (params, opt_state, mean_loss)

Everything random in an epoch comes from its key (:func:`epoch_key` of the seed and epoch):
:func:`epoch_keys` splits it into the key of the epoch's order (:func:`epoch_order`, a
permutation drawn on the device) and the key of its steps (step i uses ``fold_in(steps_key, i)``).
:func:`jaxbackprop.train.run_epoch`, the step-by-step Python loop kept for hooks that watch the
parameters between steps, derives the same order and keys, so both take exactly the same steps.
:func:`scan_epoch` is the part both this module and the vmapped sweeps
(:mod:`jaxbackprop.sweep`) build on.

The crf head trains on length buckets of padded sentences (:func:`jaxbackprop.buckets.sentence_buckets`),
each with its own shapes and sentences per step. :func:`scan_bucket_epoch` keeps one program and
one scan: :func:`bucket_plan` draws each bucket's order and a shuffled schedule that interleaves
the buckets' batches, and every step runs the step of its bucket (``lax.switch``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxbackprop import data as data_lib
from jaxbackprop import parallel, pipeline
from jaxbackprop.step import make_step

DATA_KEYS = ("windows", "features", "labels")


def device_data(ds, mesh=None) -> dict:
    """The arrays a training step reads, put on the device once.

    Args:
      ds: a labelled split (``ds.labels`` not None), whose windows are the rows; or the rows of
        :func:`jaxbackprop.pipeline.training_rows` (padded sentences for the crf head).
      mesh: None (the default device) or a data mesh (:func:`jaxbackprop.parallel.data_mesh`), on
        each device of which the split is copied whole.

    Returns:
      ``{"windows": (N, n), "features": (N, n*k), "labels": (N,)}``, int32 device arrays (for
      sentence rows, those of :func:`jaxbackprop.buckets.sentence_rows`, with their ``"mask"``;
      for length buckets, a tuple of those, one per bucket).
    """
    if isinstance(ds, tuple) and not isinstance(ds, data_lib.Dataset):  # the crf head's length buckets
        return tuple(device_data(rows, mesh) for rows in ds)
    if isinstance(ds, dict):
        arrays = {k: np.asarray(v) for k, v in ds.items()}
    elif ds.labels is None:
        raise ValueError("device_data needs a labelled split (ds.labels is None)")
    else:
        arrays = {k: np.asarray(getattr(ds, k)) for k in DATA_KEYS}
    return jax.device_put(arrays) if mesh is None else parallel.replicate(arrays, mesh)


def rows_per_step(batch_size: int, rows, mesh=None):
    """:func:`jaxbackprop.pipeline.rows_per_batch` of ``rows``, split evenly over the mesh's devices.

    Windows per step are ``batch_size`` itself, so one that does not divide over the devices is
    refused (:func:`jaxbackprop.parallel.check_batch_divides`). The crf head's sentences per step
    are derived from ``batch_size`` tokens; those are rounded up to a multiple of the devices
    (:func:`jaxbackprop.parallel.round_up_to_devices`).

    Raises:
      ValueError: windows per step that do not divide over the mesh's devices.

    >>> rows_per_step(1024, ({"mask": np.ones((10, 8), bool)},))
    (128,)
    """
    batch = pipeline.rows_per_batch(batch_size, rows)
    if isinstance(batch, tuple):
        return tuple(parallel.round_up_to_devices(b, mesh) for b in batch)
    parallel.check_batch_divides(batch, mesh)
    return batch


def epoch_key(seed: int, epoch: int):
    """The key of everything random in epoch ``epoch`` (from 1) of a run with ``seed``."""
    return jax.random.fold_in(jax.random.key(seed), epoch)


def epoch_keys(key):
    """``(order_key, steps_key)``: the epoch key split into the key of its order and of its steps."""
    order_key, steps_key = jax.random.split(key)
    return order_key, steps_key


def epoch_order(key, n: int):
    """The epoch's order of the ``n`` training rows: a permutation drawn from the epoch ``key``.

    >>> sorted(epoch_order(epoch_key(0, 1), 5).tolist())
    [0, 1, 2, 3, 4]
    """
    return jax.random.permutation(epoch_keys(key)[0], n)


def epoch_batches(order, batch_size: int):
    """Row indices and weights of every batch of an epoch, as :func:`pipeline.padded_batches` makes them.

    Args:
      order: int (N,) the rows in the epoch's order.
      batch_size: rows per batch, B.

    Returns:
      ``(idx, weights)``: int (S, B) and float32 (S, B), S = ceil(N / B); the rows past N are
      row 0 with weight 0, so they change neither loss nor gradient.

    >>> idx, w = epoch_batches(jnp.array([2, 0, 1]), 2)
    >>> idx.tolist(), w.tolist()
    ([[2, 0], [1, 0]], [[1.0, 1.0], [1.0, 0.0]])
    """
    order = jnp.asarray(order)
    n = order.shape[0]
    steps = -(-n // batch_size)
    pad = steps * batch_size - n
    idx = jnp.concatenate([order, jnp.zeros((pad,), order.dtype)])
    weights = (jnp.arange(steps * batch_size) < n).astype(jnp.float32)
    return idx.reshape(steps, batch_size), weights.reshape(steps, batch_size)


def scan_epoch(step, carry, data: dict, key, batch_size: int, *, mesh=None, progress=None):
    """Every step of one epoch under ``lax.scan``: traceable, so it can be jitted or vmapped whole.

    Args:
      step: ``step(carry, batch, key, i) -> (carry, loss)``; ``batch`` holds ``data``'s arrays at
        the batch's rows plus ``"weights"``, ``key`` is ``fold_in(steps_key, i)``.
      carry: the state the steps thread through (e.g. ``(params, opt_state)``).
      data: ``{name: (N, ...)}`` device arrays (:func:`device_data`).
      key: the epoch key (:func:`epoch_key`); it draws the order and the steps' keys.
      batch_size: rows per batch; the last batch is padded at weight 0 (:func:`epoch_batches`).
      mesh: a data mesh: each batch is split over its devices along the rows (the compiler then
        sums the gradients across them); None for one device.
      progress: ``(every, callback)``: ``callback(i)`` is called on the host after every
        ``every`` steps, i the number of steps done (a progress bar); None for no callback.

    Returns:
      ``(carry, mean loss of the epoch's steps)``.
    """
    _, steps_key = epoch_keys(key)
    n = jax.tree.leaves(data)[0].shape[0]
    idx, weights = epoch_batches(epoch_order(key, n), batch_size)

    def body(carry, xs):
        i, rows, w = xs
        batch = _split_over(mesh, {k: v[rows] for k, v in data.items()} | {"weights": w})
        carry, loss = step(carry, batch, jax.random.fold_in(steps_key, i), i)
        _report(progress, i)
        return carry, loss

    steps = jnp.arange(idx.shape[0], dtype=jnp.int32)
    carry, losses = jax.lax.scan(body, carry, (steps, idx, weights))
    return carry, jnp.mean(losses)


def _split_over(mesh, batch):
    """The batch's rows split over the mesh's devices (the compiler then sums the gradients); as is without one."""
    return batch if mesh is None else jax.lax.with_sharding_constraint(batch, NamedSharding(mesh, P(parallel.AXIS)))


def _report(progress, i) -> None:
    """Call the host back after every ``every`` steps (``progress = (every, callback)``), if asked."""
    if progress is not None:
        every, callback = progress
        jax.lax.cond((i + 1) % every == 0, lambda: jax.debug.callback(callback, i + 1), lambda: None)


def bucket_plan(key, counts, batch_sizes):
    """The epoch's order over length buckets: each bucket's rows, and which bucket each step takes.

    Bucket b's rows are a permutation drawn from ``fold_in(order_key, b)``; the schedule holds b
    once per batch of b (``ceil(N_b / B_b)`` times), shuffled with ``fold_in(order_key, K)``, so the
    buckets' batches are interleaved in a different order every epoch. All from the epoch key.

    Args:
      key: the epoch key (:func:`epoch_key`); counts: (N_b,) rows per bucket; batch_sizes: (B_b,).

    Returns:
      ``(orders, schedule, position)``: a tuple of int (N_b,) permutations; int32 (steps,) the
      bucket of each step; int32 (steps,) which batch of its bucket it is (0, 1, ... per bucket).

    >>> _, schedule, position = bucket_plan(epoch_key(0, 1), (5, 2), (2, 2))
    >>> sorted(zip(schedule.tolist(), position.tolist()))
    [(0, 0), (0, 1), (0, 2), (1, 0)]
    """
    order_key, _ = epoch_keys(key)
    orders = tuple(jax.random.permutation(jax.random.fold_in(order_key, b), n) for b, n in enumerate(counts))
    steps = [-(-n // size) for n, size in zip(counts, batch_sizes)]
    each = jnp.asarray(np.repeat(np.arange(len(counts), dtype=np.int32), steps))
    schedule = jax.random.permutation(jax.random.fold_in(order_key, len(counts)), each)
    # the k-th time bucket b comes up it takes its k-th batch: count b's earlier steps
    seen = jnp.cumsum(schedule[:, None] == jnp.arange(len(counts))[None, :], axis=0, dtype=jnp.int32)
    position = jnp.take_along_axis(seen, schedule[:, None], axis=1)[:, 0] - 1
    return orders, schedule, position


def scan_bucket_epoch(step, carry, buckets: tuple, key, batch_sizes: tuple, *, mesh=None, progress=None):
    """:func:`scan_epoch` over length buckets: one scan whose steps take their bucket's batch.

    Step i takes the batch of bucket ``schedule[i]`` (:func:`bucket_plan`): ``lax.switch`` runs
    that bucket's branch, the step traced at its bucket's shapes. The step keys count on over
    the buckets, ``fold_in(steps_key, i)`` for step i of the epoch, as in :func:`scan_epoch`.

    Args:
      buckets: a tuple of ``{name: (N_b, L_b, ...)}`` device arrays (:func:`device_data` of
        :func:`jaxbackprop.buckets.sentence_buckets`); batch_sizes: rows per batch of each bucket.
      step, carry, key, mesh, progress: as for :func:`scan_epoch`.

    Returns:
      ``(carry, mean loss of the epoch's steps)``.
    """
    _, steps_key = epoch_keys(key)
    counts = [jax.tree.leaves(rows)[0].shape[0] for rows in buckets]
    orders, schedule, position = bucket_plan(key, counts, batch_sizes)

    def branch(rows, order, batch_size):
        idx, weights = epoch_batches(order, batch_size)

        def run(carry, i, k):  # the k-th batch of this bucket, as step i of the epoch
            batch = {name: v[idx[k]] for name, v in rows.items()} | {"weights": weights[k]}
            return step(carry, _split_over(mesh, batch), jax.random.fold_in(steps_key, i), i)

        return run

    branches = [branch(*b) for b in zip(buckets, orders, batch_sizes)]

    def body(carry, xs):
        i, b, k = xs
        carry, loss = jax.lax.switch(b, branches, carry, i, k)
        _report(progress, i)
        return carry, loss

    steps = jnp.arange(schedule.shape[0], dtype=jnp.int32)
    carry, losses = jax.lax.scan(body, carry, (steps, schedule, position))
    return carry, jnp.mean(losses)


def make_compiled_epoch(
    config,
    model_cfg,
    params,
    steps_per_epoch: int,
    *,
    mesh=None,
    progress=None,
    batch_size: int | tuple | None = None,
    pretrained_rows=None,
):
    """``(opt_state, epoch_fn)``: the run's step (:func:`jaxbackprop.step.make_step`) scanned over an epoch.

    Args:
      config: the run's :class:`~jaxbackprop.config.TrainConfig` (batch_size, grad, impl,
        sparse, optimizer, schedule, dropout, word_dropout, ...).
      model_cfg: the sized model config (:func:`jaxbackprop.pipeline.model_config`).
      params: the initial parameters (the optimizer state is made for them).
      steps_per_epoch: optimizer steps per epoch, for the schedule.
      batch_size: rows per step (None: ``config.batch_size``; for sentence rows,
        :func:`jaxbackprop.pipeline.rows_per_batch`); a tuple, one per bucket, for length buckets
        (then ``data`` is a tuple of buckets too, and the epoch is :func:`scan_bucket_epoch`).
      mesh, progress: see :func:`scan_epoch`. With a mesh, place ``params`` and ``opt_state`` with
        :func:`jaxbackprop.parallel.replicate` before each call, and ``data`` with :func:`device_data`.
      pretrained_rows: passed to :func:`jaxbackprop.step.make_step` (the rows ``"pretrained_frozen"`` keeps).

    Returns:
      The initial optimizer state, and jitted
      ``epoch_fn(params, opt_state, data, key) -> (params, opt_state, mean_loss)``:
      ``data`` from :func:`device_data`, ``key`` the epoch key (:func:`epoch_key`), ``mean_loss``
      the mean of the steps' losses as :func:`jaxbackprop.train.run_epoch` reports it.
      ``params`` and ``opt_state`` are donated: keep the returned ones. It compiles once per
      (N, dtypes).
    """
    opt_state, train_step = make_step(config, model_cfg, params, steps_per_epoch, pretrained_rows=pretrained_rows)
    batch_size = config.batch_size if batch_size is None else batch_size

    def step(carry, batch, key, i):
        params, opt_state, loss = train_step(*carry, batch, key)
        return (params, opt_state), loss

    scan = scan_bucket_epoch if isinstance(batch_size, tuple) else scan_epoch

    def epoch_fn(params, opt_state, data, key):
        (params, opt_state), loss = scan(step, (params, opt_state), data, key, batch_size, mesh=mesh, progress=progress)
        return params, opt_state, loss

    return opt_state, jax.jit(epoch_fn, donate_argnums=(0, 1))


class CompiledEpoch(NamedTuple):
    """A compiled epoch with its training split already on the device; what :func:`compile_epoch` returns."""

    epoch_fn: Callable
    data: dict

    def __call__(self, params, opt_state, key):
        """One epoch from the epoch ``key``: ``(params, opt_state, mean loss)``."""
        params, opt_state, loss = self.epoch_fn(params, opt_state, self.data, key)
        return params, opt_state, float(loss)


def compile_epoch(
    config,
    model_cfg,
    params,
    steps_per_epoch: int,
    ds: data_lib.Dataset,
    *,
    mesh=None,
    progress=None,
    pretrained_rows=None,
):
    """``(opt_state, CompiledEpoch)`` for training on ``ds``: :func:`make_compiled_epoch` plus :func:`device_data`.

    ``ds``: a Dataset, or its :func:`jaxbackprop.pipeline.training_rows` (made here from a Dataset:
    length buckets of padded sentences for the crf head, each with its own
    :func:`rows_per_step` sentences per step). ``pretrained_rows``: as for
    :func:`jaxbackprop.step.make_step`.
    """
    rows = pipeline.training_rows(ds, model_cfg)
    batch = rows_per_step(config.batch_size, rows, mesh)
    opt_state, epoch_fn = make_compiled_epoch(
        config,
        model_cfg,
        params,
        steps_per_epoch,
        mesh=mesh,
        progress=progress,
        batch_size=batch,
        pretrained_rows=pretrained_rows,
    )
    return opt_state, CompiledEpoch(epoch_fn, device_data(rows, mesh))
