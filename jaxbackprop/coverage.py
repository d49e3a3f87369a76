"""Which words a run saw in training and which had a pretrained vector: recorded once, split F1 by it.

The lecture's point about pretrained vectors: a word training never showed keeps its pretrained
vector (no gradient ever reaches its row of E), so "television" is still near "TV" after training on
"TV" alone, and the classifier reads it as it would read its neighbours. The vocabulary holds every
pretrained word (:func:`jaxbackprop.vocab.build_vocab`), so at predict time such a word has its own
row, untouched; only a word with neither a training occurrence nor a vector becomes ``<unk>``.

A run records, per vocabulary id, whether training showed the word and whether it has a vector
(:func:`word_origins`, in config.json as id ranges); ``evaluate`` then scores entities by the least
covered of their words (:func:`entity_scores_by_origin`)::

    seen        every word occurred in training
    vector      some word did not, but each such word has a pretrained vector
    no_vector   some word has neither (it is <unk> to the model)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxbackprop import metrics
from jaxbackprop.vocab import RESERVED, Vocab

KINDS = ("seen", "vector", "no_vector")
KIND_TEXT = {
    "seen": "all words seen in training",
    "vector": "a word unseen, all with a vector",
    "no_vector": "a word without a vector (<unk>)",
}


def id_ranges(flags) -> str:
    """The runs of True in a bool array as ``"start:stop ..."`` (how config.json keeps a set of ids: one short
    line, not one JSON line per number).

    >>> id_ranges(np.array([0, 1, 1, 0, 1], bool))
    '1:3 4:5'
    """
    padded = np.concatenate([[False], np.asarray(flags, bool), [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1]).reshape(-1, 2)
    return " ".join(f"{start}:{stop}" for start, stop in edges.tolist())


def from_ranges(ranges: str, size: int) -> np.ndarray:
    """The bool (size,) array of :func:`id_ranges`' text.

    >>> from_ranges("1:3 4:5", 5).astype(int).tolist()
    [0, 1, 1, 0, 1]
    """
    flags = np.zeros(size, bool)
    for span in ranges.split():
        start, stop = map(int, span.split(":"))
        flags[start:stop] = True
    return flags


def word_origins(vocab: Vocab, train_windows, pretrained_rows=None) -> dict:
    """What a run records about its vocabulary: the ids training showed and the ids seeded from a vector.

    Args:
      vocab: the run's vocabulary (V words).
      train_windows: int (N, n) word ids of the training windows (every training token is a centre).
      pretrained_rows: bool (V,) rows of E seeded from a pretrained vector, or None (no vectors).

    Returns:
      ``{"vocab_size": V, "seen_in_training": ranges, "with_vector": ranges}`` (:func:`id_ranges`);
      the reserved ids (padding, sentence edges, ``<unk>``) are in neither.
    """
    seen = np.zeros(len(vocab), bool)
    seen[np.unique(np.asarray(train_windows))] = True
    seen[: len(RESERVED)] = False
    vector = np.zeros(len(vocab), bool) if pretrained_rows is None else np.asarray(pretrained_rows, bool)
    return {"vocab_size": len(vocab), "seen_in_training": id_ranges(seen), "with_vector": id_ranges(vector)}


def token_kinds(sentences: Sequence[Sequence[str]], vocab: Vocab, origins: dict) -> list[np.ndarray]:
    """Each token's index into :data:`KINDS`: 0 seen in training, 1 unseen with a vector, 2 neither.

    Raises:
      ValueError: ``origins`` was recorded for a vocabulary of another size.
    """
    if origins["vocab_size"] != len(vocab):
        raise ValueError(f"word origins recorded for {origins['vocab_size']} words, the vocabulary has {len(vocab)}")
    seen = from_ranges(origins["seen_in_training"], len(vocab))
    vector = from_ranges(origins["with_vector"], len(vocab))
    kinds = []
    for tokens in sentences:
        ids = vocab.ids(tokens)
        kinds.append(np.where(seen[ids], 0, np.where(vector[ids], 1, 2)))
    return kinds


def entity_scores_by_origin(true_tag_seqs, pred_tag_seqs, sentences, vocab: Vocab, origins: dict) -> dict:
    """Entity scores of each of :data:`KINDS` (:func:`jaxbackprop.metrics.entity_scores_by_kind`).

    Returns:
      ``{kind: {"precision", "recall", "f1", "tp", "n_pred", "n_true", "per_type"}, "share": {kind: fraction
      of the gold entities}}``.
    """
    kinds = token_kinds(sentences, vocab, origins)
    return metrics.entity_scores_by_kind(true_tag_seqs, pred_tag_seqs, [k.tolist() for k in kinds], KINDS)


def table(scores: dict) -> str:
    """The split as a few aligned lines, one per kind: gold entities, their share, P, R and F1."""
    lines = [f"  {'entities with':<34} {'gold':>6} {'share':>6} {'P':>7} {'R':>7} {'F1':>7}"]
    for kind in KINDS:
        s = scores[kind]
        lines.append(
            f"  {KIND_TEXT[kind]:<34} {s['n_true']:>6} {scores['share'][kind]:>6.1%} "
            f"{s['precision']:>7.4f} {s['recall']:>7.4f} {s['f1']:>7.4f}"
        )
    return "\n".join(lines)
