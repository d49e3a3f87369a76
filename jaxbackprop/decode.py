"""From per-token tag probabilities to tag sequences: argmax, or the best *valid* IOB2 sequence.

The window model scores each token on its own, so its per-token argmax can produce sequences
no IOB2 tagger would: ``O I-PER`` (an entity that never began) or ``B-ORG I-LOC``. Viterbi
decoding picks, per sentence, the sequence that maximises the summed log-probabilities among
the sequences that obey IOB2 (an ``I-X`` only directly after ``B-X`` or ``I-X``). Nothing is
learned: the transition scores are 0 (allowed) or -inf (forbidden), so this is not a CRF; it
only stops the decoder from emitting spans the model's own probabilities do not support.

:func:`viterbi` decodes padded (S, L) sentences; :func:`sentence_layout` and :func:`viterbi_tokens`
carry a flat run of tokens (as a ``data.Dataset`` holds them) there and back, on the device.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxbackprop.settings import DECODERS


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


def sentence_layout(sentence_lengths, n_rows: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each token of a flat run of sentences sits in a padded (S, L) grid of sentences, and back.

    S and L are rounded up (to multiples of 256 and 16), so splits of similar size share one
    compiled Viterbi. Grid positions past a sentence's end point at token 0: Viterbi ignores them.

    Args:
      sentence_lengths: (S0,) tokens per sentence (0 allowed), summing to N.
      n_rows: rows of the (possibly padded) flat token array, >= N (None: N). Rows past N are
        filler and point at grid slot 0.

    Returns:
      ``(token_index, lengths, token_slot)``: int32 (S, L) the flat token at each grid position;
      int32 (S,) the lengths, 0 for the filler sentences; int32 (n_rows,) each token's grid slot
      ``s * L + t``, so ``grid.reshape(S * L)[token_slot]`` lays a grid back out flat.

    >>> index, lengths, slot = sentence_layout([2, 0, 1])
    >>> index.shape, lengths[:4].tolist(), index[0, :3].tolist(), index[2, :2].tolist(), slot.tolist()
    ((256, 16), [2, 0, 1, 0], [0, 1, 0], [2, 0], [0, 1, 32])
    """
    lengths = np.asarray(sentence_lengths, dtype=np.int64)
    n = int(lengths.sum())
    n_rows = n if n_rows is None else n_rows
    if n_rows < n:
        raise ValueError(f"n_rows must be at least the {n} tokens the sentence lengths sum to, got {n_rows}")
    S, L = _bucket(len(lengths), 256), _bucket(int(lengths.max(initial=0)), 16)
    offsets = np.cumsum(lengths) - lengths
    positions = np.arange(L)
    inside = positions[None, :] < lengths[:, None]  # (S0, L)
    token_index = np.zeros((S, L), np.int32)
    token_index[: len(lengths)][inside] = (offsets[:, None] + positions[None, :])[inside]
    padded_lengths = np.zeros(S, np.int32)
    padded_lengths[: len(lengths)] = lengths
    token_slot = np.zeros(n_rows, np.int32)
    # row-major order of the grid visits the tokens in their flat order
    token_slot[:n] = np.flatnonzero(np.pad(inside, ((0, S - len(lengths)), (0, 0))))
    return token_index, padded_lengths, token_slot


def viterbi_tokens(log_probs, token_index, lengths, token_slot, start, transitions):
    """:func:`viterbi` of a flat run of tokens: gather them into sentences, decode, lay the tags back out flat.

    Pure and jittable; with the layout of :func:`sentence_layout` it decodes a whole split on the
    device, and under ``jax.vmap`` the log-probabilities (and the scores) may carry a leading axis.

    Args:
      log_probs: (Np, C) per-token log-probabilities, the tokens first and any filler rows after.
      token_index, lengths, token_slot: ``sentence_layout(sentence_lengths, n_rows=Np)``.
      start: (C,) scores of the first tag; transitions: (C, C) scores of tag pairs
        (:func:`iob2_constraints`, or learned ones).

    Returns:
      (Np,) int32 tag ids; the filler rows past the tokens hold filler.
    """
    paths = viterbi(log_probs[token_index], lengths, start, transitions)  # (S, L)
    return paths.reshape(-1)[token_slot]


_viterbi_tokens = jax.jit(viterbi_tokens)


def decode(log_probs, sentence_lengths, tags, method: str = "viterbi") -> np.ndarray:
    """Tag ids for a flat run of tokens, sentence after sentence (as ``data.Dataset`` lays them out).

    Args:
      log_probs: (N, C) per-token log-probabilities (or logits, for ``argmax``).
      sentence_lengths: lengths summing to N.
      tags: the C tag names (their IOB2 prefixes define the constraints).
      method: ``"viterbi"`` (best valid IOB2 sequence) or ``"argmax"`` (best tag per token).
    """
    check_decoder(method)
    log_probs = np.asarray(log_probs)
    lengths = np.asarray(sentence_lengths, dtype=np.int64)
    if lengths.sum() != len(log_probs):
        raise ValueError(f"sentence lengths sum to {lengths.sum()}, but there are {len(log_probs)} tokens")
    if method == "argmax" or len(log_probs) == 0:
        return np.argmax(log_probs, axis=-1) if len(log_probs) else np.zeros(0, np.int64)
    # the flat tokens are padded too, so that only the bucketed shapes compile
    n_rows = _bucket(len(log_probs), 1024)
    padded = np.zeros((n_rows, log_probs.shape[1]), np.float32)
    padded[: len(log_probs)] = log_probs
    start, transitions = (jnp.asarray(a, jnp.float32) for a in iob2_constraints(tags))
    ids = _viterbi_tokens(padded, *sentence_layout(lengths, n_rows), start, transitions)
    return np.asarray(ids)[: len(log_probs)]


def check_decoder(method: str) -> str:
    """``method``, if it is one of :data:`DECODERS`; else a ValueError naming them."""
    if method not in DECODERS:
        raise ValueError(f"decode method must be one of {DECODERS}, got {method!r}")
    return method
