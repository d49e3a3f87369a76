"""Pretrained word vectors: read and write GloVe / word2vec text files, seed the model's E from them.

:func:`load_pretrained` takes a file or the name of a packaged table (:mod:`jaxbackprop.vectors`).

Words are looked up by their normalised form (lowercase, digits -> 0), the same form the
vocabulary uses, so "Paris" and "1996" find GloVe's "paris" and "0000"-like entries.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import re
from collections.abc import Iterable, Sequence

import numpy as np

from jaxbackprop import files, vectors
from jaxbackprop.data import DataError, Sentence, check_column, lines_of, read_text
from jaxbackprop.features import normalize_word
from jaxbackprop.vocab import RESERVED, Vocab

log = logging.getLogger(__name__)


def _word2vec_header(line: str):
    fields = line.split()
    if len(fields) == 2 and all(f.isdigit() for f in fields):
        return int(fields[0]), int(fields[1])
    return None


_ASCII_SPACE = re.compile(r"[ \t\f\v]+")
DIM_SAMPLE = 10  # lines whose most common length sets d, so a wrong first line is the one blamed


def _fields(line: str) -> list[str]:
    """The word and its values. Only ASCII blanks separate them: a word may hold a no-break space
    (GloVe 840B has such words), which ``str.split`` would cut into two fields."""
    if line.isascii():
        return line.split()
    stripped = line.strip(" \t\f\v")
    return _ASCII_SPACE.split(stripped) if stripped else []


def _common_dim(lines: Sequence[str]) -> int | None:
    """d: the most common number of values among the first :data:`DIM_SAMPLE` vector lines (ties: the earliest)."""
    counts = [len(fields) - 1 for fields in itertools.islice(filter(None, map(_fields, lines)), DIM_SAMPLE)]
    return max(counts, key=counts.count) if counts else None


def _parse_vector(fields: list[str], dim: int, name, lineno: int) -> np.ndarray:
    if len(fields) != dim + 1:
        raise DataError(name, lineno, f"expected {dim} values after the word, got {len(fields) - 1}")
    try:
        with np.errstate(over="ignore"):  # a value beyond float32 becomes inf, reported below
            vec = np.array(fields[1:], dtype=np.float32)
    except ValueError:
        bad = next(f for f in fields[1:] if not _is_float(f))
        raise DataError(name, lineno, f"value {bad!r} is not a number") from None
    if not np.isfinite(vec).all():
        bad = fields[1 + int(np.argmin(np.isfinite(vec)))]
        if math.isfinite(float(bad)):
            raise DataError(name, lineno, f"value {bad!r} is beyond float32's range (+-3.4e38)")
        raise DataError(name, lineno, f"non-finite value {bad!r} (nan or inf) in vector")
    return vec


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_embeddings(path) -> tuple[list[str], np.ndarray]:
    """Words and float32 (N, d) vectors of a GloVe (no header) or word2vec text file.

    A first line ``count dim`` is taken as a word2vec header (the count is checked). Every line
    must hold the word and exactly d values (without a header, d is the most common count of the
    first lines). Word and values are separated by ASCII blanks, so a word may hold a no-break
    space, as some of GloVe 840B's do. A repeated word keeps its first vector; repeats are counted
    and logged, not fatal.

    Raises:
      DataError: ``"{path}:{line}: expected 50 values after the word, got 49"`` and the like.
    """
    name = str(path)
    lines = lines_of(read_text(path))
    header = _word2vec_header(lines[0])
    body = lines[1:] if header else lines
    dim = header[1] if header else _common_dim(body)
    words, rows, seen, repeats = [], [], set(), 0
    for lineno, line in enumerate(body, start=2 if header else 1):
        fields = _fields(line)
        if not fields:
            continue
        vec = _parse_vector(fields, dim, name, lineno)
        if fields[0] in seen:
            repeats += 1
            continue
        seen.add(fields[0])
        words.append(fields[0])
        rows.append(vec)
    if not words or dim < 1:
        raise DataError(name, 0, "no word vectors found (the file is empty or holds only a header)")
    if header and header[0] != len(words) + repeats:
        raise DataError(name, 1, f"header says {header[0]} vectors, the file holds {len(words) + repeats}")
    if repeats:
        log.warning("%s: %d repeated word(s) ignored, each kept its first vector", name, repeats)
    return words, np.stack(rows)


def load_pretrained(path_or_name) -> tuple[list[str], np.ndarray]:
    """``(words, (N, d) vectors)`` of ``--embeddings``: a GloVe/word2vec text file, or the name of a packaged
    table (:data:`jaxbackprop.vectors.PACKAGES`, memory-mapped). A file of that name wins over the name."""
    if vectors.is_package_name(path_or_name):
        return vectors.load_package(os.fspath(path_or_name))
    vectors.check_name(path_or_name)
    return read_embeddings(path_or_name)


def write_embeddings(words: Sequence[str], vectors: np.ndarray, path) -> None:
    """Write a GloVe-style text file (``word v1 ... vd``, no header), atomically.

    Values are written with 9 significant digits, enough to read float32 back exactly.

    Args:
      words: N words, none empty or holding whitespace.
      vectors: (N, d) values.
      path: the file to write.
    """
    vectors = np.asarray(vectors, np.float32)
    if vectors.ndim != 2 or len(vectors) != len(words):
        raise ValueError(f"vectors must have shape (len(words), d) = ({len(words)}, d), got {vectors.shape}")
    lines = [
        check_column("word", w, f"row {i}") + " " + " ".join(f"{x:.9g}" for x in row) + "\n"
        for i, (w, row) in enumerate(zip(words, vectors.tolist()))
    ]
    files.write_text(path, "".join(lines))


def _rng(key_or_seed) -> np.random.Generator:
    if isinstance(key_or_seed, np.random.Generator):
        return key_or_seed
    if isinstance(key_or_seed, (int, np.integer)):
        return np.random.default_rng(int(key_or_seed))
    import jax  # only for a jax PRNG key: seed numpy from its raw bits

    return np.random.default_rng(np.asarray(jax.random.key_data(key_or_seed)).ravel().tolist())


def pretrained_lookup(words: Sequence[str]) -> dict[str, int]:
    """word -> row: exact matches first, then the first word with the same normalised form."""
    lookup = {}
    for i, w in enumerate(words):
        lookup.setdefault(w, i)
    for i, w in enumerate(words):
        lookup.setdefault(normalize_word(w), i)
    return lookup


def embedding_matrix(
    vocab: Vocab, words: Sequence[str], vectors: np.ndarray, key_or_seed=0, scale: float | None = None, lookup=None
):
    """E (V, d) float32 seeded from pretrained vectors, and how much of the vocabulary they cover.

    A vocabulary word gets the pretrained vector of the same word (or, failing that, of the
    first pretrained word with the same normalised form). Every other row, the reserved ids
    included, is drawn from N(0, scale^2); ``scale=None`` uses the pretrained values' standard
    deviation, so random rows are about as long as pretrained ones.

    Args:
      key_or_seed: an int seed, a ``np.random.Generator`` or a jax PRNG key.
      lookup: :func:`pretrained_lookup` of ``words``, if the caller has it (400,000 words take seconds).

    Returns:
      ``(E, {"vocab_size": V, "found": rows from the file, "fraction": found / V})``.
    """
    vectors = np.asarray(vectors, np.float32)
    if vectors.ndim != 2 or len(vectors) != len(words):
        raise ValueError(f"vectors must have shape (len(words), d) = ({len(words)}, d), got {vectors.shape}")
    std = float(vectors.std()) if scale is None else float(scale)
    E = (std * _rng(key_or_seed).standard_normal((len(vocab), vectors.shape[1]))).astype(np.float32)
    rows = table_rows(vocab, pretrained_lookup(words) if lookup is None else lookup)
    found = rows >= 0
    E[found] = vectors[rows[found]]
    n = int(found.sum())
    return E, {"vocab_size": len(vocab), "found": n, "fraction": n / len(vocab)}


def table_rows(vocab: Vocab, lookup: dict[str, int]) -> np.ndarray:
    """int32 (V,): the row of the pretrained table that seeds each row of E (:func:`embedding_matrix`'s
    rule), -1 where none does (the reserved ids, words without a vector)."""
    rows = [-1] * len(RESERVED) + [lookup.get(w, -1) for w in vocab.words[len(RESERVED) :]]
    return np.array(rows, np.int32)


def token_coverage(sentences: Sequence[Sentence], words: Iterable[str]) -> float:
    """Fraction of tokens whose normalised form is a (normalised) pretrained word."""
    known = {normalize_word(w) for w in words}
    tokens = [normalize_word(t) for s in sentences for t in s.tokens]
    if not tokens:
        raise ValueError("token_coverage needs at least one token")
    return sum(t in known for t in tokens) / len(tokens)
