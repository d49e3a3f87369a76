"""Training-step throughput of the window model: jax.grad, hand-derived, rows-only, Flax and PyTorch.

Every variant trains the same model (window 5, relu, softmax head of 9 classes, float32, Adam) on
the same batches in one process. Repeats run round-robin over the variants, so load from other
processes lands on all of them alike; each number is a median over repeats after a warm-up.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_step.py   # 3 min idle, 2 cores; ~15 busy
    python benchmarks/bench_step.py --quick --markdown B.md   # < 1 min

The full run writes ``benchmarks/results/bench_step.json`` and ``BENCHMARKS.md``; where JAX's default
backend is a GPU, the PyTorch rows run on CUDA too (``--torch-device``) and the run writes
``bench_step_gpu.json`` and ``BENCHMARKS_GPU.md`` instead. Some machines
set ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE``, which halve numpy's matmul speed and so would
understate the matmul peak that GFLOP/s are compared with; the command unsets them for this one
process only (the test suite never changes them). torch is optional (``pip install
'jaxbackprop[torch]'``): without it the PyTorch rows are skipped with a message.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxbackprop import backprop, checkpoint, model, sparse
from jaxbackprop.provenance import portable_argv

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_memory  # peak memory, one fresh process per variant
from bench_report import markdown, targets  # (this file times, that one reports)

ROOT = Path(__file__).resolve().parents[1]
WINDOW, CLASSES, LR, NUM_BATCHES = 5, 9, 1e-3, 8
ZIPF_EXPONENT = 1.07  # word frequencies: p(rank) ~ rank^-1.07, truncated to the vocabulary

JAX_TRAIN = ("jax_grad", "manual", "sparse", "flax")
TORCH_TRAIN = ("torch_dense", "torch_sparse", "torch_compile", "torch_graphs")
PASSES = ("jax_fwd", "jax_fwdbwd_rows", "jax_fwdbwd_grad", "torch_fwd", "torch_fwdbwd")
ALL = JAX_TRAIN + TORCH_TRAIN + PASSES


@dataclasses.dataclass(frozen=True)
class Shape:
    batch: int
    vocab: int
    dim: int
    ids: str  # "zipf" or "uniform"
    variants: tuple = ALL

    @property
    def name(self):
        return f"B={self.batch} V={self.vocab // 1000}k d={self.dim} {self.ids}"


# the sweep, as a literal table: batch x vocabulary at d=50, a wide embedding, uniform ids
FULL_SHAPES = [Shape(B, V, 50, "zipf") for V in (20_000, 400_000) for B in (32, 512, 4096)] + [
    Shape(512, 20_000, 300, "zipf"),
    Shape(512, 20_000, 50, "uniform", ("sparse", "torch_sparse", "manual")),
    Shape(512, 400_000, 50, "uniform", ("sparse", "torch_sparse", "manual")),
]
QUICK_SHAPES = [Shape(64, 5_000, 50, "zipf")]
MEMORY_SHAPES = [Shape(512, V, 50, "zipf", bench_memory.VARIANTS) for V in (20_000, 400_000)]
QUICK_MEMORY_SHAPES = [Shape(64, 5_000, 50, "zipf", ("manual", "sparse", "torch_sparse"))]
TORCH_COMPILE_SHAPES = {(B, 20_000, 50, "zipf") for B in (32, 512, 4096)}  # ~1 min to compile each


def step_flops(shape: Shape, hidden: int) -> int:
    """Multiply-adds x 2 of one training step: z = x W^T, dW = delta^T x, dx = delta W (3 matmuls
    of B x D x H), and the same three for the head (B x H x C)."""
    D = WINDOW * shape.dim
    return 2 * shape.batch * D * hidden * 3 + 2 * shape.batch * hidden * CLASSES * 3


def make_batches(shape: Shape, seed=0):
    rng = np.random.default_rng(seed)
    if shape.ids == "zipf":
        p = np.arange(1, shape.vocab + 1, dtype=np.float64) ** -ZIPF_EXPONENT
        windows = rng.choice(shape.vocab, size=(NUM_BATCHES, shape.batch, WINDOW), p=p / p.sum())
    else:
        windows = rng.integers(0, shape.vocab, (NUM_BATCHES, shape.batch, WINDOW))
    labels = rng.integers(0, CLASSES, (NUM_BATCHES, shape.batch))
    return windows.astype(np.int32), labels.astype(np.int32)


# ----------------------------------------------------------------------------- timing


class Runner:
    """One variant: ``run(n)`` takes n steps (cycling the batches) and waits for the result."""

    def __init__(self, name, run, *, threads=None, info=None):
        self.name, self.run, self.threads, self.info = name, run, threads, dict(info or {})
        self.times = []  # seconds per step, one entry per repeat


def calibrate(runner, min_time):
    """Steps per repeat so that one repeat lasts about min_time (at least one step)."""
    t = time.perf_counter()
    runner.run(1)
    per_step = time.perf_counter() - t
    return max(1, int(min_time / max(per_step, 1e-6)))


def time_round_robin(runners, repeats, min_time, torch_mod=None):
    """Warm up each runner, then `repeats` rounds in which every runner runs one repeat."""
    default_threads = torch_mod.get_num_threads() if torch_mod else None
    steps = {}
    for r in runners:
        _set_threads(torch_mod, r.threads, default_threads)
        r.run(2)  # warm-up (compiles are done before; this settles caches and allocators)
        steps[r.name] = calibrate(r, min_time)
    for _ in range(repeats):
        for r in runners:
            _set_threads(torch_mod, r.threads, default_threads)
            n = steps[r.name]
            t = time.perf_counter()
            r.run(n)
            r.times.append((time.perf_counter() - t) / n)
    _set_threads(torch_mod, None, default_threads)


def _set_threads(torch_mod, threads, default):
    if torch_mod is not None:
        torch_mod.set_num_threads(threads or default)


def matmul_peaks(quick):
    """float32 GFLOP/s of a square matmul: a jitted jnp.dot (XLA) and, on a CPU backend, numpy (BLAS).

    On a GPU the matrix is larger (the chip needs it to reach its peak), and XLA's default precision
    (TF32 tensor cores for float32 on recent NVIDIA chips) is timed beside "highest" (true float32)."""
    on_cpu = jax.default_backend() == "cpu"
    n = 512 if quick else (2048 if on_cpu else 8192)
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    ja = jnp.asarray(a)
    mm = jax.jit(jnp.dot)
    mm_highest = jax.jit(lambda x, y: jnp.dot(x, y, precision=jax.lax.Precision.HIGHEST))
    fns = {"jnp": lambda: mm(ja, ja).block_until_ready()}
    if on_cpu:
        fns["numpy"] = lambda: a @ a
    else:
        fns["jnp_highest"] = lambda: mm_highest(ja, ja).block_until_ready()
    out = {}
    for name, fn in fns.items():
        fn()
        ts = []
        for _ in range(3 if quick else 9):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        out[name] = {"n": n, "gflops": 2 * n**3 / statistics.median(ts) / 1e9}
    return out


def layer_matmul_gflops(shape, hidden, repeats=7):
    """GFLOP/s of this shape's own x W^T matmul (B x D x H): what its step can hope for."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((shape.batch, WINDOW * shape.dim), dtype=np.float32))
    W = jnp.asarray(rng.standard_normal((hidden, WINDOW * shape.dim), dtype=np.float32))
    mm = jax.jit(lambda x, W: x @ W.T)
    mm(x, W).block_until_ready()
    n = max(1, int(0.05 / _once(lambda: mm(x, W).block_until_ready())))
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(n):
            y = mm(x, W)
        y.block_until_ready()
        ts.append((time.perf_counter() - t) / n)
    return 2 * shape.batch * WINDOW * shape.dim * hidden / statistics.median(ts) / 1e9


