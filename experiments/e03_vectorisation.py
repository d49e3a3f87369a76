"""E03: applying W to many window vectors -- a Python loop of W x_i, or one matrix multiply W X.

Settings, command and expected result: configs/e03.py; the prose: templates/e03.md.
This machine's BLAS settings (``OPENBLAS_CORETYPE``, ``OPENBLAS_L2_SIZE``: they can slow numpy's
matmul) are recorded, not changed. The protocol: wait (up to ``quiet_wait_s``) for the machine to
be quiet, record its load before and after; numpy's BLAS pinned to one thread and to every usable
core in turn (never "as found", which oversubscribes a shared machine); every variant timed
round-robin, and each speed-up taken round by round (loop and matmul of the same round) so its
quartiles are error bars over the repeats.

On a machine with a GPU (and a CUDA jaxlib), one command adds the GPU arms -- JAX's loop and matmul
on the GPU, and the GPU's matmul against the CPU's (JAX, and numpy on one core), round by round::

    python experiments/e03_vectorisation.py --gpu     # writes results/e03_vectorisation_gpu/

Without a GPU, ``--gpu`` stops with one line before measuring (``--quick --gpu`` runs the CPU arms
and records the GPU arm as skipped, for the tests).
"""

from __future__ import annotations

import os
import sys
import time
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import threadpoolctl  # pins numpy's BLAS threads at run time (the environment is left as it is)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parse_args, result_head, write_result
from configs import base, e03
from figures import e03 as figure
from numerics import roundoff_tolerance, time_round_robin

NAME = "e03_vectorisation"
CLAIM = "a Python loop of W x_i is more than an order of magnitude slower than one W X on CPU (more on GPU)"
SPEEDUPS = (("numpy", ""), ("numpy", "_1thread"), ("jax", ""))  # loop time / matmul time of these variants
GPU_SPEEDUPS = (("jax_gpu", ""),)  # the same on the GPU, with --gpu
# the GPU's one matmul against the CPU's: (CPU variant, GPU variant), CPU time / GPU time round by round
GPU_OVER_CPU = {"jax": ("jax_matmul", "jax_gpu_matmul"), "numpy_1thread": ("numpy_matmul_1thread", "jax_gpu_matmul")}
# (numpy without a suffix: BLAS pinned to every usable core)
BLAS_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def blas_environment() -> dict:
    """The BLAS/threading environment variables (None where unset), numpy's BLAS and its threads."""
    env = {k: os.environ.get(k) for k in BLAS_VARIABLES} | {k: v for k, v in os.environ.items() if "BLAS" in k}
    blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    env["numpy_blas"] = f"{blas.get('name')} {blas.get('version')}"
    keys = ("internal_api", "num_threads", "architecture", "version")
    pools = [i for i in threadpoolctl.threadpool_info() if i.get("user_api") == "blas"]
    env["blas_threadpools"] = [{k: i.get(k) for k in keys} for i in pools]
    return env


def wait_for_quiet(max_load: float, max_wait_s: float, poll_s: float = 5.0) -> dict:
    """Wait until the 1-minute load average is at most ``max_load`` (or ``max_wait_s`` passed)."""
    start, load = time.perf_counter(), os.getloadavg()[0]
    while load > max_load and time.perf_counter() - start < max_wait_s:
        time.sleep(poll_s)
        load = os.getloadavg()[0]
    return {"load_before": load, "waited_s": round(time.perf_counter() - start, 1), "quiet": load <= max_load}


def gpu_device():
    """JAX's first GPU, or None (no GPU, or a jaxlib without CUDA)."""
    try:
        return jax.devices("gpu")[0]
    except RuntimeError:
        return None


def variants(W, X, gpu=None) -> dict:
    """The ways to compute W x_i for every column x_i of X (d, N): numpy and JAX on the CPU, a loop and one
    matmul each, and JAX on ``gpu`` too when given; each blocks until done."""
    xs = [np.ascontiguousarray(X[:, i]) for i in range(X.shape[1])]
    out = {"numpy_loop": lambda: [W @ x for x in xs], "numpy_matmul": lambda: W @ X}
    out |= jax_variants(W, xs, X, jax.devices("cpu")[0], "jax")
    return out | (jax_variants(W, xs, X, gpu, "jax_gpu") if gpu is not None else {})


