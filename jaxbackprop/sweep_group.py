"""A sweep's group: whole runs of configurations that share their shapes, trained in one vmapped program.

Rows of a sweep (:mod:`jaxbackprop.sweep`) that differ only in :data:`PER_MEMBER` fields (learning
rate, schedule, L2, seed) share their shapes and their optimizer, so they form a *group*:
parameters and optimizer states are stacked on a leading "members" axis and ``jax.vmap`` of one
compiled epoch (:func:`jaxbackprop.compiled_epoch.scan_epoch`) trains every member of a chunk at
once -- each epoch of each member is the epoch :func:`jaxbackprop.train.train_and_evaluate`
would run for it.

* Learning rate and schedule: the optimizer is ``optax.inject_hyperparams(optimizer)``, so the
  rate is a state value; each member's schedule is tabulated up front, (members, steps), and the
  step writes ``schedule(t)`` into ``opt_state.hyperparams["learning_rate"]`` before the update.
  A new rate never recompiles.
* L2: the model is built with ``l2=0`` and the step adds each member's
  ``l2/2 (||W||^2 + ||U||^2)`` to the loss and ``l2 W``, ``l2 U`` to the gradients itself,
  so lambda is a per-member array rather than a static config field.
* Seed: the member's epoch keys (:func:`jaxbackprop.compiled_epoch.epoch_key`) -- its
  initialisation, dropout, word dropout *and data order*, exactly as a run with that seed.
* Evaluation: every member's dev tags in one vmapped pass on the device
  (:func:`jaxbackprop.evaluate.predict`, for the crf head
  :func:`jaxbackprop.crf_eval.predict_sentences`); only tag ids come back for the entity F1.
* The crf head trains on its rows (:func:`jaxbackprop.pipeline.training_rows`: length buckets of
  padded sentences), as many sentences per step as a run takes (:func:`training_data`).
* Divergence: a member whose epoch loss is NaN/inf is marked diverged (its F1 is null). It keeps
  stepping with the others (its lanes are independent, so it cannot disturb them) but is
  ignored from then on; the sweep never stops for it. A chunk whose members have all diverged
  stops there.
* Early stopping (``patience``) is not applied: every live member runs every epoch.

Stacking is not free everywhere: on a CPU a stacked program does the members' arithmetic one
after another anyway, and their stacked embedding tables fall out of cache. So unless ``chunk``
is given, :func:`measure_chunk` times a few steps of the compiled epoch stacked and alone, on the
sweep's own data and machine, and stacks only when that is faster per member. With several
devices the members axis is sharded across a 1-D mesh.
"""

from __future__ import annotations

import functools
import math
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxbackprop import compiled_epoch, crf_eval, evaluate, model, optim, parallel, pipeline, step, train

PER_MEMBER = ("learning_rate", "schedule", "decay_epochs", "decay_rate", "l2", "seed")


def group_indices(configs) -> list[list[int]]:
    """Indices of the configs, grouped by every field outside :data:`PER_MEMBER` (table order kept)."""
    groups: dict = {}
    for i, config in enumerate(configs):
        key = tuple(v for k, v in train.flatten(config).items() if k not in PER_MEMBER)
        groups.setdefault(key, []).append(i)
    return list(groups.values())


# ----------------------------------------------------------------------------- one group


class GroupKey(NamedTuple):
    """What the members of a group share: everything their compiled epoch depends on."""

    model_cfg: model.ModelConfig  # with l2 = 0: L2 is per member
    optimizer: str
    grad: str
    impl: str
    word_dropout: float
    embeddings_mode: str  # finetune, frozen, or pretrained_frozen (the rows to keep are an argument)
    batch_size: int


def group_key(config: train.TrainConfig, prepared: pipeline.Prepared) -> GroupKey:
    """The :class:`GroupKey` of a configuration."""
    model_cfg = pipeline.model_config(train.configure(config, l2=0.0), prepared)
    return GroupKey(
        model_cfg,
        config.optimizer,
        config.grad,
        config.impl,
        config.word_dropout,
        config.embeddings_mode,
        config.batch_size,
    )


def training_data(key: GroupKey, prepared: pipeline.Prepared):
    """``(rows, batch_rows, steps)``: the training rows a run of the group trains on
    (:func:`jaxbackprop.pipeline.training_rows`, on the host), rows per step (an int, or one per
    length bucket of the crf head) and optimizer steps per epoch, as ``jaxbackprop train`` has them."""
    rows = pipeline.training_rows(prepared.train, key.model_cfg)
    batch_rows = pipeline.rows_per_batch(key.batch_size, rows)
    return rows, batch_rows, pipeline.steps_per_epoch(rows, batch_rows)


