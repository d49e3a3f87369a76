"""E07's schedules: the library's, one more (warm-up, then constant), and a run on any of them.

Every schedule of ``optim.SCHEDULES`` that warms up also decays (``warmup_cosine``), so "warm-up +
cosine beats constant" cannot tell the warm-up from the decay. ``warmup_constant`` is the missing
arm: ``warmup_cosine``'s linear warm-up over the first epoch, then the peak rate for good. A
TrainConfig names only the library's schedules, so an arm here is a (config, schedule name) pair
and :func:`train_arm` trains it through the sweep's own compiled epoch
(``sweep_group.group_epoch``), whose rate is read from a table of one rate per step: the arm's
schedule is tabulated and passed in. For a library schedule that is exactly the run
``sweep.run_sweep`` trains (``tests/test_exp_e06_e07.py`` checks it).
"""

from __future__ import annotations

import math

import jax
import numpy as np
import optax

from jaxbackprop import compiled_epoch, evaluate, optim, sweep_group, train

EXTRA = ("warmup_constant",)  # schedules built here, not in the library
NAMES = (*optim.SCHEDULES, *EXTRA)
DECAYS = ("step", "exponential", "cosine")  # decay from the first step on; warmup_cosine decays after a warm-up


def warmup_constant(peak: float, warmup_steps: int) -> optax.Schedule:
    """0 -> ``peak`` linearly over ``warmup_steps`` (``warmup_cosine``'s warm-up), then ``peak``.

    >>> lr = warmup_constant(1.0, 10)
    >>> [round(float(lr(t)), 3) for t in (0, 5, 10, 1000)]
    [0.0, 0.5, 1.0, 1.0]
    """
    return optax.linear_schedule(0.0, peak, transition_steps=warmup_steps)


def make_schedule(config: train.TrainConfig, name: str, steps_per_epoch: int) -> optax.Schedule:
    """The rate per step of schedule ``name`` (one of :data:`NAMES`) from ``config.learning_rate``.

    >>> from configs.base import BASE
    >>> config = train.configure(BASE, learning_rate=0.4, epochs=3)
    >>> [round(float(make_schedule(config, "warmup_constant", 4)(t)), 3) for t in (0, 2, 4, 11)]
    [0.0, 0.2, 0.4, 0.4]
    >>> float(make_schedule(config, "warmup_cosine", 4)(2)) == float(make_schedule(config, "warmup_constant", 4)(2))
    True
    """
    if name == "warmup_constant":
        return warmup_constant(config.learning_rate, steps_per_epoch)
    if name not in optim.SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; expected one of {NAMES}")
    return optim.make_schedule(train.configure(config, schedule=name), steps_per_epoch)


def rate_table(config: train.TrainConfig, name: str, steps_per_epoch: int) -> np.ndarray:
    """(epochs * steps_per_epoch,) float32: the rate of every step of a run, as the sweep tabulates it."""
    steps = np.arange(config.epochs * steps_per_epoch)
    return np.broadcast_to(np.asarray(make_schedule(config, name, steps_per_epoch)(steps), np.float32), steps.shape)


def train_arm(config: train.TrainConfig, schedule: str, prepared) -> dict:
    """One run of ``config`` on ``schedule`` (its peak rate ``config.learning_rate``, its seed ``config.seed``).

    The sweep's single-member program: initialisation, data order and steps as a sweep member with
    this seed, the rate of step t read from :func:`rate_table`. A run whose epoch loss turns NaN/inf
    stops there and is marked diverged.

    Returns:
      ``{"schedule", "learning_rate", "seed", "curve", "diverged_epoch", "steps_per_epoch"}``;
      ``curve``: one ``{"epoch", "train_loss", "dev_loss", "dev_f1", "learning_rate"}`` per finished
      epoch (``train_loss`` the epoch's mean, ``learning_rate`` that of its last step).
    """
    library = schedule if schedule in optim.SCHEDULES else "constant"  # the config's own one is not used
    config = train.configure(config, schedule=library)
    key = sweep_group.group_key(config, prepared)
    rows, batch_rows, steps = sweep_group.training_data(key, prepared)
    # called as the sweep calls it (sweep_group._epoch_program), so both share one compiled program
    windows = batch_rows == key.batch_size
    tx, epoch_fn = sweep_group.group_epoch(key, False) if windows else sweep_group.group_epoch(key, False, batch_rows)
    params, opt_state, seed_keys, _, l2s, _ = sweep_group.init_group([config], prepared, key, tx)
    table = rate_table(config, schedule, steps)
    lrs, data = jax.numpy.asarray(table[None]), compiled_epoch.device_data(rows)
    frozen = optim.frozen_rows(config, prepared.pretrained_rows)
    curve, diverged = [], None
    for epoch in range(1, config.epochs + 1):
        params, opt_state, losses = epoch_fn(params, opt_state, data, seed_keys, lrs, l2s, epoch, frozen)
        loss = float(losses[0])
        if not math.isfinite(loss):
            diverged = epoch
            break
        one = jax.tree.map(lambda x: x[0], params)
        dev = evaluate.evaluate(one, prepared.dev, prepared.tags, key.model_cfg, config.decode)
        lr = float(table[epoch * steps - 1])
        curve.append(
            {"epoch": epoch, "train_loss": loss, "dev_loss": dev["loss"], "dev_f1": dev["f1"], "learning_rate": lr}
        )
    return {
        "schedule": schedule,
        "learning_rate": config.learning_rate,
        "seed": config.seed,
        "curve": curve,
        "diverged_epoch": diverged,
        "steps_per_epoch": steps,
    }
