"""Sweeps: a literal table of configurations, trained group by group in one vmapped program.

A table is a list of dicts of flat TrainConfig overrides (see :func:`jaxbackprop.train.configure`).
Rows that differ only in :data:`PER_MEMBER` fields (learning rate, schedule, L2, seed) share their
shapes and their optimizer, so they form a *group* that trains together: parameters and optimizer
states are stacked on a leading "configs" axis and one jitted ``jax.vmap``-ed step updates every
member.

* Learning rate and schedule: the optimizer is ``optax.inject_hyperparams(optimizer)``, so the
  rate is a state value; each member's schedule is tabulated up front, (members, steps), and the
  step writes ``schedule(t)`` into ``opt_state.hyperparams["learning_rate"]`` before the update.
  A new rate never recompiles.
* L2: the model is built with ``l2=0`` and the step adds each member's
  ``l2/2 (||W||^2 + ||U||^2)`` to the loss and ``l2 W``, ``l2 U`` to the gradients itself,
  so lambda is a per-member array rather than a static config field.
* Seed: per-member initialisation and dropout keys, exactly as ``train.run_epoch`` derives them.
  The *data order* is shared by the whole group and follows ``base.seed``; a member whose seed
  equals ``base.seed`` therefore retraces ``train.train_and_evaluate`` step for step.
* Divergence: a member whose epoch loss is NaN/inf is marked diverged (its F1 is null). It keeps
  stepping with the others (its lanes are independent, so it cannot disturb them) but is
  ignored from then on; the sweep never stops for it. A program whose members have all diverged
  stops there.
* Early stopping (``patience``) is not applied: every live member runs every epoch.

Stacking is not free: a stacked embedding table falls out of cache, so :func:`choose_chunk`
decides how many members share one program (1 = plain sequential training). With several
devices, the configs axis is sharded across a 1-D mesh. :mod:`jaxbackprop.sweep_report` writes
the results files and plots.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxbackprop import model, optim, pipeline, step, sweep_report, train
from jaxbackprop.evaluate import evaluate

OPTIMIZERS = ("sgd", "momentum", "adagrad", "rmsprop", "adam", "adamw")
LEARNING_RATES = (1e-4, 1e-3, 1e-2, 1e-1, 1e0)  # powers of ten
PER_MEMBER = ("learning_rate", "schedule", "decay_epochs", "decay_rate", "l2", "seed")
STATE_COPIES = 5  # params, grads, updates and Adam's two moments: what one dense step streams through
# about one core's L2 cache: a stacked state larger than this spills and costs more than stacking saves
CACHE_BUDGET_BYTES = 2 * 2**20
COMPUTE_BOUND_BATCH = 256  # from this batch a single step already keeps the cores busy
DEFAULT_BASE = train.TrainConfig()


def default_table() -> list[dict]:
    """Every optimizer in :data:`OPTIMIZERS` at every rate in :data:`LEARNING_RATES`, constant schedule.

    >>> len(default_table()), default_table()[0]
    (30, {'optimizer': 'sgd', 'learning_rate': 0.0001, 'schedule': 'constant'})
    """
    return [{"optimizer": o, "learning_rate": lr, "schedule": "constant"} for o in OPTIMIZERS for lr in LEARNING_RATES]


def choose_chunk(n_members: int, param_bytes: int, batch_size: int, *, budget_bytes: int = CACHE_BUDGET_BYTES) -> int:
    """How many members to stack in one vmapped program (1: train them one after another).

    Stacking saves only the per-step fixed cost (dispatch, batch transfer, the Python loop); the
    arithmetic and memory traffic grow with the members, and once the stacked state no longer
    fits in cache every member's update runs from memory. So:

    * batch >= COMPUTE_BOUND_BATCH: 1 -- a step is compute-bound, nothing to amortise;
    * otherwise as many members as keep ``STATE_COPIES * param_bytes`` each within
      ``budget_bytes``, so the stacked dense Adam update stays in cache.

    On a CPU this stacks only small models; raise ``budget_bytes`` (or pass ``chunk`` to
    :func:`run_sweep`) on hardware where a step is overhead-bound, such as a GPU. BENCHMARKS.md
    has the measurements behind the constants.

    >>> choose_chunk(16, 4_400_000, 32), choose_chunk(16, 100_000, 32), choose_chunk(16, 100_000, 512)
    (1, 4, 1)
    """
    if n_members < 1 or param_bytes < 1 or batch_size < 1:
        raise ValueError(
            f"n_members, param_bytes and batch_size must be >= 1, got {n_members}, {param_bytes}, {batch_size}"
        )
    if batch_size >= COMPUTE_BOUND_BATCH:
        return 1
    return max(1, min(n_members, budget_bytes // (STATE_COPIES * param_bytes)))


def param_bytes(model_cfg: model.ModelConfig, itemsize: int = 4) -> int:
    """Bytes of one member's parameters."""
    return itemsize * sum(math.prod(s) for s in model.param_shapes(model_cfg).values())


