"""E03: applying W to many window vectors -- one at a time in a Python loop, or one matrix multiply.

Claim (the lecture's "vectorization" slide): ``[W.dot(x_i) for i in range(N)]`` is more than an
order of magnitude slower than ``W.dot(X)`` on one CPU (its numbers: 639 us vs 53.8 us for
W of 5 x 300 and N = 500), and the gap is larger still on a GPU.

    python experiments/e03_vectorisation.py            # ~30 s on 2 busy CPU cores
    python experiments/e03_vectorisation.py --quick    # a few seconds

Two shapes, as a literal table: the slide's own (W 5 x 300: C classes x window vector) and the
window model's hidden layer (W 200 x 250: H x n d, N = 1,000 .. 10,000 windows). Each is timed in
numpy and in jit-compiled JAX (a jitted single-vector function called in a Python loop, vs one
jitted matmul), float32, medians over repeats run round-robin. numpy runs twice: with its BLAS
threads as found, and limited to one thread at run time (threadpoolctl, if installed) -- the
slide's single core. This machine's BLAS settings (``OPENBLAS_CORETYPE``, ``OPENBLAS_L2_SIZE``:
they can slow numpy's matmul) are recorded, not changed. Expected: the loop loses by 10x or more
where W is small (per-call overhead dominates) and by less where each W x_i is itself real work.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np

try:  # limits numpy's BLAS threads at run time (the environment is left as it is)
    import threadpoolctl
except ImportError:  # optional: without it the 1-thread numpy rows are skipped
    threadpoolctl = None

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fmt, parse_args, roundoff_tolerance, section, time_round_robin, write_results  # noqa: E402

from jaxbackprop import plots  # noqa: E402

NAME = "e03_vectorisation"
VARIANTS = ("numpy_loop", "numpy_matmul", "numpy_loop_1thread", "numpy_matmul_1thread", "jax_loop", "jax_matmul")
BLAS_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS")


@dataclasses.dataclass(frozen=True)
class Shape:
    label: str
    rows: int  # rows of W: outputs per vector
    cols: int  # columns of W: length of each window vector
    ns: tuple  # numbers of vectors N


@dataclasses.dataclass(frozen=True)
class Config:
    shapes: tuple = (
        Shape("slide: W 5x300", 5, 300, (500, 2000)),  # the lecture's own example (C=5, d=300, N=500)
        Shape("hidden layer: W 200x250", 200, 250, (1000, 2000, 5000, 10000)),  # H=200, n d = 5 x 50
    )
    repeats: int = 7
    min_time: float = 0.05  # seconds per timed repeat
    seed: int = 0


QUICK = Config(shapes=(Shape("slide: W 5x300", 5, 300, (500,)), Shape("hidden layer: W 200x250", 200, 250, (500,))),
               repeats=3, min_time=0.01)  # fmt: skip


def blas_environment() -> dict:
    """The BLAS/threading environment variables (None where unset), and numpy's BLAS library."""
    env = {k: os.environ.get(k) for k in BLAS_VARIABLES}
    env.update({k: v for k, v in os.environ.items() if "BLAS" in k})
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        env["numpy_blas"] = f"{blas.get('name')} {blas.get('version')}"
    except (TypeError, KeyError, AttributeError):  # older numpy: no dict mode
        env["numpy_blas"] = None
    if threadpoolctl is not None:
        env["blas_threadpools"] = [{k: i.get(k) for k in ("internal_api", "num_threads", "architecture", "version")}
                                   for i in threadpoolctl.threadpool_info() if i.get("user_api") == "blas"]  # fmt: skip
    env["load_average"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    env["cpu_count"] = os.cpu_count()
    env["usable_cpus"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return env


def variants(W, X):
    """The four ways to compute W x_i for every column x_i of X (d, N); each blocks until done."""
    xs = [np.ascontiguousarray(X[:, i]) for i in range(X.shape[1])]
    Wj, Xj = jnp.asarray(W), jnp.asarray(X)
    xjs = [jnp.asarray(x) for x in xs]
    # true float32 products, as numpy computes them: on recent NVIDIA GPUs XLA's default precision
    # multiplies float32 in TF32 (a 10-bit mantissa), ~1e-3 relative off numpy (no effect on a CPU)
    matmul = partial(jnp.matmul, precision=jax.lax.Precision.HIGHEST)
    one = jax.jit(matmul)  # (rows, d) @ (d,): one window vector
    many = jax.jit(matmul)  # (rows, d) @ (d, N): all of them
    return {
        "numpy_loop": lambda: [W @ x for x in xs],
        "numpy_matmul": lambda: W @ X,
        "jax_loop": lambda: jax.block_until_ready([one(Wj, x) for x in xjs]),
        "jax_matmul": lambda: jax.block_until_ready(many(Wj, Xj)),
    }


def one_blas_thread(fn):
    """``fn`` run with numpy's BLAS limited to one thread, restored afterwards.

    Switching costs a few µs per call (two C calls), which is counted against the variant.
    """
    libs = threadpoolctl.ThreadpoolController().select(user_api="blas").lib_controllers
    before = [lib.num_threads for lib in libs]

    def run():
        for lib in libs:
            lib.set_num_threads(1)
        try:
            return fn()
        finally:
            for lib, n in zip(libs, before):
                lib.set_num_threads(n)

    return run


def measure(cfg: Config) -> list:
    rng = np.random.default_rng(cfg.seed)
    fns, checks, tolerances, cases = {}, {}, {}, []
    for shape in cfg.shapes:
        W = rng.random((shape.rows, shape.cols), dtype=np.float32)
        for n in shape.ns:
            X = rng.random((shape.cols, n), dtype=np.float32)
            v = variants(W, X)
            ref = v["numpy_matmul"]()
            # every variant computes the same numbers, float32 summation order aside: each entry sums
            # `cols` positive products, so two orders differ by at most eps32 * cols * |entry| (the
            # worst case; k = 1 because each order's own error is at most half that)
            tolerances[shape.label, n] = roundoff_tolerance(np.float32, shape.cols, float(np.max(np.abs(ref))), k=1.0, worst_case=True)
            checks[shape.label, n] = max(float(np.max(np.abs(np.stack(v["numpy_loop"](), 1) - ref))),
                                         float(np.max(np.abs(np.stack(v["jax_loop"](), 1) - ref))),
                                         float(np.max(np.abs(np.asarray(v["jax_matmul"]()) - ref))))  # fmt: skip
            fns.update({(shape.label, n, k): f for k, f in v.items()})
            cases.append((shape, n))
    if threadpoolctl is not None:  # numpy again, its BLAS limited to one thread: the slide's single core
        fns.update({(*key[:2], key[2] + "_1thread"): one_blas_thread(f) for key, f in list(fns.items()) if key[2].startswith("numpy")})
    t = time_round_robin(fns, repeats=cfg.repeats, min_time=cfg.min_time)
    rows = []
    for shape, n in cases:
        s = {k: t[shape.label, n, k]["median_s"] for k in VARIANTS if (shape.label, n, k) in t}
        flops = 2 * shape.rows * shape.cols * n
        rows.append({
            "shape": shape.label, "W": [shape.rows, shape.cols], "N": n, "seconds": s,
            "timing": {k: t[shape.label, n, k] for k in s},
            "us_per_vector": {k: 1e6 * v / n for k, v in s.items()},
            "gflops": {k: flops / v / 1e9 for k, v in s.items()},
            "numpy_speedup": s["numpy_loop"] / s["numpy_matmul"],
            "numpy_1thread_speedup": s["numpy_loop_1thread"] / s["numpy_matmul_1thread"] if "numpy_loop_1thread" in s else None,
            "jax_speedup": s["jax_loop"] / s["jax_matmul"],
            "max_abs_difference": checks[shape.label, n], "tolerance": tolerances[shape.label, n],
        })  # fmt: skip
    return rows


def _numpy_key(row) -> str:
    """numpy's speed-up with one BLAS thread (the slide's single core) when measured, else as found."""
    return "numpy_1thread_speedup" if row.get("numpy_1thread_speedup") is not None else "numpy_speedup"


def plot(result: dict, out: Path) -> list:
    rows = result["rows"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    x = np.arange(len(rows))
    groups = [("numpy_speedup", "numpy, BLAS threads as found"), ("numpy_1thread_speedup", "numpy, 1 BLAS thread"),
              ("jax_speedup", "JAX (jit): loop of calls / one call")]  # fmt: skip
    groups = [(k, label) for k, label in groups if all(r.get(k) is not None for r in rows)]
    width = 0.8 / len(groups)
    for i, (k, label) in enumerate(groups):
        ax1.bar(x - 0.4 + width * (i + 0.5), [r[k] for r in rows], width, label=label)
    ax1.axhline(1, color="k", lw=0.8)
    ax1.axhline(10, color="k", ls=":", lw=1, label="10× (an order of magnitude)")
    ax1.set_yscale("log")
    ax1.set_xticks(x, [f"{r['shape'].split(':')[1].strip()}\nN={r['N']}" for r in rows], fontsize=7)
    ax1.set(ylabel="loop time / matmul time", title="speed-up of one matmul over a loop of W x_i")
    sweep = max({r["shape"] for r in rows}, key=lambda name: sum(r["shape"] == name for r in rows))
    sel = [r for r in rows if r["shape"] == sweep]
    for k in sel[0]["us_per_vector"]:
        style = "o--" if "loop" in k else "o-"
        ax2.loglog([r["N"] for r in sel], [r["us_per_vector"][k] for r in sel], style, label=k.replace("_", " "))
    ax2.set(xlabel="N window vectors", ylabel="µs per vector (median)", title=sweep)
    ax2.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax2.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax1.legend(fontsize=7)
    ax2.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3, which="both")
    plots.save(fig, out / "vectorisation.png")
    return ["vectorisation.png"]


def judge(rows) -> str:
    """On the claim's terms (one CPU core for numpy; JAX as it runs): >= 10x everywhere, somewhere, nowhere."""
    wins = [min(r[_numpy_key(r)], r["jax_speedup"]) >= 10 for r in rows]
    some = any(r[_numpy_key(r)] >= 10 or r["jax_speedup"] >= 10 for r in rows)
    return "supported" if all(wins) else ("partly supported" if some else "not supported")


def main(argv=None) -> dict:
    started = time.perf_counter()
    args = parse_args(NAME, __doc__, argv)
    cfg = QUICK if args.quick else Config()
    env = blas_environment()
    rows = measure(cfg)
    for r in rows:
        print(f"{NAME}: {r['shape']} N={r['N']}: numpy loop/matmul x{r['numpy_speedup']:.1f}, jax x{r['jax_speedup']:.1f}", flush=True)
    verdict = judge(rows)
    result = {"name": NAME, "config": dataclasses.asdict(cfg), "blas_environment": env, "rows": rows, "verdict": verdict,
              "gpu_measured": False,
              "claim": "a Python loop of W x_i is more than an order of magnitude slower than one W X on CPU (more on GPU)"}  # fmt: skip
    files = plot(result, args.out)
    md = section(number=3, title="Vectorisation: a loop of W x_i vs one W X",
                 claim="Looping over window vectors, `[W.dot(x_i) for i in range(N)]`, is more than an order of "
                       "magnitude slower than one `W.dot(X)` (the slide: 639 µs vs 53.8 µs for W 5×300, N = 500), "
                       "and the gap grows to 1–2 orders of magnitude on a GPU.",
                 measured=_measured(rows, env), verdict=verdict, why=_why(rows), plots=files, command=args.command)  # fmt: skip
    return write_results(args, result, md, started)


def _measured(rows, env) -> list:
    lines = []
    for r in rows:
        s, us = r["seconds"], r["us_per_vector"]
        line = (f"{r['shape']}, N = {r['N']}: jitted JAX loop {fmt(s['jax_loop'] * 1e3)} ms vs one jitted matmul "
                f"{fmt(s['jax_matmul'] * 1e3)} ms (**{r['jax_speedup']:.1f}×**, {fmt(us['jax_loop'])} µs per call in the loop); "
                f"numpy loop {fmt(s['numpy_loop'] * 1e3)} ms vs matmul {fmt(s['numpy_matmul'] * 1e3)} ms "
                f"(**{r['numpy_speedup']:.1f}×**, BLAS threads as found)")  # fmt: skip
        if r.get("numpy_1thread_speedup") is not None:
            line += (f", with one BLAS thread {fmt(s['numpy_loop_1thread'] * 1e3)} ms vs "
                     f"{fmt(s['numpy_matmul_1thread'] * 1e3)} ms (**{r['numpy_1thread_speedup']:.1f}×**)")  # fmt: skip
        lines.append(line + ".")
    pools = env.get("blas_threadpools") or [{}]
    lines.append(
        f"float32, CPU only: {env['usable_cpus']} usable cores shared with other jobs (load average "
        f"{', '.join(f'{x:.1f}' for x in env['load_average'] or ())} when the run started); all variants agree to "
        f"{fmt(max(r['max_abs_difference'] for r in rows))} (max |difference|; float32 round-off allows "
        f"{fmt(min(r['tolerance'] for r in rows))}, eps32 x terms per entry x largest entry). Environment recorded, not changed: "
        f"OPENBLAS_CORETYPE={env['OPENBLAS_CORETYPE']}, OPENBLAS_L2_SIZE={env['OPENBLAS_L2_SIZE']} (where these are set "
        f"they slow numpy's matmul and shrink its speed-ups); numpy BLAS {env['numpy_blas']}, "
        f"{pools[0].get('num_threads')} threads, kernel {pools[0].get('architecture')}. The 1-thread rows limit "
        f"BLAS threads at run time with threadpoolctl (a few µs per call, counted against them)."
    )  # fmt: skip
    return lines


def _why(rows) -> str:
    slide = [r for r in rows if r["W"][0] <= 10]
    big = [r for r in rows if r["W"][0] > 10]
    one = all(r.get("numpy_1thread_speedup") is not None for r in rows)
    parts = []
    if slide:
        parts.append(f"For the slide's small W (5×300) one matmul wins by {_span(slide, _numpy_key(slide[0]))}× in numpy"
                     f"{' on one core' if one else ''} and {_span(slide, 'jax_speedup')}× in JAX: each W x_i is so little "
                     "work that per-call overhead (Python, BLAS or XLA dispatch) is nearly the whole cost.")  # fmt: skip
    if big:
        parts.append(f"For the hidden layer's W (200×250) each W x_i is 50,000 multiply-adds and the loop's "
                     f"matrix-vector products are themselves efficient, so numpy's gain is only "
                     f"{_span(big, _numpy_key(big[0]))}×; the JAX loop still loses by {_span(big, 'jax_speedup')}× "
                     "because every call pays XLA's dispatch cost.")  # fmt: skip
    if any(r["numpy_speedup"] < 1 for r in rows):
        parts.append(f"With numpy's BLAS threads as found ({_span(rows, 'numpy_speedup')}×) the matmul can even lose: "
                     "on a 2-core machine busy with other jobs, a multi-threaded BLAS call waits for cores, while the "
                     "loop's small matrix-vector products run on one thread.")  # fmt: skip
    parts.append("The GPU part of the claim was not measured (no GPU in this run).")
    return " ".join(parts)


def _span(rows, key) -> str:
    lo, hi = min(r[key] for r in rows), max(r[key] for r in rows)
    return f"{lo:.1f}" if round(lo, 1) == round(hi, 1) else f"{lo:.1f}–{hi:.1f}"


if __name__ == "__main__":
    main(sys.argv[1:])
