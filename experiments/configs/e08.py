"""E08: plain SGD works but needs a carefully tuned learning rate; adaptive optimizers are robust.

One sweep (``jaxbackprop.sweep.run_sweep``): a literal table optimizer x learning rate, constant
schedule, the same model, data order and seed in every cell. Per optimizer: the best dev F1 over
the rates, how many rates (and decades) land within ``band`` of that optimizer's own best, the
diverged runs, and the F1 at the conventional default rate (Keras': SGD 0.01, adaptive 0.001).

    python experiments/e08_optimizers.py            # 1-3 min on 2 shared CPU cores (66 runs)
    python experiments/e08_optimizers.py --quick    # ~10 s
    python experiments/e08_optimizers.py --conll path/to/conll2003 \\
        --embeddings path/to/glove.6B.50d.txt   # 7 min (36 runs)

Expected (measured): every optimizer reaches a similar best F1 on the synthetic corpus; SGD's good
rates sit 2 decades above Adam's, and only SGD/momentum diverge at large rates; the good bands are
1-2 decades wide for every optimizer (adaptive not clearly wider); Adam, AdamW and RMSprop are
good at their default rate 1e-3, SGD at its 0.01 is not -> "partly supported".
"""

from __future__ import annotations

import dataclasses

from configs.base import BASE
from jaxbackprop import train


def rates(low_exp: int, high_exp: int, per_decade: int) -> tuple:
    """10^low .. 10^high with ``per_decade`` points per decade (rounded to 3 significant digits)."""
    return tuple(float(f"{10 ** (low_exp + i / per_decade):.3g}") for i in range((high_exp - low_exp) * per_decade + 1))


@dataclasses.dataclass(frozen=True)
class Config:
    # no regularisation: only the optimizer differs between cells; casing features on
    training: train.TrainConfig = train.configure(BASE, hidden_dim=64, feature_dim=16, epochs=4, batch_size=32)
    optimizers: tuple = ("sgd", "momentum", "adagrad", "rmsprop", "adam", "adamw")
    learning_rates: tuple = rates(-4, 1, 2)  # 1e-4 .. 10, half decades
    per_decade: int = 2  # grid points per decade: one grid cell is 1/per_decade decades wide
    default_rates: tuple = (
        ("sgd", 1e-2),
        ("momentum", 1e-2),
        ("adagrad", 1e-3),
        ("rmsprop", 1e-3),
        ("adam", 1e-3),
        ("adamw", 1e-3),
    )
    train_sentences: int = 1000  # a subset: the whole synthetic set is solved by every rate that moves at all
    dev_sentences: int | None = None  # None: the whole dev split
    band: float = 0.01  # "as good as the best": within this much dev F1 of the optimizer's own best
    loose_band: float = 0.05  # reported too, so the widths can be seen not to hinge on the band


CONFIG = Config()
QUICK = dict(
    optimizers=("sgd", "adam"),
    learning_rates=(1e-3, 1e-1, 1e3),
    per_decade=1,
    train_sentences=150,
    dev_sentences=100,
    epochs=2,
    hidden_dim=16,
    band=0.02,
)
# 36 runs must fit ~8 min on 2 shared cores: a 3,000-sentence subset, decades only
CONLL = dict(
    learning_rates=rates(-4, 1, 1),
    per_decade=1,
    train_sentences=3000,
    epochs=3,
    batch_size=64,
    hidden_dim=128,
    band=0.02,
)
