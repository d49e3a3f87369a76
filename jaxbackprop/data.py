"""Data: CoNLL files -> sentences -> windows of integer ids (numpy only).

Data flows one way::

    read_conll -> vocab.build_vocab, tags_from -> make_windows -> Dataset(windows, features, labels, ...)
    embeddings.read_embeddings -> embeddings.embedding_matrix -> the rows that seed the model's E

Windows are built without a Python loop per token: all sentences are laid end to end in one
flat id array, each padded with ``window // 2`` START ids on the left and END ids on the right,
and every window is one fancy-indexing gather from that array.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxbackprop import files
from jaxbackprop.vocab import END_ID, START_ID, Vocab

DOCSTART = "-DOCSTART-"

_TAG = re.compile(r"O|[BI]-\S+")


class DataError(ValueError):
    """A malformed data file; the message is always ``"{file}:{line}: {problem}"``.

    ``line`` is 1-based; 0 means the file as a whole (e.g. an empty file).
    """

    def __init__(self, file, line: int, problem: str):
        super().__init__(f"{file}:{line}: {problem}")
        self.file, self.line, self.problem = str(file), line, problem


class Sentence(NamedTuple):
    """One sentence: its tokens and one IOB2 tag per token."""

    tokens: tuple[str, ...]
    tags: tuple[str, ...]


# ----------------------------------------------------------------------------- CoNLL files


def is_tag(tag: str) -> bool:
    """True for ``O``, ``B-X`` and ``I-X`` (X non-empty): the tags CoNLL files may hold."""
    return _TAG.fullmatch(tag) is not None


def iob1_to_iob2(tags: Sequence[str]) -> tuple[str, ...]:
    """Rewrite every ``I-X`` that starts an entity (after O, the start, or another type) as ``B-X``.

    IOB1 (the original eng.* files) uses ``B-X`` only between two adjacent X entities; IOB2
    starts every entity with ``B-X``. Valid IOB2 is left unchanged, so this is safe to always apply.

    >>> iob1_to_iob2(["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG"])
    ('B-PER', 'I-PER', 'O', 'B-LOC', 'B-LOC', 'B-ORG')
    """
    out = []
    for prev, tag in zip(("O",) + tuple(tags), tags):
        starts = tag.startswith("I-") and (prev == "O" or prev[2:] != tag[2:])
        out.append("B-" + tag[2:] if starts else tag)
    return tuple(out)


def lines_of(text: str) -> list[str]:
    """The lines of a text whichever break it uses: LF, CRLF or a lone CR (old Mac files).

    Only these three count (not ``str.splitlines``'s form feeds or Unicode separators), so the
    line numbers are the ones an editor shows.

    >>> lines_of("a O\\r\\nb O\\rc O\\n")
    ['a O', 'b O', 'c O', '']
    """
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _records(text: str, name: str):
    """Yield ``(line, token, tag)`` per token line and None per sentence break (blank line, DOCSTART)."""
    ncols, legal = None, set()  # legal: tags already checked, so the regex runs once per tag
    for lineno, line in enumerate(lines_of(text), start=1):
        fields = line.split()  # any whitespace: tabs, spaces
        if not fields or fields[0] == DOCSTART:
            yield None
            continue
        if ncols is None:
            if len(fields) < 2:
                raise DataError(name, lineno, f"expected at least 2 columns (token ... tag), got 1: {line.strip()!r}")
            ncols = len(fields)
        elif len(fields) != ncols:
            raise DataError(
                name, lineno, f"expected {ncols} columns like the first token line, got {len(fields)}: {line.strip()!r}"
            )
        if fields[-1] not in legal and not is_tag(fields[-1]):
            raise DataError(name, lineno, f"illegal tag {fields[-1]!r}: expected 'O', 'B-TYPE' or 'I-TYPE'")
        legal.add(fields[-1])
        yield lineno, fields[0], fields[-1]


def parse_conll(text: str, name: str = "<string>", allowed_tags: Iterable[str] | None = None) -> list[Sentence]:
    """Sentences of a CoNLL text: token first, NER tag last, blank lines between sentences.

    Accepts the 4-column CoNLL-2003 layout (``EU NNP B-NP B-ORG``) and 2-column token/tag lines
    separated by tabs or spaces; the first token line fixes the column count for the file.
    ``-DOCSTART-`` lines break sentences and are skipped; lines may end in LF, CRLF or CR. Tags come back in IOB2
    whether the file used IOB1 or IOB2.

    Args:
      allowed_tags: for a dev or test file, the tag set of the training data (:func:`tags_from`):
        a tag outside it is reported at its line (:func:`make_windows` sees sentences without
        line numbers and could only name the sentence). None: any legal tag.

    Raises:
      DataError: ``"{name}:{line}: ..."`` for a wrong column count, an illegal tag, a tag not
        in ``allowed_tags``, or no sentences.

    >>> parse_conll("EU I-ORG\\nrejects O\\n\\nPeter I-PER\\n")
    [Sentence(tokens=('EU', 'rejects'), tags=('B-ORG', 'O')), Sentence(tokens=('Peter',), tags=('B-PER',))]
    >>> parse_conll("EU B-ORG\\n\\nParis B-LOC\\n", "dev.txt", allowed_tags=("O", "B-ORG", "I-ORG"))
    Traceback (most recent call last):
    jaxbackprop.data.DataError: dev.txt:3: tag 'B-LOC' is not among the training tags (O, B-ORG, I-ORG)
    """
    allowed = None if allowed_tags is None else tuple(allowed_tags)
    sentences, current = [], []
    for record in itertools.chain(_records(text, name), [None]):
        if record is not None:
            current.append(record)
        elif current:
            lines, tokens, tags = zip(*current)
            iob2 = iob1_to_iob2(tags)
            if allowed is not None:
                _check_tags(name, lines, tags, iob2, allowed)
            sentences.append(Sentence(tokens, iob2))
            current = []
    if not sentences:
        raise DataError(name, 0, "no sentences found (the file is empty or holds only blank/DOCSTART lines)")
    return sentences


def _check_tags(name, lines, tags, iob2, allowed) -> None:
    """Every IOB2 tag of a sentence in ``allowed``; the error shows the tag as the file wrote it."""
    for line, tag, converted in zip(lines, tags, iob2):
        if converted not in allowed:
            raise DataError(name, line, f"tag {tag!r} is not among the training tags ({', '.join(allowed)})")


def read_text(path) -> str:
    """The text of a UTF-8 file (a BOM is dropped); otherwise a :class:`DataError` naming the line.

    A missing file or a directory raises the ``OSError`` of ``open`` (``FileNotFoundError``,
    ``IsADirectoryError``), whose ``filename`` names the path.
    """
    raw = Path(path).read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = len(lines_of(raw[: err.start].decode("utf-8", "replace")))
        raise DataError(path, line, f"not UTF-8 text ({err.reason})") from None


def read_conll(path, allowed_tags: Iterable[str] | None = None) -> list[Sentence]:
    """:func:`parse_conll` of a UTF-8 file; errors name ``path`` and the line.

    Read dev and test files with ``allowed_tags=tags_from(train_sentences)``, so that a tag
    the training data never showed is reported at its line.
    """
    return parse_conll(read_text(path), str(path), allowed_tags)


def check_column(kind: str, text: str, where: str) -> str:
    """``text``, if it can be written as one whitespace-separated column; else a ValueError naming ``where``."""
    if not text or any(ch.isspace() for ch in text):
        raise ValueError(
            f"{where}: {kind} {text!r} is empty or holds whitespace, so it cannot be written as one column"
        )
    return text


def _conll_lines(sentences: Sequence[Sentence]):
    for i, s in enumerate(sentences):
        if len(s.tokens) != len(s.tags) or not s.tokens:
            raise ValueError(f"sentence {i}: {len(s.tokens)} tokens and {len(s.tags)} tags (need the same, > 0)")
        for token, tag in zip(s.tokens, s.tags):
            if not is_tag(tag):
                raise ValueError(f"sentence {i}: illegal tag {tag!r}")
            yield f"{check_column('token', token, f'sentence {i}')} {tag}\n"
        yield "\n"


def write_conll(sentences: Sequence[Sentence], path) -> None:
    """Write 2-column ``token tag`` lines, a blank line after each sentence, atomically.

    Raises:
      ValueError: a token holding whitespace, an illegal tag or a sentence without tokens
        (checked before anything is written).
    """
    files.write_text(path, "".join(_conll_lines(sentences)))


# ----------------------------------------------------------------------------- tags


def tags_from(sentences: Sequence[Sentence]) -> tuple[str, ...]:
    """The tag set: ``O`` then ``B-X, I-X`` for every entity type X seen, types sorted.

    Both B- and I- are included for each type so a dev/test I-X never falls outside the set.

    >>> tags_from([Sentence(("EU", "Peter"), ("B-ORG", "B-PER"))])
    ('O', 'B-ORG', 'I-ORG', 'B-PER', 'I-PER')
    """
    types = sorted({t[2:] for s in sentences for t in s.tags if t != "O"})
    return ("O",) + tuple(f"{p}-{x}" for x in types for p in "BI")


def make_tag_index(tags: Sequence[str]) -> dict[str, int]:
    """``{tag: id}`` in the order of ``tags`` (as returned by :func:`tags_from`)."""
    return {t: i for i, t in enumerate(tags)}


# ----------------------------------------------------------------------------- windows


class Dataset(NamedTuple):
    """Windows around every token of a list of sentences, as numpy arrays.

    Attributes:
      windows: int32 (N, n) word ids, N tokens in all, the token itself in the middle column.
      features: int32 (N, n*k) feature ids, word-major: the k ids of each window word in turn (see
        :class:`~jaxbackprop.vocab.Vocab`; k = 1 is the casing id alone, ``PAD_CASING`` beyond the
        sentence edges).
      labels: int32 (N,) tag ids, or None for raw text (:func:`windows_for_tokens`).
      sentence_lengths: int32 (S,) tokens per sentence, to split predictions back.
      tokens: the sentences' tokens, kept for printing predictions (may be None).
    """

    windows: np.ndarray
    features: np.ndarray
    labels: np.ndarray | None
    sentence_lengths: np.ndarray
    tokens: list | None = None


def _check_window(window) -> int:
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1 or window % 2 != 1:
        raise ValueError(f"window must be an odd integer >= 1, got {window!r}")
    return int(window)


def _gather_windows(flat: np.ndarray, lengths: np.ndarray, window: int, left: int, right: int) -> np.ndarray:
    """(N, window) windows of ``flat`` (N,), never crossing sentences, padded with left/right ids."""
    h = window // 2
    lengths = lengths.astype(np.int64)
    starts = np.cumsum(lengths + 2 * h) - (lengths + 2 * h)  # each padded sentence's first slot
    padded = np.full(int((lengths + 2 * h).sum()), left, np.int32)
    padded[((starts + h + lengths)[:, None] + np.arange(h)[None, :]).ravel()] = right
    # token i of sentence s sits after s sentences' 2h pads and its own h left pads
    centre = np.arange(len(flat)) + h + 2 * h * np.repeat(np.arange(len(lengths)), lengths)
    padded[centre] = flat
    return padded[centre[:, None] + np.arange(-h, h + 1)[None, :]]


def windows_for_tokens(tokens_list: Sequence[Sequence[str]], vocab: Vocab, window: int) -> Dataset:
    """Windows for unlabelled sentences (``labels`` is None), e.g. raw text to predict on.

    >>> from jaxbackprop.vocab import RESERVED
    >>> v = Vocab(RESERVED + ("eu", "rejects"))
    >>> windows_for_tokens([["EU", "rejects"]], v, 3).windows.tolist()
    [[1, 4, 5], [4, 5, 2]]
    """
    window = _check_window(window)
    for i, toks in enumerate(tokens_list):
        if isinstance(toks, str):
            raise ValueError(f"sentence {i} is a string; pass a list of tokens (e.g. text.split())")
    lengths = np.array([len(toks) for toks in tokens_list], np.int32)
    # look up each distinct token once; `inverse` maps every token to its distinct form
    distinct = {}
    inverse = np.fromiter((distinct.setdefault(t, len(distinct)) for toks in tokens_list for t in toks), np.int64)
    word_ids = vocab.ids(distinct)[inverse]
    features = vocab.features(distinct)[inverse]  # (N, k)
    edge = vocab.edge_features()
    feature_windows = [_gather_windows(features[:, j], lengths, window, edge[j], edge[j]) for j in range(len(edge))]
    return Dataset(
        windows=_gather_windows(word_ids, lengths, window, START_ID, END_ID),
        features=np.stack(feature_windows, axis=2).reshape(len(word_ids), window * len(edge)),  # (N, n, k) -> (N, n k)
        labels=None,
        sentence_lengths=lengths,
        tokens=[tuple(toks) for toks in tokens_list],
    )


def _label_ids(sentences: Sequence[Sentence], tag_index: Mapping[str, int], name: str) -> np.ndarray:
    for i, s in enumerate(sentences):
        if len(s.tags) != len(s.tokens):
            raise ValueError(f"{name} {i} has {len(s.tokens)} tokens but {len(s.tags)} tags")
        unknown = [t for t in s.tags if t not in tag_index]
        if unknown:
            raise ValueError(f"{name} {i}: tag {unknown[0]!r} is not in the tag set {tuple(tag_index)}")
    return np.fromiter((tag_index[t] for s in sentences for t in s.tags), np.int32)


def make_windows(
    sentences: Sequence[Sentence], vocab: Vocab, tag_index: Mapping[str, int], window: int, *, name: str = "sentence"
) -> Dataset:
    """One window of ``window`` word ids (and feature ids) per token, with its tag id as label.

    ``name`` starts the error about a tag outside ``tag_index`` (``"dev sentence 3: ..."``); a
    sentence has no line number, so read files with :func:`read_conll`'s ``allowed_tags``.

    >>> s = [Sentence(("EU", "rejects"), ("B-ORG", "O"))]
    >>> from jaxbackprop.vocab import RESERVED
    >>> ds = make_windows(s, Vocab(RESERVED + ("eu",)), {"O": 0, "B-ORG": 1}, 3)
    >>> ds.windows.tolist(), ds.labels.tolist(), ds.features.tolist()
    ([[1, 4, 3], [4, 3, 2]], [1, 0], [[0, 2, 1], [2, 1, 0]])
    """
    labels = _label_ids(sentences, tag_index, name)
    return windows_for_tokens([s.tokens for s in sentences], vocab, window)._replace(labels=labels)
