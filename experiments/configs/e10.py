"""E10: an SGD step changes only the embedding rows of the words in the batch, and a repeated word
gets both of its updates.

    python experiments/e10_sparse_updates.py            # ~25 s (--quick's size plus V = 20,000)
    python experiments/e10_sparse_updates.py --quick    # a few seconds

Expected: changed rows == distinct ids in the batch, every other row bit-identical; the repeated
word's change equals, to round-off, the sum of the changes of two distinct ids holding the same
vector; the rows-only step of ``jaxbackprop.sparse`` gives the dense SGD result to float32
round-off (another code path sums in another order: a tolerance derived from float32's epsilon,
not bit-identity) and leaves every row outside the batch bit-identical.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Config:
    vocab_sizes: tuple = (1000, 20000)  # V; the batch names at most B n of these rows
    embed_dim: int = 16
    window: int = 5
    hidden_dim: int = 32
    batch_size: int = 32
    learning_rate: float = 0.1  # plain SGD: params - lr * grads
    # several steps of the stateful rows-only rules against optax's dense ones (float64), each step a new batch
    steps: int = 6
    rule_rates: tuple = (("adagrad", 0.1), ("adam", 1e-2))
    dense_vocab: int = 24  # a vocabulary every batch covers whole: lazy Adam must then equal dense Adam
    seed: int = 0


CONFIG = Config()
QUICK = dict(vocab_sizes=(1000,), steps=3)
