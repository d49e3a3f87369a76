"""Sweeps: a literal table of configurations, trained group by group in one vmapped program.

A table is a list of dicts of :class:`~jaxbackprop.train.TrainConfig` overrides. Rows that differ
only in :data:`PER_MEMBER` fields (learning rate, schedule, L2, seed) share their shapes and their
optimizer, so they form a *group* that trains together: parameters and optimizer states are
stacked on a leading "configs" axis and one jitted ``jax.vmap``-ed step updates every member.

* Learning rate and schedule: the optimizer is ``optax.inject_hyperparams(optimizer)``, so the
  rate is a state value; each member's schedule is tabulated up front, (members, steps), and the
  step writes ``schedule(t)`` into ``opt_state.hyperparams["learning_rate"]`` before the update.
  A new rate never recompiles.
* L2: the model is built with ``l2=0`` and the step adds each member's
  ``l2/2 (||W||^2 + ||U||^2)`` to the loss and ``l2 W``, ``l2 U`` to the gradients itself,
  so lambda is a per-member array rather than a static config field.
* Seed: per-member initialisation and dropout keys, exactly as ``train`` derives them. The
  *data order* is shared by the whole group and follows ``base.seed``; a member whose seed
  equals ``base.seed`` therefore retraces ``train.train_and_evaluate`` step for step.
* Divergence: a member whose epoch loss is NaN/inf is marked diverged (its F1 is null). It keeps
  stepping with the others (its lanes are independent, so it cannot disturb them) but is
  ignored from then on; the sweep never stops for it. A program whose members have all diverged
  stops there.
* Early stopping (``patience``) is not applied: every live member runs every epoch.

Stacking is not free: a stacked embedding table falls out of cache, so :func:`choose_chunk`
decides how many members share one program (1 = plain sequential training). With several
devices, the configs axis is sharded across a 1-D mesh.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import math
import sys
import time
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxbackprop import checkpoint, model, train
from jaxbackprop.provenance import portable_argv

OPTIMIZERS = ("sgd", "momentum", "adagrad", "rmsprop", "adam", "adamw")
LEARNING_RATES = (1e-4, 1e-3, 1e-2, 1e-1, 1e0)  # powers of ten
PER_MEMBER = ("learning_rate", "schedule", "decay_epochs", "decay_rate", "l2", "seed")
STATE_COPIES = 5  # params, grads, updates and Adam's two moments: what one dense step streams through
CACHE_BUDGET_BYTES = 2 * 2**20  # the L2 of this 2-core EPYC; its 32 MiB L3 is shared with other jobs
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
    arithmetic and memory traffic grow with the members. So:

    * batch >= COMPUTE_BOUND_BATCH: 1 -- a step is compute-bound, nothing to amortise;
    * otherwise as many members as keep ``STATE_COPIES * param_bytes`` each within
      ``budget_bytes``, so the stacked dense Adam update stays in cache.

    Measured on a shared 2-core EPYC (32 MiB L3), V=20k H=300 (4.4 MB of params), Adam, batch 32:
    16 members stacked ran at 0.2-0.35x of sequential, 2 members at 0.27-0.9x (K=1 fits the L3,
    K>=2 does not); at batch 512, 16 members ran at 0.58x. V=2000, H=32 (0.4 MB), 4 members:
    0.64-1.0x. Only tiny models (V=250, H=8: 0.1 MB) gained, up to ~2x with 4 members. Hence the
    L2-sized budget: realistic models train sequentially here; raise ``budget_bytes`` (or pass
    ``chunk``) on hardware where a step is overhead-bound, such as a GPU.

    >>> choose_chunk(16, 4_400_000, 32), choose_chunk(16, 100_000, 32), choose_chunk(16, 100_000, 512)
    (1, 4, 1)
    """
    if n_members < 1 or param_bytes < 1 or batch_size < 1:
        raise ValueError(f"n_members, param_bytes and batch_size must be >= 1, got {n_members}, {param_bytes}, {batch_size}")
    if batch_size >= COMPUTE_BOUND_BATCH:
        return 1
    return max(1, min(n_members, budget_bytes // (STATE_COPIES * param_bytes)))


def param_bytes(mcfg: model.ModelConfig, itemsize: int = 4) -> int:
    """Bytes of one member's parameters."""
    return itemsize * sum(math.prod(s) for s in model.param_shapes(mcfg).values())


def configure(row: dict, base: train.TrainConfig, epochs: int | None = None) -> train.TrainConfig:
    """The TrainConfig of one table row: ``base`` with the row's overrides (and ``epochs``)."""
    unknown = sorted(set(row) - {f.name for f in dataclasses.fields(train.TrainConfig)})
    if unknown:
        raise ValueError(f"table row {row} overrides unknown TrainConfig fields {unknown}")
    cfg = dataclasses.replace(base, **row, **({} if epochs is None else {"epochs": epochs}))
    if cfg.sparse:
        raise ValueError(f"table row {row}: sparse=True is not supported by sweeps (dense optax steps only)")
    return cfg


def group_indices(cfgs) -> list[list[int]]:
    """Indices of the configs, grouped by every field outside :data:`PER_MEMBER` (table order kept)."""
    groups: dict = {}
    for i, cfg in enumerate(cfgs):
        key = tuple(v for k, v in dataclasses.asdict(cfg).items() if k not in PER_MEMBER)
        groups.setdefault(key, []).append(i)
    return list(groups.values())


# ----------------------------------------------------------------------------- one group


@functools.lru_cache(maxsize=32)
def group_step(mcfg: model.ModelConfig, optimizer: str, grad: str, impl: str, word_dropout: float, frozen: bool, stacked: bool = True):
    """``(tx, step)``: the injected-hyperparams optimizer and a jitted, vmapped
    ``step(params, opt_state, batch, keys, lrs, l2s, epoch, i, t) -> (params, opt_state, J)``.

    ``params``/``opt_state`` are stacked (members first), ``keys`` (K,) base keys, ``lrs``
    (K, steps) tabulated schedules, ``l2s`` (K,); ``batch`` and the counters are shared. Cached:
    another group with the same shapes and optimizer (new rates, seeds, L2) reuses the compiled step.
    ``stacked=False`` serves a single member (leading axis 1) with the plain, unbatched program:
    on CPU a vmapped matmul of batch 1 was measurably slower than the plain one.
    """
    tx = optax.inject_hyperparams(functools.partial(train.make_optimizer, optimizer))(learning_rate=0.0)
    value_and_grad = train.value_and_grad_fn(grad, impl)

    def member(params, opt_state, batch, key, lrs, l2, epoch, i, t):
        def update(params, opt_state, batch, k_dropout):
            J, grads = value_and_grad(params, batch, mcfg, key=k_dropout)
            # J += l2/2 (||W||^2 + ||U||^2);  dJ/dW += l2 W : (H, n*d),  dJ/dU += l2 U : (C, H)
            J = J + 0.5 * l2 * (jnp.sum(params["W"] ** 2) + jnp.sum(params["U"] ** 2))
            grads = {**grads, "W": grads["W"] + l2 * params["W"], "U": grads["U"] + l2 * params["U"]}
            opt_state = opt_state._replace(hyperparams={**opt_state.hyperparams, "learning_rate": lrs[t]})
            updates, opt_state = tx.update(grads, opt_state, params)
            if frozen:  # as train's multi_transform(set_to_zero) for E
                updates = {**updates, "E": jnp.zeros_like(updates["E"])}
            return optax.apply_updates(params, updates), opt_state, J

        key = jax.random.fold_in(jax.random.fold_in(key, epoch), i)  # as train.run_epoch
        return train.with_word_dropout(update, word_dropout)(params, opt_state, batch, key)

    if stacked:
        return tx, jax.jit(jax.vmap(member, in_axes=(0, 0, None, 0, 0, 0, None, None, None)))

    def single(params, opt_state, batch, keys, lrs, l2s, epoch, i, t):
        first = functools.partial(jax.tree.map, lambda x: x[0])  # size-1 axis: a free reshape
        out = member(first(params), first(opt_state), batch, keys[0], lrs[0], l2s[0], epoch, i, t)
        return jax.tree.map(lambda x: x[None], out)

    return tx, jax.jit(single)


class GroupRun(NamedTuple):
    params: dict  # stacked final params, (K, ...) per leaf
    curves: list  # per member, one dict per finished epoch
    diverged: list  # per member, the epoch whose loss became non-finite, or None
    seconds: float  # wall time of the whole group (compile, steps, evaluation)
    devices: int  # devices the configs axis was sharded across


def _stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def train_group(cfgs, prepared: train.Prepared, *, data_seed: int = 0, log=print) -> GroupRun:
    """Train configs that differ only in :data:`PER_MEMBER` fields together; see the module docstring."""
    t0 = time.perf_counter()
    n_real, n_dev = len(cfgs), jax.device_count()
    cfgs = list(cfgs) + [cfgs[-1]] * (-len(cfgs) % n_dev)  # pad to a multiple of the devices
    if len(group_indices(cfgs)) != 1:
        raise ValueError("train_group needs configs that differ only in " + ", ".join(PER_MEMBER))
    cfg0 = cfgs[0]
    mcfg = train.model_config(dataclasses.replace(cfg0, l2=0.0), prepared)
    steps = math.ceil(len(prepared.train.windows) / cfg0.batch_size)
    tx, step = group_step(mcfg, cfg0.optimizer, cfg0.grad, cfg0.impl, cfg0.word_dropout, cfg0.embeddings_mode == "frozen", len(cfgs) > 1)
    ts = jnp.arange(cfg0.epochs * steps)
    lr_table = np.stack([np.broadcast_to(np.asarray(train.make_schedule(c, steps)(ts), np.float32), ts.shape) for c in cfgs])
    lrs, l2s = jnp.asarray(lr_table), jnp.asarray([c.l2 for c in cfgs], jnp.float32)
    params = _stack([model.init_params(jax.random.key(c.seed), mcfg, init=c.init, embeddings=prepared.embeddings) for c in cfgs])
    opt_state = jax.vmap(tx.init)(params)
    keys = jnp.stack([jax.random.key(c.seed) for c in cfgs])
    if n_dev > 1:
        shard = NamedSharding(Mesh(np.asarray(jax.devices()), ("configs",)), PartitionSpec("configs"))
        params, opt_state, keys, lrs, l2s = jax.device_put((params, opt_state, keys, lrs, l2s), shard)
    curves, diverged = [[] for _ in cfgs], [None] * len(cfgs)
    for epoch in range(1, cfg0.epochs + 1):
        t_epoch, losses = time.perf_counter(), []
        order = np.random.default_rng([data_seed, epoch]).permutation(len(prepared.train.windows))
        for i, batch in enumerate(train.padded_batches(prepared.train, cfg0.batch_size, order)):
            params, opt_state, J = step(params, opt_state, train._model_batch(batch, mcfg), keys, lrs, l2s, epoch, i, (epoch - 1) * steps + i)
            losses.append(J)
        train_loss = np.asarray(jnp.mean(jnp.stack(losses), axis=0))
        for k in range(n_real):
            if diverged[k] is None and not math.isfinite(train_loss[k]):
                diverged[k] = epoch
                log(f"  member {k} of this program ({cfgs[k].optimizer}, lr {cfgs[k].learning_rate:g}) diverged in epoch {epoch}: loss {train_loss[k]}")
            if diverged[k] is None:
                curves[k].append(_evaluate_member(jax.tree.map(lambda x, k=k: x[k], params), prepared, mcfg, cfgs[k], epoch, float(train_loss[k]), float(lr_table[k, epoch * steps - 1])))
        alive = [c[-1]["dev_f1"] for c, d in zip(curves[:n_real], diverged) if d is None]
        best = f"best dev F1 {max(alive):.4f}" if alive else "all diverged"
        log(f"  {cfg0.optimizer} x{n_real} epoch {epoch}/{cfg0.epochs}: {len(alive)} alive, {best}  {time.perf_counter() - t_epoch:.1f}s")
        if not alive:
            break  # every member diverged: the remaining epochs would only burn time
    devices = len(params["W"].sharding.device_set)
    params = jax.tree.map(lambda x: x[:n_real], params)
    return GroupRun(params, curves[:n_real], diverged[:n_real], time.perf_counter() - t0, devices)


def _evaluate_member(params, prepared, mcfg, cfg, epoch, train_loss, lr) -> dict:
    dev = train.evaluate(params, prepared.dev, prepared.tags, mcfg, cfg.decode)
    penalty = 0.5 * cfg.l2 * float(jnp.sum(params["W"] ** 2) + jnp.sum(params["U"] ** 2))  # mcfg.l2 is 0
    return {"epoch": epoch, "train_loss": train_loss, "dev_loss": dev["loss"] + penalty, "dev_f1": dev["f1"],
            "dev_accuracy": dev["accuracy"], "learning_rate": lr}  # fmt: skip


# ----------------------------------------------------------------------------- the sweep


def run_sweep(table, prepared: train.Prepared, out_dir, *, base: train.TrainConfig = DEFAULT_BASE, epochs: int | None = None,
              chunk: int | None = None, log=print) -> list[dict]:  # fmt: skip
    """Train every row of ``table`` (TrainConfig overrides of ``base``) and write the results.

    Args:
      table: list of dicts of TrainConfig overrides, one per configuration.
      prepared: the data, from :func:`jaxbackprop.train.prepare`.
      out_dir: receives results.csv, results.json, curves.json, curves.png, heatmap.png, config.json.
      base: the fields no row overrides; ``base.seed`` also fixes the shared data order.
      epochs: overrides every row's epochs (None: keep them).
      chunk: members per vmapped program (None: :func:`choose_chunk`; 1: sequential).
      log: called with one readable line per group and epoch.

    Returns:
      One dict per row, in table order: its overrides, ``best_dev_f1`` (None if diverged),
      ``best_epoch``, ``final_train_loss``, ``final_dev_loss``, ``diverged``, ``diverged_epoch``,
      ``group``, ``members`` (how many trained in its stacked program) and ``group_seconds``
      (wall time of that program, compilation and evaluation included).
    """
    out_dir = Path(out_dir)
    table = [dict(row) for row in table]
    cfgs = [configure(row, base, epochs) for row in table]
    rows, curves, plan = [None] * len(table), [None] * len(table), []
    for g, idx in enumerate(group_indices(cfgs)):
        mcfg = train.model_config(cfgs[idx[0]], prepared)
        size = chunk or choose_chunk(len(idx), param_bytes(mcfg), cfgs[idx[0]].batch_size)
        size = -(-size // jax.device_count()) * jax.device_count()  # whole programs per device
        for start in range(0, len(idx), size):
            part = idx[start : start + size]
            log(f"group {g}: {cfgs[part[0]].optimizer}, configurations {part} stacked in one program")
            run = train_group([cfgs[j] for j in part], prepared, data_seed=base.seed, log=log)
            plan.append({"group": g, "rows": part, "seconds": run.seconds})
            for j, curve, div in zip(part, run.curves, run.diverged):
                curves[j] = curve
                rows[j] = _summary(table[j], curve, div, g, len(part), run.seconds)
    _write_results(out_dir, table, cfgs, rows, curves, {"base": dataclasses.asdict(base), "epochs": epochs, "chunk": chunk, "plan": plan})
    return rows


def _summary(row, curve, diverged_epoch, group, members, seconds) -> dict:
    best = max(curve, key=lambda r: r["dev_f1"]) if curve and diverged_epoch is None else None
    last = curve[-1] if curve and diverged_epoch is None else {}
    return {**row, "best_dev_f1": best and best["dev_f1"], "best_epoch": best and best["epoch"],
            "final_train_loss": last.get("train_loss"), "final_dev_loss": last.get("dev_loss"),
            "diverged": diverged_epoch is not None, "diverged_epoch": diverged_epoch,
            "group": group, "members": members, "group_seconds": seconds}  # fmt: skip


def _write_results(out_dir: Path, table, cfgs, rows, curves, run_info) -> None:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if r.get(k) is None else r[k]) for k in columns} for r in rows)
    checkpoint.write_text(out_dir / "results.csv", text.getvalue())
    checkpoint.write_json(out_dir / "results.json", rows)
    checkpoint.write_json(out_dir / "curves.json", [{"config": row, "epochs": c} for row, c in zip(table, curves)])
    checkpoint.write_json(out_dir / "config.json", {"table": table, **run_info, "environment": train.environment(), "command": portable_argv(sys.argv)})
    plot_curves(table, curves, out_dir / "curves.png")
    plot_heatmap([c.optimizer for c in cfgs], [c.learning_rate for c in cfgs], rows, out_dir / "heatmap.png")


