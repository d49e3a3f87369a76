"""A linear-chain CRF over each sentence's tags: scores, the forward and backward recursions, decoding.

The window model gives every token t of a sentence an emission score per tag, ``e_t (C,)``. A CRF
scores a whole tag sequence y_1 .. y_n of a sentence of n tokens with learned transitions::

    score(y) = start[y_1] + sum_t e_t[y_t] + sum_{t>1} T[y_{t-1}, y_t] + end[y_n]
    P(y)     = exp(score(y)) / Z,        log Z = logsumexp over all C^n sequences of score(y)

The forward algorithm (:func:`forward_scores`) sums the C^n paths in O(n C^2); the backward
recursion (:func:`backward_scores`) is its gradient, which is why the marginals
(:func:`marginals`, :func:`pair_marginals`) are the gradient of log Z (docs/derivation.md, §9).
All recursions run in log space with ``jax.lax.scan``. Sentences are padded to a common length
L: ``mask`` (S, L) is true on a prefix of each row, and a row of all false (an empty sentence)
is allowed and contributes nothing. The hand-derived gradient of the loss is assembled in
:func:`jaxbackprop.backprop.crf_head_bwd`; :func:`check_sentence_batch` validates a batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxbackprop import decode
from jaxbackprop.batch_checks import _is_concrete, check_ids, check_sized

# ----------------------------------------------------------------------------- batches of sentences


def sentence_batch_keys(cfg) -> tuple:
    """Required keys of a batch of sentences (``"weights"`` (S,) is optional)."""
    return ("windows", "labels", "mask") + (("features",) if cfg.uses_features else ())


def check_sentence_batch(batch, cfg) -> None:
    """Raise ValueError naming the problem if a batch of padded sentences does not fit ``cfg``.

    Args:
      batch: int ``"windows"`` (S, L, n): one window per token; int ``"labels"`` (S, L): gold tags,
        checked only where ``mask`` is true (padding may hold anything); bool ``"mask"`` (S, L):
        true on a prefix of each row; int ``"features"`` (S, L, n*k) with features; optional
        float ``"weights"`` (S,).
      cfg: a :class:`jaxbackprop.model.ModelConfig` with ``head="crf"``.
    """
    check_sized(cfg)
    required = sentence_batch_keys(cfg)
    if not isinstance(batch, dict) or set(required) - set(batch) or set(batch) - set(required) - {"weights"}:
        got = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise ValueError(f"a batch of sentences for the crf head needs keys {list(required)} (+ 'weights'), got {got}")
    windows, labels, mask = batch["windows"], batch["labels"], batch["mask"]
    if windows.ndim != 3:
        raise ValueError(f"batch['windows'] must have shape (sentences, length, {cfg.window}), got {windows.shape}")
    S, L, n = windows.shape
    check_ids("batch['windows'] (sentence*length rows)", windows.reshape(S * L, n), cfg.window, cfg.vocab_size)
    if cfg.uses_features:
        features = batch["features"]
        if features.shape[:2] != (S, L):
            raise ValueError(f"batch['features'] must start with (S, L) = {(S, L)}, got {features.shape}")
        check_ids(
            "batch['features'] (sentence*length rows)",
            features.reshape(S * L, -1),
            cfg.feature_width,
            cfg.feature_vocab_size,
        )
    if mask.shape != (S, L) or mask.dtype != jnp.bool_:
        raise ValueError(f"batch['mask'] must be bool of shape {(S, L)}, got {mask.dtype} {mask.shape}")
    if labels.shape != (S, L) or not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"batch['labels'] must be integer tags of shape {(S, L)}, got {labels.dtype} {labels.shape}")
    if "weights" in batch and tuple(batch["weights"].shape) != (S,):
        raise ValueError(f"batch['weights'] must have shape ({S},), got {tuple(batch['weights'].shape)}")
    if _is_concrete(mask) and _is_concrete(labels):
        m, y = np.asarray(mask), np.asarray(labels)
        gaps = np.flatnonzero(np.any(m[:, 1:] & ~m[:, :-1], axis=1))
        if gaps.size:
            raise ValueError(f"batch['mask'][{gaps[0]}] is not a prefix: a sentence's tokens come first, then padding")
        bad = np.argwhere(m & ((y < 0) | (y >= cfg.num_classes)))
        if bad.size:
            s, t = bad[0]
            raise ValueError(f"batch['labels'][{s}, {t}] = {y[s, t]} is out of range [0, {cfg.num_classes})")


def sentence_lengths(mask):
    """Tokens per sentence, (S,) int32, from a (S, L) prefix mask."""
    return jnp.sum(mask, axis=1, dtype=jnp.int32)


def last_token(mask):
    """(S, L) one-hot of each sentence's last real token (all zero for an empty sentence)."""
    return jax.nn.one_hot(sentence_lengths(mask) - 1, mask.shape[1], dtype=jnp.bool_)


