"""E06: a big model on a small training set overfits, and L2 regularisation holds the dev loss down.

How L2 enters (``model.loss``, ``model.l2_penalty`` and ``backprop``): every step's objective is the
batch's mean cross-entropy plus ``lambda/2 (||W||^2 + ||U||^2)``, and the gradients get
``+ lambda W`` and ``+ lambda U``; b, c, E and the feature table are not penalised. The curves
are the *cross-entropy alone* (no penalty) of the whole training subset and of dev after each
epoch, so every lambda is compared on the data fit. No dropout of any kind: it regularises too.

    python experiments/e06_overfitting_l2.py            # ~1 min: 30 sentences, H = 300, 30 epochs, 4 lambdas
    python experiments/e06_overfitting_l2.py --quick    # ~15 s
    python experiments/e06_overfitting_l2.py --conll path/to/conll2003 \\
        --embeddings path/to/glove.6B.50d.txt     # ~3.5 min: 1000 sentences, 20 epochs, 4 lambdas

Expected: at lambda = 0 the training cross-entropy falls towards 0 while the dev cross-entropy
bottoms out after a few epochs and then rises; lambda > 0 ends with a smaller ||W||, a lower final
dev loss and a smaller gap; the largest lambda has the highest training loss.
"""

from __future__ import annotations

import dataclasses

from configs.base import BASE
from jaxbackprop import train


@dataclasses.dataclass(frozen=True)
class Config:
    # big: W alone has H n d = 75,000 weights for ~300 training windows
    training: train.TrainConfig = train.configure(
        BASE, hidden_dim=300, optimizer="adam", learning_rate=1e-2, batch_size=32, epochs=30
    )
    lambdas: tuple = (0.0, 3e-4, 3e-3, 3e-2)  # L2 strengths, 0 first (the unregularised baseline)
    train_sentences: int = 30  # the first N training sentences: few examples for a big model
    # synthetic corpus only: its vectors put synonyms together, so even 30 sentences generalise;
    # without them E starts random
    synthetic_vectors: bool = False


CONFIG = Config()
QUICK = dict(train_sentences=20, lambdas=(0.0, 3e-2), hidden_dim=32, epochs=6)
CONLL = dict(train_sentences=1000, lambdas=(0.0, 1e-3, 1e-2, 1e-1), learning_rate=3e-4, batch_size=64, epochs=20)
CONLL_QUICK = dict(train_sentences=200, lambdas=(0.0, 1e-2), hidden_dim=64, learning_rate=1e-3, epochs=3)
