"""One training step: loss and gradients (by hand, by jax.grad, or through the flax module), an
optax update, word dropout -- jitted.

The gradient source (``"manual"``: hand-derived backprop, ``"autodiff"``: ``jax.grad``) and the
model implementation (``"pure"`` functions or the ``"flax"`` module) are swapped inside the same
jitted step; with equal seeds they reach the same parameters up to float round-off.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from jaxbackprop import backprop, model, optim, pipeline
from jaxbackprop.settings import GRADS as GRADS  # the choices this module implements
from jaxbackprop.settings import IMPLS as IMPLS
from jaxbackprop.vocab import RESERVED, UNK_ID


def value_and_grad_fn(grad: str, impl: str) -> Callable:
    """``(params, batch, model_cfg, *, key) -> (loss, grads)`` for a gradient source and implementation.

    Args:
      grad: ``"manual"`` (:func:`jaxbackprop.backprop.manual_value_and_grad`) or ``"autodiff"``.
      impl: ``"pure"`` (:func:`jaxbackprop.model.loss`) or ``"flax"`` (autodiff only).
    """
    if impl == "flax":
        from jaxbackprop import flax_model  # flax only where it is asked for

        if grad == "manual":
            raise ValueError("impl='flax' differentiates the flax module with autodiff; use grad='autodiff'")
        return flax_model.flax_value_and_grad
    if grad == "manual":
        return backprop.manual_value_and_grad
    return jax.value_and_grad(model.loss)


def drop_words(key, windows, rate: float):
    """Replace each non-reserved word id of ``windows`` (any shape: (B, n), or (S, L, n) sentences)
    by <unk> with probability ``rate``."""
    hit = jax.random.bernoulli(key, rate, windows.shape) & (windows >= len(RESERVED))
    return jnp.where(hit, UNK_ID, windows)


def with_word_dropout(step, rate: float):
    """Wrap ``step(params, opt_state, batch, key)``: split the key, replace words by <unk> at
    ``rate`` with the first half, and pass the second half on as the step's dropout key.

    Every step (dense, rows-only, flax, a sweep's member) goes through this, so equal seeds give
    equal masks.
    """

    def wrapped(params, opt_state, batch, key):
        k_words, k_step = jax.random.split(key)
        if rate:
            batch = {**batch, "windows": drop_words(k_words, batch["windows"], rate)}
        return step(params, opt_state, batch, k_step)

    return wrapped


def make_train_step(model_cfg: model.ModelConfig, tx, value_and_grad, word_dropout: float = 0.0):
    """A jitted ``step(params, opt_state, batch, key) -> (params, opt_state, loss)``.

    Args:
      model_cfg: the (sized) model config.
      tx: the optax optimizer.
      value_and_grad: ``(params, batch, model_cfg, *, key) -> (loss, grads)``, e.g. from
        :func:`value_and_grad_fn`.
      word_dropout: the rate of :func:`drop_words`.

    The step takes a batch with exactly the keys the loss reads (:func:`pipeline.model_batch`).
    """

    def step(params, opt_state, batch, key):
        J, grads = value_and_grad(params, batch, model_cfg, key=key)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, J

    return jax.jit(with_word_dropout(step, word_dropout))


def make_step(config, model_cfg: model.ModelConfig, params, steps_per_epoch: int, *, pretrained_rows=None):
    """``(opt_state, step)`` for a run: the dense optax step, or the rows-only embedding update.

    Args:
      config: the run's :class:`~jaxbackprop.config.TrainConfig` (optimizer, schedule, grad, impl,
        sparse, word_dropout, ...).
      model_cfg: the sized model config (:func:`pipeline.model_config`).
      params: the initial parameters (the optimizer state is made for them).
      steps_per_epoch: optimizer steps per epoch, for the schedule.
      pretrained_rows: bool (V,), the rows of E seeded from pretrained vectors
        (:attr:`jaxbackprop.pipeline.Prepared.pretrained_rows`); ``embeddings_mode="pretrained_frozen"``
        keeps them fixed (:func:`jaxbackprop.optim.frozen_rows`), other modes ignore them.

    Returns:
      The initial optimizer state, and ``step(params, opt_state, batch, key) -> (params,
      opt_state, loss)`` that takes a batch of :func:`pipeline.padded_batches` as it is.
    """
    if config.sparse:
        from jaxbackprop import sparse

        schedule = optim.make_schedule(config, steps_per_epoch)
        rule = config.optimizer if config.optimizer in ("sgd", "adagrad") else "adam"
        dense_tx = optim.make_optimizer(config.optimizer, schedule)
        frozen = config.embeddings_mode == "frozen"
        rows = optim.frozen_rows(config, pretrained_rows)
        init, sparse_step = sparse.make_sparse_step(
            model_cfg, dense_tx, rule, schedule, freeze_embeddings=frozen, frozen_rows=rows
        )
        # donate like the sparse step itself, or every step would copy E and its moment tables
        opt_state = init(params)
        jitted = jax.jit(with_word_dropout(sparse_step, config.word_dropout), donate_argnums=(0, 1))
    else:
        tx = optim.make_transform(config, params, steps_per_epoch, pretrained_rows)
        opt_state = tx.init(params)
        value_and_grad = value_and_grad_fn(config.grad, config.impl)
        jitted = make_train_step(model_cfg, tx, value_and_grad, config.word_dropout)

    def step(params, opt_state, batch, key):
        return jitted(params, opt_state, pipeline.model_batch(batch, model_cfg), key)

    return opt_state, step
