"""Evaluation of the crf head: a split as length buckets of padded sentences on the device, decoded in one program.

The crf head scores whole sentences, so a split goes to the device as padded sentences instead
of flat windows, in the length buckets training uses (:func:`jaxbackprop.buckets.length_buckets`),
so that short sentences are not padded to the split's longest. One jitted program
(:func:`predict_sentences`) computes every token's emissions, decodes each sentence with
:func:`jaxbackprop.crf.viterbi_decode` under the learned transitions plus the IOB2 constraints,
takes the per-token argmax of the emissions, and sums the sentences' negative log-likelihoods,
bucket by bucket (a Python loop at trace time); only flat tag ids and one scalar come back, as
:func:`jaxbackprop.evaluate.predict` returns them::

    sentence_eval_data(ds, model_cfg)                          -> SentenceEvalData (device arrays)
    predict_sentences(params, data, start, transitions, ...)   -> SentencePredictions(viterbi, argmax, loss_sum)

:func:`jaxbackprop.evaluate.evaluate` and :func:`~jaxbackprop.evaluate.predict_labels` use these
for a crf-head model and score the ids like the softmax head's.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxbackprop import buckets, crf, data, model
from jaxbackprop.batch_checks import check_ids

SENTENCE_CHUNK = 64  # sentences per forward pass: bounds the device memory of a large split


class SentenceEvalData(NamedTuple):
    """One split on the device as length buckets, bucket b holding Sp_b padded sentences of L_b tokens.

    Each field but ``token_slot`` is a tuple with one array per bucket (Sp_b a multiple of its chunk,
    ``min(chunk, sentences in b)``).

    Attributes:
      windows: int32 (Sp_b, L_b, n); features: int32 (Sp_b, L_b, n*k), or None when the model reads
      none; labels: int32 (Sp_b, L_b), or None for unlabelled text; mask: bool (Sp_b, L_b), true on
      each sentence's tokens; token_slot: int32 (N,) each token's position in the buckets' grids
      flattened and laid end to end, in the split's flat token order.
    """

    windows: tuple
    features: tuple | None
    labels: tuple | None
    mask: tuple
    token_slot: jax.Array


class SentencePredictions(NamedTuple):
    """What :func:`predict_sentences` brings back: (N,) int32 tag ids by each decoder, and the summed
    sentence NLL (0 without labels). The fields are those of :class:`jaxbackprop.evaluate.Predictions`."""

    viterbi: jax.Array
    argmax: jax.Array
    loss_sum: jax.Array


def sentence_eval_data(
    ds: data.Dataset, model_cfg: model.ModelConfig, chunk: int = SENTENCE_CHUNK, max_buckets: int = buckets.MAX_BUCKETS
):
    """Put what evaluation reads of ``ds`` on the default device once, as length buckets of padded sentences.

    The ids are checked against ``model_cfg`` here, eagerly: under jit an out-of-range id would be
    clamped without a word.

    Args:
      ds: a split (labelled or not) with at least one token.
      model_cfg: the sized crf-head model config; ``features`` are kept only when the model reads them.
      chunk: most sentences per forward pass (use the chunk of :func:`predict_sentences`).
      max_buckets: of :func:`jaxbackprop.buckets.length_buckets` (1: every sentence padded to the longest).
    """
    check_ids("windows", ds.windows, model_cfg.window, model_cfg.vocab_size)
    if model_cfg.uses_features:
        check_ids("features", ds.features, model_cfg.feature_width, model_cfg.feature_vocab_size)
    lengths = ds.sentence_lengths
    groups = buckets.bucket_sentences(lengths, buckets.length_buckets(lengths, max_buckets))
    groups = tuple(s for s in groups if len(s))
    rows = [buckets.sentence_rows(ds, sentence_multiple=min(chunk, len(s)), sentences=s) for s in groups]
    token_slot, offset = np.zeros(len(ds.windows), np.int32), 0
    for sentences, r in zip(groups, rows):  # a bucket's grid visits its sentences' tokens in their order
        token_slot[buckets.sentence_tokens(lengths, sentences)] = offset + np.flatnonzero(r["mask"])
        offset += r["mask"].size
    ev = SentenceEvalData(
        windows=tuple(r["windows"] for r in rows),
        features=tuple(r["features"] for r in rows) if model_cfg.uses_features else None,
        labels=tuple(r["labels"] for r in rows) if ds.labels is not None else None,
        mask=tuple(r["mask"] for r in rows),
        token_slot=token_slot,
    )
    return jax.device_put(ev)


def emissions_of(params, windows, features, model_cfg: model.ModelConfig, chunk: int = SENTENCE_CHUNK):
    """Emission scores (Sp, L, C) of every token, ``chunk`` sentences at a time (``lax.map``), no dropout.

    ``chunk`` is capped at Sp, which must be a multiple of the capped chunk.
    """
    Sp, L, n = windows.shape
    chunk = min(chunk, Sp)
    chunked = (
        windows.reshape(Sp // chunk, chunk, L, n),
        None if features is None else features.reshape(Sp // chunk, chunk, L, features.shape[2]),
    )
    out = jax.lax.map(lambda xs: model.sentence_emissions(params, xs[0], model_cfg, xs[1]), chunked)
    return out.reshape(Sp, L, out.shape[-1])


@functools.partial(jax.jit, static_argnames=("model_cfg", "chunk"))
def predict_sentences(
    params, ev: SentenceEvalData, start, transitions, model_cfg: model.ModelConfig, chunk: int = SENTENCE_CHUNK
):
    """Tag ids of every token of a split by both decoders, and the summed sentence NLL, in one device program.

    Args:
      params: a crf-head model's parameters (with its learned ``T``, ``start``, ``end``).
      ev: the split, from :func:`sentence_eval_data`.
      start: (C,) and transitions: (C, C), hard constraints added to the learned scores in log
        space (:func:`jaxbackprop.evaluate.iob2_scores`: 0 allowed, -inf forbidden).
      model_cfg: the sized crf-head config (static); chunk: sentences per forward pass (static).

    Returns:
      :class:`SentencePredictions`: ``viterbi`` (the best path under the learned scores and the
      constraints) and ``argmax`` (each token's largest emission), int32 (N,) in the split's flat
      token order, and ``loss_sum``, the summed -log P(gold tags) of the sentences.
    """
    if model_cfg.head not in model.SENTENCE_HEADS:
        raise ValueError(f"predict_sentences needs a sentence head such as 'crf', got {model_cfg.head!r}")
    T, first, last = params["T"], params["start"], params["end"]
    paths, argmax, loss_sum = [], [], 0.0
    for b, (windows, mask) in enumerate(zip(ev.windows, ev.mask)):  # each bucket at its own shapes
        e = emissions_of(params, windows, None if ev.features is None else ev.features[b], model_cfg, chunk)
        paths.append(crf.viterbi_decode(e, mask, T, first, last, (start, transitions)).reshape(-1))
        argmax.append(jnp.argmax(e, axis=-1).astype(jnp.int32).reshape(-1))
        if ev.labels is not None:
            loss_sum = loss_sum + jnp.sum(crf.sentence_nll(e, ev.labels[b], mask, T, first, last))
    loss_sum = jnp.asarray(loss_sum, e.dtype)
    flat = lambda grids: jnp.concatenate(grids)[ev.token_slot]  # noqa: E731
    return SentencePredictions(viterbi=flat(paths), argmax=flat(argmax), loss_sum=loss_sum)


def loss_count(ds: data.Dataset) -> int:
    """What the crf head's loss is a mean over: the split's non-empty sentences."""
    return int(np.count_nonzero(np.asarray(ds.sentence_lengths)))
