"""Training-step throughput of the window model: jax.grad, hand-derived, rows-only, Flax and PyTorch.

Every variant trains the same model (window 5, relu, softmax head of 9 classes, float32, Adam) on
the same batches in one process. Repeats run round-robin over the variants, so load from other
processes lands on all of them alike; each number is a median over repeats after a warm-up.
Besides the step times: the machine's matmul peak (GFLOP/s) they are compared with, the rows-only
step at a small and a large vocabulary timed side by side, and each variant's peak memory
(``bench_memory.py``, a fresh process per variant).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_step.py   # minutes
    python benchmarks/bench_step.py --quick --markdown B.md   # < 1 min

The full run writes ``benchmarks/results/bench_step.json`` and ``BENCHMARKS.md``; where JAX's default
backend is a GPU, the PyTorch rows run on CUDA too (``--torch-device``) and the run writes
``bench_step_gpu.json`` and ``BENCHMARKS_GPU.md`` instead. Some machines set ``OPENBLAS_CORETYPE`` /
``OPENBLAS_L2_SIZE``, which halve numpy's matmul speed and so would understate the matmul peak that
GFLOP/s are compared with; the command unsets them for this one process only (the test suite never
changes them). torch is optional (``pip install 'jaxbackprop[torch]'``): without it the PyTorch rows
are skipped with a message. The variants: ``jax_variants.py`` and ``torch_peers.py``.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import bench_memory
import harness
import jax
import peaks
import torch_peers
from bench_report import markdown, targets
from harness import Shape
from jax_variants import jax_runners

# the sweep, as a literal table: batch x vocabulary at d=50, a wide embedding, uniform ids
ROWS_ONLY = ("sparse", "torch_sparse", "manual")
FULL_SHAPES = [Shape(B, V, 50, "zipf") for V in (20_000, 400_000) for B in (32, 512, 4096)] + [
    Shape(512, 20_000, 300, "zipf"),
    Shape(512, 20_000, 50, "uniform", ROWS_ONLY),
    Shape(512, 400_000, 50, "uniform", ROWS_ONLY),
]
QUICK_SHAPES = [Shape(64, 5_000, 50, "zipf")]


def summarize(runner, shape, hidden, peak):
    """The result row of one variant: median step time, spread, throughput, GFLOP/s (training steps)."""
    med, q1, q3 = harness.spread(runner.times)
    base = runner.name.split("[")[0]
    row = {
        "variant": runner.name,
        "kind": "train" if base in harness.JAX_TRAIN + harness.TORCH_TRAIN else "pass",
        "threads": runner.threads,
        "step_ms": med * 1e3,
        "min_ms": min(runner.times) * 1e3,
        "iqr_pct": 100 * (q3 - q1) / med,
        "windows_per_s": shape.batch / med,
        "repeats": len(runner.times),
        **runner.info,
    }
    if row["kind"] == "train":
        row["gflops"] = peaks.step_flops(shape, hidden) / med / 1e9
        row["pct_of_peak"] = 100 * row["gflops"] / peak
    return row


def run_shape(shape, args, torch, peak):
    """Every variant of ``shape``, timed round-robin in one group; the shape's result dict."""
    print(f"{shape.name}: building", flush=True)
    windows, labels = harness.make_batches(shape)
    runners = jax_runners(shape, args.hidden, windows, labels, shape.variants)
    if torch is not None:
        runners += torch_peers.torch_runners(
            torch,
            shape,
            args.hidden,
            windows,
            labels,
            shape.variants,
            args.thread_settings,
            args.quick,
            args.torch_device,
        )
    harness.time_round_robin(runners, args.repeats, args.min_time, torch_peers.thread_setter(torch))
    rows = [summarize(r, shape, args.hidden, peak) for r in runners]
    for row in rows:
        print(
            f"  {row['variant']:22s} {row['step_ms']:9.3f} ms  {row['windows_per_s']:10.0f} windows/s"
            f"  (IQR {row['iqr_pct']:.0f}%)"
        )
    return {
        **dataclasses.asdict(shape),
        "name": shape.name,
        "flops_per_step": peaks.step_flops(shape, args.hidden),
        "rows": rows,
        "variants": list(shape.variants),
        "layer_matmul_gflops": peaks.layer_matmul_gflops(shape, args.hidden, 3 if args.quick else 7),
    }


def vocab_ratio(args, ids, vocabs=(20_000, 400_000), batch=512):
    """The rows-only step at a small and a large vocabulary, timed round-robin in one group.

    Shapes of the sweep run one after another, so their ratio also measures how the machine's
    load changed in between; timed together, the two steps see the same load.
    """
    runners = []
    for vocab in vocabs:
        shape = Shape(batch, vocab, 50, ids, ("sparse",))
        (r,) = jax_runners(shape, args.hidden, *harness.make_batches(shape), shape.variants)
        r.name = f"sparse V={vocab // 1000}k"
        runners.append(r)
    harness.time_round_robin(runners, args.repeats, args.min_time)
    small, large = (harness.median_ms(r) for r in runners)
    print(
        f"  rows-only step, B={batch} {ids} ids: V={vocabs[0]:,} {small:.3f} ms, V={vocabs[1]:,} {large:.3f} ms"
        f" (x{large / small:.2f})"
    )
    return {"ids": ids, "batch": batch, "vocabs": list(vocabs), "step_ms": [small, large], "ratio": large / small}