def sentence_weights(mask, weights=None, dtype=jnp.float32):
    """Normalised weights of the mean over sentences, (S,): empty sentences get 0, the rest sum to 1.

    Args:
      mask: (S, L) bool; weights: optional (S,) weights (None: a plain mean over non-empty sentences).

    >>> import jax.numpy as jnp
    >>> sentence_weights(jnp.array([[True, False], [False, False], [True, True]])).tolist()
    [0.5, 0.0, 0.5]
    """
    w = (sentence_lengths(mask) > 0).astype(dtype)
    if weights is not None:
        w = w * weights.astype(dtype)
    total = jnp.sum(w)
    return w / jnp.where(total > 0, total, 1)  # a batch of only empty sentences: all weights 0


# ----------------------------------------------------------------------------- scores of paths


def forward_step(alpha_prev, e_t, T):
    """alpha_t[j] = logsumexp_i (alpha_{t-1}[i] + T[i, j]) + e_t[j]: (S, C), (S, C), (C, C) -> (S, C)."""
    return jax.nn.logsumexp(alpha_prev[:, :, None] + T[None], axis=1) + e_t


def forward_scores(emissions, mask, T, start):
    """The forward algorithm: alpha[s, t, j] = log of the summed exp-scores of all prefixes y_1..y_t with y_t = j.

    A prefix's score counts start, the emissions e_1..e_t and the transitions between them (not end).

    Args:
      emissions: (S, L, C); mask: (S, L) bool prefix mask; T: (C, C); start: (C,).

    Returns:
      alpha (S, L, C). Past a sentence's end alpha stays at its last real token's value, so
      ``alpha[:, -1]`` is every sentence's final alpha (meaningless for an empty sentence).
    """
    alpha_1 = start[None] + emissions[:, 0]  # (S, C)

    def step(alpha_prev, inputs):
        e_t, m_t = inputs
        alpha = jnp.where(m_t[:, None], forward_step(alpha_prev, e_t, T), alpha_prev)  # padding: carry on
        return alpha, alpha

    _, rest = jax.lax.scan(step, alpha_1, (jnp.swapaxes(emissions[:, 1:], 0, 1), mask[:, 1:].T))  # (L-1, S, C)
    return jnp.swapaxes(jnp.concatenate([alpha_1[None], rest]), 0, 1)


def log_partition(alpha, end):
    """log Z per sentence, (S,): logsumexp_j (alpha_n[j] + end[j]) over the final alpha of :func:`forward_scores`."""
    return jax.nn.logsumexp(alpha[:, -1] + end[None], axis=1)


def backward_step(beta_next, e_next, T):
    """beta_t[i] = logsumexp_j (T[i, j] + e_{t+1}[j] + beta_{t+1}[j]): (S, C), (S, C), (C, C) -> (S, C)."""
    return jax.nn.logsumexp(T[None] + (e_next + beta_next)[:, None, :], axis=2)


