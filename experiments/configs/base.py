"""The training configuration every experiment starts from, pinned field by field.

Every field is written out, not left to ``TrainConfig``'s defaults: those are the best settings
found for CoNLL-2003 and may change, and an experiment's numbers must not change with them. An
experiment's config (``configs/eNN.py``) states only what it changes from ``BASE``.

The base is the plainest model of the lecture: window 5, 100 hidden units, Xavier start, plain
SGD at a constant rate, no regularisation of any kind, no per-word features, word vectors
fine-tuned, every word kept (min_count 1), and tags read off per token (argmax).
"""

from __future__ import annotations

import dataclasses

from jaxbackprop import train

BASE = train.configure(
    # the model
    window=5,
    hidden_dim=100,
    activation="relu",
    head="softmax",  # the per-word likelihood of the lecture's window model, not the sentence-level "crf"
    l2=0.0,
    dropout=0.0,
    input_dropout=None,  # None: as dropout
    feature_dim=0,  # no casing / suffix features
    embed_dim=50,
    # training
    init="xavier",
    word_dropout=0.0,
    suffix_len=0,
    suffix_min_count=5,
    optimizer="sgd",
    learning_rate=0.1,
    schedule="constant",
    decay_epochs=1,
    decay_rate=0.5,
    epochs=8,
    batch_size=64,
    patience=0,  # never stop early: every run trains every epoch
    seed=0,
    grad="manual",
    impl="pure",
    embeddings_mode="finetune",
    sparse=False,
    min_count=1,
    decode="argmax",
)


def override(config, **changes):
    """``config`` with ``changes``: its own fields replaced, any other name routed to its ``training``.

    >>> from configs import e06
    >>> override(e06.CONFIG, epochs=3, train_sentences=10).training.epochs
    3
    """
    own = {f.name for f in dataclasses.fields(config)}
    mine = {k: v for k, v in changes.items() if k in own}
    rest = {k: v for k, v in changes.items() if k not in own}
    if rest:
        if "training" not in own:
            raise ValueError(f"{type(config).__module__}: no fields {sorted(rest)}")
        mine["training"] = train.configure(mine.get("training", config.training), **rest)
    return dataclasses.replace(config, **mine)


def select(module, *, quick: bool = False, conll: bool = False):
    """The config an experiment runs: ``CONFIG``, then ``CONLL`` on real data, then ``QUICK``
    (or ``CONLL_QUICK`` on real data when the module has one)."""
    config = module.CONFIG
    if conll:
        config = override(config, **module.CONLL)
    if quick:
        quick_changes = getattr(module, "CONLL_QUICK", module.QUICK) if conll else module.QUICK
        config = override(config, **quick_changes)
    return config
