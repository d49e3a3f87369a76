"""Evaluation: tag probabilities of every window, decoded tags, and entity F1 (CoNLL rules)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxbackprop import data, decode, metrics, model, pipeline


@functools.partial(jax.jit, static_argnames="model_cfg")
def _eval_batch(params, batch, model_cfg):
    logits = model.forward(params, batch["windows"], model_cfg, batch.get("features"))
    losses = model.per_example_loss(params, batch, model_cfg) if "labels" in batch else jnp.zeros(logits.shape[0])
    return jax.nn.log_softmax(logits, axis=-1), jnp.sum(losses * batch["weights"])


def predict_log_probs(params, ds: data.Dataset, model_cfg: model.ModelConfig, batch_size: int = 1024):
    """Log-probabilities of every tag for every window of ``ds``, and the summed loss.

    Returns:
      ``(log_probs, loss_sum)``: (N, C) for the N windows of ``ds``, and the sum of their
      cross-entropies (0.0 when ``ds`` has no labels).
    """
    out, total = [], 0.0
    for batch in pipeline.padded_batches(ds, batch_size):
        log_probs, loss_sum = _eval_batch(params, pipeline.model_batch(batch, model_cfg), model_cfg)
        out.append(np.asarray(log_probs)[batch["weights"] > 0])
        total += float(loss_sum)
    return np.concatenate(out), total


def predict_labels(params, ds: data.Dataset, tags, model_cfg: model.ModelConfig, decoder: str = "viterbi"):
    """Predicted tag ids (N,) for every window of ``ds``, and the summed loss.

    ``decoder``: see :func:`jaxbackprop.decode.decode`.
    """
    log_probs, total = predict_log_probs(params, ds, model_cfg)
    return decode.decode(log_probs, ds.sentence_lengths, tags, decoder), total


def evaluate(params, ds: data.Dataset, tags, model_cfg: model.ModelConfig, decoder: str = "viterbi") -> dict:
    """Entity-level precision/recall/F1 (CoNLL rules), token accuracy and loss on ``ds``.

    The scores use ``decoder``'s tags; ``argmax_f1`` is the entity F1 of the per-token argmax, so
    the two decoders can be compared on every evaluation. ``loss`` is the training objective --
    mean cross-entropy plus the L2 penalty -- so that it compares with the training loss;
    evaluate with an ``l2=0`` config for the data loss alone.

    Returns:
      ``{"loss", "f1", "precision", "recall", "accuracy", "per_type", "argmax_f1"}``.
    """
    log_probs, loss_sum = predict_log_probs(params, ds, model_cfg)
    tag_arr = np.asarray(tags)
    true_seqs = metrics.split_by_lengths(list(tag_arr[ds.labels]), ds.sentence_lengths)

    def tag_seqs(method):
        predicted = decode.decode(log_probs, ds.sentence_lengths, tags, method)
        return metrics.split_by_lengths(list(tag_arr[predicted]), ds.sentence_lengths)

    preds = {method: tag_seqs(method) for method in dict.fromkeys((decoder, "argmax"))}
    each = metrics.entity_scores_of_each(true_seqs, preds)
    pred_seqs, scores, argmax_f1 = preds[decoder], each[decoder], each["argmax"]["f1"]
    return {
        "loss": loss_sum / len(log_probs) + float(model.l2_penalty(params, model_cfg)),
        "f1": scores["f1"],
        "precision": scores["precision"],
        "recall": scores["recall"],
        "accuracy": metrics.token_accuracy(true_seqs, pred_seqs),
        "per_type": scores["per_type"],
        "argmax_f1": argmax_f1,
    }