def _once(fn):
    t = time.perf_counter()
    fn()
    return max(time.perf_counter() - t, 1e-6)


# ----------------------------------------------------------------------------- JAX variants


def _memory(compiled):
    try:
        m = compiled.memory_analysis()
        return {"temp_mb": m.temp_size_in_bytes / 2**20, "argument_mb": m.argument_size_in_bytes / 2**20}
    except Exception:  # noqa: BLE001  (not every backend/version reports it)
        return {}


def _compile(jitted, *args):
    t = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    return compiled, {"compile_s": time.perf_counter() - t, **_memory(compiled)}


def _dense_step(cfg, value_and_grad, tx):
    def step(params, opt_state, batch):
        J, grads = value_and_grad(params, batch, cfg)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, J

    return jax.jit(step, donate_argnums=(0, 1))


def jax_runners(shape, hidden, windows, labels, wanted):
    cfg = model.ModelConfig(vocab_size=shape.vocab, embed_dim=shape.dim, window=WINDOW, hidden_dim=hidden, num_classes=CLASSES)
    batches = [{"windows": jnp.asarray(w), "labels": jnp.asarray(y)} for w, y in zip(windows, labels)]
    tx = optax.adam(LR)
    grads = {"jax_grad": jax.value_and_grad(model.loss), "manual": backprop.manual_value_and_grad}
    if "flax" in wanted:
        try:
            from jaxbackprop.flax_model import flax_value_and_grad

            grads["flax"] = flax_value_and_grad
        except ImportError as e:
            print(f"  skip flax: {e}")
    runners = []
    for name in JAX_TRAIN:
        if name not in wanted or (name != "sparse" and name not in grads):
            continue
        params = model.init_params(jax.random.key(0), cfg)
        if name == "sparse":
            init, step = sparse.make_sparse_step(cfg, tx, "adam", LR)
            state, extra = init(params), (None,)
        else:
            step, state, extra = _dense_step(cfg, grads[name], tx), tx.init(params), ()
        compiled, info = _compile(step, params, state, batches[0], *extra)
        runners.append(Runner(name, _train_loop(compiled, params, state, batches, extra), info=info))
    params = model.init_params(jax.random.key(0), cfg)
    passes = {
        "jax_fwd": lambda p, b: model.loss(p, b, cfg),
        "jax_fwdbwd_rows": lambda p, b: backprop.manual_value_and_row_grads(p, b, cfg),
        "jax_fwdbwd_grad": lambda p, b: jax.value_and_grad(model.loss)(p, b, cfg),
    }
    for name, fn in passes.items():
        if name in wanted:
            compiled, info = _compile(jax.jit(fn), params, batches[0])
            runners.append(Runner(name, _pass_loop(compiled, params, batches), info=info))
    return runners