def configure(row: dict, base: train.TrainConfig, epochs: int | None = None) -> train.TrainConfig:
    """The TrainConfig of one table row: ``base`` with the row's flat overrides (and ``epochs``)."""
    try:
        config = train.configure(base, **row, **({} if epochs is None else {"epochs": epochs}))
    except ValueError as e:
        raise ValueError(f"table row {row}: {e}") from None
    if config.sparse:
        raise ValueError(f"table row {row}: sparse=True is not supported by sweeps (dense optax steps only)")
    return config


def group_indices(configs) -> list[list[int]]:
    """Indices of the configs, grouped by every field outside :data:`PER_MEMBER` (table order kept)."""
    groups: dict = {}
    for i, config in enumerate(configs):
        key = tuple(v for k, v in train.flatten(config).items() if k not in PER_MEMBER)
        groups.setdefault(key, []).append(i)
    return list(groups.values())


# ----------------------------------------------------------------------------- one group


@functools.lru_cache(maxsize=32)
def group_step(
    model_cfg: model.ModelConfig,
    optimizer: str,
    grad: str,
    impl: str,
    word_dropout: float,
    frozen: bool,
    stacked: bool = True,
):
    """``(tx, step)``: the injected-hyperparams optimizer and a jitted, vmapped
    ``step(params, opt_state, batch, keys, lrs, l2s, epoch, i, t) -> (params, opt_state, J)``.

    ``params``/``opt_state`` are stacked (members first), ``keys`` (K,) base keys, ``lrs``
    (K, steps) tabulated schedules, ``l2s`` (K,); ``batch`` (a :func:`pipeline.model_batch`) and
    the counters are shared. Cached: another group with the same shapes and optimizer (new rates,
    seeds, L2) reuses the compiled step. ``stacked=False`` serves a single member (leading axis 1)
    with the plain, unbatched program rather than a vmap over one member.
    """
    tx = optax.inject_hyperparams(functools.partial(optim.make_optimizer, optimizer))(learning_rate=0.0)
    value_and_grad = step.value_and_grad_fn(grad, impl)

    def member(params, opt_state, batch, key, lrs, l2, epoch, i, t):
        def update(params, opt_state, batch, k_dropout):
            J, grads = value_and_grad(params, batch, model_cfg, key=k_dropout)
            # J += l2/2 (||W||^2 + ||U||^2);  dJ/dW += l2 W : (H, n*d),  dJ/dU += l2 U : (C, H)
            J = J + 0.5 * l2 * (jnp.sum(params["W"] ** 2) + jnp.sum(params["U"] ** 2))
            grads = {**grads, "W": grads["W"] + l2 * params["W"], "U": grads["U"] + l2 * params["U"]}
            opt_state = opt_state._replace(hyperparams={**opt_state.hyperparams, "learning_rate": lrs[t]})
            updates, opt_state = tx.update(grads, opt_state, params)
            if frozen:  # as optim.make_transform's set_to_zero for E
                updates = {**updates, "E": jnp.zeros_like(updates["E"])}
            return optax.apply_updates(params, updates), opt_state, J

        key = jax.random.fold_in(jax.random.fold_in(key, epoch), i)  # as train.run_epoch
        return step.with_word_dropout(update, word_dropout)(params, opt_state, batch, key)

    if stacked:
        return tx, jax.jit(jax.vmap(member, in_axes=(0, 0, None, 0, 0, 0, None, None, None)))

    def single(params, opt_state, batch, keys, lrs, l2s, epoch, i, t):
        first = functools.partial(jax.tree.map, lambda x: x[0])  # size-1 axis: a free reshape
        out = member(first(params), first(opt_state), batch, keys[0], lrs[0], l2s[0], epoch, i, t)
        return jax.tree.map(lambda x: x[None], out)

    return tx, jax.jit(single)


