"""E07: learning rates -- too large fails, too small crawls; does a decaying rate beat a constant one?

Plain SGD, no dropout, two stages with disjoint seeds (a seed sets the initialisation *and* the data
order, :mod:`jaxbackprop.compiled_epoch`):
1. the rate table: a constant rate at each of ``rates``, every one with each of ``selection_seeds``
   (``sweep.run_sweep``). A rate *fails* in a seed if its loss turns NaN/inf or, with a finite loss,
   its final dev F1 collapses below ``collapse_fraction`` of the tuned rate's mean. The *tuned*
   rate is the one with the best mean final dev F1 (a failed seed scores 0); it is chosen here,
   before any schedule runs;
2. at the tuned rate, with fresh ``comparison_seeds`` (so the rate's selection does not flatter
   its own constant arm), every arm of ``arms``: constant, each decay, cyclic, warm-up + cosine and
   warm-up then constant (``optim``'s ``warmup_constant``, which isolates the warm-up from the decay).
   Each arm minus constant, paired by seed, final dev F1, with its 95% interval. The verdict's
   comparison is ``primary`` (step minus constant: "halve the rate every k epochs", the lecture's
   example); the others are Holm-corrected within the experiment. The bar, ``bar``, was fixed
   before any run: 0 F1, because the paired interval already carries the seed noise. Cyclic rates
   (triangular, the lecture's alternative) are an arm on both corpora.
A secondary observation, not part of the verdict: the same comparison at the *high* rate (the
largest rate above the tuned one whose loss stayed finite in every selection seed), for ``high_arms``
-- where a constant rate struggles, warm-up rather than decay is what rescues it.

    python experiments/e07_learning_rates.py            # ~50 s on 2 shared cores: 35 + 35 + 20 runs
    python experiments/e07_learning_rates.py --quick    # ~15 s
    python experiments/e07_learning_rates.py --conll path/to/conll2003 \\
        --embeddings path/to/glove.6B.50d.txt     # ~7 min (estimate): 3000 sentences, batch 256, 5 epochs

Expected: the largest rates fail in every seed, the smallest ends with a training loss hundreds of
times the tuned rate's; at the tuned rate the decays gain a few thousandths of F1 (synthetic, measured:
step - constant +0.0020, interval +0.0004 .. +0.0036, every seed), so small that on other data the
decay part may well be "not resolved"; at the high rate warm-up alone gains nothing resolvable, while
the decay after it does.
"""

from __future__ import annotations

import dataclasses

from configs.base import BASE
from jaxbackprop import train


@dataclasses.dataclass(frozen=True)
class Config:
    # step: halve every 2 epochs; cyclic: period 4 epochs; warm-up: the first epoch
    training: train.TrainConfig = train.configure(BASE, decay_epochs=2, decay_rate=0.5)
    rates: tuple = (1e-3, 1e-2, 1e-1, 1.0, 3.0, 10.0, 100.0)  # constant; the last must fail
    selection_seeds: tuple = (0, 1, 2, 3, 4)  # the rate table's
    comparison_seeds: tuple = (5, 6, 7, 8, 9)  # the schedule arms'
    arms: tuple = ("constant", "step", "exponential", "cosine", "cyclic", "warmup_cosine", "warmup_constant")
    high_arms: tuple = ("constant", "step", "warmup_constant", "warmup_cosine")
    # the comparison the verdict's decay part is about, named before the run ("halve the rate every k epochs"
    # minus constant, at the tuned rate); every other arm's comparison is Holm-corrected within the experiment
    primary: tuple = ("tuned:step-constant",)
    bar: float = 0.0  # final dev F1; "decay beats constant" needs the paired interval above it
    train_sentences: int | None = 500  # None: the whole training split
    crawl_factor: float = 3.0  # "crawls": the smallest rate's final training loss >= 3x the tuned rate's
    collapse_fraction: float = 0.5  # a finite-loss run below half the tuned rate's mean final F1 failed too


CONFIG = Config()
QUICK = dict(
    train_sentences=100,
    rates=(1e-2, 3.0, 6.0, 1e4),  # 6: finite but collapsing -- the high stage runs
    selection_seeds=(0, 1),
    comparison_seeds=(2, 3),
    arms=("constant", "step", "warmup_constant"),
    high_arms=("constant", "warmup_constant"),
    hidden_dim=16,
    epochs=3,
    decay_epochs=1,
)
# CoNLL: full-size runs (~23 s each at batch 1024) would take ~30 min at 5 seeds; a 3000-sentence
# subset at batch 256 (168 steps per epoch) for 5 epochs, and fewer rates and arms, keep it near 7
# minutes (measured: one 3-epoch run 2.8 s warm, 11 s with compiling, on 2 loaded cores)
CONLL = dict(
    train_sentences=3000,
    rates=(1e-2, 1e-1, 0.3, 1.0, 3.0, 10.0),
    arms=("constant", "step", "cosine", "cyclic", "warmup_cosine", "warmup_constant"),
    high_arms=("constant", "warmup_constant", "warmup_cosine"),
    batch_size=256,
    epochs=5,
)
CONLL_QUICK = dict(
    train_sentences=300,
    rates=(1e-2, 1.0, 1e4),
    selection_seeds=(0, 1),
    comparison_seeds=(2, 3),
    arms=("constant", "step", "warmup_constant"),
    high_arms=("constant", "warmup_constant"),
    hidden_dim=16,
    epochs=2,
    decay_epochs=1,
)