def _train_loop(step, params, opt_state, batches, extra):
    state = {"params": params, "opt": opt_state, "i": 0}

    def run(n):
        p, o, i = state["params"], state["opt"], state["i"]
        for _ in range(n):
            p, o, J = step(p, o, batches[i % len(batches)], *extra)
            i += 1
        J.block_until_ready()
        state.update(params=p, opt=o, i=i)

    return run


def _pass_loop(fn, params, batches):
    state = {"i": 0}

    def run(n):
        for _ in range(n):
            out = fn(params, batches[state["i"] % len(batches)])
            state["i"] += 1
        jax.block_until_ready(out)  # (per call, a GPU would time the host round trip, not the pass)

    return run


# ----------------------------------------------------------------------------- PyTorch variants


def import_torch():
    try:
        import torch
    except ImportError:
        print("torch is not installed: skipping the PyTorch rows (pip install 'jaxbackprop[torch]')")
        return None
    return torch


def torch_device(torch, wanted):
    """"cuda" when asked, or (auto) when JAX itself runs on a GPU and torch sees one; else "cpu"."""
    if torch is None:
        return None
    if wanted == "auto":
        return "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"
    if wanted == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--torch-device cuda: torch sees no CUDA device (torch.cuda.is_available() is False)")
    return wanted