def jax_variants(W, xs, X, device, name: str) -> dict:
    """``{name}_loop`` and ``{name}_matmul``: jitted JAX on ``device`` (its arrays placed there first)."""
    Wj, Xj, xjs = jax.device_put((W, X, xs), device)
    # true float32 products, as numpy computes them (XLA's default on recent GPUs is TF32)
    matmul = partial(jnp.matmul, precision=jax.lax.Precision.HIGHEST)
    one, many = jax.jit(matmul), jax.jit(matmul)  # (rows, d) @ (d,), and (rows, d) @ (d, N)
    return {
        f"{name}_loop": lambda: jax.block_until_ready([one(Wj, x) for x in xjs]),
        f"{name}_matmul": lambda: jax.block_until_ready(many(Wj, Xj)),
    }


def blas_threads(fn, threads: int):
    """``fn`` with numpy's BLAS pinned to ``threads`` threads, restored after (a few µs, counted against it)."""
    libs = threadpoolctl.ThreadpoolController().select(user_api="blas").lib_controllers
    before = [lib.num_threads for lib in libs]

    def run():
        for lib in libs:
            lib.set_num_threads(threads)
        try:
            return fn()
        finally:
            for lib, n in zip(libs, before):
                lib.set_num_threads(n)

    return run


def measure(config: e03.Config, cores: int, gpu=None) -> list:
    rng = np.random.default_rng(config.seed)
    fns, cases = {}, []
    for shape in config.shapes:
        W = rng.random((shape.rows, shape.cols), dtype=np.float32)
        for n in shape.ns:
            X = rng.random((shape.cols, n), dtype=np.float32)
            v = variants(W, X, gpu)
            ref = v["numpy_matmul"]()
            outs = [np.stack(v[k](), 1) for k in v if k.endswith("_loop")]
            outs += [np.asarray(v[k]()) for k in v if k.endswith("_matmul") and k != "numpy_matmul"]
            # every variant computes the same W X up to float32 summation order: an entry sums `cols`
            # positive products, so two orders differ by at most eps32 cols |entry| (k = 1: each order's
            # own error is at most half that)
            tol = roundoff_tolerance(np.float32, shape.cols, float(np.max(np.abs(ref))), k=1.0, worst_case=True)
            diff = max(float(np.max(np.abs(o - ref))) for o in outs)
            fns |= {(shape.label, n, k): f for k, f in v.items() if k.startswith("jax")}
            for k in ("numpy_loop", "numpy_matmul"):  # every usable core, then one (the slide's single core)
                fns[shape.label, n, k] = blas_threads(v[k], cores)
                fns[shape.label, n, f"{k}_1thread"] = blas_threads(v[k], 1)
            cases.append(
                {
                    "shape": shape.label,
                    "W": [shape.rows, shape.cols],
                    "N": n,
                    "max_abs_difference": diff,
                    "tolerance": tol,
                }
            )
    t = time_round_robin(fns, repeats=config.repeats, min_time=config.min_time)
    for row in cases:
        s = {k: v["median_s"] for (label, n, k), v in t.items() if (label, n) == (row["shape"], row["N"])}
        row["seconds"], row["ms"] = s, {k: 1e3 * v for k, v in s.items()}
        row["us_per_vector"] = {k: 1e6 * v / row["N"] for k, v in s.items()}
        times = {k: v["times_s"] for (label, n, k), v in t.items() if (label, n) == (row["shape"], row["N"])}
        row["times_s"] = times
        pairs = {k + t_: (f"{k}_loop{t_}", f"{k}_matmul{t_}") for k, t_ in SPEEDUPS + GPU_SPEEDUPS * bool(gpu)}
        row["speedup"], row["speedup_quartiles"] = per_round_ratios(times, pairs)
        if gpu is not None:  # the vectorised product on the GPU against the CPU's
            row["gpu_over_cpu"], row["gpu_over_cpu_quartiles"] = per_round_ratios(times, GPU_OVER_CPU)
        # the claim's terms: numpy on one core, JAX as it runs; the lower quartile, so noise cannot carry it
        row["claim_speedup"] = min(row["speedup_quartiles"]["numpy_1thread"][0], row["speedup_quartiles"]["jax"][0])
    return cases


