"""Data: CoNLL files -> sentences -> vocabulary -> windows of integer ids (numpy only).

Data flows one way::

    read_conll -> build_vocab, tags_from -> make_windows -> Dataset(windows, casing, labels, ...)
    read_embeddings -> embedding_matrix -> the rows that seed the model's E

Windows are built without a Python loop per token: all sentences are laid end to end in one
flat id array, each padded with ``window // 2`` START ids on the left and END ids on the right,
and every window is one fancy-indexing gather from that array.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import json
import logging
import re
from pathlib import Path
from typing import Iterable, Mapping, NamedTuple, Sequence

import numpy as np

log = logging.getLogger(__name__)

DOCSTART = "-DOCSTART-"
PAD, START, END, UNK = "<pad>", "<s>", "</s>", "<unk>"
RESERVED = (PAD, START, END, UNK)
PAD_ID, START_ID, END_ID, UNK_ID = range(4)

# The casing feature of a token (casing_id checks digit, other, lower, title, upper, mixed in turn):
CASINGS = (
    "pad",  # beyond a sentence edge: the window slots before the first / after the last word
    "lower",  # every letter lowercase: rejects, eu-wide
    "upper",  # every letter uppercase, more than one letter: EU, U.S., BRUSSELS
    "title",  # first letter uppercase, the rest lowercase: Peter, Mr., I
    "mixed",  # any other mix of cases: McDonald, iPhone, O'Neill
    "digit",  # contains a digit, whatever its letters: 1996-08-22, 3.5, A4
    "other",  # no letters and no digits: . , ( --
)
NUM_CASINGS = len(CASINGS)
PAD_CASING = 0

_TAG = re.compile(r"O|[BI]-\S+")
_DIGIT = re.compile(r"\d")


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


def _records(text: str, name: str):
    """Yield ``(line, token, tag)`` per token line and None per sentence break (blank line, DOCSTART)."""
    ncols, legal = None, set()  # legal: tags already checked, so the regex runs once per tag
    for lineno, line in enumerate(text.split("\n"), start=1):
        fields = line.split()  # any whitespace: tabs, spaces, a trailing CR
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
    ``-DOCSTART-`` lines break sentences and are skipped; CRLF is fine. Tags come back in IOB2
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
        raise DataError(path, raw.count(b"\n", 0, err.start) + 1, f"not UTF-8 text ({err.reason})") from None


def read_conll(path, allowed_tags: Iterable[str] | None = None) -> list[Sentence]:
    """:func:`parse_conll` of a UTF-8 file; errors name ``path`` and the line.

    Read dev and test files with ``allowed_tags=tags_from(train_sentences)``, so that a tag
    the training data never showed is reported at its line.
    """
    return parse_conll(read_text(path), str(path), allowed_tags)


# ----------------------------------------------------------------------------- words and casing


def normalize_word(token: str) -> str:
    """The vocabulary form of a token: lowercased, every digit mapped to ``0``.

    >>> normalize_word("1996-08-22"), normalize_word("EU")
    ('0000-00-00', 'eu')
    """
    return _DIGIT.sub("0", token.lower())


def casing_id(token: str) -> int:
    """Index into :data:`CASINGS` of ``token``'s casing (never the pad id 0).

    >>> [CASINGS[casing_id(t)] for t in ("the", "Peter", "EU", "McDonald", "1996", ".")]
    ['lower', 'title', 'upper', 'mixed', 'digit', 'other']
    """
    letters = [ch for ch in token if ch.isalpha()]
    if _DIGIT.search(token):
        kind = "digit"
    elif not letters:
        kind = "other"
    elif all(ch.islower() for ch in letters):
        kind = "lower"
    elif letters[0].isupper() and all(ch.islower() for ch in letters[1:]):
        kind = "title"
    elif all(ch.isupper() for ch in letters):
        kind = "upper"
    else:
        kind = "mixed"
    return CASINGS.index(kind)


# ----------------------------------------------------------------------------- vocabulary and tags


def suffix(token: str, length: int) -> str:
    """The last ``length`` characters of the token's normalised form (the whole of a shorter one).

    >>> suffix("Brussels", 3), suffix("EU", 3)
    ('els', 'eu')
    """
    return normalize_word(token)[-length:]


@dataclasses.dataclass(frozen=True)
class Vocab:
    """Normalised words and their ids (0..3 are ``<pad> <s> </s> <unk>``), and per-word features.

    Every word has ``features_per_word`` feature ids, rows of the model's feature table ``Ecase``
    (``feature_size`` rows): its casing (:data:`CASINGS`), then -- if ``suffix_len`` > 0 -- its
    normalised suffix, ``NUM_CASINGS + 2 + i`` for ``suffixes[i]``, ``NUM_CASINGS + 1`` for a suffix
    never seen in training, ``NUM_CASINGS`` beyond a sentence edge.

    >>> v = Vocab(RESERVED + ("the", "eu"))
    >>> len(v), v.ids(["The", "EU", "lamb"]).tolist()
    (6, [4, 5, 3])
    >>> Vocab(RESERVED, suffix_len=2, suffixes=("he",)).features(["The", "EU"]).tolist()
    [[3, 9], [2, 8]]
    """

    words: tuple[str, ...] = dataclasses.field(repr=False)
    suffix_len: int = 0
    suffixes: tuple[str, ...] = dataclasses.field(default=(), repr=False)
    index: dict = dataclasses.field(init=False, repr=False, compare=False)
    suffix_index: dict = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self):
        words = tuple(self.words)
        if words[: len(RESERVED)] != RESERVED:
            raise ValueError(f"a vocabulary must start with the reserved words {RESERVED}, got {words[:4]}")
        index = {w: i for i, w in enumerate(words)}
        if len(index) != len(words):
            dup = next(w for w, c in collections.Counter(words).items() if c > 1)
            raise ValueError(f"duplicate word {dup!r} in vocabulary")
        if isinstance(self.suffix_len, bool) or not isinstance(self.suffix_len, int) or self.suffix_len < 0:
            raise ValueError(f"suffix_len must be an integer >= 0, got {self.suffix_len!r}")
        if self.suffixes and not self.suffix_len:
            raise ValueError("suffixes given but suffix_len is 0")
        object.__setattr__(self, "words", words)
        object.__setattr__(self, "suffixes", tuple(self.suffixes))
        object.__setattr__(self, "index", index)
        object.__setattr__(self, "suffix_index", {x: NUM_CASINGS + 2 + i for i, x in enumerate(self.suffixes)})

    @property
    def features_per_word(self) -> int:
        """k: the casing id, plus the suffix id when suffixes are used."""
        return 2 if self.suffix_len else 1

    @property
    def feature_size(self) -> int:
        """Rows of the feature table: the casings, plus edge, unseen and every known suffix."""
        return NUM_CASINGS + (2 + len(self.suffixes) if self.suffix_len else 0)

    def features(self, tokens: Iterable[str]) -> np.ndarray:
        """int32 (N, k) feature ids of the tokens: casing, then suffix (see the class docstring)."""
        tokens = list(tokens)
        casing = np.fromiter(map(casing_id, tokens), np.int32, count=len(tokens))
        if not self.suffix_len:
            return casing[:, None]
        get, unseen = self.suffix_index.get, NUM_CASINGS + 1
        suffix_ids = np.fromiter((get(suffix(t, self.suffix_len), unseen) for t in tokens), np.int32, count=len(tokens))
        return np.stack([casing, suffix_ids], axis=1)

    def edge_features(self) -> np.ndarray:
        """int32 (k,) feature ids of a slot beyond a sentence edge."""
        return np.array([PAD_CASING, NUM_CASINGS][: self.features_per_word], np.int32)

    def __len__(self) -> int:
        return len(self.words)

    def __repr__(self) -> str:
        return f"Vocab(size={len(self)})"

    def ids(self, tokens: Iterable[str]) -> np.ndarray:
        """int32 ids of the tokens' normalised forms; unknown words get ``UNK_ID``."""
        get = self.index.get
        return np.fromiter((get(normalize_word(t), UNK_ID) for t in tokens), np.int32)

    def to_json(self) -> str:
        return json.dumps({"words": list(self.words), "suffix_len": self.suffix_len, "suffixes": list(self.suffixes)}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> "Vocab":
        data = json.loads(text)
        if not (isinstance(data, dict) and isinstance(data.get("words"), list)):
            raise ValueError('vocabulary JSON must be an object {"words": [...]}')
        suffixes = data.get("suffixes", [])
        if not all(isinstance(w, str) for w in data["words"] + suffixes):
            raise ValueError("vocabulary JSON words and suffixes must all be strings")
        return cls(tuple(data["words"]), data.get("suffix_len", 0), tuple(suffixes))


def build_vocab(sentences: Sequence[Sentence], min_count: int = 1, extra_words: Iterable[str] = (), *, suffix_len: int = 0,
                suffix_min_count: int = 1) -> Vocab:  # fmt: skip
    """The vocabulary of training sentences plus the words of a pretrained file.

    Training words (normalised) seen at least ``min_count`` times come first, by descending
    count then alphabetically; then every normalised ``extra_words`` entry not already present,
    in its given order, so that dev/test words with a pretrained vector get their own id.
    With ``suffix_len`` > 0, the suffixes of that length seen at least ``suffix_min_count``
    times in training become features (sorted); rarer ones share the "unseen suffix" id.

    >>> s = [Sentence(("the", "EU", "the"), ("O", "B-ORG", "O"))]
    >>> build_vocab(s, extra_words=["cat", "the"]).words
    ('<pad>', '<s>', '</s>', '<unk>', 'the', 'eu', 'cat')
    """
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
        raise ValueError(f"min_count must be an integer >= 1, got {min_count!r}")
    counts = collections.Counter()
    for token, count in collections.Counter(t for s in sentences for t in s.tokens).items():
        counts[normalize_word(token)] += count
    kept = sorted((w for w, c in counts.items() if c >= min_count and w not in RESERVED), key=lambda w: (-counts[w], w))
    words = dict.fromkeys(RESERVED + tuple(kept))
    words.update((w, None) for w in map(normalize_word, extra_words) if w not in words)
    if isinstance(suffix_min_count, bool) or not isinstance(suffix_min_count, int) or suffix_min_count < 1:
        raise ValueError(f"suffix_min_count must be an integer >= 1, got {suffix_min_count!r}")
    suffixes = ()
    if suffix_len:
        suffix_counts = collections.Counter(suffix(t, suffix_len) for s in sentences for t in s.tokens)
        suffixes = tuple(sorted(x for x, c in suffix_counts.items() if c >= suffix_min_count))
    return Vocab(tuple(words), suffix_len, suffixes)


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
      casing: int32 (N, n*k) feature ids, word-major: the k ids of each window word in turn (see
        :class:`Vocab`; k = 1 is the casing id alone, ``PAD_CASING`` beyond the sentence edges).
      labels: int32 (N,) tag ids, or None for raw text (:func:`windows_for_tokens`).
      sentence_lengths: int32 (S,) tokens per sentence, to split predictions back.
      tokens: the sentences' tokens, kept for printing predictions (may be None).
    """

    windows: np.ndarray
    casing: np.ndarray
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
        casing=np.stack(feature_windows, axis=2).reshape(len(word_ids), window * len(edge)),  # (N, n, k) -> (N, n k)
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


def make_windows(sentences: Sequence[Sentence], vocab: Vocab, tag_index: Mapping[str, int], window: int, *,
                 name: str = "sentence") -> Dataset:  # fmt: skip
    """One window of ``window`` word ids (and casing ids) per token, with its tag id as label.

    ``name`` starts the error about a tag outside ``tag_index`` (``"dev sentence 3: ..."``); a
    sentence has no line number, so read files with :func:`read_conll`'s ``allowed_tags``.

    >>> s = [Sentence(("EU", "rejects"), ("B-ORG", "O"))]
    >>> ds = make_windows(s, Vocab(RESERVED + ("eu",)), {"O": 0, "B-ORG": 1}, 3)
    >>> ds.windows.tolist(), ds.labels.tolist(), ds.casing.tolist()
    ([[1, 4, 3], [4, 3, 2]], [1, 0], [[0, 2, 1], [2, 1, 0]])
    """
    labels = _label_ids(sentences, tag_index, name)
    return windows_for_tokens([s.tokens for s in sentences], vocab, window)._replace(labels=labels)
