"""E02: numeric gradients -- how accurate (one- vs two-sided differences) and how slow (vs backprop).

    python experiments/e02_gradient_checks.py            # ~1 min on 2 busy CPU cores
    python experiments/e02_gradient_checks.py --quick    # ~15 s

Expected: (a) truncation slopes ~1 (one-sided) and ~2 (two-sided); the lowest error near
h ~ 1e-8 (one-sided) and h ~ 1e-5 (two-sided); at the lecture's h = 1e-4 the two-sided error is
~1e-9. (b) backprop / forward a small constant (~2) at every size; numeric / backprop growing in
proportion to the parameter count P (slope ~1 on log-log). (c) as H, B or d grow 16-fold, the forward
pass grows with them and backprop / forward stays a small constant (backprop has the forward's big-O).
Everything in float64: float32 central differences are too coarse to check anything.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Config:
    # (a) accuracy: a small tanh model (smooth, so the Taylor argument holds everywhere)
    vocab_size: int = 50
    embed_dim: int = 8
    hidden_dim: int = 20
    batch_size: int = 16
    coords_per_tensor: int = 4  # coordinates of W and of E (E: rows that occur in the batch)
    h_per_decade: int = 4  # h runs from 1e-1 down to 1e-12
    # (b) cost: the parameter count P grows with the vocabulary; d, H small so 2P passes are feasible
    vocab_sizes: tuple = (50, 200, 800, 3200)
    cost_embed_dim: int = 10
    cost_hidden_dim: int = 50
    cost_batch_size: int = 64
    loop_batches: int = 16  # forward/backprop timed as a jitted loop over this many batches (no dispatch)
    # (c) backprop vs forward as the sizes a forward pass depends on grow: H, B and d, one at a time,
    # each multiplied by these factors from (d, H, B) = (cost_embed_dim, cost_hidden_dim, cost_batch_size)
    scale_vocab: int = 200
    scale_factors: tuple = (1, 2, 4, 8, 16)
    ratio_bar: float = 5.0  # "a small constant": backprop within this many forward passes at every size (set before)
    step: float = 1e-5  # h of the full numeric gradient (the checker's default)
    repeats: int = 7  # median over repeats, run round-robin over the variants
    numeric_repeats: int = 3
    seed: int = 0


CONFIG = Config()
QUICK = dict(
    coords_per_tensor=2,
    h_per_decade=1,
    vocab_sizes=(20,),
    cost_batch_size=16,
    loop_batches=4,
    repeats=3,
    numeric_repeats=1,
    scale_vocab=50,
    scale_factors=(1, 4),
)