def _epoch_program(key: GroupKey, stacked: bool, batch_rows):
    """:func:`group_epoch` for ``batch_rows`` rows per step; called as ``group_epoch(key, stacked)`` where
    that is ``key.batch_size`` (windows), so all such calls share one cache entry (one compiled program)."""
    return group_epoch(key, stacked) if batch_rows == key.batch_size else group_epoch(key, stacked, batch_rows)


@functools.lru_cache(maxsize=32)
def group_epoch(key: GroupKey, stacked: bool = True, batch_rows=None):
    """``(tx, epoch_fn)``: the injected-hyperparams optimizer and a jitted epoch of every member,
    ``epoch_fn(params, opt_state, data, seed_keys, lrs, l2s, epoch, frozen_rows) -> (params, opt_state, losses)``.

    ``params``/``opt_state`` are stacked (members first) and donated, ``seed_keys`` (K,) each
    member's ``jax.random.key(seed)``, ``lrs`` (K, steps of the run) tabulated schedules, ``l2s``
    (K,), ``losses`` (K,) each member's mean loss of the epoch; ``data`` (the training split on the
    device, :func:`jaxbackprop.compiled_epoch.device_data` of :func:`training_data`'s rows) and
    ``epoch`` (from 1) are shared, as is ``frozen_rows``: bool (V,), the rows of E that
    ``embeddings_mode="pretrained_frozen"`` keeps (:func:`jaxbackprop.optim.frozen_rows`), None for
    the other modes. ``batch_rows``: rows per step (None: ``key.batch_size``), a
    tuple for length buckets (then ``data`` is one dict per bucket).
    Cached: another group with the same key (new rates, seeds, L2) reuses the compiled program.
    ``stacked=False`` serves a single member (leading axis 1) with the plain, unbatched program
    rather than a vmap over one member.
    """
    batch_rows = key.batch_size if batch_rows is None else batch_rows
    model_cfg = key.model_cfg
    tx = optax.inject_hyperparams(functools.partial(optim.make_optimizer, key.optimizer))(learning_rate=0.0)
    value_and_grad = step.value_and_grad_fn(key.grad, key.impl)
    scan = compiled_epoch.scan_bucket_epoch if isinstance(batch_rows, tuple) else compiled_epoch.scan_epoch

    def member_epoch(params, opt_state, data, seed_key, lrs, l2, epoch, frozen_rows):
        steps = pipeline.steps_per_epoch(data, batch_rows)  # static: from the shapes

        def update(params, opt_state, batch, k_dropout, t):
            J, grads = value_and_grad(params, batch, model_cfg, key=k_dropout)
            # J += l2/2 (||W||^2 + ||U||^2);  dJ/dW += l2 W : (H, n*d),  dJ/dU += l2 U : (C, H)
            J = J + 0.5 * l2 * (jnp.sum(params["W"] ** 2) + jnp.sum(params["U"] ** 2))
            grads = {**grads, "W": grads["W"] + l2 * params["W"], "U": grads["U"] + l2 * params["U"]}
            opt_state = opt_state._replace(hyperparams={**opt_state.hyperparams, "learning_rate": lrs[t]})
            updates, opt_state = tx.update(grads, opt_state, params)
            if key.embeddings_mode == "frozen":  # as optim.make_transform's set_to_zero for E
                updates = {**updates, "E": jnp.zeros_like(updates["E"])}
            if key.embeddings_mode == "pretrained_frozen":  # as optim.make_transform's freeze_rows
                updates, _ = optim.freeze_rows(frozen_rows).update(updates, optax.EmptyState())
            return optax.apply_updates(params, updates), opt_state, J

        def member_step(carry, batch, k, i):
            t = (epoch - 1) * steps + i

            def with_t(params, opt_state, batch, k_dropout):
                return update(params, opt_state, batch, k_dropout, t)

            params, opt_state, J = step.with_word_dropout(with_t, key.word_dropout)(
                *carry, pipeline.model_batch(batch, model_cfg), k
            )
            return (params, opt_state), J

        epoch_key = jax.random.fold_in(seed_key, epoch)  # = compiled_epoch.epoch_key(seed, epoch)
        (params, opt_state), loss = scan(member_step, (params, opt_state), data, epoch_key, batch_rows)
        return params, opt_state, loss

    if stacked:
        vmapped = jax.vmap(member_epoch, in_axes=(0, 0, None, 0, 0, 0, None, None))
        return tx, jax.jit(vmapped, donate_argnums=(0, 1))

    def single(params, opt_state, data, seed_keys, lrs, l2s, epoch, frozen_rows):
        first = functools.partial(jax.tree.map, lambda x: x[0])  # size-1 axis: a free reshape
        out = member_epoch(first(params), first(opt_state), data, seed_keys[0], lrs[0], l2s[0], epoch, frozen_rows)
        return jax.tree.map(lambda x: x[None], out)

    return tx, jax.jit(single, donate_argnums=(0, 1))


