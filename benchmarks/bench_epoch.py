"""One training epoch three ways (the Python loop, the compiled lax.scan epoch, the same steps one by one),
and whole sweeps: N members vmapped in one program against the same N trained one after another.

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
* ``compiled_progress_s``: the compiled epoch with the progress bar's host callback (every
  1/50 of the epoch, as ``jaxbackprop train`` on a terminal), to show what the bar costs;
* ``compile_s``: the first call of ``epoch_fn`` minus a warm call.

Medians over a few repeats, interleaved round-robin across the timings so load from other
processes lands on all alike. Ratios > 1 mean the compiled epoch is faster.

The sweep table (``"sweep"``), for N = 1, 4, 16, 64 Adam members (seeds and learning rates
differ), each trained for ``SWEEP_EPOCHS`` epochs with dev evaluation
(:func:`jaxbackprop.sweep_group.train_group`), each column started cold (compile caches cleared),
as a fresh ``jaxbackprop sweep`` is, so compiling is part of every time:

* ``sequential_s``: the N members one after another, each the same unstacked program (compiled once);
* ``vmapped_s``: the N members as one vmapped program;
* ``one_member_s``: the first member alone (the GPU target: 64 members within 3x of it);
* ``default_s``: what ``jaxbackprop sweep`` does by default (:func:`jaxbackprop.sweep.train_configs`):
  the first member alone, then -- if the rest are many enough to repay it -- stacking measured
  (:func:`jaxbackprop.sweep_group.measure_chunk`, compiles and timing included) and the rest in
  chunks of the size it chose; ``default_chunk`` is the largest program it ran.

Writes benchmarks/results/bench_epoch.json (``--out``; with ``--quick`` and no ``--out``, a
temporary folder, never over committed results) and, on a full run, its section of BENCHMARKS.md;
prints markdown tables.
"""

from __future__ import annotations

import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import harness
import jax
import numpy as np

from jaxbackprop import compiled_epoch, pipeline, rundir, sweep, sweep_group, synthetic, train
from jaxbackprop.step import make_step

# the timed variants: TrainConfig changes on top of the base configuration
VARIANTS = {
    "grad_manual": dict(grad="manual"),
    "grad_autodiff": dict(grad="autodiff"),
    "impl_flax": dict(grad="autodiff", impl="flax"),
    "sparse": dict(grad="manual", sparse=True),
}
PROGRESS_UPDATES = 50  # as jaxbackprop.train's progress bar
EPOCH = 2  # the epoch number whose order and key are used (any but the default is fine)

