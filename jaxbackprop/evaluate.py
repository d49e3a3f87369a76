"""Evaluation: tag probabilities of every window, decoded tags, and entity F1 (CoNLL rules).

A split goes to the device once (:func:`eval_data`); one jitted program (:func:`predict`) then
runs the model over every window in fixed-size chunks, sums the cross-entropy, and decodes both
the per-token argmax and the best valid IOB2 path, so that only int tag ids and one scalar come
back. The scores are read off those ids on the host (:func:`scores`), since conlleval's rules
are string work::

    eval_data(ds, model_cfg)                         -> EvalData (device arrays)
    predict(params, data, start, transitions, ...)   -> Predictions(viterbi, argmax, loss_sum)
    scores(ids, argmax_ids, loss_sum, ds, tags, ...) -> {"loss", "f1", ...}

:func:`evaluate` chains the three. ``predict`` is pure in ``params``, so a sweep can run it under
``jax.vmap`` over stacked parameter sets and score each member on the host. A crf-head model is
evaluated on padded sentences instead (:mod:`jaxbackprop.crf_eval`), with the same results.
"""

from __future__ import annotations

import collections
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxbackprop import crf_eval, data, decode, metrics, model
from jaxbackprop.batch_checks import check_ids

EVAL_CHUNK = 1024  # windows per forward pass: bounds the device memory of a large split
_CACHE_SIZE = 4  # device copies kept by evaluate: train's dev split, a test split, and a spare


class EvalData(NamedTuple):
    """One split on the device, padded to Np rows (a multiple of the chunk), with its sentence layout.

    Attributes:
      windows: int32 (Np, n) word ids; the rows past the N tokens are id 0 (a valid row of E).
      features: int32 (Np, n*k) feature ids, or None when the model reads none.
      labels: int32 (Np,) tag ids, or None for unlabelled text.
      weights: float32 (Np,) 1 for the N tokens, 0 for the padding rows.
      token_index, lengths, token_slot: the sentence grid of
        :func:`jaxbackprop.decode.sentence_layout`: (S, L), (S,), (Np,) int32.
    """

    windows: jax.Array
    features: jax.Array | None
    labels: jax.Array | None
    weights: jax.Array
    token_index: jax.Array
    lengths: jax.Array
    token_slot: jax.Array


class Predictions(NamedTuple):
    """What :func:`predict` brings back: (Np,) int32 tag ids (-1 on padding rows) and the loss sum."""

    viterbi: jax.Array
    argmax: jax.Array
    loss_sum: jax.Array


def _pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
    return np.pad(x, [(0, rows - len(x))] + [(0, 0)] * (x.ndim - 1))


def eval_data(ds: data.Dataset, model_cfg: model.ModelConfig, multiple: int = EVAL_CHUNK) -> EvalData:
    """Put what evaluation reads of ``ds`` on the default device once, padded so few shapes compile.

    The ids are checked against ``model_cfg`` here, eagerly: under jit an out-of-range id would be
    clamped without a word.

    Args:
      ds: a split (labelled or not) with at least one token.
      model_cfg: the sized model config; ``features`` are kept only when the model reads them.
      multiple: Np, the padded row count, is a multiple of this (use the chunk of :func:`predict`).

    Returns:
      The split as an :class:`EvalData`.
    """
    check_ids("windows", ds.windows, model_cfg.window, model_cfg.vocab_size)
    if model_cfg.uses_features:
        check_ids("features", ds.features, model_cfg.feature_width, model_cfg.feature_vocab_size)
    n = len(ds.windows)
    rows = decode._bucket(n, multiple)
    token_index, lengths, token_slot = decode.sentence_layout(ds.sentence_lengths, rows)
    padded = {
        "windows": _pad_rows(np.asarray(ds.windows, np.int32), rows),
        "features": _pad_rows(np.asarray(ds.features, np.int32), rows) if model_cfg.uses_features else None,
        "labels": _pad_rows(np.asarray(ds.labels, np.int32), rows) if ds.labels is not None else None,
        "weights": (np.arange(rows) < n).astype(np.float32),
    }
    return jax.device_put(EvalData(**padded, token_index=token_index, lengths=lengths, token_slot=token_slot))


# ----------------------------------------------------------------------------- on the device


def _in_chunks(x, chunk: int):
    """(Np, ...) -> (ceil(Np / chunk), chunk, ...), zero rows appended (id 0 is valid in every table)."""
    pad = -x.shape[0] % chunk
    x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))
    return x.reshape(-1, chunk, *x.shape[1:])


