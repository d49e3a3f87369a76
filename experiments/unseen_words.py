"""E09's word sets: which dev words are unseen in training or have a pretrained vector, and how far
fine-tuning moves the vectors of seen and unseen words."""

from __future__ import annotations

import numpy as np

from jaxbackprop.features import normalize_word


def word_sets(pretrained, subset, prepared, held_out=frozenset()) -> dict:
    """Which dev tokens are unseen in ``subset``, have a pretrained vector, are ``held_out``; the row ids
    of the seen and the unseen words that have a vector; and ``counts`` of all these."""
    seen = {normalize_word(t) for s in subset for t in s.tokens}
    with_vector = set(pretrained[0]) | {normalize_word(w) for w in pretrained[0]}
    dev_words = [normalize_word(t) for tokens in prepared.dev.tokens for t in tokens]
    unseen, has_vec = np.array([w not in seen for w in dev_words]), np.array([w in with_vector for w in dev_words])
    held, ids = np.array([w in held_out for w in dev_words]), prepared.vocab.index
    seen_ids = np.array(sorted(ids[w] for w in seen if w in with_vector and w in ids), int)
    unseen_ids = np.array(sorted({ids[w] for w, u, v in zip(dev_words, unseen, has_vec) if u and v and w in ids}), int)
    counts = {
        "train_sentences": len(subset),
        "train_tokens": len(prepared.train.windows),
        "vocab_size": len(prepared.vocab),
        "seen_words": len(seen),
        "seen_with_vector": len(seen_ids),
        "dev_tokens": len(dev_words),
        "unseen_tokens": int(unseen.sum()),
        "unseen_tokens_with_vector": int((unseen & has_vec).sum()),
        "held_out_tokens": int(held.sum()),
    }
    masks = {"unseen_mask": unseen, "vector_mask": has_vec, "held_mask": held}
    return {**masks, "seen_ids": seen_ids, "unseen_ids": unseen_ids, "counts": counts}


def movement(E0: np.ndarray, E1: np.ndarray, words: dict) -> dict:
    """How far the vectors moved, and how far each unseen word ends up from its nearest seen word."""
    moved, s, u = np.linalg.norm(E1 - E0, axis=1), words["seen_ids"], words["unseen_ids"]
    stat = lambda f, ids: float(f(moved[ids])) if len(ids) else None  # noqa: E731
    out = {
        "moved_seen_mean": stat(np.mean, s),
        "moved_seen_max": stat(np.max, s),
        "moved_unseen_mean": stat(np.mean, u),
    }
    out |= {"moved_unseen_max": stat(np.max, u), "pretrained_norm_mean": float(np.linalg.norm(E0[s], axis=1).mean())}
    if len(s) and len(u):  # nearest seen word of each unseen one in the pretrained space: |a-b|^2 = |a|^2 - 2ab + |b|^2
        d2 = (E0[u] ** 2).sum(1)[:, None] - 2 * E0[u] @ E0[s].T + (E0[s] ** 2).sum(1)[None, :]
        nn = s[np.argmin(d2, axis=1)]
        out["neighbour_before"] = float(np.linalg.norm(E0[u] - E0[nn], axis=1).mean())
        out["neighbour_after"] = float(np.linalg.norm(E1[u] - E1[nn], axis=1).mean())
    return out
