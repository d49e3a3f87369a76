"""One training epoch three ways: the Python loop, the compiled lax.scan epoch, the same steps one by one.

    python benchmarks/bench_epoch.py            # the default TrainConfig sizes on the synthetic corpus (minutes)
    python benchmarks/bench_epoch.py --quick    # tiny model (H=32), a few hundred sentences, seconds

For each variant of the literal table :data:`VARIANTS` (grad manual, grad autodiff, the rows-only
sparse step) it times, on the embedded synthetic corpus (:func:`jaxbackprop.synthetic.synthetic_corpus`):

* ``python_loop_s``: one epoch of :func:`jaxbackprop.train.run_epoch` (numpy batches built and sent
  each step), after a warm-up epoch, so compilation is excluded;
* ``compiled_epoch_s``: one call of :func:`jaxbackprop.compiled_epoch.make_compiled_epoch`'s
  ``epoch_fn`` after a warm-up call, waited for with ``block_until_ready``;
* ``steps_sum_s``: the same steps of :func:`jaxbackprop.step.make_step` on batches already on the
  device, each timed on its own with ``block_until_ready``, summed: the device work alone;
* ``compile_s``: the first call of ``epoch_fn`` minus a warm call.

Medians over a few repeats, interleaved round-robin across the three timings so load from other
processes lands on all alike. Ratios > 1 mean the compiled epoch is faster. Writes
benchmarks/results/bench_epoch.json (``--out``; with ``--quick`` and no ``--out``, a temporary
folder, never over committed results) and prints a markdown table.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from pathlib import Path

import harness
import jax
import numpy as np

from jaxbackprop import compiled_epoch, pipeline, rundir, synthetic, train
from jaxbackprop.step import make_step

# the timed variants: TrainConfig changes on top of the base configuration
VARIANTS = {
    "grad_manual": dict(grad="manual"),
    "grad_autodiff": dict(grad="autodiff"),
    "sparse": dict(grad="manual", sparse=True),
}
EPOCH = 2  # the epoch number whose order and key are used (any but the default is fine)

FULL = dict(sentences=3000, base=dict(epochs=1), repeats=3)
QUICK = dict(sentences=300, base=dict(epochs=1, hidden_dim=32, batch_size=128), repeats=5)


def corpus(config, sentences):
    c = synthetic.synthetic_corpus(seed=0, n_train=sentences, n_dev=10, n_test=10)
    vectors = synthetic.synthetic_vectors(dim=config.model.embed_dim)
    return pipeline.prepare_for(config, c["train"], c["dev"], c["test"], vectors)


def fresh(config, prepared):
    """Fresh initial parameters (every timed path donates its own)."""
    return rundir.init_run_params(config, prepared)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    jax.block_until_ready(out)
    return time.perf_counter() - t, out


def bench_variant(name, config, prepared, repeats) -> dict:
    ds = prepared.train
    n = len(ds.windows)
    steps = math.ceil(n / config.batch_size)
    order = np.random.default_rng([config.seed, EPOCH]).permutation(n)
    key = jax.random.fold_in(jax.random.key(config.seed), EPOCH)

    # the Python loop: train.run_epoch, its state carried from call to call
    model_cfg, params = fresh(config, prepared)
    loop_opt, loop_step = make_step(config, model_cfg, params, steps)
    loop_state = [params, loop_opt]

    def python_loop():
        p, o, loss = train.run_epoch(loop_step, *loop_state, ds, config, EPOCH)
        loop_state[:] = [p, o]
        return p

    # the compiled epoch
    _, params = fresh(config, prepared)
    epoch_opt, epoch_fn = compiled_epoch.make_compiled_epoch(config, model_cfg, params, steps)
    data = compiled_epoch.device_data(ds)
    device_order = jax.device_put(order)
    epoch_state = [params, epoch_opt]

    def compiled():
        p, o, loss = epoch_fn(*epoch_state, data, device_order, key)
        epoch_state[:] = [p, o]
        return p, o, loss

    # the same steps one by one, on batches and keys made beforehand
    _, params = fresh(config, prepared)
    step_opt, step = make_step(config, model_cfg, params, steps)
    batches = [jax.device_put(b) for b in pipeline.padded_batches(ds, config.batch_size, order)]
    keys = [jax.random.fold_in(key, i) for i in range(len(batches))]
    jax.block_until_ready((batches, keys))
    step_state = [params, step_opt]

    def steps_sum():
        total = 0.0
        p, o = step_state
        for batch, k in zip(batches, keys):
            t = time.perf_counter()
            p, o, loss = step(p, o, batch, k)
            jax.block_until_ready((p, o, loss))
            total += time.perf_counter() - t
        step_state[:] = [p, o]
        return total

    first, _ = timed(compiled)  # compiles
    warm, _ = timed(compiled)
    timed(python_loop)  # warm-up epoch: compiles the step
    steps_sum()  # warm-up: compiles the step
    times = {"python_loop_s": [], "compiled_epoch_s": [], "steps_sum_s": []}
    for _ in range(repeats):  # round-robin
        times["python_loop_s"].append(timed(python_loop)[0])
        times["compiled_epoch_s"].append(timed(compiled)[0])
        times["steps_sum_s"].append(steps_sum())
    med = {k: statistics.median(v) for k, v in times.items()}
    row = {
        "variant": name,
        **med,
        "compile_s": first - warm,
        "ratio_compiled_vs_steps": med["steps_sum_s"] / med["compiled_epoch_s"],
        "ratio_compiled_vs_loop": med["python_loop_s"] / med["compiled_epoch_s"],
        "steps_per_epoch": steps,
        "windows": n,
        "repeats": repeats,
    }
    print(f"{name}: " + ", ".join(f"{k} {v:.4g}" for k, v in row.items() if isinstance(v, float)), flush=True)
    return row


def bench(quick: bool) -> dict:
    sizes = QUICK if quick else FULL
    base = train.configure(**sizes["base"])
    prepared = corpus(base, sizes["sentences"])
    rows = []
    for name, changes in VARIANTS.items():
        config = train.configure(base, **changes)
        rows.append(bench_variant(name, config, prepared, sizes["repeats"]))
    m = base.model
    return {
        "environment": harness.environment(
            quick=quick,
            sentences=sizes["sentences"],
            windows=len(prepared.train.windows),
            vocab=len(prepared.vocab),
            batch_size=base.batch_size,
            hidden_dim=m.hidden_dim,
            embed_dim=m.embed_dim,
            window=m.window,
            optimizer=base.optimizer,
            repeats=sizes["repeats"],
        ),
        "epochs": rows,
        "sweep": None,
        "sweep_note": "no sweep table in this benchmark yet: one configuration per variant",
    }


def markdown(result) -> str:
    lines = [
        f"Machine: {harness.machine_line(result['environment'])}.",
        "",
        "| variant | python loop s | compiled epoch s | steps sum s | compile s | steps/compiled | loop/compiled |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["epochs"]:
        cells = [
            r["variant"],
            f"{r['python_loop_s']:.4f}",
            f"{r['compiled_epoch_s']:.4f}",
            f"{r['steps_sum_s']:.4f}",
            f"{r['compile_s']:.3f}",
            f"{r['ratio_compiled_vs_steps']:.2f}",
            f"{r['ratio_compiled_vs_loop']:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = harness.arg_parser(__doc__, "tiny model (H=32), 300 sentences; writes to a temporary folder unless --out")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/bench_epoch.json)")
    args = p.parse_args(argv)
    out = args.out
    if out is None:
        out = Path(tempfile.mkdtemp(prefix="bench_epoch_")) / "bench_epoch.json" if args.quick else None
        out = out or harness.RESULTS / "bench_epoch.json"
    result = bench(args.quick)
    harness.write_json(out, result)
    print(markdown(result))
    print(f"device {result['environment']['device']}; written to {out}")
    return result


if __name__ == "__main__":
    main()
