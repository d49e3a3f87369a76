"""From sentences to what a training step eats: vocabulary, windows, a sized model config, batches.

::

    prepare(train, dev, test, pretrained) -> Prepared(vocab, tags, train/dev/test Datasets, E, coverage)
    model_config(config, prepared)        -> the ModelConfig with the data's sizes
    padded_batches(dataset, batch_size)   -> fixed-size batches; model_batch keeps what the model reads
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from jaxbackprop import data, embeddings, model
from jaxbackprop.batch_checks import batch_keys
from jaxbackprop.vocab import Vocab, build_vocab


class Prepared(NamedTuple):
    """A corpus turned into arrays, plus what is needed to map them back to words and tags."""

    vocab: Vocab
    tags: tuple
    train: data.Dataset
    dev: data.Dataset
    test: data.Dataset | None
    embeddings: np.ndarray | None  # (V, d) initial E, from pretrained vectors
    coverage: dict


def prepare(
    train_sents,
    dev_sents,
    test_sents=None,
    pretrained=None,
    *,
    window=5,
    min_count=1,
    seed=0,
    suffix_len=0,
    suffix_min_count=1,
) -> Prepared:
    """Vocabulary, tag set and windows for each split; E seeded from ``pretrained`` (words, vectors).

    Pretrained words join the vocabulary even when training never shows them, so dev/test words
    with a pretrained vector keep it at evaluation time.

    Args:
      train_sents, dev_sents, test_sents: lists of :class:`~jaxbackprop.data.Sentence` (test may be None).
      pretrained: ``(words, (N, d) vectors)`` or None.
      window: words per window.
      min_count, suffix_len, suffix_min_count: see :func:`jaxbackprop.vocab.build_vocab`.
      seed: seeds the rows of E that no pretrained vector covers.

    Raises:
      ValueError: a dev or test tag that training never showed (``"dev sentence 3: tag 'B-MISC'
        ..."``); read those files with ``data.read_conll(path, allowed_tags=data.tags_from(train))``
        to have the error name the file and line instead.
    """
    words, vectors = pretrained if pretrained is not None else ((), None)
    vocab = build_vocab(
        train_sents, min_count=min_count, extra_words=words, suffix_len=suffix_len, suffix_min_count=suffix_min_count
    )
    tags = data.tags_from(train_sents)
    index = data.make_tag_index(tags)
    splits = [
        data.make_windows(s, vocab, index, window, name=f"{split} sentence") if s is not None else None
        for split, s in (("train", train_sents), ("dev", dev_sents), ("test", test_sents))
    ]
    E, coverage = (None, {})
    if vectors is not None:
        E, coverage = embeddings.embedding_matrix(vocab, words, vectors, seed)
    return Prepared(vocab, tags, *splits, E, coverage)


def prepare_for(config, train_sents, dev_sents, test_sents=None, pretrained=None) -> Prepared:
    """:func:`prepare` with the data settings of a :class:`~jaxbackprop.config.TrainConfig`.

    The settings are window, min_count, seed and the suffixes.

    Suffixes are features: without a feature table (``feature_dim`` 0) there are none.
    """
    return prepare(
        train_sents,
        dev_sents,
        test_sents,
        pretrained,
        window=config.model.window,
        min_count=config.min_count,
        seed=config.seed,
        suffix_len=config.suffix_len if config.model.feature_dim else 0,
        suffix_min_count=config.suffix_min_count,
    )


def model_config(config, prepared: Prepared) -> model.ModelConfig:
    """``config.model`` (of a :class:`~jaxbackprop.config.TrainConfig`) sized from the data.

    The data give the vocabulary size, the number of tags, the rows of the feature table and,
    with pretrained vectors, the word-vector width.

    Training always uses the softmax head and :mod:`jaxbackprop.fast`'s lookup and dropout masks.
    """
    uses_features = config.model.feature_dim > 0
    embed_dim = prepared.embeddings.shape[1] if prepared.embeddings is not None else config.model.embed_dim
    return dataclasses.replace(
        config.model,
        vocab_size=len(prepared.vocab),
        embed_dim=embed_dim,
        num_classes=len(prepared.tags),
        head="softmax",
        feature_vocab_size=prepared.vocab.feature_vocab_size if uses_features else 0,
        features_per_word=prepared.vocab.features_per_word if uses_features else 1,
        fast=True,
    )


def padded_batches(ds: data.Dataset, batch_size: int, order=None):
    """Batches of exactly ``batch_size`` rows of ``ds``, in ``order`` (default: as stored).

    Every batch has the same shapes, so a jitted step compiles once: the last one is padded with
    copies of row 0 that carry weight 0, so they change neither loss nor gradient.

    Yields:
      ``{"windows": (B, n), "features": (B, n*k), "weights": (B,)}`` and ``"labels": (B,)`` when
      ``ds`` is labelled.
    """
    n = len(ds.windows)
    order = np.arange(n) if order is None else order
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        weights = np.ones(batch_size, np.float32)
        if len(idx) < batch_size:
            weights[len(idx) :] = 0.0
            idx = np.concatenate([idx, np.zeros(batch_size - len(idx), idx.dtype)])
        batch = {"windows": ds.windows[idx], "features": ds.features[idx], "weights": weights}
        if ds.labels is not None:
            batch["labels"] = ds.labels[idx]
        yield batch


def model_batch(batch: dict, model_cfg: model.ModelConfig) -> dict:
    """The entries of a :func:`padded_batches` batch that ``model_cfg``'s loss reads (plus weights).

    >>> cfg = model.ModelConfig(vocab_size=10)  # no per-word features
    >>> sorted(model_batch({"windows": 0, "features": 0, "labels": 0, "weights": 0}, cfg))
    ['labels', 'weights', 'windows']
    """
    keep = batch_keys(model_cfg) + ("weights",)
    return {k: v for k, v in batch.items() if k in keep}
