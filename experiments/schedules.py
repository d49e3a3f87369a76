"""E07's schedules: the rate of every step of an arm, and one run of an arm through the sweep runner.

Every library schedule that warms up used to decay too (``warmup_cosine``), so "warm-up + cosine
beats constant" could not tell the warm-up from the decay; ``optim``'s ``warmup_constant`` is the
missing arm (the same linear warm-up over the first epoch, then the peak rate). An arm is a
schedule name of ``optim.SCHEDULES``, trained as a sweep member (:func:`train_arm`).
"""

from __future__ import annotations

import numpy as np
import optax

from jaxbackprop import optim, pipeline, sweep, train
from jaxbackprop.sweep_group import group_key, training_data

NAMES = optim.SCHEDULES
DECAYS = ("step", "exponential", "cosine")  # decay from the first step on; warmup_cosine decays after a warm-up


def make_schedule(config: train.TrainConfig, name: str, steps_per_epoch: int) -> optax.Schedule:
    """The rate per step of schedule ``name`` (one of :data:`NAMES`) from ``config.learning_rate``.

    >>> from configs.base import BASE
    >>> config = train.configure(BASE, learning_rate=0.4, epochs=3)
    >>> [round(float(make_schedule(config, "warmup_constant", 4)(t)), 3) for t in (0, 2, 4, 11)]
    [0.0, 0.2, 0.4, 0.4]
    >>> float(make_schedule(config, "warmup_cosine", 4)(2)) == float(make_schedule(config, "warmup_constant", 4)(2))
    True
    >>> float(make_schedule(config, "constant", 4)(7))
    0.4
    """
    if name not in NAMES:
        raise ValueError(f"unknown schedule {name!r}; expected one of {NAMES}")
    return optim.make_schedule(train.configure(config, schedule=name), steps_per_epoch)


def rate_table(config: train.TrainConfig, name: str, steps_per_epoch: int) -> np.ndarray:
    """(epochs * steps_per_epoch,) float32: the rate of every step of a run, as the sweep tabulates it."""
    steps = np.arange(config.epochs * steps_per_epoch)
    return np.broadcast_to(np.asarray(make_schedule(config, name, steps_per_epoch)(steps), np.float32), steps.shape)


def steps_per_epoch(config: train.TrainConfig, prepared: pipeline.Prepared) -> int:
    """Optimizer steps per epoch of ``config`` as the sweep trains it."""
    return training_data(group_key(config, prepared), prepared)[2]


def train_arm(config: train.TrainConfig, schedule: str, prepared) -> dict:
    """One run of ``config`` on ``schedule`` (its peak rate ``config.learning_rate``, its seed ``config.seed``),
    a sweep member (``sweep.train_configs``): the initialisation, data order and steps of any sweep.

    Returns:
      ``{"schedule", "learning_rate", "seed", "curve", "diverged_epoch", "steps_per_epoch"}``;
      ``curve``: one ``{"epoch", "train_loss", "dev_loss", "dev_f1", "learning_rate", ...}`` per finished
      epoch (``train_loss`` the epoch's mean, ``learning_rate`` that of its last step).
    """
    if schedule not in NAMES:
        raise ValueError(f"unknown schedule {schedule!r}; expected one of {NAMES}")
    config = train.configure(config, schedule=schedule)
    [(_, run, _, _)] = sweep.train_configs([config], prepared, chunk=1, devices=None, log=lambda *_: None)
    return {
        "schedule": schedule,
        "learning_rate": config.learning_rate,
        "seed": config.seed,
        "curve": run.curves[0],
        "diverged_epoch": run.diverged[0],
        "steps_per_epoch": steps_per_epoch(config, prepared),
    }
