"""One training epoch as one jitted function: the data on the device, ``lax.scan`` over the steps.

:func:`jaxbackprop.train.run_epoch` is a Python loop that builds each batch with numpy and sends
it to the device; here the training split goes to the device once (:func:`device_data`) and the
whole epoch -- batching, word dropout, dropout keys, every optimizer step -- is one XLA program::

    epoch_fn(params, opt_state, data, order, key) -> (params, opt_state, mean_loss)

With the same ``order`` and ``key`` it takes exactly the steps ``run_epoch`` takes: the batches of
:func:`jaxbackprop.pipeline.padded_batches` (the last one padded with copies of row 0 at weight 0)
and step i's key ``fold_in(key, i)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxbackprop import data as data_lib
from jaxbackprop.step import make_step

DATA_KEYS = ("windows", "features", "labels")


def device_data(ds: data_lib.Dataset) -> dict:
    """The arrays a training step reads, put on the default device once.

    Args:
      ds: a labelled split (``ds.labels`` not None).

    Returns:
      ``{"windows": (N, n), "features": (N, n*k), "labels": (N,)}``, int32 device arrays.
    """
    if ds.labels is None:
        raise ValueError("device_data needs a labelled split (ds.labels is None)")
    return {k: jax.device_put(np.asarray(getattr(ds, k))) for k in DATA_KEYS}


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


def make_compiled_epoch(config, model_cfg, params, steps_per_epoch: int):
    """``(opt_state, epoch_fn)``: the run's step (:func:`jaxbackprop.step.make_step`) scanned over an epoch.

    Args:
      config: the run's :class:`~jaxbackprop.config.TrainConfig` (batch_size, grad, impl,
        sparse, optimizer, schedule, dropout, word_dropout, ...).
      model_cfg: the sized model config (:func:`jaxbackprop.pipeline.model_config`).
      params: the initial parameters (the optimizer state is made for them).
      steps_per_epoch: optimizer steps per epoch, for the schedule.

    Returns:
      The initial optimizer state, and jitted
      ``epoch_fn(params, opt_state, data, order, key) -> (params, opt_state, mean_loss)``:
      ``data`` from :func:`device_data`, ``order`` the int (N,) permutation of the epoch,
      ``key`` the epoch's key (step i uses ``fold_in(key, i)``), ``mean_loss`` the mean of the
      steps' losses as :func:`jaxbackprop.train.run_epoch` reports it. ``params`` and
      ``opt_state`` are donated: keep the returned ones. It compiles once per (N, dtypes).
    """
    opt_state, step = make_step(config, model_cfg, params, steps_per_epoch)
    batch_size = config.batch_size

    def epoch_fn(params, opt_state, data, order, key):
        idx, weights = epoch_batches(order, batch_size)

        def body(carry, xs):
            params, opt_state = carry
            i, rows, w = xs
            # the batch padded_batches would yield, gathered on the device
            batch = {k: v[rows] for k, v in data.items()}
            batch["weights"] = w
            params, opt_state, J = step(params, opt_state, batch, jax.random.fold_in(key, i))
            return (params, opt_state), J

        steps = jnp.arange(idx.shape[0], dtype=jnp.int32)
        (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), (steps, idx, weights))
        return params, opt_state, jnp.mean(losses)

    return opt_state, jax.jit(epoch_fn, donate_argnums=(0, 1))


class CompiledEpoch(NamedTuple):
    """A compiled epoch with its training split already on the device; what :func:`compile_epoch` returns."""

    epoch_fn: Callable
    data: dict

    def __call__(self, params, opt_state, order, key):
        """One epoch in ``order`` (int (N,)) from the epoch's ``key``: ``(params, opt_state, mean loss)``."""
        params, opt_state, loss = self.epoch_fn(params, opt_state, self.data, jnp.asarray(order), key)
        return params, opt_state, float(loss)


def compile_epoch(config, model_cfg, params, steps_per_epoch: int, ds: data_lib.Dataset):
    """``(opt_state, CompiledEpoch)`` for training on ``ds``: :func:`make_compiled_epoch` plus :func:`device_data`."""
    opt_state, epoch_fn = make_compiled_epoch(config, model_cfg, params, steps_per_epoch)
    return opt_state, CompiledEpoch(epoch_fn, device_data(ds))
