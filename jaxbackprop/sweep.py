"""Sweeps: a literal table of configurations, trained group by group as whole vmapped runs.

A table is a list of dicts of flat TrainConfig overrides (see :func:`jaxbackprop.train.configure`).
Rows that differ only in :data:`~jaxbackprop.sweep_group.PER_MEMBER` fields (learning rate,
schedule, L2, seed) form a group whose members train together (:mod:`jaxbackprop.sweep_group`);
:mod:`jaxbackprop.sweep_report` writes the results files and plots.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from jaxbackprop import dirlock, pipeline, settings, sweep_report, train
from jaxbackprop.sweep_group import group_indices, measure_chunk, members_mesh, train_group, worth_measuring

OPTIMIZERS = settings.SWEEP_OPTIMIZERS
LEARNING_RATES = settings.SWEEP_LEARNING_RATES  # powers of ten
DEFAULT_BASE = train.TrainConfig()


def default_table() -> list[dict]:
    """Every optimizer in :data:`OPTIMIZERS` at every rate in :data:`LEARNING_RATES`, constant schedule.

    >>> len(default_table()), default_table()[0]
    (30, {'optimizer': 'sgd', 'learning_rate': 0.0001, 'schedule': 'constant'})
    """
    return [{"optimizer": o, "learning_rate": lr, "schedule": "constant"} for o in OPTIMIZERS for lr in LEARNING_RATES]


def configure(row: dict, base: train.TrainConfig, epochs: int | None = None) -> train.TrainConfig:
    """The TrainConfig of one table row: ``base`` with the row's flat overrides (and ``epochs``)."""
    try:
        config = train.configure(base, **row, **({} if epochs is None else {"epochs": epochs}))
    except ValueError as e:
        raise ValueError(f"table row {row}: {e}") from None
    if config.sparse:
        raise ValueError(f"table row {row}: sparse=True is not supported by sweeps (dense optax steps only)")
    return config


# ----------------------------------------------------------------------------- the sweep


def run_sweep(
    table,
    prepared: pipeline.Prepared,
    out_dir,
    *,
    base: train.TrainConfig = DEFAULT_BASE,
    epochs: int | None = None,
    chunk: int | None = None,
    devices="all",
    log=print,
    overwrite: bool = False,
) -> list[dict]:
    """Train every row of ``table`` (flat TrainConfig overrides of ``base``) and write the results.

    Args:
      table: list of dicts of flat TrainConfig overrides, one per configuration.
      prepared: the data, from :func:`jaxbackprop.pipeline.prepare`.
      out_dir: receives :data:`jaxbackprop.sweep_report.RESULT_FILES`.
      base: the fields no row overrides.
      epochs: overrides every row's epochs (None: keep them).
      chunk: members per vmapped program and device; 1: one after another; None: the first member
        trains alone, and the others are stacked as :func:`jaxbackprop.sweep_group.measure_chunk`
        finds fastest if they are many enough to repay measuring
        (:func:`jaxbackprop.sweep_group.worth_measuring`), else they follow one after another.
      devices: the members are spread over this many devices (``"all"``, an int, or None for one).
      log: called with one readable line per group and epoch.
      overwrite: replace the results of an earlier sweep in ``out_dir`` (without it, they are refused).

    Returns:
      One dict per row, in table order: its overrides, ``best_dev_f1`` (None if diverged),
      ``best_epoch``, ``final_train_loss``, ``final_dev_loss``, ``diverged``, ``diverged_epoch``,
      ``group``, ``members`` (how many trained in its stacked program) and ``group_seconds``
      (wall time of that program, compilation and evaluation included).

    Raises:
      RunDirError: ``out_dir`` holds a sweep's results and ``overwrite`` was not given, or holds a
        training run (checked before anything trains).
      DirectoryInUse: another process is writing ``out_dir`` (:mod:`jaxbackprop.dirlock`).
    """
    out_dir = Path(out_dir)
    table = [dict(row) for row in table]
    configs = [configure(row, base, epochs) for row in table]
    with dirlock.locked(out_dir, log):  # one process at a time: before the check, held until the files are written
        sweep_report.check_writable(out_dir, overwrite)
        sweep_report.remove_temporaries(out_dir)
        return _run_sweep(table, configs, prepared, out_dir, base, epochs, chunk, devices, log)


def _run_sweep(table, configs, prepared, out_dir: Path, base, epochs, chunk, devices, log) -> list[dict]:
    runs = train_configs(configs, prepared, chunk=chunk, devices=devices, log=log)
    rows, curves, plan = [None] * len(table), [None] * len(table), []
    for part, run, group, timings in runs:
        plan.append({"group": group, "rows": part, "seconds": run.seconds, "devices": run.devices})
        if timings:
            plan[-1]["measured_seconds_per_member_step"] = {str(c): t for c, t in timings.items()}
        for j, curve, div in zip(part, run.curves, run.diverged):
            curves[j] = curve
            rows[j] = sweep_report.summary_row(table[j], curve, div, group, len(part), run.seconds)
    run_info = {"base": dataclasses.asdict(base), "epochs": epochs, "chunk": chunk, "plan": plan}
    sweep_report.write_results(out_dir, table, configs, rows, curves, run_info)
    return rows


def train_configs(configs, prepared: pipeline.Prepared, *, chunk=None, devices="all", log=print) -> list:
    """Train every configuration, group by group (:func:`run_sweep` without the files).

    Returns:
      One ``(rows, GroupRun, group, timings)`` per program run, ``rows`` the indices of its
      configurations, ``timings`` what :func:`jaxbackprop.sweep_group.measure_chunk` measured
      before the group's last programs (or None).
    """
    mesh = members_mesh(devices)
    n_dev = 1 if mesh is None else mesh.devices.size
    runs = []

    def train(g, part, timings=None):
        runs.append((part, train_group([configs[j] for j in part], prepared, devices=devices, log=log), g, timings))

    for g, idx in enumerate(group_indices(configs)):
        log(f"group {g}: {configs[idx[0]].optimizer}, configurations {idx}")
        todo, size, timings = list(idx), chunk, None
        if chunk is None:  # the first member alone; the others stacked only if that measures faster
            train(g, todo[:n_dev])
            todo = todo[n_dev:]
            if worth_measuring(runs[-1][1], len(todo)):
                size, timings = measure_chunk([configs[j] for j in todo], prepared, log=log)
            else:
                size = 1
        size *= n_dev  # the chunk runs on each device
        for start in range(0, len(todo), size):
            train(g, todo[start : start + size], timings)
    return runs