FULL = dict(sentences=3000, base=dict(epochs=1), repeats=3, members=(1, 4, 16, 64))
QUICK = dict(sentences=300, base=dict(epochs=1, hidden_dim=32, batch_size=128), repeats=5, members=(1, 4, 16))
SWEEP_EPOCHS = 2


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
    key = compiled_epoch.epoch_key(config.seed, EPOCH)
    order = np.asarray(compiled_epoch.epoch_order(key, n))

    # the Python loop: train.run_epoch, its state carried from call to call
    model_cfg, params = fresh(config, prepared)
    loop_opt, loop_step = make_step(config, model_cfg, params, steps)
    loop_state = [params, loop_opt]

    def python_loop():
        p, o, loss = train.run_epoch(loop_step, *loop_state, ds, config, EPOCH)
        loop_state[:] = [p, o]
        return p

    data = compiled_epoch.device_data(ds)

    def compiled_epoch_fn(progress=None):
        _, params = fresh(config, prepared)
        opt, epoch_fn = compiled_epoch.make_compiled_epoch(config, model_cfg, params, steps, progress=progress)
        state = [params, opt]

        def run():
            p, o, loss = epoch_fn(*state, data, key)
            state[:] = [p, o]
            return p, o, loss

        return run

    compiled = compiled_epoch_fn()
    # as `jaxbackprop train` on a terminal: a host callback moves the progress bar PROGRESS_UPDATES times
    callbacks = []
    with_progress = compiled_epoch_fn((max(1, steps // PROGRESS_UPDATES), callbacks.append))

    # the same steps one by one, on batches and keys made beforehand
    _, params = fresh(config, prepared)
    step_opt, step = make_step(config, model_cfg, params, steps)
    batches = [jax.device_put(b) for b in pipeline.padded_batches(ds, config.batch_size, order)]
    steps_key = compiled_epoch.epoch_keys(key)[1]
    keys = [jax.random.fold_in(steps_key, i) for i in range(len(batches))]
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
    timed(with_progress)  # compiles
    timed(python_loop)  # warm-up epoch: compiles the step
    steps_sum()  # warm-up: compiles the step
    times = {"python_loop_s": [], "compiled_epoch_s": [], "compiled_progress_s": [], "steps_sum_s": []}
    for _ in range(repeats):  # round-robin
        times["python_loop_s"].append(timed(python_loop)[0])
        times["compiled_epoch_s"].append(timed(compiled)[0])
        times["compiled_progress_s"].append(timed(with_progress)[0])
        times["steps_sum_s"].append(steps_sum())
    med = {k: statistics.median(v) for k, v in times.items()}
    row = {
        "variant": name,
        **med,
        "compile_s": first - warm,
        "ratio_compiled_vs_steps": med["steps_sum_s"] / med["compiled_epoch_s"],
        "ratio_compiled_vs_loop": med["python_loop_s"] / med["compiled_epoch_s"],
        "ratio_progress_vs_compiled": med["compiled_progress_s"] / med["compiled_epoch_s"],
        "progress_callbacks_per_epoch": len(callbacks) // (repeats + 1),
        "steps_per_epoch": steps,
        "windows": n,
        "repeats": repeats,
    }
    print(f"{name}: " + ", ".join(f"{k} {v:.4g}" for k, v in row.items() if isinstance(v, float)), flush=True)
    return row


def sweep_members(base, n: int) -> list:
    """N Adam members: rates spread over a decade around the default, seeds 0..N-1."""
    rates = np.geomspace(3e-4, 3e-3, n) if n > 1 else [base.learning_rate]
    return [
        train.configure(base, optimizer="adam", learning_rate=float(r), seed=k, epochs=SWEEP_EPOCHS)
        for k, r in enumerate(rates)
    ]


def cold(fn):
    """``timed(fn)`` with nothing compiled beforehand, as a fresh ``jaxbackprop sweep`` starts."""
    jax.clear_caches()
    for cached in (sweep_group.group_epoch, sweep_group.group_predict):
        cached.cache_clear()
    sweep_group._measured.clear()
    return timed(fn)


def bench_sweep(base, prepared, n: int) -> dict:
    """Wall times of N members trained one after another, vmapped, and as the default chooses."""
    configs = sweep_members(base, n)
    quiet = dict(devices=None, log=lambda *_: None)

    def sequential():
        return [sweep_group.train_group([c], prepared, **quiet).seconds for c in configs]

    def vmapped():
        return sweep_group.train_group(configs, prepared, **quiet)

    def default():  # as `jaxbackprop sweep` without --chunk
        runs = sweep.train_configs(configs, prepared, **quiet)
        return max(len(rows) for rows, *_ in runs)

    seq_s, seq = cold(sequential)
    vmap_s, _ = cold(vmapped)
    default_s, chunk = cold(default)
    row = {
        "members": n,
        "sequential_s": seq_s,
        "vmapped_s": vmap_s,
        "one_member_s": seq[0],
        "default_s": default_s,
        "default_chunk": chunk,
        "ratio_sequential_vs_vmapped": seq_s / vmap_s,
        "ratio_vmapped_vs_one_member": vmap_s / seq[0],
        "ratio_default_vs_sequential": default_s / seq_s,
        "epochs": SWEEP_EPOCHS,
    }
    print(f"sweep N={n}: " + ", ".join(f"{k} {v:.4g}" for k, v in row.items() if isinstance(v, float)), flush=True)
    return row


def bench(quick: bool) -> dict:
    sizes = QUICK if quick else FULL
    load_before, t0 = os.getloadavg(), time.perf_counter()
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
        "sweep": [bench_sweep(base, prepared, n) for n in sizes["members"]],
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "wall_s": time.perf_counter() - t0,
    }


def markdown(result) -> str:
    load = result["load_average"]
    lines = [
        f"Machine: {harness.machine_line(result['environment'])}; 1-minute load average "
        f"{load['before'][0]:.1f} before, {load['after'][0]:.1f} after the run.",
        "",
        "| variant | python loop s | compiled epoch s | steps sum s | compile s | steps/compiled | loop/compiled "
        "| with progress bar / without |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
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
            f"{r['ratio_progress_vs_compiled']:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Sweeps of N Adam members, {SWEEP_EPOCHS} epochs each with dev evaluation, each column started with "
        "nothing compiled (compiling, and the default's own measuring, included):",
        "",
        "| members | sequential s | vmapped s | one member s | default s (chunk) | sequential/vmapped "
        "| vmapped/one member | default/sequential |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["sweep"]:
        lines.append(
            f"| {r['members']} | {r['sequential_s']:.3f} | {r['vmapped_s']:.3f} | {r['one_member_s']:.3f} "
            f"| {r['default_s']:.3f} ({r['default_chunk']}) | {r['ratio_sequential_vs_vmapped']:.2f} "
            f"| {r['ratio_vmapped_vs_one_member']:.2f} | {r['ratio_default_vs_sequential']:.2f} |"
        )
    return "\n".join(lines)


def section(result) -> str:
    return "\n".join(
        [
            "## Whole epochs and whole sweeps on the device",
            "",
            "Written by `python benchmarks/bench_epoch.py` (results: `benchmarks/results/bench_epoch.json`). One epoch "
            "of the default model on the embedded synthetic corpus: `python loop` is `train.run_epoch` (numpy batches "
            "sent step by step), `compiled epoch` the whole epoch as one `lax.scan` program (what `jaxbackprop train` "
            "runs), `steps sum` the same steps timed one by one on batches already on the device. Medians of "
            f"{result['environment']['repeats']} round-robin repeats.",
            "",
            markdown(result),
            "",
            "Targets (issue 13), read from the table above:",
            "",
            *targets(result),
        ]
    )


def targets(result) -> list:
    """One line per target: met or not, with the numbers."""
    lines = []
    for r in result["epochs"]:
        ok_steps = r["compiled_epoch_s"] <= 1.05 * r["steps_sum_s"]
        ok_loop = r["compiled_epoch_s"] <= r["python_loop_s"]
        lines.append(
            f"- {r['variant']}: compiled epoch <= 1.05 x its steps' sum: **{'met' if ok_steps else 'not met'}** "
            f"({r['compiled_epoch_s'] / r['steps_sum_s']:.2f} x); never slower than the Python loop: "
            f"**{'met' if ok_loop else 'not met'}** ({r['compiled_epoch_s'] / r['python_loop_s']:.2f} x)"
        )
    on_gpu = "gpu" in str(result["environment"].get("device", "")).lower()
    if not on_gpu:
        lines.append("- GPU targets (a CoNLL epoch <= 0.05 s; 64 members <= 3 x one member): not measured here")
    return lines


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
    if not args.quick and args.out is None:
        harness.write_section(harness.ROOT / "BENCHMARKS.md", "bench_epoch", section(result))
    print(f"device {result['environment']['device']}; written to {out}")
    return result


if __name__ == "__main__":
    main()
