"""What a token's spelling tells beyond its vocabulary entry: its casing category and its suffix.

The vocabulary looks words up by their normalised form (:func:`normalize_word`: lowercased,
digits mapped to 0), which drops exactly what the casing category keeps; the suffix carries the
word-formation hint (-ers, -ian, -ton) that a rare or unseen word still shows. The model gives
each of these per-word features a row of its feature table ``F``; :class:`jaxbackprop.vocab.Vocab`
assigns the ids.
"""

from __future__ import annotations

import re

# The casing category of a token (casing_id checks digit, other, lower, title, upper, mixed in turn):
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

_DIGIT = re.compile(r"\d")


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


def suffix(token: str, length: int) -> str:
    """The last ``length`` characters of the token's normalised form (the whole of a shorter one).

    >>> suffix("Brussels", 3), suffix("EU", 3)
    ('els', 'eu')
    """
    return normalize_word(token)[-length:]
