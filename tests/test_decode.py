"""IOB2-constrained Viterbi decoding: exact against brute-force enumeration of every tag sequence, and the
flat, on-device form against a plain dynamic-programming Viterbi in numpy."""

import itertools

import jax
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


# ----------------------------------------------------------------------------- flat tokens on the device


def viterbi_reference(log_probs, start, transitions) -> list[int]:
    """Best path of one sentence by dynamic programming in float64, one position after another.

    best[t, j] = lp[t, j] + max_i (best[t-1, i] + transitions[i, j]), best[0] = start + lp[0];
    the path is read back from the argmax of the last column.
    """
    lp = np.asarray(log_probs, np.float64)
    T, C = lp.shape
    best, back = start + lp[0], np.zeros((T, C), np.int64)
    for t in range(1, T):
        candidates = best[:, None] + transitions  # (previous, next)
        back[t] = np.argmax(candidates, axis=0)
        best = candidates[back[t], np.arange(C)] + lp[t]
    path = [int(np.argmax(best))]
    for t in range(T - 1, 0, -1):
        path.append(int(back[t, path[-1]]))
    return path[::-1]


def path_score(log_probs, path, start, transitions) -> float:
    """start[y_0] + sum_t lp[t, y_t] + sum_t transitions[y_{t-1}, y_t], in float64 (-inf: not valid IOB2)."""
    steps = sum(transitions[a, b] for a, b in zip(path, path[1:]))
    return float(start[path[0]] + sum(log_probs[t, j] for t, j in enumerate(path)) + steps)


@st.composite
def iob2_tag_sets(draw):
    """O and some B-/I- tags of 1-3 types, in any order (an I-X without its B-X is allowed, and unreachable)."""
    types = draw(st.lists(st.sampled_from(["PER", "LOC", "ORG", "MISC"]), min_size=1, max_size=3, unique=True))
    entity_tags = draw(st.lists(st.sampled_from([f"{p}-{t}" for t in types for p in "BI"]), min_size=1, unique=True))
    return tuple(draw(st.permutations(["O", *entity_tags])))


_viterbi_tokens = jax.jit(decode.viterbi_tokens)


@settings(max_examples=30, deadline=None)
@given(iob2_tag_sets(), st.lists(st.integers(0, 12), min_size=1, max_size=6), st.integers(0, 2**31 - 1))
def test_viterbi_tokens_equals_a_numpy_viterbi(tags, lengths, seed):
    rng = np.random.default_rng(seed)
    n, C = sum(lengths), len(tags)
    logits = rng.normal(0, 2, (n, C))  # continuous: two paths tie with probability 0
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    # filler rows past the tokens hold huge scores: any that leaked into a sentence would win its path
    n_rows = decode._bucket(n, 64)
    padded = np.concatenate([log_probs, np.full((n_rows - n, C), 50.0)]).astype(np.float32)
    start, transitions = decode.iob2_constraints(tags)
    layout = decode.sentence_layout(lengths, n_rows)
    ids = np.asarray(_viterbi_tokens(padded, *layout, np.float32(start), np.float32(transitions)))
    assert ids.shape == (n_rows,) and ids.dtype == np.int32
    offset = 0
    for length in lengths:
        lp, path = log_probs[offset : offset + length], ids[offset : offset + length].tolist()
        offset += length
        if length == 0:
            continue
        best = path_score(lp, viterbi_reference(lp, start, transitions), start, transitions)
        # the device adds float32 copies of the scores: each path's score is off by at most
        # (length + 1) eps32 / 2 * sum_t max|lp_t| (length roundings to float32, length additions), so
        # it may prefer a path within twice that of the best (where the two paths differ at all)
        tol = float32_tolerance(length + 1, float(np.sum(np.max(np.abs(lp), axis=1))), k=1, worst_case=True)
        assert abs(path_score(lp, path, start, transitions) - best) <= tol, (tags, lengths, path)


def test_sentence_layout_round_trips_and_skips_empty_sentences():
    lengths = [3, 0, 1, 0, 2]
    index, padded_lengths, slot = decode.sentence_layout(lengths, n_rows=8)
    assert padded_lengths.tolist()[:6] == [3, 0, 1, 0, 2, 0] and padded_lengths.sum() == 6
    grid = np.arange(index.size).reshape(index.shape)
    # every token's slot holds the token's own index, and the tokens fill their sentences in order
    assert index.reshape(-1)[slot[:6]].tolist() == list(range(6))
    assert grid.reshape(-1)[slot[:6]].tolist() == [0, 1, 2, 32, 64, 65]
    with pytest.raises(ValueError, match="at least the 6 tokens"):
        decode.sentence_layout(lengths, n_rows=5)
