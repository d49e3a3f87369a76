"""Optimisation: the learning-rate schedules and the optax optimizer of a run.

Every optax optimizer that takes a learning rate can be named (:func:`optimizer_names`);
``"momentum"`` is SGD with momentum 0.9. With frozen embeddings, ``E``'s updates are set to zero;
with ``"pretrained_frozen"`` only the updates of the rows seeded from pretrained vectors are
(:func:`freeze_rows`), and every other row of ``E`` -- words without a vector, ``<unk>``, ``<pad>``
-- trains.
"""

from __future__ import annotations

import functools
import inspect

import jax
import jax.numpy as jnp
import optax

from jaxbackprop.settings import EMBEDDING_MODES as EMBEDDING_MODES  # the choices this module implements
from jaxbackprop.settings import SCHEDULES as SCHEDULES


def make_schedule(config, steps_per_epoch: int) -> optax.Schedule:
    """The learning rate of every step: ``config.schedule`` from ``config.learning_rate``.

    Args:
      config: the run's :class:`~jaxbackprop.config.TrainConfig` (its schedule, learning_rate,
        decay_epochs, decay_rate and epochs).
      steps_per_epoch: optimizer steps per epoch; the schedules count in steps.

    Returns:
      ``schedule(step) -> rate``, step counted from 0.

    >>> from jaxbackprop.config import configure
    >>> lr = make_schedule(configure(learning_rate=0.1, schedule="step", decay_epochs=1), steps_per_epoch=10)
    >>> round(float(lr(9)), 6), round(float(lr(10)), 6)
    (0.1, 0.05)
    """
    lr, k = config.learning_rate, config.decay_epochs * steps_per_epoch
    total = config.epochs * steps_per_epoch
    if config.schedule == "constant":
        return optax.constant_schedule(lr)
    if config.schedule == "step":
        return optax.exponential_decay(lr, transition_steps=k, decay_rate=config.decay_rate, staircase=True)
    if config.schedule == "exponential":
        return optax.exponential_decay(lr, transition_steps=k, decay_rate=config.decay_rate)
    if config.schedule == "cosine":
        return optax.cosine_decay_schedule(lr, decay_steps=total)
    if config.schedule == "cyclic":
        low = lr * config.decay_rate
        return lambda step: low + (lr - low) * (1 - jnp.abs((step % (2 * k)) / k - 1))
    if config.schedule == "warmup_constant":  # warmup_cosine's warm-up alone: it tells the warm-up from the decay
        return optax.linear_schedule(0.0, lr, transition_steps=steps_per_epoch)
    # the decay must span more steps than the warm-up, even in a one-epoch run
    decay_steps = max(total, steps_per_epoch + 1)
    return optax.warmup_cosine_decay_schedule(0.0, lr, warmup_steps=steps_per_epoch, decay_steps=decay_steps)


def make_optimizer(name: str, learning_rate) -> optax.GradientTransformation:
    """An optax optimizer by name; ``"momentum"`` is SGD with momentum 0.9.

    Args:
      name: one of :func:`optimizer_names`.
      learning_rate: a float or an optax schedule.
    """
    if name == "momentum":
        return optax.sgd(learning_rate, momentum=0.9)
    if name == "noisy_sgd":  # the key optax takes when none is given, named so that optax does not warn
        return optax.noisy_sgd(learning_rate, key=jax.random.key(0))
    return getattr(optax, name)(learning_rate)


@functools.cache
def optimizer_names() -> tuple[str, ...]:
    """Every name :func:`make_optimizer` accepts: optax's optimizers that take a learning rate.

    Read off optax itself: the functions of ``optax.__all__`` whose first parameter is a
    ``learning_rate`` that may be a schedule (runs pass one), whose other parameters all have
    defaults and which return a ``GradientTransformation``; not the ``scale_by_*`` building
    blocks (``scale_by_rprop`` lacks the final sign flip and would climb the loss) and not
    ``lbfgs``, whose update needs the loss function for its line search. Then ``"momentum"``.

    >>> {"sgd", "adam", "adamw", "rmsprop", "adagrad", "momentum"} <= set(optimizer_names())
    True
    """
    names = []
    for name in sorted(optax.__all__):
        fn = vars(optax).get(name)  # not getattr: the deprecated names warn
        if name.startswith("scale_by_") or name == "lbfgs" or not inspect.isfunction(fn):
            continue
        if _takes_a_schedule(inspect.signature(fn)):
            names.append(name)
    return (*names, "momentum")


