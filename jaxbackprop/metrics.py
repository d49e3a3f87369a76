"""Entity-level precision, recall and F1 by the CoNLL rules, and token accuracy.

An entity counts as found only if its span *and* its type both match exactly (a partial span
or a wrong type is a miss and a false alarm at once). Entities are read off the tags by
``seqeval``'s chunker in its default, conlleval-compatible mode, so an ``I-X`` after ``O`` or
after another type starts a new entity, as in the official ``conlleval`` script.
"""

from __future__ import annotations

import collections
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from seqeval.metrics.sequence_labeling import get_entities

from jaxbackprop.data import is_tag


def _check(true_seqs: Sequence[Sequence[str]], pred_seqs: Sequence[Sequence[str]]) -> None:
    if len(true_seqs) != len(pred_seqs):
        raise ValueError(f"{len(true_seqs)} true sentences but {len(pred_seqs)} predicted")
    legal = {}  # each distinct tag is matched once: the whole dev set has a handful of them
    for i, (t, p) in enumerate(zip(true_seqs, pred_seqs)):
        if len(t) != len(p):
            raise ValueError(f"sentence {i}: {len(t)} true tags but {len(p)} predicted")
        bad = [tag for tag in (*t, *p) if not (legal[tag] if tag in legal else legal.setdefault(tag, is_tag(tag)))]
        if bad:
            raise ValueError(f"sentence {i}: illegal tag {bad[0]!r} (expected O, B-X or I-X)")


