"""Whole sentences as padded rows, what the crf head trains and is evaluated on, in length buckets.

A batch of the window heads is a set of windows; a batch of the crf head is a set of whole
sentences, padded to one length L with a prefix ``mask``. Padding every sentence to the split's
longest wastes most slots (88% on CoNLL-2003), so sentences go to a few length buckets
(:func:`length_buckets`), each padded to its own longest sentence: one compiled shape per bucket.
"""

from __future__ import annotations

import numpy as np

from jaxbackprop import data

SENTENCE_LENGTH_MULTIPLE = 8  # a padded sentence's length L is its bucket's longest sentence rounded up to this
MAX_BUCKETS = 6  # length buckets of the crf head: on CoNLL-2003, 6 pad 24% of the slots (one bucket: 88%)


def length_buckets(lengths, max_buckets: int = MAX_BUCKETS, multiple: int = SENTENCE_LENGTH_MULTIPLE) -> tuple:
    """The padded lengths L_1 < ... < L_K (K <= ``max_buckets``) of the buckets that pad ``lengths`` the least.

    A sentence of n tokens goes to the first bucket with n <= L_b (:func:`bucket_sentences`) and is
    padded to L_b. The L_b are multiples of ``multiple``, chosen by dynamic programming over those
    multiples to minimise the padded token slots ``sum_b L_b * (sentences in b)``: they depend only
    on the lengths, every bucket holds a sentence, and the last is the longest sentence rounded up.

    >>> length_buckets([1, 2, 3, 9, 10, 30], max_buckets=2)
    (16, 32)
    >>> length_buckets([5, 5, 5], max_buckets=4)
    (8,)
    """
    lengths = np.sort(np.asarray(lengths, np.int64))
    top = max(multiple, -(-int(lengths.max(initial=0)) // multiple) * multiple)
    ends = range(multiple, top + 1, multiple)
    upto = [int(np.searchsorted(lengths, e, side="right")) for e in ends]  # sentences with n <= e
    # best[e] = (slots, bounds): the fewest padded slots that hold the sentences n <= e in buckets up to e
    best = {e: (u * e, (e,) if u else ()) for e, u in zip(ends, upto)}
    for _ in range(max_buckets - 1):  # one more bucket (p, e] after the best ones up to p
        best = {
            e: min([best[e]] + [(best[p][0] + (u - q) * e, best[p][1] + (e,)) for p, q in zip(ends, upto) if q < u])
            for e, u in zip(ends, upto)
        }
    return best[top][1] or (top,)


def bucket_sentences(lengths, bounds) -> tuple:
    """The sentences of each bucket of :func:`length_buckets`: int (S_b,) indices, in the split's order.

    >>> [s.tolist() for s in bucket_sentences([3, 12, 5, 9], (8, 16))]
    [[0, 2], [1, 3]]
    """
    bucket = np.searchsorted(np.asarray(bounds), np.asarray(lengths), side="left")  # the first L_b >= n
    return tuple(np.flatnonzero(bucket == b) for b in range(len(bounds)))


def sentence_tokens(lengths, sentences):
    """Flat token indices of ``sentences`` (in that order) of a split whose sentences have ``lengths``.

    >>> sentence_tokens([2, 1, 3], [2, 0]).tolist()
    [3, 4, 5, 0, 1]
    """
    lengths = np.asarray(lengths, np.int64)
    starts = np.cumsum(lengths) - lengths
    taken = lengths[sentences]
    first = np.repeat(starts[sentences] - (np.cumsum(taken) - taken), taken)
    return first + np.arange(int(taken.sum()))


def sentence_rows(
    ds: data.Dataset, length_multiple: int = SENTENCE_LENGTH_MULTIPLE, sentence_multiple: int = 1, sentences=None
):
    """A split's sentences as padded rows of L tokens, what the crf head trains and is evaluated on.

    L is the longest sentence taken, rounded up to ``length_multiple``, so the rows have one shape
    (one compiled program). Padding tokens are window id 0, feature id 0 and tag 0 with ``mask``
    false; ``sentence_multiple`` appends empty sentences (mask all false), which the crf loss
    leaves out.

    Args:
      ds: a split (labelled or not; without labels, ``"labels"`` is all 0).
      length_multiple, sentence_multiple: L and the row count are multiples of these.
      sentences: int indices of the sentences to take, in that order (a bucket of
        :func:`bucket_sentences`); None: all of them.

    Returns:
      ``{"windows": (S, L, n), "features": (S, L, n*k), "labels": (S, L), "mask": (S, L)}``:
      int32 arrays and a bool prefix mask.

    >>> ds = data.Dataset(np.arange(6, dtype=np.int32).reshape(3, 2), np.zeros((3, 2), np.int32),
    ...                   np.array([1, 2, 3], np.int32), np.array([2, 1], np.int32))
    >>> rows = sentence_rows(ds, length_multiple=4)
    >>> rows["windows"].shape, rows["labels"].tolist(), rows["mask"].sum(axis=1).tolist()
    ((2, 4, 2), [[1, 2, 0, 0], [3, 0, 0, 0]], [2, 1])
    >>> sentence_rows(ds, length_multiple=4, sentences=[1])["labels"].tolist()
    [[3, 0, 0, 0]]
    """
    lengths = np.asarray(ds.sentence_lengths, np.int64)
    tokens = slice(None) if sentences is None else sentence_tokens(lengths, sentences)
    lengths = lengths if sentences is None else lengths[sentences]
    S = max(sentence_multiple, -(-len(lengths) // sentence_multiple) * sentence_multiple)
    L = max(length_multiple, -(-int(lengths.max(initial=0)) // length_multiple) * length_multiple)
    mask = np.zeros((S, L), bool)
    mask[: len(lengths)] = np.arange(L)[None, :] < lengths[:, None]
    labels = np.zeros(len(ds.windows), np.int32) if ds.labels is None else ds.labels

    def grid(flat):  # row-major order of the mask visits the tokens in their flat order
        out = np.zeros((S, L, *flat.shape[1:]), np.int32)
        out[mask] = flat[tokens]
        return out

    return {"windows": grid(ds.windows), "features": grid(ds.features), "labels": grid(labels), "mask": mask}


def sentence_buckets(ds: data.Dataset, max_buckets: int = MAX_BUCKETS) -> tuple:
    """A split as length buckets of padded sentences: one :func:`sentence_rows` per bucket of
    :func:`length_buckets`, each padded to its own longest sentence (rounded up to 8)."""
    bounds = length_buckets(ds.sentence_lengths, max_buckets)
    return tuple(sentence_rows(ds, sentences=s) for s in bucket_sentences(ds.sentence_lengths, bounds))


def padding_waste(rows) -> float:
    """The share of padding among the token slots of padded sentences (one dict of rows, or buckets)."""
    buckets = rows if isinstance(rows, tuple) else (rows,)
    slots = sum(np.asarray(r["mask"]).size for r in buckets)
    return 1.0 - sum(int(np.count_nonzero(r["mask"])) for r in buckets) / max(slots, 1)
