"""From sentences to what a training step eats: vocabulary, windows, a sized model config, batches.

::

    prepare(train, dev, test, pretrained) -> Prepared(vocab, tags, train/dev/test Datasets, E, coverage,
                                                      pretrained_rows)
    model_config(config, prepared)        -> the ModelConfig with the data's sizes
    training_rows(dataset, model_cfg)     -> one row per training example: a window, or (crf) a padded
                                             sentence, in length buckets (buckets.py)
    padded_batches(rows, batch_size)      -> fixed-size batches; model_batch keeps what the model reads
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from jaxbackprop import buckets, crf, data, embeddings, model
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
    pretrained_rows: np.ndarray | None = None  # bool (V,): the rows of E seeded from a pretrained vector
    embeddings_source: dict | None = None  # what the vectors were: jaxbackprop.vectors.source of --embeddings
    table_rows: np.ndarray | None = None  # int32 (V,): the vectors' row that seeds each row of E, -1 for none
    random_rows: RandomRows | None = None  # how E's other rows were drawn (None without pretrained vectors)


class RandomRows(NamedTuple):
    """How :func:`prepare` drew the rows of E that no pretrained vector covers: N(0, scale^2) from ``seed``."""

    seed: int
    scale: float


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
    E, coverage, table_rows, drawn = (None, {}, None, None)
    if vectors is not None:
        lookup = embeddings.pretrained_lookup(words)  # once: it is seconds for the 400,000 words of GloVe 6B
        drawn = RandomRows(int(seed), float(np.asarray(vectors, np.float32).std()))  # embedding_matrix's scale
        E, coverage = embeddings.embedding_matrix(vocab, words, vectors, drawn.seed, drawn.scale, lookup=lookup)
        table_rows = embeddings.table_rows(vocab, lookup)
    rows = None if table_rows is None else table_rows >= 0
    return Prepared(vocab, tags, *splits, E, coverage, rows, table_rows=table_rows, random_rows=drawn)


def initial_embeddings(prepared: Prepared, seed: int) -> np.ndarray | None:
    """The (V, d) E a run of ``seed`` starts from: ``prepared``'s pretrained rows, every other row drawn
    from ``seed`` -- the E that :func:`prepare` with ``seed=seed`` makes, bit for bit, without
    preparing the corpus again. A run's seed so sets every random draw however the data was prepared
    (once for several seeds, as a sweep or an experiment does). None without pretrained vectors.

    >>> from jaxbackprop import data
    >>> s, vectors = [data.Sentence(("Paris", "zzq"), ("B-LOC", "O"))], (["paris", "x"], np.eye(2))
    >>> once = prepare(s, s, pretrained=vectors, seed=0)
    >>> bool((initial_embeddings(once, 1) == prepare(s, s, pretrained=vectors, seed=1).embeddings).all())
    True
    """
    if prepared.embeddings is None or prepared.random_rows is None or int(seed) == prepared.random_rows.seed:
        return prepared.embeddings
    E = np.asarray(prepared.embeddings)
    drawn = (prepared.random_rows.scale * np.random.default_rng(int(seed)).standard_normal(E.shape)).astype(E.dtype)
    return np.where(prepared.pretrained_rows[:, None], E, drawn)


def seeded_rows(vocab: Vocab, words, lookup=None) -> np.ndarray:
    """bool (V,): the rows of E that :func:`jaxbackprop.embeddings.embedding_matrix` seeds from one of
    ``words``' vectors (by its own lookup: the word, else its normalised form); the reserved ids never.

    >>> from jaxbackprop import data
    >>> vocab = build_vocab([data.Sentence(("Paris", "zzq"), ("B-LOC", "O"))])
    >>> [w for w, r in zip(vocab.words, seeded_rows(vocab, ["paris"])) if r]
    ['paris']
    """
    lookup = embeddings.pretrained_lookup(words) if lookup is None else lookup  # the rule embedding_matrix seeds E by
    return embeddings.table_rows(vocab, lookup) >= 0


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


def training_rows(ds, model_cfg: model.ModelConfig):
    """The arrays a training step reads, one row per example.

    ``{"windows" (N, n), "features" (N, n*k), "labels" (N,)}`` for the window heads; for the crf
    head a tuple of length buckets of padded sentences (:func:`jaxbackprop.buckets.sentence_buckets`), so that a
    step pads its sentences to about their own length, not to the split's longest.

    A dict or tuple passes through unchanged (rows already made). ``model_cfg`` may be unsized:
    only its head is read.
    """
    if isinstance(ds, (dict, tuple)) and not isinstance(ds, data.Dataset):
        return ds
    if ds.labels is None:
        raise ValueError("training needs a labelled split (ds.labels is None)")
    if model_cfg.head in model.SENTENCE_HEADS:
        return buckets.sentence_buckets(ds)
    return {"windows": ds.windows, "features": ds.features, "labels": ds.labels}


def rows_per_batch(batch_size: int, rows):
    """Rows of ``rows`` (:func:`training_rows`) per training step for ``--batch-size batch_size``.

    ``batch_size`` counts tokens: windows of the window heads, one per row; for padded sentences
    (the crf head), as many whole sentences as hold about ``batch_size`` tokens on average,
    ``round(batch_size / mean sentence length)`` (at least 1), so both heads see about as many
    tokens per step.

    For length buckets (a tuple) every bucket takes the whole split's count: a step's loss is the
    mean over its sentences, so each sentence weighs 1/B in its step whatever its bucket, as without
    buckets; steps of short sentences hold fewer tokens, steps of long ones more. (A count per
    bucket, ``batch_size`` tokens in every step, weighs a sentence by its bucket's mean length and
    trained worse on CoNLL-2003: dev F1 0.907 against 0.912.)

    >>> rows_per_batch(1024, {"windows": None, "mask": np.ones((10, 16), bool)})
    64
    >>> rows_per_batch(1024, ({"mask": np.ones((10, 8), bool)}, {"mask": np.ones((10, 24), bool)}))
    (64, 64)
    """
    if isinstance(rows, tuple):
        masks = [np.asarray(r["mask"]) for r in rows]
        sentences = max(sum(int(np.count_nonzero(m.any(axis=1))) for m in masks), 1)
        tokens = max(sum(int(np.count_nonzero(m)) for m in masks), 1)
        return (max(1, round(batch_size * sentences / tokens)),) * len(rows)
    if "mask" not in rows:
        return batch_size
    mask = np.asarray(rows["mask"])
    sentences = max(int(np.count_nonzero(mask.any(axis=1))), 1)
    tokens = max(int(np.count_nonzero(mask)), 1)
    return max(1, round(batch_size * sentences / tokens))


def row_count(ds) -> int:
    """Training examples in a Dataset (its windows) or in rows from :func:`training_rows` (all buckets')."""
    if isinstance(ds, tuple) and not isinstance(ds, data.Dataset):
        return sum(row_count(r) for r in ds)
    return len(ds["windows"] if isinstance(ds, dict) else ds.windows)


def steps_per_epoch(rows, batch_rows) -> int:
    """Optimizer steps of one epoch over ``rows`` (:func:`training_rows`) at ``batch_rows`` (:func:`rows_per_batch`)
    rows per step: ``ceil(N / B)``, summed over the buckets of the crf head."""
    if isinstance(rows, tuple):
        return sum(steps_per_epoch(r, b) for r, b in zip(rows, batch_rows))
    return -(-row_count(rows) // batch_rows)


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


def scheduled_batches(buckets: tuple, batch_sizes: tuple, orders, schedule):
    """The batches of an epoch over length buckets, in the order ``schedule`` names their buckets.

    Args:
      buckets: the rows of each bucket (:func:`jaxbackprop.buckets.sentence_buckets`); batch_sizes: rows per
        batch of each.
      orders: each bucket's rows in the epoch's order; schedule: int (steps,), the bucket of each
        step (each bucket ``ceil(N_b / B_b)`` times).

    Yields:
      The :func:`padded_batches` of each bucket, the k-th time the schedule names bucket b its k-th batch.
    """
    batches = [padded_batches(r, b, o) for r, b, o in zip(buckets, batch_sizes, orders)]
    for b in schedule:
        yield next(batches[b])


def model_batch(batch: dict, model_cfg: model.ModelConfig) -> dict:
    """The entries of a :func:`padded_batches` batch that ``model_cfg``'s loss reads (plus weights).

    >>> cfg = model.ModelConfig(vocab_size=10)  # no per-word features
    >>> sorted(model_batch({"windows": 0, "features": 0, "labels": 0, "weights": 0}, cfg))
    ['labels', 'weights', 'windows']
    """
    required = crf.sentence_batch_keys(model_cfg) if model_cfg.head in model.SENTENCE_HEADS else batch_keys(model_cfg)
    keep = required + ("weights",)
    return {k: v for k, v in batch.items() if k in keep}