def torch_runners(torch, shape, hidden, windows, labels, wanted, thread_settings, quick, device="cpu"):
    """PyTorch peers of the JAX steps, each at every thread setting (None: torch's default)."""
    nn, F = torch.nn, torch.nn.functional
    # CUDA kernels run asynchronously: a repeat ends only when the device has finished its work
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    class Window(nn.Module):
        def __init__(self, sparse_grad):
            super().__init__()
            self.E = nn.Embedding(shape.vocab, shape.dim, sparse=sparse_grad)
            self.hidden = nn.Linear(WINDOW * shape.dim, hidden)
            self.out = nn.Linear(hidden, CLASSES)

        def forward(self, w, y):
            x = self.E(w).reshape(w.shape[0], -1)
            return F.cross_entropy(self.out(torch.relu(self.hidden(x))), y)

    data = [(torch.from_numpy(w).long().to(device), torch.from_numpy(y).long().to(device)) for w, y in zip(windows, labels)]

    def adam(params):
        for kw in ({"fused": True}, {"foreach": True}):
            try:
                return torch.optim.Adam(params, lr=LR, **kw), kw
            except (RuntimeError, ValueError):
                continue
        return torch.optim.Adam(params, lr=LR), {}

    def train_loop(module, opts, before_step=lambda: None):
        state = {"i": 0}

        def run(n):
            for _ in range(n):
                before_step()
                w, y = data[state["i"] % len(data)]
                module(w, y).backward()
                for opt in opts:
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                state["i"] += 1
            sync()

        return run

    def pass_loop(module, backward):
        state = {"i": 0}

        def run(n):
            for _ in range(n):
                w, y = data[state["i"] % len(data)]
                if backward:
                    module(w, y).backward()
                    module.zero_grad(set_to_none=True)
                else:
                    with torch.no_grad():
                        module(w, y)
                state["i"] += 1
            sync()

        return run

    made = {}
    if "torch_dense" in wanted:
        m = Window(False).to(device)
        opt, kw = adam(m.parameters())
        made["torch_dense"] = (train_loop(m, [opt]), {"adam": kw})
    if "torch_sparse" in wanted:
        m = Window(True).to(device)
        rest = [p for n, p in m.named_parameters() if n != "E.weight"]
        opt, kw = adam(rest)
        made["torch_sparse"] = (train_loop(m, [torch.optim.SparseAdam([m.E.weight], lr=LR), opt]), {"adam": kw})
    compile_modes = {"torch_compile": "default", "torch_graphs": "reduce-overhead"}
    if device != "cuda":
        compile_modes.pop("torch_graphs")  # CUDA graphs: a GPU-only way to cut launch overhead
    for name, mode in compile_modes.items():
        if name not in wanted:
            continue
        if quick or (shape.batch, shape.vocab, shape.dim, shape.ids) not in TORCH_COMPILE_SHAPES:
            print(f"  skip {name} at {shape.name}: compiled only at {sorted(TORCH_COMPILE_SHAPES)} (~1 min each)")
            continue
        m = Window(False).to(device)
        opt, kw = adam(m.parameters())
        # reduce-overhead replays CUDA graphs, whose outputs the next replay overwrites: mark each step
        mark = torch.compiler.cudagraph_mark_step_begin if mode == "reduce-overhead" else (lambda: None)
        run = train_loop(torch.compile(m, mode=mode), [opt], mark)
        try:
            t = time.perf_counter()
            run(3)  # compiles forward and backward (and records the graphs)
            made[name] = (run, {"adam": kw, "compile_s": time.perf_counter() - t, "compile_mode": mode})
        except Exception as e:  # noqa: BLE001  (inductor needs a C++ toolchain, among others)
            print(f"  skip {name}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    if "torch_fwd" in wanted:
        made["torch_fwd"] = (pass_loop(Window(False).to(device), backward=False), {})
    if "torch_fwdbwd" in wanted:
        made["torch_fwdbwd"] = (pass_loop(Window(True).to(device), backward=True), {"embedding_grad": "sparse"})
    runners = []
    for threads in thread_settings:
        suffix = "" if threads is None else f"[{threads}t]"
        for name, (run, info) in made.items():
            runners.append(Runner(name + suffix, run, threads=threads, info=info))
    return runners


# ----------------------------------------------------------------------------- the sweep


def summarize(runner, shape, hidden, peak):
    ts = sorted(runner.times)
    med = statistics.median(ts)
    q1, q3 = np.percentile(ts, [25, 75])
    base = runner.name.split("[")[0]
    row = {
        "variant": runner.name,
        "kind": "train" if base in JAX_TRAIN + TORCH_TRAIN else "pass",
        "threads": runner.threads,
        "step_ms": med * 1e3,
        "min_ms": ts[0] * 1e3,
        "iqr_pct": 100 * (q3 - q1) / med,
        "windows_per_s": shape.batch / med,
        "repeats": len(ts),
        **runner.info,
    }
    if row["kind"] == "train":
        row["gflops"] = step_flops(shape, hidden) / med / 1e9
        row["pct_of_peak"] = 100 * row["gflops"] / peak
    return row


def run_shape(shape, args, torch, thread_settings, peak):
    print(f"{shape.name}: building", flush=True)
    windows, labels = make_batches(shape)
    runners = jax_runners(shape, args.hidden, windows, labels, shape.variants)
    if torch is not None:
        runners += torch_runners(
            torch, shape, args.hidden, windows, labels, shape.variants, thread_settings, args.quick, args.torch_device
        )
    time_round_robin(runners, args.repeats, args.min_time, torch)
    rows = [summarize(r, shape, args.hidden, peak) for r in runners]
    for row in rows:
        print(f"  {row['variant']:22s} {row['step_ms']:9.3f} ms  {row['windows_per_s']:10.0f} windows/s  (IQR {row['iqr_pct']:.0f}%)")
    result = {**dataclasses.asdict(shape), "name": shape.name, "flops_per_step": step_flops(shape, args.hidden), "rows": rows}
    result["variants"] = list(shape.variants)
    result["layer_matmul_gflops"] = layer_matmul_gflops(shape, args.hidden, 3 if args.quick else 7)
    return result


def vocab_ratio(args, ids, vocabs=(20_000, 400_000), batch=512):
    """The rows-only step at a small and a large vocabulary, timed round-robin in one group.

    Shapes of the sweep run one after another, so their ratio also measures how the machine's
    load changed in between; timed together, the two steps see the same load.
    """
    runners = []
    for vocab in vocabs:
        shape = Shape(batch, vocab, 50, ids, ("sparse",))
        (r,) = jax_runners(shape, args.hidden, *make_batches(shape), shape.variants)
        r.name = f"sparse V={vocab // 1000}k"
        runners.append(r)
    time_round_robin(runners, args.repeats, args.min_time)
    small, large = (statistics.median(r.times) * 1e3 for r in runners)
    print(f"  rows-only step, B={batch} {ids} ids: V={vocabs[0]:,} {small:.3f} ms, V={vocabs[1]:,} {large:.3f} ms (x{large / small:.2f})")
    return {"ids": ids, "batch": batch, "vocabs": list(vocabs), "step_ms": [small, large], "ratio": large / small}


def environment(torch, args):
    env = {k: os.environ[k] for k in sorted(os.environ) if "BLAS" in k or k.startswith(("OMP_", "MKL_", "XLA_", "GLIBC_"))}
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name] + portable_argv(sys.argv)),  # no machine paths
        "machine": platform.machine(),
        "processor": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
        "torch": torch.__version__ if torch else None,
        "torch_default_threads": torch.get_num_threads() if torch else None,
        "torch_thread_settings": args.thread_settings if torch else None,
        "jax_devices": [str(d) for d in jax.devices()],
        "jax_backend": jax.default_backend(),
        "accelerator": None if jax.default_backend() == "cpu" else jax.devices()[0].device_kind,
        "jax_default_matmul_precision": jax.config.jax_default_matmul_precision,
        "torch_device": args.torch_device if torch else None,
        "torch_cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32 if torch and args.torch_device == "cuda" else None,
        "env": env,
        "hidden": args.hidden,
        "window": WINDOW,
        "classes": CLASSES,
        "dtype": "float32",
        "optimizer": f"Adam lr={LR}",
    }