class GroupRun(NamedTuple):
    """What :func:`train_group` returns."""

    params: dict  # stacked final params, (K, ...) per leaf
    curves: list  # per member, one dict per finished epoch
    diverged: list  # per member, the epoch whose loss became non-finite, or None
    seconds: float  # wall time of the whole group (compile, steps, evaluation)
    devices: int  # devices the configs axis was sharded across


def _stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def train_group(configs, prepared: pipeline.Prepared, *, data_seed: int = 0, log=print) -> GroupRun:
    """Train configs that differ only in :data:`PER_MEMBER` fields together; see the module docstring."""
    t0 = time.perf_counter()
    n_real, n_dev = len(configs), jax.device_count()
    configs = list(configs) + [configs[-1]] * (-len(configs) % n_dev)  # pad to a multiple of the devices
    if len(group_indices(configs)) != 1:
        raise ValueError("train_group needs configs that differ only in " + ", ".join(PER_MEMBER))
    first = configs[0]
    model_cfg = pipeline.model_config(train.configure(first, l2=0.0), prepared)  # L2 is per member
    steps = math.ceil(len(prepared.train.windows) / first.batch_size)
    frozen = first.embeddings_mode == "frozen"
    tx, group = group_step(
        model_cfg, first.optimizer, first.grad, first.impl, first.word_dropout, frozen, len(configs) > 1
    )
    ts = jnp.arange(first.epochs * steps)
    schedules = [np.asarray(optim.make_schedule(c, steps)(ts), np.float32) for c in configs]
    lr_table = np.stack([np.broadcast_to(s, ts.shape) for s in schedules])  # a constant schedule gives a scalar
    lrs, l2s = jnp.asarray(lr_table), jnp.asarray([c.model.l2 for c in configs], jnp.float32)
    embeddings = prepared.embeddings
    params = _stack(
        [model.init_params(jax.random.key(c.seed), model_cfg, init=c.init, embeddings=embeddings) for c in configs]
    )
    opt_state = jax.vmap(tx.init)(params)
    keys = jnp.stack([jax.random.key(c.seed) for c in configs])
    if n_dev > 1:
        shard = NamedSharding(Mesh(np.asarray(jax.devices()), ("configs",)), PartitionSpec("configs"))
        params, opt_state, keys, lrs, l2s = jax.device_put((params, opt_state, keys, lrs, l2s), shard)
    curves, diverged = [[] for _ in configs], [None] * len(configs)
    for epoch in range(1, first.epochs + 1):
        t_epoch, losses = time.perf_counter(), []
        order = np.random.default_rng([data_seed, epoch]).permutation(len(prepared.train.windows))
        for i, batch in enumerate(pipeline.padded_batches(prepared.train, first.batch_size, order)):
            t = (epoch - 1) * steps + i
            params, opt_state, J = group(
                params, opt_state, pipeline.model_batch(batch, model_cfg), keys, lrs, l2s, epoch, i, t
            )
            losses.append(J)
        train_loss = np.asarray(jnp.mean(jnp.stack(losses), axis=0))
        for k in range(n_real):
            if diverged[k] is None and not math.isfinite(train_loss[k]):
                diverged[k] = epoch
                what = f"{configs[k].optimizer}, lr {configs[k].learning_rate:g}"
                log(f"  member {k} of this program ({what}) diverged in epoch {epoch}: loss {train_loss[k]}")
            if diverged[k] is None:
                member_params = jax.tree.map(lambda x, k=k: x[k], params)
                lr = float(lr_table[k, epoch * steps - 1])
                row = _evaluate_member(member_params, prepared, model_cfg, configs[k], epoch, float(train_loss[k]), lr)
                curves[k].append(row)
        alive = [c[-1]["dev_f1"] for c, d in zip(curves[:n_real], diverged) if d is None]
        best = f"best dev F1 {max(alive):.4f}" if alive else "all diverged"
        seconds = time.perf_counter() - t_epoch
        log(f"  {first.optimizer} x{n_real} epoch {epoch}/{first.epochs}: {len(alive)} alive, {best}  {seconds:.1f}s")
        if not alive:
            break  # every member diverged: the remaining epochs would only burn time
    devices = len(params["W"].sharding.device_set)
    params = jax.tree.map(lambda x: x[:n_real], params)
    return GroupRun(params, curves[:n_real], diverged[:n_real], time.perf_counter() - t0, devices)