@functools.lru_cache(maxsize=32)
def group_predict(model_cfg: model.ModelConfig):
    """Every member's dev predictions in one pass: :func:`jaxbackprop.evaluate.predict` (for the crf
    head :func:`jaxbackprop.crf_eval.predict_sentences`) vmapped over params."""
    sentences = model_cfg.head in model.SENTENCE_HEADS
    predict = crf_eval.predict_sentences if sentences else evaluate.predict
    return jax.jit(
        jax.vmap(lambda p, ev, start, trans: predict(p, ev, start, trans, model_cfg), in_axes=(0, None, None, None))
    )


class GroupRun(NamedTuple):
    """What :func:`train_group` returns."""

    params: dict  # stacked final params, (K, ...) per leaf
    curves: list  # per member, one dict per finished epoch
    diverged: list  # per member, the epoch whose loss became non-finite, or None
    seconds: float  # wall time of the whole group (compile, steps, evaluation)
    devices: int  # devices the members axis was sharded across
    epoch_seconds: list  # wall time of each epoch (the first includes compiling)


def _stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def members_mesh(devices) -> Mesh | None:
    mesh = parallel.mesh_for(devices)
    return None if mesh is None else Mesh(mesh.devices, ("members",))


def init_group(configs, prepared: pipeline.Prepared, key: GroupKey, tx):
    """Stacked initial ``(params, opt_state, seed_keys, lrs, l2s, lr_table)`` of a group's members."""
    steps = training_data(key, prepared)[2]
    ts = jnp.arange(configs[0].epochs * steps)
    schedules = [np.asarray(optim.make_schedule(c, steps)(ts), np.float32) for c in configs]
    lr_table = np.stack([np.broadcast_to(s, ts.shape) for s in schedules])  # a constant schedule gives a scalar
    params = _stack(
        [
            model.init_params(
                jax.random.key(c.seed),
                key.model_cfg,
                init=c.init,
                embeddings=pipeline.initial_embeddings(prepared, c.seed),
            )
            for c in configs
        ]
    )
    opt_state = jax.vmap(tx.init)(params)
    seed_keys = jnp.stack([jax.random.key(c.seed) for c in configs])
    l2s = jnp.asarray([c.model.l2 for c in configs], jnp.float32)
    return params, opt_state, seed_keys, jnp.asarray(lr_table), l2s, lr_table


