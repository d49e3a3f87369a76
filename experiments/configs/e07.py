"""E07: learning rates -- too large diverges, too small crawls; a decaying rate beats a constant one.

Two literal sweep tables run through ``jaxbackprop.sweep.run_sweep``, plain SGD, no dropout:
1. ``rates``: a constant rate at powers of ten up to one that must diverge;
2. ``schedules``: every schedule of ``optim.SCHEDULES`` at the *high* rate (the largest of table 1
   that did not diverge: fast, but noisy -- where the lecture says a decay pays), plus constant vs
   step at the *tuned* rate (the best final dev F1 of table 1) if that is another; each row with
   several initialisation seeds, so a difference can be told from noise.

    python experiments/e07_learning_rates.py            # ~1.5 min: 500 sentences, 8 epochs, 7 rates + 8 x 5 seeds
    python experiments/e07_learning_rates.py --quick    # ~15 s
    python experiments/e07_learning_rates.py --conll path/to/conll2003 \\
        --embeddings path/to/glove.6B.50d.txt     # ~7 min: full train, 5 epochs

Expected: the largest rate is marked diverged (its loss became NaN/inf) without stopping the sweep;
the smallest ends with a training loss far above the best rate's; at the high rate the step
schedule ends with a lower training loss and a higher dev F1 than the constant rate; at a tuned
rate the difference is small (or goes the other way). On CoNLL a rate can also fail without a
NaN: it stalls at a high loss, and a warm-up or a cyclic start rescues it.
"""

from __future__ import annotations

import dataclasses

from configs.base import BASE
from jaxbackprop import optim, train


@dataclasses.dataclass(frozen=True)
class Config:
    # step: halve every 2 epochs; cyclic: period 4 epochs
    training: train.TrainConfig = train.configure(BASE, decay_epochs=2, decay_rate=0.5)
    rates: tuple = (1e-3, 1e-2, 1e-1, 1.0, 3.0, 10.0, 100.0)  # constant; the last must diverge
    schedules: tuple = optim.SCHEDULES
    seeds: tuple = (0, 1, 2, 3, 4)  # initialisation seeds of the schedule rows (the data order is shared)
    train_sentences: int | None = 500  # None: the whole training split
    crawl_factor: float = 3.0  # "crawls": the smallest rate ends with >= 3x the best rate's training loss
    min_f1_gain: float = 0.005  # a gain counts when above max(2 standard errors over seeds, this)


CONFIG = Config()
QUICK = dict(
    train_sentences=100,
    rates=(1e-2, 1.0, 1e4),
    schedules=("constant", "step", "cyclic"),
    seeds=(0,),
    hidden_dim=16,
    epochs=3,
    decay_epochs=1,
)
CONLL = dict(
    train_sentences=None,
    rates=(1e-3, 1e-2, 1e-1, 1.0, 3.0, 10.0),
    seeds=(0,),
    hidden_dim=200,
    batch_size=1024,
    epochs=5,
)
CONLL_QUICK = dict(
    train_sentences=300,
    rates=(1e-2, 1e4),
    schedules=("constant", "step"),
    seeds=(0,),
    hidden_dim=16,
    batch_size=256,
    epochs=2,
    decay_epochs=1,
)