def _evaluate_member(params, prepared, model_cfg, config, epoch, train_loss, lr) -> dict:
    dev = evaluate(params, prepared.dev, prepared.tags, model_cfg, config.decode)
    # model_cfg.l2 is 0 (each member has its own): the member's penalty is added here
    penalty = 0.5 * config.model.l2 * float(jnp.sum(params["W"] ** 2) + jnp.sum(params["U"] ** 2))
    return {
        "epoch": epoch,
        "train_loss": train_loss,
        "dev_loss": dev["loss"] + penalty,
        "dev_f1": dev["f1"],
        "dev_accuracy": dev["accuracy"],
        "learning_rate": lr,
    }


# ----------------------------------------------------------------------------- the sweep


def run_sweep(
    table,
    prepared: pipeline.Prepared,
    out_dir,
    *,
    base: train.TrainConfig = DEFAULT_BASE,
    epochs: int | None = None,
    chunk: int | None = None,
    log=print,
    overwrite: bool = False,
) -> list[dict]:
    """Train every row of ``table`` (flat TrainConfig overrides of ``base``) and write the results.

    Args:
      table: list of dicts of flat TrainConfig overrides, one per configuration.
      prepared: the data, from :func:`jaxbackprop.pipeline.prepare`.
      out_dir: receives :data:`jaxbackprop.sweep_report.RESULT_FILES`.
      base: the fields no row overrides; ``base.seed`` also fixes the shared data order.
      epochs: overrides every row's epochs (None: keep them).
      chunk: members per vmapped program (None: :func:`choose_chunk`; 1: sequential).
      log: called with one readable line per group and epoch.
      overwrite: replace the results of an earlier sweep in ``out_dir`` (without it, they are refused).

    Returns:
      One dict per row, in table order: its overrides, ``best_dev_f1`` (None if diverged),
      ``best_epoch``, ``final_train_loss``, ``final_dev_loss``, ``diverged``, ``diverged_epoch``,
      ``group``, ``members`` (how many trained in its stacked program) and ``group_seconds``
      (wall time of that program, compilation and evaluation included).

    Raises:
      RunDirError: ``out_dir`` holds a sweep's results and ``overwrite`` was not given (checked
        before anything trains).
    """
    out_dir = Path(out_dir)
    table = [dict(row) for row in table]
    configs = [configure(row, base, epochs) for row in table]
    sweep_report.check_writable(out_dir, overwrite)
    rows, curves, plan = [None] * len(table), [None] * len(table), []
    for g, idx in enumerate(group_indices(configs)):
        model_cfg = pipeline.model_config(configs[idx[0]], prepared)
        size = chunk or choose_chunk(len(idx), param_bytes(model_cfg), configs[idx[0]].batch_size)
        size = -(-size // jax.device_count()) * jax.device_count()  # whole programs per device
        for start in range(0, len(idx), size):
            part = idx[start : start + size]
            log(f"group {g}: {configs[part[0]].optimizer}, configurations {part} stacked in one program")
            run = train_group([configs[j] for j in part], prepared, data_seed=base.seed, log=log)
            plan.append({"group": g, "rows": part, "seconds": run.seconds})
            for j, curve, div in zip(part, run.curves, run.diverged):
                curves[j] = curve
                rows[j] = sweep_report.summary_row(table[j], curve, div, g, len(part), run.seconds)
    run_info = {"base": dataclasses.asdict(base), "epochs": epochs, "chunk": chunk, "plan": plan}
    sweep_report.write_results(out_dir, table, configs, rows, curves, run_info)
    return rows
