"""The vocabulary: normalised words -> ids, and the ids of each word's features.

Ids 0..3 are reserved (``<pad> <s> </s> <unk>``); training words follow by frequency, then the
words of a pretrained file. Per-word features (:mod:`jaxbackprop.features`) get rows of their own
table: the casing categories first, then -- with suffixes -- an edge row, an unseen-suffix row and
one row per suffix seen often enough in training.
"""

from __future__ import annotations

import collections
import dataclasses
import json
from collections.abc import Iterable, Sequence

import numpy as np

from jaxbackprop.features import NUM_CASINGS, PAD_CASING, casing_id, normalize_word, suffix

PAD, START, END, UNK = "<pad>", "<s>", "</s>", "<unk>"
RESERVED = (PAD, START, END, UNK)
PAD_ID, START_ID, END_ID, UNK_ID = range(4)
# feature-table rows after the casings, when suffixes are used
SUFFIX_EDGE_ID = NUM_CASINGS  # the suffix slot of a position beyond a sentence edge
SUFFIX_UNSEEN_ID = NUM_CASINGS + 1  # a suffix training never showed (often enough)
FIRST_SUFFIX_ID = NUM_CASINGS + 2  # suffixes[i] has id FIRST_SUFFIX_ID + i


@dataclasses.dataclass(frozen=True)
class Vocab:
    """Normalised words and their ids (0..3 are ``<pad> <s> </s> <unk>``), and per-word features.

    Every word has ``features_per_word`` feature ids, rows of the model's feature table ``F``
    (``feature_vocab_size`` rows): its casing (:data:`jaxbackprop.features.CASINGS`), then -- if
    ``suffix_len`` > 0 -- its normalised suffix, ``NUM_CASINGS + 2 + i`` for ``suffixes[i]``,
    ``NUM_CASINGS + 1`` for a suffix never seen in training, ``NUM_CASINGS`` beyond a sentence edge.

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
        object.__setattr__(self, "suffix_index", {x: FIRST_SUFFIX_ID + i for i, x in enumerate(self.suffixes)})

    @property
    def features_per_word(self) -> int:
        """k: the casing id, plus the suffix id when suffixes are used."""
        return 2 if self.suffix_len else 1

    @property
    def feature_vocab_size(self) -> int:
        """Rows of the feature table: the casings, plus edge, unseen and every known suffix."""
        return NUM_CASINGS + (2 + len(self.suffixes) if self.suffix_len else 0)

    def features(self, tokens: Iterable[str]) -> np.ndarray:
        """int32 (N, k) feature ids of the tokens: casing, then suffix (see the class docstring)."""
        tokens = list(tokens)
        casing = np.fromiter(map(casing_id, tokens), np.int32, count=len(tokens))
        if not self.suffix_len:
            return casing[:, None]
        get = self.suffix_index.get
        suffix_ids = np.fromiter(
            (get(suffix(t, self.suffix_len), SUFFIX_UNSEEN_ID) for t in tokens), np.int32, count=len(tokens)
        )
        return np.stack([casing, suffix_ids], axis=1)

    def edge_features(self) -> np.ndarray:
        """int32 (k,) feature ids of a slot beyond a sentence edge."""
        return np.array([PAD_CASING, SUFFIX_EDGE_ID][: self.features_per_word], np.int32)

    def __len__(self) -> int:
        return len(self.words)

    def __repr__(self) -> str:
        return f"Vocab(size={len(self)})"

    def ids(self, tokens: Iterable[str]) -> np.ndarray:
        """int32 ids of the tokens' normalised forms; unknown words get ``UNK_ID``."""
        get = self.index.get
        return np.fromiter((get(normalize_word(t), UNK_ID) for t in tokens), np.int32)

    def to_json(self) -> str:
        """The vocabulary as vocab.json holds it: words, suffix_len and suffixes."""
        fields = {"words": list(self.words), "suffix_len": self.suffix_len, "suffixes": list(self.suffixes)}
        return json.dumps(fields, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Vocab:
        """The vocabulary :meth:`to_json` wrote; ValueError for anything else."""
        data = json.loads(text)
        if not (isinstance(data, dict) and isinstance(data.get("words"), list)):
            raise ValueError('vocabulary JSON must be an object {"words": [...]}')
        suffixes = data.get("suffixes", [])
        if not all(isinstance(w, str) for w in data["words"] + suffixes):
            raise ValueError("vocabulary JSON words and suffixes must all be strings")
        return cls(tuple(data["words"]), data.get("suffix_len", 0), tuple(suffixes))


def _check_count(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def build_vocab(
    sentences: Sequence,
    min_count: int = 1,
    extra_words: Iterable[str] = (),
    *,
    suffix_len: int = 0,
    suffix_min_count: int = 1,
) -> Vocab:
    """The vocabulary of training sentences plus the words of a pretrained file.

    ``sentences`` are :class:`jaxbackprop.data.Sentence` (anything with ``.tokens``).

    Training words (normalised) seen at least ``min_count`` times come first, by descending
    count then alphabetically; then every normalised ``extra_words`` entry not already present,
    in its given order, so that dev/test words with a pretrained vector get their own id.
    With ``suffix_len`` > 0, the suffixes of that length seen at least ``suffix_min_count``
    times in training become features (sorted); rarer ones share the "unseen suffix" id.

    >>> from jaxbackprop.data import Sentence
    >>> s = [Sentence(("the", "EU", "the"), ("O", "B-ORG", "O"))]
    >>> build_vocab(s, extra_words=["cat", "the"]).words
    ('<pad>', '<s>', '</s>', '<unk>', 'the', 'eu', 'cat')
    """
    _check_count("min_count", min_count)
    counts = collections.Counter()
    for token, count in collections.Counter(t for s in sentences for t in s.tokens).items():
        counts[normalize_word(token)] += count
    kept = sorted((w for w, c in counts.items() if c >= min_count and w not in RESERVED), key=lambda w: (-counts[w], w))
    words = dict.fromkeys(RESERVED + tuple(kept))
    words.update((w, None) for w in map(normalize_word, extra_words) if w not in words)
    _check_count("suffix_min_count", suffix_min_count)
    suffixes = ()
    if suffix_len:
        suffix_counts = collections.Counter(suffix(t, suffix_len) for s in sentences for t in s.tokens)
        suffixes = tuple(sorted(x for x, c in suffix_counts.items() if c >= suffix_min_count))
    return Vocab(tuple(words), suffix_len, suffixes)