def train_group(configs, prepared: pipeline.Prepared, *, devices="all", log=print) -> GroupRun:
    """Train configs that differ only in :data:`PER_MEMBER` fields together; see the module docstring.

    Args:
      configs: the members' TrainConfigs (one group, :func:`group_indices`).
      prepared: the data.
      devices: the members are sharded over this many devices (:func:`jaxbackprop.parallel.mesh_for`;
        ``"all"``: every device, padded with copies of the last member to a multiple).
      log: called with one line per epoch.
    """
    t0 = time.perf_counter()
    mesh = members_mesh(devices)
    n_real, n_dev = len(configs), 1 if mesh is None else mesh.devices.size
    configs = list(configs) + [configs[-1]] * (-len(configs) % n_dev)  # pad to a multiple of the devices
    if len(group_indices(configs)) != 1:
        raise ValueError("train_group needs configs that differ only in " + ", ".join(PER_MEMBER))
    first = configs[0]
    key = group_key(first, prepared)
    rows, batch_rows, steps = training_data(key, prepared)
    tx, group = _epoch_program(key, len(configs) > 1, batch_rows)
    frozen_rows = optim.frozen_rows(first, prepared.pretrained_rows)
    params, opt_state, seed_keys, lrs, l2s, lr_table = init_group(configs, prepared, key, tx)
    data = compiled_epoch.device_data(rows)
    if mesh is not None:
        shard = NamedSharding(mesh, PartitionSpec("members"))
        params, opt_state, seed_keys, lrs, l2s = jax.device_put((params, opt_state, seed_keys, lrs, l2s), shard)
        data = jax.device_put(data, NamedSharding(mesh, PartitionSpec()))
    ev = evaluate.cached_eval_data(prepared.dev, key.model_cfg)
    constraints = evaluate.iob2_scores(prepared.tags)
    if mesh is not None:  # every device evaluates its own members on its own copy of the dev split
        ev, constraints = jax.device_put((ev, constraints), NamedSharding(mesh, PartitionSpec()))
    predict = group_predict(key.model_cfg)
    loss_count = crf_eval.loss_count(prepared.dev) if key.model_cfg.head in model.SENTENCE_HEADS else None
    curves, diverged, epoch_seconds = [[] for _ in configs], [None] * len(configs), []
    for epoch in range(1, first.epochs + 1):
        t_epoch = time.perf_counter()
        params, opt_state, losses = group(params, opt_state, data, seed_keys, lrs, l2s, epoch, frozen_rows)
        train_loss = np.asarray(losses)
        pred = jax.device_get(predict(params, ev, *constraints))  # (K, Np) tag ids and (K,) loss sums
        penalties = np.asarray(_l2_penalties(params, l2s))  # (K,): only these K numbers leave the device
        for k in range(n_real):
            if diverged[k] is None and not math.isfinite(train_loss[k]):
                diverged[k] = epoch
                what = f"{configs[k].optimizer}, lr {configs[k].learning_rate:g}"
                log(f"  member {k} of this program ({what}) diverged in epoch {epoch}: loss {train_loss[k]}")
            if diverged[k] is None:
                ids = getattr(pred, first.decode)[k]
                dev = evaluate.scores(
                    ids, pred.argmax[k], pred.loss_sum[k], prepared.dev, prepared.tags, float(penalties[k]), loss_count
                )
                lr = float(lr_table[k, epoch * steps - 1])
                curves[k].append(_curve_row(dev, epoch, float(train_loss[k]), lr))
        alive = [c[-1]["dev_f1"] for c, d in zip(curves[:n_real], diverged) if d is None]
        best = f"best dev F1 {max(alive):.4f}" if alive else "all diverged"
        seconds = time.perf_counter() - t_epoch
        epoch_seconds.append(seconds)
        log(f"  {first.optimizer} x{n_real} epoch {epoch}/{first.epochs}: {len(alive)} alive, {best}  {seconds:.1f}s")
        if not alive:
            break  # every member diverged: the remaining epochs would only burn time
    devices_used = len(params["W"].sharding.device_set)
    params = jax.tree.map(lambda x: x[:n_real], params)
    seconds = time.perf_counter() - t0
    return GroupRun(params, curves[:n_real], diverged[:n_real], seconds, devices_used, epoch_seconds)


@jax.jit
def _l2_penalties(params, l2s):
    """Each member's l2/2 (||W||^2 + ||U||^2), (K,): the model's l2 is 0, each member has its own."""
    return 0.5 * l2s * (jnp.sum(params["W"] ** 2, axis=(1, 2)) + jnp.sum(params["U"] ** 2, axis=(1, 2)))


def _curve_row(dev: dict, epoch: int, train_loss: float, lr: float) -> dict:
    return {
        "epoch": epoch,
        "train_loss": train_loss,
        "dev_loss": dev["loss"],
        "dev_f1": dev["f1"],
        "dev_accuracy": dev["accuracy"],
        "learning_rate": lr,
    }


# ----------------------------------------------------------------------------- how many to stack

CALIBRATION_STEPS = 8  # steps per timed call: enough to amortise a call, few enough to cost nothing
CANDIDATE_CHUNKS = (4, 16, 64)
# measure stacking only for members that would train this many compiles' time one after another,
# or the stacked program's compile (and the measuring) could cost more than stacking can save
PAYBACK = 20


def worth_measuring(alone: GroupRun, remaining: int) -> bool:
    """Whether ``remaining`` more members, trained one after another as the member ``alone`` was,
    would take :data:`PAYBACK` times as long as compiling a program did.

    ``alone``'s first epoch minus its fastest later one is the compile time; with a single epoch,
    where the two cannot be told apart, it measures.
    """
    if remaining < 1:
        return False
    times = alone.epoch_seconds
    if len(times) < 2:
        return True
    epoch, compile_s = min(times[1:]), max(0.0, times[0] - min(times[1:]))
    return remaining * len(times) * epoch >= PAYBACK * compile_s