def _cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one small shape, few repeats (< 1 min)")
    p.add_argument("--hidden", type=int, default=200, help="H, hidden units (default 200)")
    p.add_argument("--repeats", type=int, help="timed repeats per variant (default 7; 3 with --quick)")
    p.add_argument("--min-time", type=float, help="seconds per repeat (default 0.15; 0.02 with --quick)")
    p.add_argument(
        "--torch-threads",
        help="torch thread counts to run besides torch's default, comma-separated (default '1'; none with --quick). "
        "On a busy machine torch's OpenMP threads can wait on each other for a descheduled peer.",
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
    out = args.out or ROOT / "benchmarks" / "results" / f"bench_step{tag}.json"
    md = args.markdown if args.markdown or args.quick else ROOT / ("BENCHMARKS_GPU.md" if on_gpu else "BENCHMARKS.md")

    torch = import_torch()
    args.torch_device = torch_device(torch, args.torch_device)
    # thread counts matter only for torch on the CPU
    extra = args.torch_threads if args.torch_threads is not None else ("" if args.quick or args.torch_device == "cuda" else "1")
    thread_settings = [None] + [int(t) for t in extra.split(",") if t]
    t0 = time.perf_counter()
    load_before = os.getloadavg()
    peaks = matmul_peaks(args.quick)
    peak = max(v["gflops"] for v in peaks.values())
    print("matmul peak: " + ", ".join(f"{k} {v['gflops']:.1f} GFLOP/s" for k, v in peaks.items()), flush=True)
    args.thread_settings = thread_settings
    print("sparse step time against the vocabulary, timed side by side:", flush=True)
    ratios = [vocab_ratio(args, ids, (1_000, 20_000) if args.quick else (20_000, 400_000)) for ids in ("zipf", "uniform")]
    shapes = []
    for shape in QUICK_SHAPES if args.quick else FULL_SHAPES:
        shapes.append(run_shape(shape, args, torch, thread_settings, peak))
        result = {
            "environment": environment(torch, args),
            "matmul_peak": peaks,
            "load_average": {"before": load_before, "after": os.getloadavg()},
            "wall_s": time.perf_counter() - t0,
            "shapes": shapes,
            "vocab_ratio": ratios,
        }
        result["targets"] = targets(result)
        # after every shape, so that an interrupted run keeps what it measured
        # (`python benchmarks/bench_report.py OUT.json OUT.md` reports it)
        checkpoint.write_text(out, json.dumps(result, indent=1))
    print("peak memory, each variant in a fresh process:", flush=True)
    result["memory"] = [
        {"shape": shape.name, "rows": bench_memory.measure(shape, [v for v in shape.variants if torch or not v.startswith("torch")],
                                                          args.hidden, args.torch_device)}
        for shape in (QUICK_MEMORY_SHAPES if args.quick else MEMORY_SHAPES)
    ]  # fmt: skip
    checkpoint.write_text(out, json.dumps(result, indent=1))
    print(f"wrote {out}")
    if md:
        checkpoint.write_text(md, markdown(result))
        print(f"wrote {md}")
    return result


if __name__ == "__main__":
    main()