def environment(torch, args):
    """:func:`harness.environment` with the JAX device, the torch settings and the benchmark model."""
    use_torch = torch is not None
    on_cuda = use_torch and args.torch_device == "cuda"
    return harness.environment(
        torch=torch.__version__ if use_torch else None,
        torch_default_threads=torch.get_num_threads() if use_torch else None,
        torch_thread_settings=args.thread_settings if use_torch else None,
        jax_devices=[str(d) for d in jax.devices()],
        jax_backend=jax.default_backend(),
        accelerator=None if jax.default_backend() == "cpu" else jax.devices()[0].device_kind,
        jax_default_matmul_precision=jax.config.jax_default_matmul_precision,
        torch_device=args.torch_device if use_torch else None,
        torch_cuda_matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32 if on_cuda else None,
        hidden=args.hidden,
        window=harness.WINDOW,
        classes=harness.CLASSES,
        dtype="float32",
        optimizer=f"Adam lr={harness.LR}",
    )


def parse_args(argv=None):
    p = harness.arg_parser(__doc__, "one small shape, few repeats (< 1 min)")
    p.add_argument("--hidden", type=int, default=200, help="H, hidden units (default 200)")
    p.add_argument("--repeats", type=int, help="timed repeats per variant (default 7; 3 with --quick)")
    p.add_argument("--min-time", type=float, help="seconds per repeat (default 0.15; 0.02 with --quick)")
    p.add_argument(
        "--torch-threads",
        help="torch thread counts to run besides torch's default, comma-separated (default '1'; none with "
        "--quick). On a busy machine torch's OpenMP threads can wait on each other for a descheduled peer.",
    )
    p.add_argument(
        "--torch-device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where the PyTorch rows run (default auto: cuda when JAX runs on a GPU and torch sees one)",
    )
    p.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/bench_step[_gpu|_quick].json)")
    p.add_argument("--markdown", type=Path, help="markdown path (default BENCHMARKS[_GPU].md; none with --quick)")
    args = p.parse_args(argv)
    args.repeats = args.repeats or (3 if args.quick else 7)
    args.min_time = args.min_time if args.min_time is not None else (0.02 if args.quick else 0.15)
    on_gpu = jax.default_backend() == "gpu"
    tag = "_quick" if args.quick else ("_gpu" if on_gpu else "")
    args.out = args.out or harness.RESULTS / f"bench_step{tag}.json"
    if not (args.markdown or args.quick):
        args.markdown = harness.ROOT / ("BENCHMARKS_GPU.md" if on_gpu else "BENCHMARKS.md")
    return args


def thread_settings(args):
    """None (torch's default) and the extra counts of ``--torch-threads``; they matter only on a CPU."""
    quiet = args.quick or args.torch_device == "cuda"
    extra = args.torch_threads if args.torch_threads is not None else ("" if quiet else "1")
    return [None] + [int(t) for t in extra.split(",") if t]


def main(argv=None):
    args = parse_args(argv)
    torch = torch_peers.import_torch()
    args.torch_device = torch_peers.torch_device(torch, args.torch_device)
    args.thread_settings = thread_settings(args)
    env = environment(torch, args)
    print(harness.machine_line(env), flush=True)
    t0, load_before = time.perf_counter(), os.getloadavg()
    matmul_peak = peaks.matmul_peaks(args.quick)
    peak = max(v["gflops"] for v in matmul_peak.values())
    print("matmul peak: " + ", ".join(f"{k} {v['gflops']:.1f} GFLOP/s" for k, v in matmul_peak.items()), flush=True)
    print("sparse step time against the vocabulary, timed side by side:", flush=True)
    vocabs = (1_000, 20_000) if args.quick else (20_000, 400_000)
    ratios = [vocab_ratio(args, ids, vocabs) for ids in ("zipf", "uniform")]
    shapes = []
    for shape in QUICK_SHAPES if args.quick else FULL_SHAPES:
        shapes.append(run_shape(shape, args, torch, peak))
        result = {
            "environment": env,
            "matmul_peak": matmul_peak,
            "load_average": {"before": load_before, "after": os.getloadavg()},
            "wall_s": time.perf_counter() - t0,
            "shapes": shapes,
            "vocab_ratio": ratios,
        }
        result["targets"] = targets(result)
        # after every shape, so that an interrupted run keeps what it measured
        # (`python benchmarks/bench_report.py OUT.json OUT.md` reports it)
        harness.write_json(args.out, result)
    print("peak memory, each variant in a fresh process:", flush=True)
    result["memory"] = bench_memory.measure_shapes(args.quick, torch, args.hidden, args.torch_device)
    harness.write_json(args.out, result)
    print(f"wrote {args.out}")
    if args.markdown:
        harness.write_text(args.markdown, markdown(result))
        print(f"wrote {args.markdown}")
    return result


if __name__ == "__main__":
    main()
