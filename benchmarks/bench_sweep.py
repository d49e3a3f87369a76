"""Config-steps per second: a sweep group stacked in one vmapped step vs the same configs one by one.

    python benchmarks/bench_sweep.py            # V=20k, 16 Adam learning rates, batch 32 and 512 (minutes)
    python benchmarks/bench_sweep.py --quick    # tiny model, seconds

The model: V words, d=50, window 5, H hidden units, 9 classes, dropout 0.3, casing features of
width 8, word dropout 0.05, Adam. Both runners take the same numpy batches and exclude compilation
(each compiles once, warmed up before timing). The sequential runner is ``step.make_train_step``
with a learning-rate-injected Adam, so one compiled step serves all rates; ``plain`` times
``step.make_train_step`` with ``optax.adam(lr)`` on one config, to show that injecting the rate
costs nothing. The vmapped runner is ``sweep.group_step`` over all members at once
(``vmapped_all``) and over chunks of the size ``sweep.choose_chunk`` picks (``heuristic``).
Repetitions are interleaved and the best of each is kept, because the machine may be shared.
Ratios > 1 mean the vmapped runner is faster. Writes benchmarks/results/sweep.json (``--out``) and
prints a markdown table.
"""

from __future__ import annotations

import functools
import json
import time

import harness
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxbackprop import backprop, features, files, model, optim, step, sweep

WORD_DROPOUT = 0.05


def make_batches(model_cfg, batch_size, steps, seed=0):
    """``steps`` random batches: windows, labels, casing feature ids and unit weights (numpy)."""
    rng = np.random.default_rng(seed)

    def batch():
        shape = (batch_size, model_cfg.window)
        return {
            "windows": rng.integers(0, model_cfg.vocab_size, shape).astype(np.int32),
            "labels": rng.integers(0, model_cfg.num_classes, batch_size).astype(np.int32),
            "features": rng.integers(0, model_cfg.feature_vocab_size, shape).astype(np.int32),
            "weights": np.ones(batch_size, np.float32),
        }

    return [batch() for _ in range(steps)]


def sequential_runner(model_cfg, rates, word_dropout, steps):
    """One compiled step (rate injected as state); members trained one after another."""
    tx = optax.inject_hyperparams(functools.partial(optim.make_optimizer, "adam"))(learning_rate=0.0)
    train_step = step.make_train_step(model_cfg, tx, backprop.manual_value_and_grad, word_dropout)
    members = []
    for k, lr in enumerate(rates):
        params = model.init_params(jax.random.key(k), model_cfg)
        state = tx.init(params)
        members.append((params, state._replace(hyperparams={**state.hyperparams, "learning_rate": jnp.float32(lr)})))

    keys = [jax.random.key(i) for i in range(steps)]  # made once: an eager key per step would cost ~0.2 ms

    def run(batches):
        out = []
        for params, state in members:
            for batch, key in zip(batches, keys):
                params, state, J = train_step(params, state, batch, key)
            out.append(J)
        jax.block_until_ready(out)

    return run


def plain_runner(model_cfg, lr, word_dropout, steps):
    """One config with a plain ``optax.adam(lr)``: the baseline the injected rate is compared with."""
    tx = optax.adam(lr)
    train_step = step.make_train_step(model_cfg, tx, backprop.manual_value_and_grad, word_dropout)
    params = model.init_params(jax.random.key(0), model_cfg)
    state = tx.init(params)
    keys = [jax.random.key(i) for i in range(steps)]

    def run(batches):
        p, s = params, state
        for batch, key in zip(batches, keys):
            p, s, J = train_step(p, s, batch, key)
        jax.block_until_ready(J)

    return run


def vmapped_runner(model_cfg, rates, word_dropout, chunk, steps):
    """sweep.group_step over chunks of ``chunk`` members, each chunk trained for all batches."""
    tx, group_step = sweep.group_step(model_cfg, "adam", "manual", "pure", word_dropout, False, chunk > 1)
    chunks = []
    for start in range(0, len(rates), chunk):
        part = rates[start : start + chunk]
        members = [model.init_params(jax.random.key(start + k), model_cfg) for k in range(len(part))]
        params = jax.tree.map(lambda *xs: jnp.stack(xs), *members)
        lrs = jnp.asarray(np.repeat(np.asarray(part, np.float32)[:, None], steps, axis=1))
        keys = jnp.stack([jax.random.key(start + k) for k in range(len(part))])
        chunks.append((params, jax.vmap(tx.init)(params), keys, lrs, jnp.zeros(len(part), jnp.float32)))

    def run(batches):
        out = []
        for params, state, keys, lrs, l2s in chunks:
            for i, batch in enumerate(batches):
                params, state, J = group_step(params, state, batch, keys, lrs, l2s, 1, i, i)
            out.append(J)
        jax.block_until_ready(out)

    return run


