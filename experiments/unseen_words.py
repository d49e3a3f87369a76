"""E09's word sets: which words a training subset saw and which have a pretrained vector, the
per-token "seen in training" flags entity F1 is split by, and how far each kind of row of E moved."""

from __future__ import annotations

import numpy as np

from jaxbackprop.features import normalize_word
from jaxbackprop.vocab import RESERVED


def thin_vectors(pretrained, every: int, keep=frozenset()):
    """``pretrained`` (words, vectors) without every ``every``-th word (by sorted normalised form), except
    ``keep``: a vector file that, like GloVe for CoNLL-2003, lacks part of the training vocabulary.
    ``every`` 0 keeps them all.

    >>> words, vectors = thin_vectors((["a", "b", "c", "d"], np.eye(4)), 2, keep={"c"})
    >>> words, vectors.shape
    (['b', 'c'], (2, 4))
    """
    words, vectors = pretrained
    if not every:
        return pretrained
    dropped = set(sorted({normalize_word(w) for w in words} - set(keep))[::every])
    rows = [i for i, w in enumerate(words) if normalize_word(w) not in dropped]
    return [words[i] for i in rows], vectors[rows]


def seen_flags(sentences, subset) -> list:
    """Per sentence, per token: does its normalised word occur in the training ``subset``?"""
    seen = {normalize_word(t) for s in subset for t in s.tokens}
    return [[normalize_word(t) in seen for t in s.tokens] for s in sentences]


def row_kinds(prepared) -> dict:
    """bool (V,) masks of E's rows: ``seen`` (a word of the training windows), ``pretrained`` (seeded from a
    vector), and their overlaps ``seen_pretrained``, ``seen_random`` and ``unseen_pretrained``."""
    seen = np.zeros(len(prepared.vocab), bool)
    seen[np.unique(prepared.train.windows)] = True
    seen[: len(RESERVED)] = False  # <pad>, <s>, </s> fill windows; <unk> is no word either
    pre = prepared.pretrained_rows
    return {
        "seen": seen,
        "pretrained": pre,
        "seen_pretrained": seen & pre,
        "seen_random": seen & ~pre,
        "unseen_pretrained": ~seen & pre,
    }


def counts(prepared, subset, flags: dict) -> dict:
    """The sizes a result reports about one training subset: its words, with and without a vector, and
    the dev/test tokens it never saw."""
    kinds = row_kinds(prepared)
    out = {"train_sentences": len(subset), "train_tokens": len(prepared.train.windows)}
    out |= {"vocab_size": len(prepared.vocab), "seen_words": int(kinds["seen"].sum())}
    out |= {
        "seen_with_vector": int(kinds["seen_pretrained"].sum()),
        "seen_without_vector": int(kinds["seen_random"].sum()),
    }
    for split, f in flags.items():
        tokens = [x for sentence in f for x in sentence]
        out |= {f"{split}_tokens": len(tokens), f"{split}_unseen_tokens": tokens.count(False)}
    return out


def movement(E0: np.ndarray, E1: np.ndarray, kinds: dict) -> dict:
    """Mean (and max) ||E1 - E0|| over each kind of row of :func:`row_kinds`; None where there is none."""
    moved = np.linalg.norm(np.asarray(E1, np.float64) - np.asarray(E0, np.float64), axis=1)
    out = {}
    for kind in ("seen_pretrained", "seen_random", "unseen_pretrained"):
        rows = moved[kinds[kind]]
        out[f"moved_{kind}_mean"] = float(rows.mean()) if len(rows) else None
        out[f"moved_{kind}_max"] = float(rows.max()) if len(rows) else None
    return out
