"""E05: zero initialisation leaves the hidden units symmetric; small random or Xavier weights break
the symmetry, and Xavier trains well.

``init`` sets W and U (b and c start at 0; E holds the word vectors either way). Each variant of
the table trains from the same seed with the same data order and optimizer (SGD with momentum
0.9: Adam would rescale the tiny N(0, 0.01^2) start), and the symmetry is measured along the way
(``jaxbackprop.probes.symmetry_probe``): a hidden unit is its row of W, its bias b_i and its
column of U, and two units are the same when they agree to sqrt(eps32) ~ 3.5e-4 of their scale.
Dropout is 0 in the symmetry runs because dropout itself gives each unit its own mask; the
zeros + dropout variant shows whether that breaks the symmetry.

    python experiments/e05_initialisation.py            # ~2 min on 2 busy CPU cores
    python experiments/e05_initialisation.py --quick    # ~20 s (sigmoid only)
    python experiments/e05_initialisation.py --conll path/to/conll2003 \\
        --embeddings path/to/glove.6B.50d.txt          # ~8 min

Expected: zeros -> 1 distinct unit at every step, W of rank <= 1, dev F1 no better than a
one-unit network; with tanh (f(0) = 0) nothing but the output bias c ever moves. Normal and
Xavier -> H distinct units from step 0; Xavier learns fastest.
"""

from __future__ import annotations

import dataclasses

from configs.base import BASE
from jaxbackprop import train


@dataclasses.dataclass(frozen=True)
class Config:
    training: train.TrainConfig = train.configure(BASE, optimizer="momentum", learning_rate=0.05, epochs=6)
    activations: tuple = ("tanh", "sigmoid")  # tanh: f(0) = 0; sigmoid: f(0) = 1/2 (the symmetric units move)
    variants: tuple = (  # per activation, each a change of `training`
        {"init": "zeros"},
        {"init": "normal"},
        {"init": "xavier"},
        {"init": "zeros", "dropout": 0.3},  # does dropout break the symmetry?
        {"init": "xavier", "hidden_dim": 1},  # what zeros is compared with: a one-unit network
    )
    train_sentences: int | None = 500  # a subset (None: all): speed differences show before everything is learnt
    watch_steps: tuple = (0, 1, 2, 10, 100, 300)  # symmetry measured before these steps and every epoch
    probe_windows: int = 512  # the fixed training batch for the gradient rows dJ/dW_i
    activation_windows: int = 1024  # dev windows for the spread of h across units


CONFIG = Config()
QUICK = dict(
    activations=("sigmoid",),
    train_sentences=300,
    hidden_dim=16,
    learning_rate=0.2,
    epochs=3,
    watch_steps=(0, 1, 2, 10),
    probe_windows=128,
    activation_windows=256,
)
CONLL = dict(train_sentences=None, hidden_dim=300, epochs=4, batch_size=256, watch_steps=(0, 1, 2, 10, 100, 1000))
