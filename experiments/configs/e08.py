"""E08: plain SGD works but needs a carefully tuned learning rate; adaptive optimizers are robust.

Two sweeps (``jaxbackprop.sweep.run_sweep``), constant schedule, the same model in every cell:

1. *Tuning*: optimizer x learning rate (``per_decade`` = 3 rates per decade over five decades) x the
   ``tune_seeds``. Per optimizer and rate, the mean best-epoch dev F1 over those seeds; a rate
   *fails* when a seed's loss became NaN/inf or when its mean F1 is below ``collapse_fraction`` of the
   optimizer's best (Adam at 0.1 keeps a finite loss and predicts O everywhere: a failure too). The
   tuned rate is the best one; the *good band* is the unbroken run of rates around it within ``band``
   of its F1, its width in decades (per tuning seed as well, for an interval).
2. *Confirmation*: fresh ``seeds`` (5) at each optimizer's tuned rate and at its conventional default
   rate (Keras': SGD 0.01, adaptive 0.001), compared paired by seed (a seed sets the initialisation and
   the data order of every arm).

``band`` is set from the measured seed noise, before the result: a 5-seed pilot at SGD 0.3, Adam 3e-3
and Adagrad 0.1 gave dev-F1 standard deviations 0.0011-0.0015, and 0.005 is 3-4 of them. The run
measures the seed SDs at the tuned rates again and reports ``band`` over them (``band_over_max_sd``,
``band_over_min_sd``); on the rerun they need not agree with the pilot's.

    python experiments/e08_optimizers.py            # 2 min on 2 shared CPU cores (338 runs), 3.5 min under load
    python experiments/e08_optimizers.py --quick    # ~15 s
    python experiments/e08_optimizers.py --conll path/to/conll2003 \\
        --embeddings path/to/glove.6B.50d.txt   # ~6-8 min, estimated (see CONLL)

Expected (measured, synthetic): SGD at its tuned rate 0.464 is as good as Adam at 1e-3 (-0.0012,
interval -0.0041 .. +0.0016) and 0.76 F1 better than at 0.01; Adam and AdamW are tuned at their default
1e-3, RMSprop's default is not resolved, Adagrad's 1e-3 fails (F1 0.02); every optimizer's good band is
~1.3 decades wide, and Adam, AdamW and RMSprop fail at every rate from 0.1 up with a finite loss ->
"partly supported".
"""

from __future__ import annotations

import dataclasses

from configs.base import BASE
from jaxbackprop import train


def rates(low_exp: int, high_exp: int, per_decade: int) -> tuple:
    """10^low .. 10^high with ``per_decade`` points per decade (rounded to 3 significant digits).

    >>> rates(-1, 0, 3)
    (0.1, 0.215, 0.464, 1.0)
    """
    return tuple(float(f"{10 ** (low_exp + i / per_decade):.3g}") for i in range((high_exp - low_exp) * per_decade + 1))


@dataclasses.dataclass(frozen=True)
class Config:
    # no regularisation: only the optimizer differs between cells; casing features on
    training: train.TrainConfig = train.configure(BASE, hidden_dim=64, feature_dim=16, epochs=4, batch_size=32)
    optimizers: tuple = ("sgd", "momentum", "adagrad", "rmsprop", "adam", "adamw")
    learning_rates: tuple = rates(-4, 1, 3)  # 1e-4 .. 10, three per decade
    per_decade: int = 3  # grid points per decade: one grid cell is 1/per_decade decades wide
    default_rates: tuple = (
        ("sgd", 1e-2),
        ("momentum", 1e-2),
        ("adagrad", 1e-3),
        ("rmsprop", 1e-3),
        ("adam", 1e-3),
        ("adamw", 1e-3),
    )
    tune_seeds: tuple = (100, 101, 102)  # the rate is chosen on these ...
    seeds: tuple = (0, 1, 2, 3, 4)  # ... and judged on fresh ones
    train_sentences: int = 1000  # a subset: the whole synthetic set is solved by every rate that moves at all
    dev_sentences: int | None = None  # None: the whole dev split
    band: float = 0.005  # "as good as the best": within this much dev F1 (3-4 pilot seed sd, see above)
    collapse_fraction: float = 0.5  # a rate whose F1 is below this fraction of the optimizer's best failed
    # one comparison per part of the claim, named before the run and judged on its own 95% interval: SGD
    # tuned minus the reference (Adam) tuned; SGD tuned minus its default; Adam default minus tuned; the
    # adaptive optimizers' good band minus SGD's. The others (the other optimizers' defaults and tuning
    # gains) are Holm-corrected within the experiment.
    primary: tuple = (
        "sgd-reference:tuned_f1",
        "sgd:tuned-default",
        "out_of_the_box:adam",
        "band_width:adaptive-sgd",
    )


CONFIG = Config()
QUICK = dict(
    optimizers=("sgd", "adam"),
    learning_rates=(1e-3, 1e-1, 1e3),
    per_decade=1,
    tune_seeds=(100,),
    seeds=(0, 1),
    train_sentences=150,
    dev_sentences=100,
    epochs=2,
    hidden_dim=16,
    band=0.02,
)
# Sized to ~10 min on 2 shared cores (estimated, not run here): 1,000 sentences, 3 epochs, H 64 make a
# run ~2-4 s (the old 3,000-sentence, H 128 runs took 11 s); SGD, Adagrad and Adam (the other three
# behave as these on the synthetic set) x 16 rates x 2 tuning seeds, then 5 seeds x 2 rates: 126 runs.
# band 0.02: CoNLL's seed noise on a small subset is several times the synthetic one (not measured
# for this size: the verdict says "not resolved" where the intervals cannot tell).
CONLL = dict(
    optimizers=("sgd", "adagrad", "adam"),
    tune_seeds=(100, 101),
    train_sentences=1000,
    epochs=3,
    batch_size=64,
    hidden_dim=64,
    band=0.02,
)
CONLL_QUICK = dict(QUICK, train_sentences=200)
