"""E01: the lecture's worked example f(x, y, z) = (x + y) max(y, z), on the graph engine.

    python experiments/e01_computation_graph.py            # < 10 s; --quick is the same run

Expected: at (1, 2, 0) the gradients are exactly (2, 5, 0), equal to jax.grad's; nudging y to 2.1
moves f by 0.51 (predicted 0.1 * 5 = 0.5; f is quadratic in y, so (f(y+h) - f(y))/h = 5 + h); the
three patterns: + distributes the upstream gradient, max routes it, * switches it.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Config:
    x: float = 1.0  # the lecture's inputs
    y: float = 2.0
    z: float = 0.0
    wiggle: float = 0.1  # the lecture's nudge of y: 2 -> 2.1
    wiggles: tuple = (1.0, 0.1, 0.01, 0.001)  # nudges h of every input: (f(v+h) - f(v))/h -> df/dv


CONFIG = Config()
QUICK: dict = {}  # the example is instant: --quick runs the full thing