# ----------------------------------------------------------------------------- plots


def _label(row: dict) -> str:
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()) or "base"


def plot_curves(table, curves, path) -> None:
    """Train loss and dev F1 per epoch, one line per configuration (diverged ones stop early)."""
    from jaxbackprop import plots

    fig, (ax_loss, ax_f1) = plots.plt.subplots(1, 2, figsize=(12, 4))
    for row, curve in zip(table, curves):
        epochs = [r["epoch"] for r in curve]
        (line,) = ax_loss.plot(epochs, [r["train_loss"] for r in curve], "o-", ms=3, label=_label(row))
        ax_f1.plot(epochs, [r["dev_f1"] for r in curve], "o-", ms=3, color=line.get_color())
    ax_loss.set(xlabel="epoch", ylabel="train loss", title="training loss", yscale="log")
    ax_f1.set(xlabel="epoch", ylabel="entity F1", title="dev entity F1")
    for ax in (ax_loss, ax_f1):
        ax.grid(alpha=0.3)
    fig.legend(*ax_loss.get_legend_handles_labels(), loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, ncol=1 + len(table) // 25)
    plots.save(fig, path)


def plot_heatmap(optimizers, learning_rates, rows, path) -> None:
    """Best dev F1 per optimizer x learning rate (the best over any other axis); x marks divergence."""
    from jaxbackprop import plots

    opts, rates = list(dict.fromkeys(optimizers)), sorted(set(learning_rates))
    grid, dead = np.full((len(opts), len(rates)), np.nan), np.zeros((len(opts), len(rates)), bool)
    for o, lr, r in zip(optimizers, learning_rates, rows):
        i, j = opts.index(o), rates.index(lr)
        if r["diverged"]:
            dead[i, j] = True
        else:
            grid[i, j] = np.fmax(grid[i, j], r["best_dev_f1"])
    fig, ax = plots.plt.subplots(figsize=(1.3 * len(rates) + 2, 0.6 * len(opts) + 1.5))
    image = ax.imshow(np.ma.masked_invalid(grid), vmin=0, vmax=1, cmap="viridis", aspect="auto")
    for i in range(len(opts)):
        for j in range(len(rates)):
            text = f"{grid[i, j]:.3f}" if np.isfinite(grid[i, j]) else ("diverged" if dead[i, j] else "")
            ax.text(j, i, text + (" (x)" if dead[i, j] and np.isfinite(grid[i, j]) else ""), ha="center", va="center", fontsize=8, color="white" if not np.isfinite(grid[i, j]) or grid[i, j] < 0.5 else "black")
    ax.set(xticks=range(len(rates)), xticklabels=[f"{r:g}" for r in rates], yticks=range(len(opts)), yticklabels=opts,
           xlabel="learning rate", title="best dev F1 (x: a configuration diverged)")  # fmt: skip
    ax.set_facecolor("0.3")
    fig.colorbar(image, ax=ax, label="dev entity F1")
    plots.save(fig, path)