def backward_scores(emissions, mask, T, end):
    """The backward recursion: beta[s, t, i] = log of the summed exp-scores of all continuations after y_t = i.

    A continuation's score counts the transitions from y_t on, the emissions e_{t+1}..e_n and end.

    Args:
      emissions: (S, L, C); mask: (S, L) bool prefix mask; T: (C, C); end: (C,).

    Returns:
      beta (S, L, C); ``beta[s, n-1] = end`` at the last real token, and also at the padding.
    """
    S, _, C = emissions.shape
    beta_L = jnp.broadcast_to(end[None], (S, C))

    def step(beta_next, inputs):
        e_next, m_next = inputs  # the token after t, and whether it is real
        # when t is its sentence's last token (or padding) only end follows
        beta = jnp.where(m_next[:, None], backward_step(beta_next, e_next, T), end[None])
        return beta, beta

    inputs = (jnp.swapaxes(emissions[:, 1:], 0, 1), mask[:, 1:].T)
    _, rest = jax.lax.scan(step, beta_L, inputs, reverse=True)  # rest[t] = beta_t, t = 0 .. L-2
    return jnp.swapaxes(jnp.concatenate([rest, beta_L[None]]), 0, 1)


def marginals(alpha, beta, log_z, mask):
    """P(y_t = j) = exp(alpha_t[j] + beta_t[j] - log Z), (S, L, C); 0 at padding."""
    return jnp.exp(alpha + beta - log_z[:, None, None]) * mask[:, :, None]


def pair_marginals(alpha, beta, emissions, mask, T, log_z):
    """P(y_{t-1} = i, y_t = j) for t = 2 .. L, (S, L-1, C, C); 0 where token t is padding.

    = exp(alpha_{t-1}[i] + T[i, j] + e_t[j] + beta_t[j] - log Z).
    """
    after = emissions[:, 1:] + beta[:, 1:]  # (S, L-1, C)
    scores = alpha[:, :-1, :, None] + T[None, None] + after[:, :, None, :] - log_z[:, None, None, None]
    return jnp.exp(scores) * mask[:, 1:, None, None]


def gold_score(emissions, tags, mask, T, start, end):
    """score(y) of the gold tags of each sentence, (S,); 0 for an empty sentence.

    Args:
      emissions: (S, L, C); tags: int (S, L), anything at padding; mask: (S, L) bool; T, start, end.
    """
    tags = jnp.where(mask, tags, 0)  # padding may hold any value; keep the gathers in range
    real = mask.astype(emissions.dtype)
    emitted = jnp.sum(jnp.take_along_axis(emissions, tags[:, :, None], axis=2)[:, :, 0] * real, axis=1)
    moved = jnp.sum(T[tags[:, :-1], tags[:, 1:]] * real[:, 1:], axis=1)
    nonempty = real[:, 0]
    last = jnp.sum(jnp.where(last_token(mask), tags, 0), axis=1)
    return emitted + moved + nonempty * (start[tags[:, 0]] + end[last])


def sentence_nll(emissions, tags, mask, T, start, end):
    """-log P(gold tags) = log Z - score(gold) per sentence, (S,); 0 for an empty sentence."""
    log_z = log_partition(forward_scores(emissions, mask, T, start), end)
    nll = log_z - gold_score(emissions, tags, mask, T, start, end)
    return jnp.where(sentence_lengths(mask) > 0, nll, 0.0)


# ----------------------------------------------------------------------------- decoding


def viterbi_decode(emissions, mask, T, start, end, constraints=None):
    """The highest-scoring tag path of each sentence under the learned scores (and optional hard constraints).

    Reuses :func:`jaxbackprop.decode.viterbi`, which knows start and transition scores: the end
    scores are added to the emission of each sentence's last real token.

    Args:
      emissions: (S, L, C); mask: (S, L) bool prefix mask; T: (C, C); start, end: (C,).
      constraints: optional ``(start, transitions)`` added in log space, e.g.
        :func:`jaxbackprop.decode.iob2_constraints` (0 allowed, -inf forbidden).

    Returns:
      (S, L) int32 tags; 0 at padding.
    """
    scores = jnp.where(last_token(mask)[:, :, None], emissions + end[None, None], emissions)
    start, T = jnp.asarray(start), jnp.asarray(T)
    if constraints is not None:  # in the scores' dtype: -inf stays -inf, float64 tables do not promote
        start = start + jnp.asarray(constraints[0], start.dtype)
        T = T + jnp.asarray(constraints[1], T.dtype)
    paths = decode.viterbi(scores, sentence_lengths(mask), start, T)
    return jnp.where(mask, paths, 0)
