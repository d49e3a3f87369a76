"""From sentences to what a training step eats: vocabulary, windows, a sized model config, batches.

::

    prepare(train, dev, test, pretrained) -> Prepared(vocab, tags, train/dev/test Datasets, E, coverage)
    model_config(config, prepared)        -> the ModelConfig with the data's sizes
    training_rows(dataset, model_cfg)     -> one row per training example: a window, or a padded sentence (crf)
    padded_batches(rows, batch_size)      -> fixed-size batches; model_batch keeps what the model reads
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from jaxbackprop import crf, data, embeddings, model
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

    The head is the configuration's (softmax, or crf over whole sentences); training always uses
    :mod:`jaxbackprop.fast`'s lookup and dropout masks.
    """
    uses_features = config.model.feature_dim > 0
    embed_dim = prepared.embeddings.shape[1] if prepared.embeddings is not None else config.model.embed_dim
    return dataclasses.replace(
        config.model,
        vocab_size=len(prepared.vocab),
        embed_dim=embed_dim,
        num_classes=len(prepared.tags),
        feature_vocab_size=prepared.vocab.feature_vocab_size if uses_features else 0,
        features_per_word=prepared.vocab.features_per_word if uses_features else 1,
        fast=True,
    )


SENTENCE_LENGTH_MULTIPLE = 8  # sentences are padded to the split's longest, rounded up to this


def sentence_rows(ds: data.Dataset, length_multiple: int = SENTENCE_LENGTH_MULTIPLE, sentence_multiple: int = 1):
    """A split as padded sentences, the rows the crf head trains and is evaluated on.

    Each sentence is one row of L tokens, L = the split's longest sentence rounded up to
    ``length_multiple``, so a split has one shape (one compiled program). Padding tokens are
    window id 0, feature id 0 and tag 0 with ``mask`` false; ``sentence_multiple`` appends empty
    sentences (mask all false), which the crf loss leaves out.

    Args:
      ds: a split (labelled or not; without labels, ``"labels"`` is all 0).
      length_multiple, sentence_multiple: L and the row count are multiples of these.

    Returns:
      ``{"windows": (S, L, n), "features": (S, L, n*k), "labels": (S, L), "mask": (S, L)}``:
      int32 arrays and a bool prefix mask.

    >>> ds = data.Dataset(np.arange(6, dtype=np.int32).reshape(3, 2), np.zeros((3, 2), np.int32),
    ...                   np.array([1, 2, 3], np.int32), np.array([2, 1], np.int32))
    >>> rows = sentence_rows(ds, length_multiple=4)
    >>> rows["windows"].shape, rows["labels"].tolist(), rows["mask"].sum(axis=1).tolist()
    ((2, 4, 2), [[1, 2, 0, 0], [3, 0, 0, 0]], [2, 1])
    """
    lengths = np.asarray(ds.sentence_lengths, np.int64)
    S = max(sentence_multiple, -(-len(lengths) // sentence_multiple) * sentence_multiple)
    L = max(length_multiple, -(-int(lengths.max(initial=0)) // length_multiple) * length_multiple)
    mask = np.zeros((S, L), bool)
    mask[: len(lengths)] = np.arange(L)[None, :] < lengths[:, None]
    labels = np.zeros(len(ds.windows), np.int32) if ds.labels is None else ds.labels

    def grid(flat):  # row-major order of the mask visits the tokens in their flat order
        out = np.zeros((S, L, *flat.shape[1:]), np.int32)
        out[mask] = flat
        return out

    return {"windows": grid(ds.windows), "features": grid(ds.features), "labels": grid(labels), "mask": mask}


def training_rows(ds, model_cfg: model.ModelConfig) -> dict:
    """The arrays a training step reads, one row per example: ``{"windows" (N, n), "features"
    (N, n*k), "labels" (N,)}`` for the window heads, :func:`sentence_rows` for the crf head.

    A dict passes through unchanged (rows already made). ``model_cfg`` may be unsized: only its
    head is read.
    """
    if isinstance(ds, dict):
        return ds
    if ds.labels is None:
        raise ValueError("training needs a labelled split (ds.labels is None)")
    if model_cfg.head in model.SENTENCE_HEADS:
        return sentence_rows(ds)
    return {"windows": ds.windows, "features": ds.features, "labels": ds.labels}


def rows_per_batch(batch_size: int, rows: dict) -> int:
    """Rows of ``rows`` (:func:`training_rows`) per training step for ``--batch-size batch_size``.

    ``batch_size`` counts tokens: windows of the window heads, one per row; for padded sentences
    (the crf head), as many whole sentences as hold about ``batch_size`` tokens on average,
    ``round(batch_size / mean sentence length)`` (at least 1), so both heads see about as many
    tokens per step.

    >>> rows_per_batch(1024, {"windows": None, "mask": np.ones((10, 16), bool)})
    64
    """
    if "mask" not in rows:
        return batch_size
    mask = np.asarray(rows["mask"])
    sentences = max(int(np.count_nonzero(mask.any(axis=1))), 1)
    tokens = max(int(np.count_nonzero(mask)), 1)
    return max(1, round(batch_size * sentences / tokens))


def row_count(ds) -> int:
    """Training examples in a Dataset (its windows) or in rows from :func:`training_rows`."""
    return len(ds["windows"] if isinstance(ds, dict) else ds.windows)


def padded_batches(ds, batch_size: int, order=None):
    """Batches of exactly ``batch_size`` rows of ``ds``, in ``order`` (default: as stored).

    Every batch has the same shapes, so a jitted step compiles once: the last one is padded with
    copies of row 0 that carry weight 0, so they change neither loss nor gradient.

    Args:
      ds: a :class:`~jaxbackprop.data.Dataset` (its windows are the rows) or the rows of
        :func:`training_rows` (windows, or padded sentences for the crf head).

    Yields:
      ``{"windows": (B, n), "features": (B, n*k), "weights": (B,)}`` and ``"labels": (B,)`` when
      ``ds`` is labelled; for rows, every array of ``ds`` at the batch's rows plus ``"weights"``.
    """
    if isinstance(ds, dict):
        arrays = ds
    else:
        arrays = {"windows": ds.windows, "features": ds.features}
        if ds.labels is not None:
            arrays["labels"] = ds.labels
    n = row_count(ds)
    order = np.arange(n) if order is None else order
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        weights = np.ones(batch_size, np.float32)
        if len(idx) < batch_size:
            weights[len(idx) :] = 0.0
            idx = np.concatenate([idx, np.zeros(batch_size - len(idx), idx.dtype)])
        yield {k: v[idx] for k, v in arrays.items()} | {"weights": weights}


def model_batch(batch: dict, model_cfg: model.ModelConfig) -> dict:
    """The entries of a :func:`padded_batches` batch that ``model_cfg``'s loss reads (plus weights).

    >>> cfg = model.ModelConfig(vocab_size=10)  # no per-word features
    >>> sorted(model_batch({"windows": 0, "features": 0, "labels": 0, "weights": 0}, cfg))
    ['labels', 'weights', 'windows']
    """
    required = crf.sentence_batch_keys(model_cfg) if model_cfg.head in model.SENTENCE_HEADS else batch_keys(model_cfg)
    keep = required + ("weights",)
    return {k: v for k, v in batch.items() if k in keep}