def log_probs_of(params, windows, features, model_cfg: model.ModelConfig, chunk: int = EVAL_CHUNK):
    """log softmax of the model's logits for every window, ``chunk`` windows at a time.

    ``lax.map`` runs the chunks one after another, so memory is that of one chunk's hidden layer.

    Args:
      params: the model's parameters; windows: int (Np, n); features: int (Np, n*k) or None.
      model_cfg: a softmax-head model config (static under jit).

    Returns:
      float (Np, C) log-probabilities.
    """
    n = windows.shape[0]
    chunks = (_in_chunks(windows, chunk), None if features is None else _in_chunks(features, chunk))

    def one_chunk(xs):
        logits = model.forward(params, xs[0], model_cfg, xs[1])
        return jax.nn.log_softmax(logits, axis=-1)

    out = jax.lax.map(one_chunk, chunks)  # (chunks, chunk, C)
    return out.reshape(-1, out.shape[-1])[:n]


def loss_sum_of(log_probs, ev: EvalData):
    """Summed cross-entropy -log p(label) of the real (weight-1) rows; 0 without labels."""
    if ev.labels is None:
        return jnp.zeros((), log_probs.dtype)
    nll = -jnp.take_along_axis(log_probs, ev.labels[:, None], axis=1)[:, 0]
    return jnp.sum(ev.weights * nll)


def _check_softmax(model_cfg: model.ModelConfig) -> None:
    if model_cfg.head != "softmax":
        raise ValueError(f"evaluation needs tag probabilities: head must be 'softmax', got {model_cfg.head!r}")


@functools.partial(jax.jit, static_argnames=("model_cfg", "chunk"))
def predict(params, ev: EvalData, start, transitions, model_cfg: model.ModelConfig, chunk: int = EVAL_CHUNK):
    """Tag ids of every window of a split by both decoders, and the summed loss, in one device program.

    Pure in ``params``: ``jax.vmap(functools.partial(predict, model_cfg=cfg), in_axes=(0, None, None,
    None))`` evaluates stacked parameter sets (a leading members axis) on one device copy of a split.

    Args:
      params: the model's parameters.
      ev: the split, from :func:`eval_data`.
      start: (C,) and transitions: (C, C), the decoder's scores (:func:`jaxbackprop.decode.iob2_constraints`
        for IOB2; learned ones for a CRF head).
      model_cfg: the sized softmax-head config (static); chunk: windows per forward pass (static).

    Returns:
      :class:`Predictions`: ``viterbi`` and ``argmax`` int32 (Np,) tag ids, -1 on the padding rows,
      and ``loss_sum``, the summed cross-entropy of the real rows (0 without labels).
    """
    _check_softmax(model_cfg)
    log_probs = log_probs_of(params, ev.windows, ev.features, model_cfg, chunk)
    best_path = decode.viterbi_tokens(log_probs, ev.token_index, ev.lengths, ev.token_slot, start, transitions)
    real = ev.weights > 0  # padding rows decode to -1, so a leak shows as an illegal tag id
    return Predictions(
        viterbi=jnp.where(real, best_path, -1),
        argmax=jnp.where(real, jnp.argmax(log_probs, axis=-1).astype(jnp.int32), -1),
        loss_sum=loss_sum_of(log_probs, ev),
    )


@functools.partial(jax.jit, static_argnames=("model_cfg", "chunk"))
def _log_probs_and_loss(params, ev: EvalData, model_cfg: model.ModelConfig, chunk: int):
    log_probs = log_probs_of(params, ev.windows, ev.features, model_cfg, chunk)
    return log_probs, loss_sum_of(log_probs, ev)


def iob2_scores(tags) -> tuple[jax.Array, jax.Array]:
    """:func:`jaxbackprop.decode.iob2_constraints` of ``tags`` as float32 device arrays, for :func:`predict`."""
    return tuple(jnp.asarray(a, jnp.float32) for a in decode.iob2_constraints(tags))


# ----------------------------------------------------------------------------- on the host


def scores(ids, argmax_ids, loss_sum, ds: data.Dataset, tags, penalty: float = 0.0, loss_count=None) -> dict:
    """The metrics :func:`evaluate` returns, from tag ids decoded on the device.

    Args:
      ids: int (N,) or padded (Np,) tag ids of the chosen decoder; argmax_ids: the same of the
        per-token argmax (rows past N are ignored).
      loss_sum: the summed cross-entropy of the N windows.
      ds: the labelled split the ids belong to (its labels and sentence lengths).
      tags: the C tag names.
      penalty: added to the mean loss; :func:`jaxbackprop.model.l2_penalty` makes the loss the
        training objective.
      loss_count: what ``loss_sum`` is a mean over (None: the N tokens; the crf head's sentences).

    Returns:
      ``{"loss", "f1", "precision", "recall", "accuracy", "per_type", "argmax_f1"}``.
    """
    if ds.labels is None:
        raise ValueError("scores need a labelled split (ds.labels is None)")
    n, tag_arr = len(ds.labels), np.asarray(tags)

    def sentences(flat_ids):
        return metrics.split_by_lengths(list(tag_arr[np.asarray(flat_ids)[:n]]), ds.sentence_lengths)

    true_seqs, pred_seqs = sentences(ds.labels), sentences(ids)
    each = metrics.entity_scores_of_each(true_seqs, {"decoder": pred_seqs, "argmax": sentences(argmax_ids)})
    return {
        "loss": float(loss_sum) / (n if loss_count is None else max(loss_count, 1)) + float(penalty),
        "f1": each["decoder"]["f1"],
        "precision": each["decoder"]["precision"],
        "recall": each["decoder"]["recall"],
        "accuracy": metrics.token_accuracy(true_seqs, pred_seqs),
        "per_type": each["decoder"]["per_type"],
        "argmax_f1": each["argmax"]["f1"],
    }