STATE_COPIES = 6  # params, gradients, updates, two Adam moments and the step's activations, roughly
DEFAULT_MEMORY_BYTES = 4 * 2**30  # where the device does not say how much it has (a CPU)


def max_members(model_cfg: model.ModelConfig, device=None) -> int:
    """How many members' stacked training state fit in half of the device's memory."""
    stats = (device or jax.local_devices()[0]).memory_stats() or {}
    budget = stats.get("bytes_limit", DEFAULT_MEMORY_BYTES) // 2
    per_member = STATE_COPIES * 4 * sum(math.prod(shape) for shape in model.param_shapes(model_cfg).values())
    return max(1, budget // per_member)


_measured: dict = {}  # (group key, rows, sizes) -> timings: a process measures a group's stacking once


def measure_chunk(configs, prepared: pipeline.Prepared, *, log=print) -> tuple[int, dict]:
    """How many members of a group to train in one vmapped program, chosen by timing.

    Times the group's compiled epoch on the first ``CALIBRATION_STEPS`` batches of the training
    split (best of two warm calls), alone and stacked (each of :data:`CANDIDATE_CHUNKS` below the
    group's size, and the group's size, as far as :func:`max_members` fit in memory), and picks
    the fastest per member: stacking is chosen only where it measured faster than one member
    alone.

    Returns:
      ``(chunk, {chunk: seconds per member-step})``, on one device (a sweep over several
      devices runs a chunk on each).
    """
    if len(configs) == 1:
        return 1, {}
    key = group_key(configs[0], prepared)
    rows, batch_rows, _ = training_data(key, prepared)
    data, per_step = _calibration_data(rows, batch_rows)
    fits = max_members(key.model_cfg)
    sizes = sorted({1, *(c for c in (*CANDIDATE_CHUNKS, len(configs)) if c <= min(len(configs), fits))})
    cache_key = (key, pipeline.row_count(rows), tuple(sizes))
    if cache_key not in _measured:
        _measured[cache_key] = {
            size: _time_epoch(configs, size, prepared, key, data, batch_rows) / (size * per_step) for size in sizes
        }
    timings = _measured[cache_key]
    chunk = min(timings, key=timings.get)
    what = ", ".join(f"{c}: {t * 1e6:.0f} us" for c, t in timings.items())
    log(f"  stacking measured ({what} per member-step): {chunk} per program")
    return chunk, timings


def _calibration_data(rows, batch_rows):
    """``(data, steps)``: the first :data:`CALIBRATION_STEPS` batches of the training rows on the device
    (for length buckets, about as many spread over the buckets, at least one batch each)."""
    if isinstance(rows, tuple):
        per_bucket = max(1, CALIBRATION_STEPS // len(rows))
        parts = [_calibration_data_of(r, b, per_bucket) for r, b in zip(rows, batch_rows)]
        return tuple(d for d, _ in parts), sum(n for _, n in parts)
    return _calibration_data_of(rows, batch_rows, CALIBRATION_STEPS)


def _calibration_data_of(rows: dict, batch_rows: int, steps: int):
    n = min(pipeline.row_count(rows), steps * batch_rows)
    return compiled_epoch.device_data({k: v[:n] for k, v in rows.items()}), -(-n // batch_rows)


def _time_epoch(configs, size: int, prepared, key: GroupKey, data, batch_rows=None) -> float:
    """Seconds of a warm call (the best of two) of the group's epoch on ``data`` with ``size`` members."""
    members = [configs[k % len(configs)] for k in range(size)]
    tx, fn = _epoch_program(key, size > 1, batch_rows)
    state = init_group(members, prepared, key, tx)[:5]
    frozen_rows = optim.frozen_rows(configs[0], prepared.pretrained_rows)
    compiled = fn.lower(*state[:2], data, *state[2:], 1, frozen_rows).compile()
    params, opt_state, *rest = state
    runs = []
    for _ in range(2):
        t = time.perf_counter()
        params, opt_state, _ = jax.block_until_ready(compiled(params, opt_state, data, *rest, 1, frozen_rows))
        runs.append(time.perf_counter() - t)
    return min(runs)
