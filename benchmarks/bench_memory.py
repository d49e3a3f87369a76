"""Peak memory of one training-step variant, each measured in a fresh process.

One process per (shape, variant), so that nothing another variant allocated (or the allocator
kept) is counted. In it: the batches are made, freed heap is handed back to the system
(glibc ``malloc_trim``), and the resident set size (RSS) is read as the baseline; then the
variant is built and warmed up (parameters, optimizer state, XLA compilation), the heap trimmed
again -- the compiler's scratch is not the step's memory --, and a thread samples RSS every
millisecond while the step runs. The result is the peak above the baseline: parameters,
optimizer state, gradients and the step's temporaries. On a GPU the device's own counters are
read instead (JAX: ``memory_stats()``; torch: ``max_memory_allocated``).

    python benchmarks/bench_memory.py            # the variants at B=512, V=20k and V=400k
    python benchmarks/bench_memory.py --quick --out M.json   # one small shape, seconds

``bench_step.py`` runs the same measurement after its timings and records it in its JSON.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import harness
import jax
import jax.numpy as jnp
import torch_peers
from harness import Shape
from jax_variants import jax_runners

VARIANTS = ("jax_grad", "manual", "sparse", "flax", "torch_dense", "torch_sparse")  # torch_compile: ~1 min to build
SHAPES = [Shape(512, V, 50, "zipf", VARIANTS) for V in (20_000, 400_000)]
QUICK_SHAPES = [Shape(64, 5_000, 50, "zipf", ("manual", "sparse", "torch_sparse"))]
STEPS = 8


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def trim_heap() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: freed memory may stay counted
        pass


class PeakSampler:
    """Largest RSS seen while active, read every ``interval`` seconds on a thread."""

    def __init__(self, interval=1e-3):
        self.interval, self.peak, self._stop = interval, rss_mb(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb())
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def measure_here(variant, batch, vocab, dim, ids, hidden, torch_device) -> dict:
    """In this (fresh) process: the variant's peak memory above the baseline, in MB."""
    shape = Shape(batch, vocab, dim, ids, (variant,))
    windows, labels = harness.make_batches(shape)
    torch = torch_peers.import_torch() if variant.startswith("torch") else None
    gpu = jax.default_backend() == "gpu" if torch is None else torch_device == "cuda"
    start_runtimes(torch, torch_device)
    trim_heap()
    base = rss_mb()
    if torch is not None:
        args = (torch, shape, hidden, windows, labels, shape.variants, [None], False, torch_device or "cpu")
        (runner,) = torch_peers.torch_runners(*args)
    else:
        (runner,) = jax_runners(shape, hidden, windows, labels, shape.variants)
    runner.run(2)  # warm-up: torch's Adam makes its state on the first step
    trim_heap()
    if gpu and torch is not None:
        torch.cuda.reset_peak_memory_stats()
    with PeakSampler() as sampler:
        runner.run(STEPS)
    out = {"variant": variant, "baseline_mb": base, "built_mb": rss_mb() - base, "peak_mb": sampler.peak - base}
    out["device"] = "cpu"
    if gpu:  # host RSS says little about device memory: the device's own high-water mark
        out.update(device_peak(torch))
    return out


def device_peak(torch) -> dict:
    """The GPU's own high-water mark of this process (torch's, or JAX's first device's)."""
    try:
        if torch is not None:
            return {"device": "cuda", "peak_mb": torch.cuda.max_memory_allocated() / 2**20}
        return {"device": "gpu", "peak_mb": jax.devices()[0].memory_stats()["peak_bytes_in_use"] / 2**20}
    except Exception as e:  # noqa: BLE001  (not every runtime reports it)
        return {"device": "gpu", "peak_mb": None, "error": f"{type(e).__name__}: {e}"}


def start_runtimes(torch, torch_device):
    """Start the framework's runtime (client, thread pools, kernels of a tiny layer) before the
    baseline: the variant should be charged for its own arrays and program, not for that."""
    x = jnp.ones((8, 8))
    jax.block_until_ready(jax.jit(jax.grad(lambda w: jnp.sum(jnp.tanh(x @ w))))(x))
    if torch is not None:
        layer = torch.nn.Linear(8, 8).to(torch_device or "cpu")
        layer(torch.ones(8, 8, device=torch_device or "cpu")).sum().backward()


def measure(shape, variants, hidden: int, torch_device: str | None, timeout: float = 300) -> list[dict]:
    """Every variant of ``variants`` at ``shape``, each in its own process; failures are recorded."""
    rows = []
    for variant in variants:
        spec = [variant, shape.batch, shape.vocab, shape.dim, shape.ids, hidden, torch_device]
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if proc.returncode == 0 and lines:
            rows.append(json.loads(lines[-1]))
        else:
            error = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
            rows.append({"variant": variant, "peak_mb": None, "error": error})
        row = rows[-1]
        peak = "n/a" if row["peak_mb"] is None else f"{row['peak_mb']:.1f} MB"
        print(f"  memory {shape.name} {variant:14s} {peak}", flush=True)
    return rows


def measure_shapes(quick, torch, hidden, torch_device) -> list[dict]:
    """``[{"shape", "rows"}]`` for the memory shapes (the quick one with ``quick``); without torch,
    its variants are left out."""
    return [
        {
            "shape": shape.name,
            "rows": measure(
                shape, [v for v in shape.variants if torch or not v.startswith("torch")], hidden, torch_device
            ),
        }
        for shape in (QUICK_SHAPES if quick else SHAPES)
    ]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        print(json.dumps(measure_here(*json.loads(argv[1]))))
        return None
    p = harness.arg_parser(__doc__, "one small shape (seconds)")
    p.add_argument("--hidden", type=int, default=200, help="H, hidden units (default 200)")
    p.add_argument("--out", type=Path, help="also write the rows and the environment to this JSON file")
    args = p.parse_args(argv)
    torch = torch_peers.import_torch()
    device = torch_peers.torch_device(torch, "auto")
    env = harness.environment(hidden=args.hidden, torch=torch.__version__ if torch else None, torch_device=device)
    print(harness.machine_line(env), flush=True)
    result = {"environment": env, "memory": measure_shapes(args.quick, torch, args.hidden, device)}
    if args.out:
        harness.write_json(args.out, result)
        print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
