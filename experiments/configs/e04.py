"""E04: the choice of nonlinearity f -- sigmoid starves the first layer of gradient; ReLU-family units
train faster; (hard)tanh is fine; leaky ReLU / PReLU have no dead units.

Every activation trains at an equal budget: the same corpus, sizes, seed (hence the same initial
W, U and E), epochs and plain SGD at one constant rate (Adam would rescale each gradient and hide
the differences in gradient size). Gradients are measured on a fixed training batch, dead and
saturated units on dev windows, at initialisation and at the best dev epoch.

    python experiments/e04_nonlinearities.py            # ~1.5 min on 2 busy CPU cores
    python experiments/e04_nonlinearities.py --quick    # ~10 s (four of the six activations)
    python experiments/e04_nonlinearities.py --conll path/to/conll2003 \\
        --embeddings path/to/glove.6B.50d.txt          # ~8 min

Expected: sigmoid has the smallest first-layer gradient (mean f' about 0.25 at initialisation)
and the slowest learning curve; tanh and hard tanh train well; the ReLU family learns faster than
tanh on CoNLL-2003 but not on the small synthetic set (where tanh's f' ~ 1 near 0 helps); no ReLU
unit dies at this rate, and leaky ReLU / PReLU cannot (f' is their slope, not 0, for z <= 0).
"""

from __future__ import annotations

import dataclasses

from configs.base import BASE
from jaxbackprop import nonlinearities, train


@dataclasses.dataclass(frozen=True)
class Config:
    training: train.TrainConfig = BASE  # plain SGD at 0.1: the step is exactly lr * gradient, so its size shows
    activations: tuple = nonlinearities.ACTIVATIONS  # trained one after another, all else equal
    train_sentences: int | None = 1000  # a subset (None: all): the synthetic corpus is learnt in 2 epochs otherwise
    probe_windows: int = 512  # the fixed training batch the gradients are measured on
    dead_windows: int = 2048  # dev windows a unit must be off on to count as dead


CONFIG = Config()
# four of the six (each costs ~3 compiles); prelu is kept for its learnt slope
QUICK = dict(
    activations=("sigmoid", "tanh", "relu", "prelu"),
    train_sentences=300,
    hidden_dim=16,
    epochs=3,
    probe_windows=128,
    dead_windows=256,
)
# the whole CoNLL-2003 training set, a larger model and batch (fewer, cheaper steps)
CONLL = dict(train_sentences=None, hidden_dim=300, epochs=6, batch_size=256)