def best_rate(run, batches, work, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(batches)
        times.append(time.perf_counter() - t0)
    return work / min(times)


def bench(args) -> dict:
    model_cfg = model.ModelConfig(
        vocab_size=args.vocab,
        embed_dim=50,
        window=5,
        hidden_dim=args.hidden,
        num_classes=9,
        dropout=0.3,
        feature_vocab_size=len(features.CASINGS),
        feature_dim=8,
        fast=True,
    )
    rates = list(np.logspace(-4, -1, args.members))
    pbytes = sweep.param_bytes(model_cfg)
    rows = [bench_batch_size(args, model_cfg, rates, pbytes, batch_size) for batch_size in args.batch_sizes]
    sizes = ("vocab_size", "embed_dim", "hidden_dim", "window")
    return {
        "model": {**{k: getattr(model_cfg, k) for k in sizes}, "param_bytes": pbytes},
        "optimizer": "adam",
        "steps_per_config": args.steps,
        "repeats": args.repeats,
        "quick": args.quick,
        "rows": rows,
        "environment": harness.environment(),
    }


def bench_batch_size(args, model_cfg, rates, pbytes, batch_size) -> dict:
    """Config-steps per second of every runner at one batch size, and the vmapped/sequential ratios."""
    batches = make_batches(model_cfg, batch_size, args.steps)
    chunk = sweep.choose_chunk(len(rates), pbytes, batch_size)
    runners = {
        "sequential": sequential_runner(model_cfg, rates, WORD_DROPOUT, args.steps),
        "vmapped_all": vmapped_runner(model_cfg, rates, WORD_DROPOUT, len(rates), args.steps),
        "heuristic": vmapped_runner(model_cfg, rates, WORD_DROPOUT, chunk, args.steps),
        "plain_one_config": plain_runner(model_cfg, 1e-3, WORD_DROPOUT, args.steps),
    }
    for run in runners.values():
        run(batches[:1])  # compile
    work = {"plain_one_config": args.steps}
    speed = {name: 0.0 for name in runners}
    for _ in range(args.repeats):  # interleaved, best of each
        for name, run in runners.items():
            speed[name] = max(speed[name], best_rate(run, batches, work.get(name, args.steps * len(rates)), 1))
    row = {
        "batch_size": batch_size,
        "members": len(rates),
        "heuristic_chunk": chunk,
        **{f"{name}_cfg_steps_per_s": round(v, 2) for name, v in speed.items()},
        "ratio_vmapped_all": round(speed["vmapped_all"] / speed["sequential"], 3),
        "ratio_heuristic": round(speed["heuristic"] / speed["sequential"], 3),
    }
    print(json.dumps(row), flush=True)
    return row


def markdown(result) -> str:
    """The rows as a markdown table, under a line naming the machine it ran on."""
    lines = [
        f"Machine: {harness.machine_line(result['environment'])}.",
        "",
        "| batch | members | heuristic chunk | sequential cfg-steps/s | vmapped (all) | ratio | heuristic | ratio |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        cells = [
            r["batch_size"],
            r["members"],
            r["heuristic_chunk"],
            f"{r['sequential_cfg_steps_per_s']:.0f}",
            f"{r['vmapped_all_cfg_steps_per_s']:.0f}",
            f"{r['ratio_vmapped_all']:.2f}",
            f"{r['heuristic_cfg_steps_per_s']:.0f}",
            f"{r['ratio_heuristic']:.2f}",
        ]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = harness.arg_parser(__doc__, "tiny model (V=2000, H=32), 4 members, few steps")
    p.add_argument("--out", default=str(harness.RESULTS / "sweep.json"))
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 512])
    args = p.parse_args(argv)
    sizes = (2000, 32, 4, 10, 2) if args.quick else (20000, 300, 16, 20, 3)
    args.vocab, args.hidden, args.members, args.steps, args.repeats = sizes
    result = bench(args)
    files.write_json(args.out, result)  # sorted keys, as the committed results/sweep.json
    print(markdown(result))
    print(f"device {result['environment']['device']}; written to {args.out}")
    return result


if __name__ == "__main__":
    main()
