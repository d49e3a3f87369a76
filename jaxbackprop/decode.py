"""From per-token tag probabilities to tag sequences: argmax, or the best *valid* IOB2 sequence.

The window model scores each token on its own, so its per-token argmax can produce sequences
no IOB2 tagger would: ``O I-PER`` (an entity that never began) or ``B-ORG I-LOC``. Viterbi
decoding picks, per sentence, the sequence that maximises the summed log-probabilities among
the sequences that obey IOB2 (an ``I-X`` only directly after ``B-X`` or ``I-X``). Nothing is
learned: the transition scores are 0 (allowed) or -inf (forbidden), so this is not a CRF; it
only stops the decoder from emitting spans the model's own probabilities do not support.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

DECODERS = ("viterbi", "argmax")


def iob2_constraints(tags) -> tuple[np.ndarray, np.ndarray]:
    """``(start, transitions)`` in log space: 0 where allowed, -inf where IOB2 forbids it.

    ``start[j]``: may a sentence begin with tag j (not with an I- tag);
    ``transitions[i, j]``: may tag j follow tag i (I-X only after B-X or I-X).

    >>> start, trans = iob2_constraints(["O", "B-PER", "I-PER"])
    >>> start.tolist(), trans[0].tolist(), trans[1].tolist()
    ([0.0, 0.0, -inf], [0.0, 0.0, -inf], [0.0, 0.0, 0.0])
    """
    tags = list(tags)
    inside = [t[2:] if t.startswith("I-") else None for t in tags]
    start = np.array([-np.inf if kind else 0.0 for kind in inside])
    transitions = np.zeros((len(tags), len(tags)))
    for j, kind in enumerate(inside):
        if kind is not None:
            for i, prev in enumerate(tags):
                if prev not in (f"B-{kind}", f"I-{kind}"):
                    transitions[i, j] = -np.inf
    return start, transitions


@jax.jit
def viterbi(log_probs, lengths, start, transitions):
    """Best tag path per sentence: argmax over paths y of sum_t log_probs[t, y_t] + start[y_0]
    + sum_t transitions[y_{t-1}, y_t].

    Args:
      log_probs: (S, L, C) per-token log-probabilities, sentences padded to length L.
      lengths: (S,) true lengths; positions at or past a sentence's length are ignored.
      start: (C,) scores of the first tag; transitions: (C, C) scores of tag pairs.

    Returns:
      (S, L) int32 tag ids (positions past a sentence's length are filler).
    """
    S, L, C = log_probs.shape
    stay = jnp.broadcast_to(jnp.arange(C, dtype=jnp.int32), (S, C))

    def forward(score, t):
        candidates = score[:, :, None] + transitions[None]  # (S, previous, next)
        best_prev = jnp.argmax(candidates, axis=1).astype(jnp.int32)
        active = (t < lengths)[:, None]
        # past the end a sentence keeps its score, and its back-pointer points to itself
        score = jnp.where(active, jnp.max(candidates, axis=1) + log_probs[:, t], score)
        return score, jnp.where(active, best_prev, stay)

    score, back = jax.lax.scan(forward, start[None] + log_probs[:, 0], jnp.arange(1, L))  # back: (L-1, S, C)
    last = jnp.argmax(score, axis=-1).astype(jnp.int32)

    def backward(tag, pointers):
        previous = jnp.take_along_axis(pointers, tag[:, None], axis=1)[:, 0]
        return previous, previous

    _, earlier = jax.lax.scan(backward, last, back, reverse=True)  # earlier[t]: tag at t
    return jnp.concatenate([earlier, last[None]], axis=0).T


def _bucket(n: int, multiple: int) -> int:
    """Round up so that differently sized inputs share a few compiled shapes."""
    return max(multiple, -(-n // multiple) * multiple)


def decode(log_probs, sentence_lengths, tags, method: str = "viterbi") -> np.ndarray:
    """Tag ids for a flat run of tokens, sentence after sentence (as ``data.Dataset`` lays them out).

    Args:
      log_probs: (N, C) per-token log-probabilities (or logits, for ``argmax``).
      sentence_lengths: lengths summing to N.
      tags: the C tag names (their IOB2 prefixes define the constraints).
      method: ``"viterbi"`` (best valid IOB2 sequence) or ``"argmax"`` (best tag per token).
    """
    if method not in DECODERS:
        raise ValueError(f"decode method must be one of {DECODERS}, got {method!r}")
    log_probs = np.asarray(log_probs)
    lengths = np.asarray(sentence_lengths, dtype=np.int64)
    if lengths.sum() != len(log_probs):
        raise ValueError(f"sentence lengths sum to {lengths.sum()}, but there are {len(log_probs)} tokens")
    if method == "argmax" or len(log_probs) == 0:
        return np.argmax(log_probs, axis=-1) if len(log_probs) else np.zeros(0, np.int64)
    S, L = _bucket(len(lengths), 256), _bucket(int(lengths.max()), 16)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    positions = np.arange(L)
    inside = positions[None, :] < lengths[:, None]  # (n_sentences, L)
    padded = np.zeros((S, L, log_probs.shape[1]), np.float32)
    padded[: len(lengths)][inside] = log_probs[(offsets[:, None] + positions[None, :])[inside]]
    padded_lengths = np.zeros(S, np.int32)
    padded_lengths[: len(lengths)] = lengths
    start, transitions = iob2_constraints(tags)
    paths = viterbi(padded, padded_lengths, jnp.asarray(start, jnp.float32), jnp.asarray(transitions, jnp.float32))
    return np.asarray(paths)[: len(lengths)][inside]
