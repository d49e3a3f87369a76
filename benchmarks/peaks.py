"""What the hardware could do, for the step times to be read against: matmul peaks and step FLOPs.

A training step's GFLOP/s is compared with the machine's float32 matmul peak (:func:`matmul_peaks`)
and with the GFLOP/s of the step's own largest matmul on its own (:func:`layer_matmul_gflops`).
"""

from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from harness import CLASSES, WINDOW


def step_flops(shape, hidden: int) -> int:
    """Multiply-adds x 2 of one training step: z = x W^T, dW = delta^T x, dx = delta W (3 matmuls
    of B x D x H), and the same three for the head (B x H x C)."""
    D = WINDOW * shape.dim
    return 2 * shape.batch * D * hidden * 3 + 2 * shape.batch * hidden * CLASSES * 3


def matmul_peaks(quick):
    """float32 GFLOP/s of a square matmul: a jitted jnp.dot (XLA) and, on a CPU backend, numpy (BLAS).

    On a GPU the matrix is larger (the chip needs it to reach its peak), and XLA's default precision
    (TF32 tensor cores for float32 on recent NVIDIA chips) is timed beside "highest" (true float32).
    """
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
    n = max(1, int(0.05 / seconds_once(lambda: mm(x, W).block_until_ready())))
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(n):
            y = mm(x, W)
        y.block_until_ready()
        ts.append((time.perf_counter() - t) / n)
    return 2 * shape.batch * WINDOW * shape.dim * hidden / statistics.median(ts) / 1e9


def seconds_once(fn) -> float:
    t = time.perf_counter()
    fn()
    return max(time.perf_counter() - t, 1e-6)
