"""E03: applying W to many window vectors -- one at a time in a Python loop, or one matrix multiply.

    python experiments/e03_vectorisation.py            # ~30 s on 2 busy CPU cores
    python experiments/e03_vectorisation.py --quick    # a few seconds
    python experiments/e03_vectorisation.py --gpu      # where JAX sees a GPU: adds the GPU arms (results/..._gpu/)

Two shapes, as a literal table: the slide's own (W 5 x 300: C classes x window vector, N = 500)
and the window model's hidden layer (W 200 x 250: H x n d, N = 1,000 .. 10,000 windows), each in
numpy and in jit-compiled JAX, float32, repeats run round-robin after waiting for a quiet machine;
numpy with its BLAS pinned (threadpoolctl) to every usable core and to one thread -- the slide's
single core. Each speed-up is taken round by round; its quartiles are the error bars.

Expected: the loop loses by 10x or more where W is small (per-call overhead dominates) and by
less where each W x_i is itself real work (numpy ~4-5x for the hidden layer's W).
"""

from __future__ import annotations

import dataclasses


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
    repeats: int = 9
    min_time: float = 0.05  # seconds per timed repeat
    quiet_load: float = 0.25  # wait for a 1-minute load average below this many per usable core ...
    quiet_wait_s: float = 300.0  # ... but no longer than this; result.json says whether it was reached
    seed: int = 0


CONFIG = Config()
QUICK = dict(
    shapes=(Shape("slide: W 5x300", 5, 300, (500,)), Shape("hidden layer: W 200x250", 200, 250, (500,))),
    repeats=3,
    min_time=0.01,
    quiet_wait_s=0.0,
)
