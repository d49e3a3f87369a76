"""Evaluation of the crf head: a split as padded sentences on the device, decoded in one program.

The crf head scores whole sentences, so a split goes to the device as padded sentences
(:func:`jaxbackprop.pipeline.sentence_rows`) instead of flat windows. One jitted program
(:func:`predict_sentences`) computes every token's emissions, decodes each sentence with
:func:`jaxbackprop.crf.viterbi_decode` under the learned transitions plus the IOB2 constraints,
takes the per-token argmax of the emissions, and sums the sentences' negative log-likelihoods;
only flat tag ids and one scalar come back, as :func:`jaxbackprop.evaluate.predict` returns them::

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

from jaxbackprop import crf, data, model, pipeline
from jaxbackprop.batch_checks import check_ids

SENTENCE_CHUNK = 64  # sentences per forward pass: bounds the device memory of a large split
LENGTH_MULTIPLE = 16  # sentence lengths are padded to a multiple of this, so similar splits share a program


class SentenceEvalData(NamedTuple):
    """One split on the device as Sp padded sentences of L tokens (Sp a multiple of the chunk).

    Attributes:
      windows: int32 (Sp, L, n); features: int32 (Sp, L, n*k) or None when the model reads none;
      labels: int32 (Sp, L), or None for unlabelled text; mask: bool (Sp, L), true on each
      sentence's tokens; token_slot: int32 (N,) each token's position ``s * L + t`` in the grid,
      in the split's flat token order.
    """

    windows: jax.Array
    features: jax.Array | None
    labels: jax.Array | None
    mask: jax.Array
    token_slot: jax.Array


class SentencePredictions(NamedTuple):
    """What :func:`predict_sentences` brings back: (N,) int32 tag ids by each decoder, and the summed
    sentence NLL (0 without labels). The fields are those of :class:`jaxbackprop.evaluate.Predictions`."""

    viterbi: jax.Array
    argmax: jax.Array
    loss_sum: jax.Array


def sentence_eval_data(ds: data.Dataset, model_cfg: model.ModelConfig, chunk: int = SENTENCE_CHUNK):
    """Put what evaluation reads of ``ds`` on the default device once, as padded sentences.

    The ids are checked against ``model_cfg`` here, eagerly: under jit an out-of-range id would be
    clamped without a word.

    Args:
      ds: a split (labelled or not) with at least one token.
      model_cfg: the sized crf-head model config; ``features`` are kept only when the model reads them.
      chunk: the padded sentence count is a multiple of this (use the chunk of :func:`predict_sentences`).
    """
    check_ids("windows", ds.windows, model_cfg.window, model_cfg.vocab_size)
    if model_cfg.uses_features:
        check_ids("features", ds.features, model_cfg.feature_width, model_cfg.feature_vocab_size)
    rows = pipeline.sentence_rows(ds, length_multiple=LENGTH_MULTIPLE, sentence_multiple=chunk)
    ev = SentenceEvalData(
        windows=rows["windows"],
        features=rows["features"] if model_cfg.uses_features else None,
        labels=rows["labels"] if ds.labels is not None else None,
        mask=rows["mask"],
        token_slot=np.flatnonzero(rows["mask"]).astype(np.int32),  # row-major: the flat token order
    )
    return jax.device_put(ev)


def emissions_of(params, windows, features, model_cfg: model.ModelConfig, chunk: int = SENTENCE_CHUNK):
    """Emission scores (Sp, L, C) of every token, ``chunk`` sentences at a time (``lax.map``), no dropout."""
    Sp, L, n = windows.shape
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
    e = emissions_of(params, ev.windows, ev.features, model_cfg, chunk)
    T, first, last = params["T"], params["start"], params["end"]
    paths = crf.viterbi_decode(e, ev.mask, T, first, last, (start, transitions))
    argmax = jnp.argmax(e, axis=-1).astype(jnp.int32)
    if ev.labels is None:
        loss_sum = jnp.zeros((), e.dtype)
    else:
        loss_sum = jnp.sum(crf.sentence_nll(e, ev.labels, ev.mask, T, first, last))
    flat = lambda grid: grid.reshape(-1)[ev.token_slot]  # noqa: E731
    return SentencePredictions(viterbi=flat(paths), argmax=flat(argmax), loss_sum=loss_sum)


def loss_count(ds: data.Dataset) -> int:
    """What the crf head's loss is a mean over: the split's non-empty sentences."""
    return int(np.count_nonzero(np.asarray(ds.sentence_lengths)))
