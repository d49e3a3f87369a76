"""IOB2-constrained Viterbi decoding: exact against brute-force enumeration of every tag sequence."""

import itertools

import numpy as np
import pytest
from helpers import float32_tolerance
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxbackprop import decode

TAGS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")


def may_follow(previous: str, tag: str) -> bool:
    return not tag.startswith("I-") or previous in ("B-" + tag[2:], tag)


def is_valid_iob2(seq) -> bool:
    return all(may_follow(prev, tag) for prev, tag in zip(["O", *seq], seq))


def best_valid_score(log_probs) -> float:
    """max over every valid IOB2 sequence of its summed log-probability (enumerates C^L sequences)."""
    best = -np.inf
    for seq in itertools.product(range(len(TAGS)), repeat=len(log_probs)):
        if is_valid_iob2([TAGS[j] for j in seq]):
            best = max(best, sum(log_probs[t, j] for t, j in enumerate(seq)))
    return best


def test_constraints_forbid_exactly_the_invalid_iob2_pairs():
    start, trans = decode.iob2_constraints(TAGS)
    assert start.tolist() == [0, 0, -np.inf, 0, -np.inf]
    for i, prev in enumerate(TAGS):
        for j, tag in enumerate(TAGS):
            assert (trans[i, j] == 0) == may_follow(prev, tag), (prev, tag)


def test_viterbi_repairs_an_entity_that_never_began():
    # argmax reads "O I-PER"; the best valid sequence starts the entity one token earlier
    probs = np.array([[0.50, 0.45, 0.0, 0.05, 0.0], [0.1, 0.1, 0.7, 0.05, 0.05]]) + 1e-9
    log_probs = np.log(probs)
    assert [TAGS[j] for j in decode.decode(log_probs, [2], TAGS, "argmax")] == ["O", "I-PER"]
    # B-PER I-PER: log .45 + log .7 = -1.155 beats O B-PER: log .5 + log .1 = -2.996 and O O
    assert [TAGS[j] for j in decode.decode(log_probs, [2], TAGS, "viterbi")] == ["B-PER", "I-PER"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=5), st.integers(0, 2**31 - 1))
def test_viterbi_finds_the_best_valid_sequence_of_every_sentence(lengths, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (sum(lengths), len(TAGS)))
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    pred = decode.decode(log_probs, lengths, TAGS, "viterbi")
    start = 0
    for n in lengths:
        lp, path = log_probs[start : start + n], pred[start : start + n]
        assert is_valid_iob2([TAGS[j] for j in path])
        # Viterbi adds float32 scores: a path's score is off by at most (n + 1) eps32 / 2 * sum_t max|lp_t|
        # (n conversions to float32, n additions), so a path within twice that of the best may win a tie
        tol = float32_tolerance(n + 1, float(np.sum(np.max(np.abs(lp), axis=1))), k=1, worst_case=True)
        score, best = sum(lp[t, j] for t, j in enumerate(path)), best_valid_score(lp)
        assert best - tol <= score <= best, (score, best, tol)
        start += n


def test_viterbi_keeps_a_valid_argmax_and_skips_empty_sentences():
    rng = np.random.default_rng(0)
    # one-hot-ish scores of a valid sequence: B-LOC I-LOC O B-PER | (empty) | I-PER is invalid at a start
    valid = [3, 4, 0, 1]
    log_probs = np.log(np.full((5, len(TAGS)), 0.02) + 0.9 * np.eye(len(TAGS))[valid + [2]]) + rng.normal(
        0, 1e-3, (5, len(TAGS))
    )
    pred = decode.decode(log_probs, [4, 0, 1], TAGS, "viterbi")
    assert pred[:4].tolist() == valid and TAGS[pred[4]] != "I-PER"


def test_decode_rejects_bad_input():
    with pytest.raises(ValueError, match="decode method must be one of"):
        decode.decode(np.zeros((2, 5)), [2], TAGS, "beam")
    with pytest.raises(ValueError, match="sum to 3, but there are 2 tokens"):
        decode.decode(np.zeros((2, 5)), [1, 2], TAGS)