def _spans(seqs: Sequence[Sequence[str]]) -> set[tuple[int, str, int, int]]:
    """{(sentence, type, first, last)} of every entity."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tags are already validated; seqeval warns on odd ones
        return {(i, kind, a, b) for i, seq in enumerate(seqs) for kind, a, b in get_entities(list(seq))}


def _prf(tp: int, n_pred: int, n_true: int) -> dict:
    # undefined ratios (nothing predicted, nothing to find) are 0, as in conlleval
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_true if n_true else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f}


def entity_scores(true_tag_seqs: Sequence[Sequence[str]], pred_tag_seqs: Sequence[Sequence[str]]) -> dict:
    """Micro-averaged entity precision/recall/F1 and the same per entity type.

    Returns:
      ``{"precision", "recall", "f1", "tp", "n_pred", "n_true",
      "per_type": {TYPE: {"precision", "recall", "f1", "support"}}}``; ``support`` is the number
      of true entities of that type. Types that occur only in predictions appear with support 0.

    >>> s = entity_scores([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "B-ORG"]])
    >>> s["precision"], s["recall"], s["f1"], s["per_type"]["PER"]["f1"]
    (0.5, 0.5, 0.5, 1.0)
    """
    _check(true_tag_seqs, pred_tag_seqs)
    return _scores(_spans(true_tag_seqs), _spans(pred_tag_seqs))


def entity_scores_of_each(true_tag_seqs: Sequence[Sequence[str]], preds: Mapping[str, Sequence[Sequence[str]]]) -> dict:
    """:func:`entity_scores` of several predictions of the same gold tags, ``{name: scores}``.

    The gold entities are read once (reading them is half the cost of a score on the dev set).

    >>> s = entity_scores_of_each([["B-PER", "O"]], {"a": [["B-PER", "O"]], "b": [["O", "O"]]})
    >>> s["a"]["f1"], s["b"]["f1"]
    (1.0, 0.0)
    """
    for pred in preds.values():
        _check(true_tag_seqs, pred)
    true = _spans(true_tag_seqs)
    return {name: _scores(true, _spans(pred)) for name, pred in preds.items()}


def entity_scores_by(
    true_tag_seqs: Sequence[Sequence[str]], pred_tag_seqs: Sequence[Sequence[str]], token_in: Sequence[Sequence[bool]]
) -> dict:
    """:func:`entity_scores` of two kinds of entity: those all of whose tokens are ``token_in``, and the rest.

    A gold entity and a predicted one are each of the kind their own tokens give, so ``"inside"``
    is scored on the inside entities alone -- precision over the predicted ones, recall over the
    gold ones -- and ``"outside"`` on the others (e.g. ``token_in``: the word has a pretrained
    vector, or was seen in training). ``"share_outside"`` is the fraction of gold entities outside.

    >>> s = entity_scores_by([["B-PER", "O", "B-LOC"]], [["B-PER", "O", "O"]], [[True, True, False]])
    >>> s["inside"]["f1"], s["outside"]["recall"], s["share_outside"]
    (1.0, 0.0, 0.5)
    """
    if [len(s) for s in token_in] != [len(s) for s in true_tag_seqs]:
        raise ValueError("token_in needs one flag per token of every sentence")
    token_kind = [[0 if flag else 1 for flag in s] for s in token_in]
    kinds = entity_scores_by_kind(true_tag_seqs, pred_tag_seqs, token_kind, ("inside", "outside"))
    return {"inside": kinds["inside"], "outside": kinds["outside"], "share_outside": kinds["share"]["outside"]}


def entity_scores_by_kind(
    true_tag_seqs: Sequence[Sequence[str]],
    pred_tag_seqs: Sequence[Sequence[str]],
    token_kind: Sequence[Sequence[int]],
    names: Sequence[str],
) -> dict:
    """:func:`entity_scores` of each kind of entity, an entity being of the highest kind among its tokens.

    ``token_kind`` gives each token an int in ``0 .. len(names) - 1``, ordered from best to worst
    covered (e.g. seen in training < unseen with a vector < no vector), so an entity counts where
    its least covered word puts it. Gold and predicted entities are each of the kind their own
    tokens give, as in :func:`entity_scores_by`. ``"share"`` is the fraction of gold entities of each kind.

    >>> s = entity_scores_by_kind([["B-PER", "I-PER", "B-LOC"]], [["B-PER", "I-PER", "O"]], [[0, 1, 2]], "abc")
    >>> s["a"]["n_true"], s["b"]["f1"], s["c"]["recall"], s["share"]["c"]
    (0, 1.0, 0.0, 0.5)
    """
    _check(true_tag_seqs, pred_tag_seqs)
    if [len(s) for s in token_kind] != [len(s) for s in true_tag_seqs]:
        raise ValueError("token_kind needs one kind per token of every sentence")
    kind = lambda span: max(token_kind[span[0]][span[2] : span[3] + 1])  # noqa: E731
    true, pred = _spans(true_tag_seqs), _spans(pred_tag_seqs)
    out = {
        name: _scores({s for s in true if kind(s) == k}, {s for s in pred if kind(s) == k})
        for k, name in enumerate(names)
    }
    out["share"] = {name: out[name]["n_true"] / len(true) if true else 0.0 for name in names}
    return out


def _scores(true: set, pred: set) -> dict:
    hit = true & pred
    count = lambda spans: collections.Counter(kind for _, kind, _, _ in spans)  # noqa: E731
    n_true, n_pred, n_hit = count(true), count(pred), count(hit)
    per_type = {k: {**_prf(n_hit[k], n_pred[k], n_true[k]), "support": n_true[k]} for k in sorted(n_true | n_pred)}
    counts = {"tp": len(hit), "n_pred": len(pred), "n_true": len(true)}
    return {**_prf(len(hit), len(pred), len(true)), **counts, "per_type": per_type}


def token_accuracy(true_tag_seqs: Sequence[Sequence[str]], pred_tag_seqs: Sequence[Sequence[str]]) -> float:
    """Fraction of tokens whose predicted tag equals the true one (O tokens included).

    >>> token_accuracy([["O", "B-PER"], ["O"]], [["O", "O"], ["O"]])
    0.6666666666666666
    """
    _check(true_tag_seqs, pred_tag_seqs)
    pairs = [(t, p) for ts, ps in zip(true_tag_seqs, pred_tag_seqs) for t, p in zip(ts, ps)]
    if not pairs:
        raise ValueError("token_accuracy needs at least one token")
    return sum(t == p for t, p in pairs) / len(pairs)


def split_by_lengths(flat: Sequence, lengths: Sequence[int]) -> list:
    """Cut a flat per-token sequence (list or array) into sentences: slices of the same kind.

    >>> split_by_lengths(["a", "b", "c"], [2, 1])
    [['a', 'b'], ['c']]
    """
    lengths = np.asarray(lengths, np.int64)
    if lengths.ndim != 1 or (lengths < 0).any() or int(lengths.sum()) != len(flat):
        raise ValueError(f"lengths must be >= 0 and sum to len(flat) = {len(flat)}, got sum {int(lengths.sum())}")
    ends = np.cumsum(lengths)
    return [flat[int(e - n) : int(e)] for e, n in zip(ends, lengths)]
