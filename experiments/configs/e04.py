"""E04: the choice of nonlinearity f -- sigmoid starves the first layer of gradient and learns slowest;
ReLU-family units train faster than tanh-family ones; (hard)tanh is fine; leaky ReLU / PReLU have no dead units.

Plain SGD at a constant rate (Adam would rescale each gradient and hide the differences in gradient
size), but each activation at *its own* rate: the rate is tuned on dev over a literal grid with three
points per decade (0.01 .. 10), with a tuning seed that is not among the reported ones, and a run that
diverges, collapses (its final dev F1 below ``collapse`` x its best epoch's) or ends as the all-"O"
tagger (F1 0) counts as failed. Each activation then trains ``seeds`` seeds at its tuned rate; a seed
sets the initialisation (the same W, U, E for every activation), the data order and the dropout masks.
Activations are compared paired by seed with 95% intervals (``stats.paired``), against bars fixed here
before the runs: 0 for "faster" / "larger gradient", ``fine_bar`` for "(hard)tanh is fine" (the bar the
single-seed version of this experiment used). Each part of the claim has one ``primary`` comparison;
the others are Holm-corrected (``common.corrected``). Gradients are measured at initialisation on a
fixed training batch; dead and saturated units (f' = 0 / |f'| <= 1e-3) on dev windows after training.

    python experiments/e04_nonlinearities.py            # ~3 min on 2 busy CPU cores (90 runs)
    python experiments/e04_nonlinearities.py --quick    # ~15 s (four activations, three rates, two seeds)
    python experiments/e04_nonlinearities.py --conll path/to/conll2003 \\
        --embeddings path/to/glove.6B.50d.txt          # ~8 min (3,000 sentences, H = 100, 3 epochs)

Expected: sigmoid has the smallest first-layer gradient at initialisation (f' <= 1/4); at tuned rates
every activation reaches a similar F1 on the synthetic set, sigmoid learning slowest; whether the
ReLU family learns faster than tanh is for the intervals to say; no ReLU unit dies, and leaky ReLU /
PReLU cannot (f' is their slope, not 0, for z <= 0).
"""

from __future__ import annotations

import dataclasses

from configs.base import BASE
from jaxbackprop import nonlinearities, train


@dataclasses.dataclass(frozen=True)
class Config:
    training: train.TrainConfig = BASE  # plain SGD, constant rate (the rate is set per activation)
    activations: tuple = nonlinearities.ACTIVATIONS
    # 10^(k/3) for k = -6 .. 3: three points per decade, wide enough that every activation's best is interior
    rates: tuple = (0.01, 0.0215, 0.0464, 0.1, 0.215, 0.464, 1.0, 2.15, 4.64, 10.0)
    tune_seeds: tuple = (100,)  # the rate is chosen on dev with these seeds (not the reported ones)
    seeds: tuple = (0, 1, 2, 3, 4)  # then every activation trains these at its tuned rate, paired by seed
    collapse: float = 0.5  # failed: final dev F1 < collapse x the run's best epoch's dev F1 (or 0, or diverged)
    fine_bar: float = -0.05  # "(hard)tanh is fine": paired test F1 of tanh - relu must lie above this
    # one comparison per part of the claim, named before the run and judged on its own 95% interval; every
    # other comparison (the other activations against sigmoid, relu - tanh, relu vs sigmoid's F1,
    # hardtanh - relu) is Holm-corrected within the experiment
    primary: tuple = (
        "grad_W:tanh-sigmoid",
        "speed:tanh-sigmoid",
        "speed:relu_family-tanh_family",
        "test_f1:tanh-relu",
    )
    train_sentences: int | None = 1000  # a subset (None: all): the synthetic corpus is learnt in 2 epochs otherwise
    probe_windows: int = 512  # the fixed training batch the gradients are measured on
    dead_windows: int = 2048  # dev windows a unit must be off (or flat) on to count as dead (or saturated)
    # the time of one training step per activation (the lecture's reason for hard tanh / ReLU: exp and tanh cost
    # more), round-robin repeats of at least step_time_min_s each; 0 repeats: not measured
    step_time_repeats: int = 15
    step_time_min_s: float = 0.2


CONFIG = Config()
# four of the six (prelu is kept for its learnt slope), three rates, two seeds: the mechanics, not the numbers
QUICK = dict(
    activations=("sigmoid", "tanh", "relu", "prelu"),
    rates=(0.1, 0.464, 2.15),
    seeds=(0, 1),
    train_sentences=300,
    hidden_dim=16,
    epochs=2,
    probe_windows=128,
    dead_windows=256,
    step_time_repeats=3,
    step_time_min_s=0.01,
)
# a 3,000-sentence subset of CoNLL-2003 training (~43k windows), batches of 256 and 3 epochs, so that
# 6 x (10 + 5) runs fit in ~8 min on 2 CPU cores; the rate grid stays as it is
CONLL = dict(train_sentences=3000, hidden_dim=100, epochs=3, batch_size=256)
CONLL_QUICK = dict(QUICK, train_sentences=200)
