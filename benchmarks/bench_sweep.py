"""Config-steps per second: a sweep group stacked in one vmapped step vs the same configs one by one.

    python benchmarks/bench_sweep.py            # V=20k, 16 Adam learning rates, batch 32 and 512 (minutes)
    python benchmarks/bench_sweep.py --quick    # tiny model, seconds

Both runners take the same numpy batches and exclude compilation (each compiles once, warmed up
before timing). The sequential runner is ``train.make_train_step`` with a learning-rate-injected
Adam, so one compiled step serves all rates; ``plain`` times ``train.make_train_step`` with
``optax.adam(lr)`` on one config, to show that injecting the rate costs nothing. Repetitions are
interleaved and the best of each is kept, because the machine may be shared. Ratios > 1 mean the
vmapped runner is faster. Writes benchmarks/results/sweep.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxbackprop import backprop, data, model, sweep, train


def make_batches(mcfg, batch_size, steps, seed=0):
    rng = np.random.default_rng(seed)
    return [{"windows": rng.integers(0, mcfg.vocab_size, (batch_size, mcfg.window)).astype(np.int32),
             "labels": rng.integers(0, mcfg.num_classes, batch_size).astype(np.int32),
             "casing": rng.integers(0, mcfg.casing_size, (batch_size, mcfg.window)).astype(np.int32),
             "weights": np.ones(batch_size, np.float32)} for _ in range(steps)]  # fmt: skip


def sequential_runner(mcfg, rates, word_dropout, steps):
    """One compiled step (rate injected as state); members trained one after another."""
    tx = optax.inject_hyperparams(functools.partial(train.make_optimizer, "adam"))(learning_rate=0.0)
    step = train.make_train_step(mcfg, tx, backprop.manual_value_and_grad, word_dropout)
    members = []
    for k, lr in enumerate(rates):
        params = model.init_params(jax.random.key(k), mcfg)
        state = tx.init(params)
        members.append((params, state._replace(hyperparams={**state.hyperparams, "learning_rate": jnp.float32(lr)})))

    keys = [jax.random.key(i) for i in range(steps)]  # made once: an eager key per step would cost ~0.2 ms

    def run(batches):
        out = []
        for params, state in members:
            for batch, key in zip(batches, keys):
                params, state, J = step(params, state, batch, key)
            out.append(J)
        jax.block_until_ready(out)

    return run


def plain_runner(mcfg, lr, word_dropout, steps):
    tx = optax.adam(lr)
    step = train.make_train_step(mcfg, tx, backprop.manual_value_and_grad, word_dropout)
    params = model.init_params(jax.random.key(0), mcfg)
    state = tx.init(params)
    keys = [jax.random.key(i) for i in range(steps)]

    def run(batches):
        p, s = params, state
        for batch, key in zip(batches, keys):
            p, s, J = step(p, s, batch, key)
        jax.block_until_ready(J)

    return run


def vmapped_runner(mcfg, rates, word_dropout, chunk, steps):
    """sweep.group_step over chunks of ``chunk`` members, each chunk trained for all batches."""
    tx, step = sweep.group_step(mcfg, "adam", "manual", "pure", word_dropout, False, chunk > 1)
    chunks = []
    for start in range(0, len(rates), chunk):
        part = rates[start : start + chunk]
        params = jax.tree.map(lambda *xs: jnp.stack(xs), *[model.init_params(jax.random.key(start + k), mcfg) for k in range(len(part))])
        lrs = jnp.asarray(np.repeat(np.asarray(part, np.float32)[:, None], steps, axis=1))
        keys = jnp.stack([jax.random.key(start + k) for k in range(len(part))])
        chunks.append((params, jax.vmap(tx.init)(params), keys, lrs, jnp.zeros(len(part), jnp.float32)))

    def run(batches):
        out = []
        for params, state, keys, lrs, l2s in chunks:
            for i, batch in enumerate(batches):
                params, state, J = step(params, state, batch, keys, lrs, l2s, 1, i, i)
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
    mcfg = model.ModelConfig(vocab_size=args.vocab, embed_dim=50, window=5, hidden_dim=args.hidden, num_classes=9,
                             dropout=0.3, casing_size=data.NUM_CASINGS, casing_dim=8)  # fmt: skip
    rates = list(np.logspace(-4, -1, args.members))
    pbytes = sweep.param_bytes(mcfg)
    rows = []
    for batch_size in args.batch_sizes:
        batches = make_batches(mcfg, batch_size, args.steps)
        chunk = sweep.choose_chunk(len(rates), pbytes, batch_size)
        runners = {"sequential": sequential_runner(mcfg, rates, 0.05, args.steps), "vmapped_all": vmapped_runner(mcfg, rates, 0.05, len(rates), args.steps),
                   "heuristic": vmapped_runner(mcfg, rates, 0.05, chunk, args.steps), "plain_one_config": plain_runner(mcfg, 1e-3, 0.05, args.steps)}  # fmt: skip
        for run in runners.values():
            run(batches[:1])  # compile
        work = {"plain_one_config": args.steps}
        speed = {name: 0.0 for name in runners}
        for _ in range(args.repeats):  # interleaved, best of each
            for name, run in runners.items():
                speed[name] = max(speed[name], best_rate(run, batches, work.get(name, args.steps * len(rates)), 1))
        row = {"batch_size": batch_size, "members": len(rates), "heuristic_chunk": chunk,
               **{f"{name}_cfg_steps_per_s": round(v, 2) for name, v in speed.items()},
               "ratio_vmapped_all": round(speed["vmapped_all"] / speed["sequential"], 3),
               "ratio_heuristic": round(speed["heuristic"] / speed["sequential"], 3)}  # fmt: skip
        print(json.dumps(row), flush=True)
        rows.append(row)
    return {"model": {"vocab_size": mcfg.vocab_size, "embed_dim": mcfg.embed_dim, "hidden_dim": mcfg.hidden_dim, "window": mcfg.window,
                      "param_bytes": pbytes}, "optimizer": "adam", "steps_per_config": args.steps, "repeats": args.repeats,
            "quick": args.quick, "rows": rows, "environment": train.environment()}  # fmt: skip


def markdown(result) -> str:
    lines = ["| batch | members | heuristic chunk | sequential cfg-steps/s | vmapped (all) | ratio | heuristic | ratio |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in result["rows"]:
        lines.append(f"| {r['batch_size']} | {r['members']} | {r['heuristic_chunk']} | {r['sequential_cfg_steps_per_s']:.0f} | "
                     f"{r['vmapped_all_cfg_steps_per_s']:.0f} | {r['ratio_vmapped_all']:.2f} | {r['heuristic_cfg_steps_per_s']:.0f} | {r['ratio_heuristic']:.2f} |")  # fmt: skip
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny model (V=2000, H=32), 4 members, few steps")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "sweep.json"))
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 512])
    args = p.parse_args(argv)
    args.vocab, args.hidden, args.members, args.steps, args.repeats = (2000, 32, 4, 10, 2) if args.quick else (20000, 300, 16, 20, 3)
    result = bench(args)
    from jaxbackprop import checkpoint

    checkpoint.write_json(args.out, result)
    print(markdown(result))
    print(f"device {result['environment']['device']}; written to {args.out}")


if __name__ == "__main__":
    main()