def per_round_ratios(times: dict, pairs: dict) -> tuple[dict, dict]:
    """For each ``name: (A, B)``: the median and quartiles of A's time / B's, round by round (a round's load
    falls on both alike).

    >>> per_round_ratios({"a": [2.0, 4.0, 9.0], "b": [1.0, 1.0, 3.0]}, {"x": ("a", "b")})
    ({'x': 3.0}, {'x': [2.5, 3.5]})
    """
    median, quartiles = {}, {}
    for name, (a, b) in pairs.items():
        ratio = np.asarray(times[a]) / np.asarray(times[b])
        median[name], quartiles[name] = float(np.median(ratio)), np.percentile(ratio, [25, 75]).tolist()
    return median, quartiles


def span(rows, key) -> list:
    return [min(r["speedup"][key] for r in rows), max(r["speedup"][key] for r in rows)] if rows else None


def main(argv=None) -> dict:
    started = time.perf_counter()
    args = parse_args(NAME, __doc__, argv, gpu=True)
    config = base.select(e03, quick=args.quick)
    gpu = gpu_device() if args.gpu else None
    if args.gpu and gpu is None:
        if not args.quick:  # a GPU result folder with no GPU in it would mislead
            raise SystemExit(f"error: --gpu: JAX sees no GPU here ({jax.devices()[0].platform} only); nothing written")
        print(f"{NAME}: --gpu: JAX sees no GPU here; the GPU arm is skipped")
    env = blas_environment()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    quiet = wait_for_quiet(config.quiet_load * cores, config.quiet_wait_s)
    rows = measure(config, cores, gpu)
    quiet["load_after"] = os.getloadavg()[0]
    wins = [r["claim_speedup"] >= 10 for r in rows]
    some = any(max(q[0] for q in r["speedup_quartiles"].values()) >= 10 for r in rows)
    verdict = "supported" if all(wins) else "partly supported" if some else "not supported"
    slide, big = [r for r in rows if r["W"][0] <= 10], [r for r in rows if r["W"][0] > 10]
    numpy_key = "numpy_1thread"
    checks = {
        "blas_cores": cores,
        "quiet": quiet,
        "slide_numpy": span(slide, numpy_key),
        "slide_jax": span(slide, "jax"),
        "hidden_numpy": span(big, numpy_key),
        "hidden_jax": span(big, "jax"),
        "numpy_matmul_lost": any(r["speedup"]["numpy"] < 1 for r in rows),
        "numpy_all_cores": span(rows, "numpy"),
        "max_abs_difference": max(r["max_abs_difference"] for r in rows),
        "tolerance": min(r["tolerance"] for r in rows),
    }
    result = {**result_head(NAME, CLAIM, config), "blas_environment": env, "rows": rows}
    if gpu is not None:
        checks |= {"gpu_jax": span(rows, "jax_gpu"), "slide_gpu": span(slide, "jax_gpu")}
        checks["gpu_over_cpu"] = {
            k: [min(r["gpu_over_cpu"][k] for r in rows), max(r["gpu_over_cpu"][k] for r in rows)] for k in GPU_OVER_CPU
        }
    result.update(checks=checks, verdict=verdict, gpu_measured=gpu is not None, seeds=[config.seed])
    result["gpu"] = {"requested": args.gpu, "device": gpu and f"{gpu.platform}:{gpu.device_kind}"}
    result["plots"] = figure.draw(result, args.out)
    return write_result(args, result, started)


if __name__ == "__main__":
    main(sys.argv[1:])