def _takes_a_schedule(sig: inspect.Signature) -> bool:
    """``f(learning_rate, <defaults>...) -> GradientTransformation`` with a rate that may be callable."""
    first, *rest = list(sig.parameters.values()) or [None]
    returns = sig.return_annotation
    return (
        first is not None
        and first.name == "learning_rate"
        and "Callable" in str(first.annotation)
        and all(p.default is not p.empty for p in rest)
        and isinstance(returns, type)
        and issubclass(returns, optax.GradientTransformation)
    )


def frozen_rows(config, pretrained_rows):
    """The rows of ``E`` a run keeps fixed under ``embeddings_mode="pretrained_frozen"``, else None.

    Args:
      config: the run's :class:`~jaxbackprop.config.TrainConfig` (its embeddings_mode).
      pretrained_rows: bool (V,), the rows seeded from a pretrained vector
        (:attr:`jaxbackprop.pipeline.Prepared.pretrained_rows`), or None without pretrained vectors.

    Raises:
      ValueError: ``"pretrained_frozen"`` without pretrained vectors (there is nothing to freeze).
    """
    if config.embeddings_mode != "pretrained_frozen":
        return None
    if pretrained_rows is None:
        raise ValueError(
            "embeddings_mode 'pretrained_frozen' keeps the rows of E seeded from pretrained vectors, "
            "but this run has none: pass --embeddings (or use 'finetune' / 'frozen')"
        )
    return jnp.asarray(pretrained_rows, bool)


def freeze_rows(rows) -> optax.GradientTransformation:
    """Zero the update of ``E``'s rows where ``rows`` (bool (V,)) is true; every other update passes.

    Chained after the optimizer, so the rows keep their values bit for bit (Adam's moments of
    those rows still run, but never reach them), weight decay included.

    >>> import jax.numpy as jnp
    >>> tx = freeze_rows(jnp.array([True, False]))
    >>> updates, _ = tx.update({"E": jnp.ones((2, 3)), "W": jnp.ones(2)}, tx.init(None))
    >>> updates["E"].tolist(), updates["W"].tolist()
    ([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]], [1.0, 1.0])
    """
    keep = ~jnp.asarray(rows, bool)[:, None]  # (V, 1): broadcast over the d columns

    def update(updates, state, params=None):
        E = updates["E"]
        return {**updates, "E": jnp.where(keep, E, jnp.zeros((), E.dtype))}, state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_transform(config, params, steps_per_epoch: int, pretrained_rows=None) -> optax.GradientTransformation:
    """The run's optimizer on its schedule; with ``embeddings_mode="frozen"``, E's updates are zero;
    with ``"pretrained_frozen"``, those of the rows in ``pretrained_rows`` (:func:`freeze_rows`).

    Args:
      config: the run's :class:`~jaxbackprop.config.TrainConfig` (optimizer, schedule, embeddings_mode, ...).
      params: the parameters (their keys label E apart from the rest).
      steps_per_epoch: optimizer steps per epoch, for the schedule.
      pretrained_rows: bool (V,), the rows of E seeded from pretrained vectors (None: none were);
        read only by ``"pretrained_frozen"``, which refuses None (:func:`frozen_rows`).
    """
    tx = make_optimizer(config.optimizer, make_schedule(config, steps_per_epoch))
    if config.embeddings_mode == "frozen":
        labels = {k: ("frozen" if k == "E" else "trained") for k in params}
        tx = optax.multi_transform({"trained": tx, "frozen": optax.set_to_zero()}, labels)
    rows = frozen_rows(config, pretrained_rows)
    if rows is not None:
        tx = optax.chain(tx, freeze_rows(rows))
    return tx