_device_copies: collections.OrderedDict = collections.OrderedDict()


def cached_eval_data(ds: data.Dataset, model_cfg: model.ModelConfig) -> EvalData:
    """:func:`eval_data` of ``ds``, kept for the next call with the same Dataset object.

    Training evaluates the same dev split every epoch; this sends it to the device once. The
    cache is keyed by the object's identity (a Dataset is a tuple, which cannot be weakly
    referenced), holds the object so its id is not reused while cached, and keeps the last
    :data:`_CACHE_SIZE` splits. Arrays changed in place after the first call are not seen: build
    a new Dataset (``ds._replace(...)``) instead.
    """
    key = (id(ds), model_cfg)  # the ids were checked against this config
    if key in _device_copies:
        _device_copies.move_to_end(key)
        return _device_copies[key][1]
    sentences = model_cfg.head in model.SENTENCE_HEADS
    ev = crf_eval.sentence_eval_data(ds, model_cfg) if sentences else eval_data(ds, model_cfg)
    _device_copies[key] = (ds, ev)
    if len(_device_copies) > _CACHE_SIZE:
        _device_copies.popitem(last=False)
    return ev


def _predictions(params, ds, tags, model_cfg) -> Predictions:
    """Both decoders' tag ids (N or Np,) and the summed loss; a crf head decodes under its learned scores too."""
    ev = cached_eval_data(ds, model_cfg)
    if model_cfg.head in model.SENTENCE_HEADS:
        return crf_eval.predict_sentences(params, ev, *iob2_scores(tags), model_cfg=model_cfg)
    return predict(params, ev, *iob2_scores(tags), model_cfg=model_cfg)


def predict_log_probs(params, ds: data.Dataset, model_cfg: model.ModelConfig, batch_size: int = EVAL_CHUNK):
    """Log-probabilities of every tag for every window of ``ds``, and the summed loss.

    Args:
      batch_size: windows per forward pass on the device.

    Returns:
      ``(log_probs, loss_sum)``: (N, C) for the N windows of ``ds``, and the sum of their
      cross-entropies (0.0 when ``ds`` has no labels).
    """
    _check_softmax(model_cfg)
    log_probs, loss_sum = _log_probs_and_loss(params, cached_eval_data(ds, model_cfg), model_cfg, batch_size)
    return np.asarray(log_probs)[: len(ds.windows)], float(loss_sum)


def predict_labels(params, ds: data.Dataset, tags, model_cfg: model.ModelConfig, decoder: str = "viterbi"):
    """Predicted tag ids (N,) for every window of ``ds``, and the summed loss.

    ``decoder``: see :func:`jaxbackprop.decode.decode`.
    """
    decode.check_decoder(decoder)
    pred = _predictions(params, ds, tags, model_cfg)
    return np.asarray(getattr(pred, decoder))[: len(ds.windows)], float(pred.loss_sum)


def evaluate(params, ds: data.Dataset, tags, model_cfg: model.ModelConfig, decoder: str = "viterbi") -> dict:
    """Entity-level precision/recall/F1 (CoNLL rules), token accuracy and loss on ``ds``.

    The scores use ``decoder``'s tags; ``argmax_f1`` is the entity F1 of the per-token argmax, so
    the two decoders can be compared on every evaluation. ``loss`` is the training objective --
    mean cross-entropy plus the L2 penalty -- so that it compares with the training loss (for the
    crf head: the mean sentence NLL, and tags are decoded under the learned transitions too, see
    :mod:`jaxbackprop.crf_eval`);
    evaluate with an ``l2=0`` config for the data loss alone. The device copy of ``ds`` is reused
    by later calls with the same object (:func:`cached_eval_data`).

    Returns:
      ``{"loss", "f1", "precision", "recall", "accuracy", "per_type", "argmax_f1"}``.
    """
    decode.check_decoder(decoder)
    pred = jax.device_get(_predictions(params, ds, tags, model_cfg))  # int ids and one scalar come back
    penalty = float(model.l2_penalty(params, model_cfg))
    count = crf_eval.loss_count(ds) if model_cfg.head in model.SENTENCE_HEADS else None
    return scores(getattr(pred, decoder), pred.argmax, pred.loss_sum, ds, tags, penalty, count)
