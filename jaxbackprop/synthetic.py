"""A small English-like NER corpus made from templates: the default data set, no download.

Sentences mimic newswire: persons near "said" and "Mr.", organisations near "shares of" and
"Corp.", locations after "in" / "from" / "at", nationality adjectives as MISC, capitalised
sentence starts, weekdays and months that are capitalised but not entities, ALL-CAPS headlines
and datelines, digits in dates, scores and prices. Some of it is ambiguous on purpose: Washington is a
person or a city, Leeds United an organisation holding a city name, and some contexts ("talks
between X and Y") fit every entity type, so that only the word itself -- or its vector -- tells.

Words come in :data:`SYNONYM_GROUPS` (cities, first names, ... and ordinary synonyms such as
tv / television / telly). One member of several groups (:data:`HELD_OUT`) never appears in the
training split but does in dev and test, and :func:`synthetic_vectors` puts every group's
members close together -- the set-up of the lecture's "TV / telly / television" story, where
training sees "tv" and "telly" but never "television", so fine-tuning word vectors moves "tv" and
"telly" away from the unseen "television", which keeps its pretrained vector.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterable, Sequence

import numpy as np

from jaxbackprop.data import Sentence
from jaxbackprop.features import normalize_word


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


SYNONYM_GROUPS: dict[str, tuple[str, ...]] = {
    # names: entity words (a few belong to two groups, which makes them ambiguous)
    "first_name": _words(
        "john mary peter anna david sarah michael laura jordan florence austin victoria georgia helen"
    ),
    "surname": _words("smith jones brown miller wilson taylor clark walker washington lincoln jackson turner"),
    "city": _words("springfield london paris berlin madrid boston chicago")
    + _words("washington florence austin victoria lincoln jackson leeds"),
    "country": _words("france germany spain italy japan brazil canada kenya jordan georgia norway"),
    "nationality": _words("french german spanish italian japanese brazilian canadian kenyan norwegian"),
    "company": _words("acme globex initech umbrella cyberdyne zenith apex vertex"),
    "company_suffix": _words("corp. inc. plc ltd."),
    # ordinary words, always tagged O
    "tv": _words("tv television telly"),
    "film": _words("film picture movie"),
    "car": _words("car vehicle automobile"),
    "said": _words("said stated added noted"),
    "bought": _words("bought acquired purchased"),
    "big": _words("big large huge"),
    "profit": _words("profit earnings income"),
    "rose": _words("rose climbed gained jumped"),
    "fell": _words("fell dropped slipped declined"),
    "weekday": _words("monday tuesday wednesday thursday friday"),
    "month": _words("january march may june august october december"),
}

# group -> its member that only dev and test sentences use
HELD_OUT: dict[str, str] = {
    "first_name": "helen",
    "surname": "turner",
    "city": "leeds",
    "country": "norway",
    "nationality": "norwegian",
    "company": "vertex",
    "company_suffix": "ltd.",
    "tv": "television",  # the lecture's word: TV and telly are seen in training, television is not
    "film": "movie",
    "car": "automobile",
}
HELD_OUT_RATE = 0.3  # in dev/test, how often a group with a held-out member yields that member

# Entity slots: each a choice of "TYPE pattern"; {group} is a word of that group, and every word
# of the pattern takes the type. In an {ANY} slot only the word itself tells the type.
ENTITIES: dict[str, tuple[str, ...]] = {
    "PER": ("PER {first_name} {surname}", "PER {first_name} {surname}", "PER {surname}", "PER {first_name}"),
    "LAST": ("PER {surname}",),
    "LOC": ("LOC {city}", "LOC {city}", "LOC {country}", "LOC new york", "LOC los angeles", "LOC hong kong"),
    "COUNTRY": ("LOC {country}",),
    "ORG": (
        "ORG {company} {company_suffix}",
        "ORG {company}",
        "ORG bank of {city}",
        "ORG {surname} brothers",
        "ORG {nationality} airlines",
    ),
    "CLUB": ("ORG {city} united", "ORG {city} rovers", "ORG {city}"),
    "MISC": (
        "MISC {nationality}",
        "MISC world cup",
        "MISC olympic games",
        "MISC grand prix",
        "MISC {nationality} open",
    ),
    "NAT": ("MISC {nationality}",),
    "ANY": (
        "PER {first_name}",
        "PER {surname}",
        "LOC {city}",
        "LOC {country}",
        "ORG {company}",
        "ORG {company}",
        "MISC {nationality}",
    ),
}

# Number slots: '#' is a random digit.
NUMBERS: dict[str, tuple[str, ...]] = {
    "NUM": ("#", "##", "#.#", "##.#", "#,###"),
    "SCORE": ("#-#",),
    "DATE": ("199#-0#-1#", "199#-1#-2#"),
    "YEAR": ("19##",),
    "DAY": ("#", "1#", "2#"),
}

# "!" first: always ALL CAPS (a dateline or headline); other sentences are a headline now and then.
TEMPLATES: tuple[str, ...] = (
    "{PER} {said} the {ORG} deal was {big} .",
    "{ORG} {bought} {NUM} shares of {ORG} on {weekday} .",
    "shares of {ORG} {rose} {NUM} percent in {LOC} on {weekday} .",
    "{PER} , who lives in {LOC} , {said} he liked the {film} .",
    "the {NAT} government {said} on {weekday} it would send a team to {LOC} .",
    "{PER} scored twice as {CLUB} beat {CLUB} {SCORE} .",
    "{ORG} reported a {profit} of {NUM} million dollars for {month} .",
    "{PER} watched the {MISC} on {tv} in {LOC} .",
    "!{LOC} {DATE}",
    "!{CLUB} BEAT {CLUB} {SCORE}",
    "{PER} of {ORG} {said} shares {fell} {NUM} percent .",
    "the {film} about {PER} opens in {LOC} on {month} {DAY} .",
    "{NAT} officials met {PER} at the {ORG} offices in {LOC} .",
    "{DAY} . {PER} ( {COUNTRY} ) {NUM}",
    "{ORG} plans to sell its {car} unit to {ORG} .",
    "prices in {LOC} {rose} after the {big} {MISC} .",
    "Mr. {LAST} {said} the {car} was made in {COUNTRY} .",
    "Mrs. {LAST} flew from {LOC} to {LOC} on {weekday} .",
    "the {tv} show was filmed at {ORG} in {LOC} .",
    "{COUNTRY} beat {COUNTRY} {SCORE} in the {MISC} .",
    "a {big} crowd watched {PER} win the {MISC} in {month} .",
    "{PER} told reporters in {LOC} that {ORG} would cut jobs .",
    "analysts at {ORG} expect a {big} {profit} this year .",
    "{NAT} and {NAT} troops arrived in {LOC} on {weekday} .",
    "{ORG} chairman {PER} {said} {profit} {rose} to {NUM} million .",
    "he bought a {NAT} {car} for {NUM} dollars in {YEAR} .",
    "{PER} and {PER} founded {ORG} in {YEAR} .",
    "police in {LOC} {said} {PER} was arrested on {weekday} .",
    "the {tv} news {said} the {car} market {fell} in {month} .",
    "{weekday} 's {film} was a {big} hit in {LOC} .",
    "{PER} , a {NAT} , joined {CLUB} from {CLUB} in {month} .",
    '{LAST} {said} : " we are happy with the {profit} . "',
    # contexts that fit any entity type
    "{ANY} {said} on {weekday} that talks with {ANY} went well .",
    "the report on {ANY} was shown on {tv} .",
    "talks between {ANY} and {ANY} ended on {weekday} .",
    "news about {ANY} {rose} to the top of the {tv} ratings .",
    "{ANY} was mentioned in the {film} .",
    "critics of {ANY} {said} the {car} plan was {big} .",
    "{ANY} and {ANY} signed the deal in {month} .",
    "nobody expected {ANY} to win .",
)


def _choice(rng: random.Random, items: Sequence):
    # only rng.random(), whose stream Python keeps stable across versions (choice() may change)
    return items[int(rng.random() * len(items))]


def _group_word(rng: random.Random, group: str, split: str) -> str:
    words, held = SYNONYM_GROUPS[group], HELD_OUT.get(group)
    if held is not None and split == "train":
        words = tuple(w for w in words if w != held)
    elif held is not None and rng.random() < HELD_OUT_RATE:
        return held
    return _choice(rng, words)


def _fill(pattern: str, rng: random.Random, split: str) -> list[str]:
    """Words of a pattern with each {group} replaced by one of its words."""
    return [_group_word(rng, w[1:-1], split) if w.startswith("{") else w for w in pattern.split()]


def _number(shape: str, rng: random.Random) -> str:
    return "".join(str(int(rng.random() * 10)) if ch == "#" else ch for ch in shape)


def _slot(name: str, rng: random.Random, split: str) -> list[tuple[str, str]]:
    """(token, tag) pairs for one {SLOT} of a template."""
    if name in ENTITIES:
        kind, pattern = _choice(rng, ENTITIES[name]).split(" ", 1)
        words = [w if w == "of" else w.capitalize() for w in _fill(pattern, rng, split)]
        return [(w, ("B-" if i == 0 else "I-") + kind) for i, w in enumerate(words)]
    if name in NUMBERS:
        return [(_number(_choice(rng, NUMBERS[name]), rng), "O")]
    word = _group_word(rng, name, split)
    return [(word.capitalize() if name in ("weekday", "month") else word, "O")]


def _sentence(template: str, rng: random.Random, split: str, headline_rate: float) -> Sentence:
    caps = template.startswith("!") or rng.random() < headline_rate
    pairs = []
    for piece in template.lstrip("!").split():
        pairs += _slot(piece[1:-1], rng, split) if piece.startswith("{") else [(piece, "O")]
    tokens = [t.upper() if caps else t for t, _ in pairs]
    tokens[0] = tokens[0][:1].upper() + tokens[0][1:]
    return Sentence(tuple(tokens), tuple(tag for _, tag in pairs))


def synthetic_corpus(
    seed: int = 0, n_train: int = 3000, n_dev: int = 500, n_test: int = 500, headline_rate: float = 0.05
):
    """``{"train": [...], "dev": [...], "test": [...]}`` lists of IOB2 :class:`Sentence`, deterministic in ``seed``.

    Each split draws from its own random stream, so ``n_train`` does not change dev or test.
    Words of :data:`HELD_OUT` appear only in dev and test.

    >>> c = synthetic_corpus(n_train=2, n_dev=1, n_test=1)
    >>> [len(c[k]) for k in ("train", "dev", "test")]
    [2, 1, 1]
    """
    sizes = {"train": n_train, "dev": n_dev, "test": n_test}
    corpus = {}
    for split, n in sizes.items():
        rng = random.Random(f"jaxbackprop-synthetic-{seed}-{split}")  # str seeds are hashed stably
        corpus[split] = [_sentence(_choice(rng, TEMPLATES), rng, split, headline_rate) for _ in range(n)]
    return corpus


def held_out_words() -> frozenset[str]:
    """The words that appear in dev/test but never in training."""
    return frozenset(HELD_OUT.values())


def corpus_words() -> list[str]:
    """Every normalised word :func:`synthetic_corpus` can produce (held-out words included), sorted."""
    texts = list(TEMPLATES) + [p.split(" ", 1)[1] for patterns in ENTITIES.values() for p in patterns]
    words = {w for text in texts for w in text.lstrip("!").split() if not w.startswith("{")}
    words |= {w for group in SYNONYM_GROUPS.values() for w in group}
    words |= {shape.replace("#", "0") for shapes in NUMBERS.values() for shape in shapes}
    return sorted({normalize_word(w) for w in words})


def _unit_vector(label: str, dim: int, seed: int) -> np.ndarray:
    """A random vector of length about 1, fixed by (seed, label) alone -- not by call order."""
    digest = hashlib.sha256(f"{seed}:{label}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little")).standard_normal(dim) / math.sqrt(dim)


def synthetic_vectors(words: Iterable[str] | None = None, dim: int = 50, seed: int = 0, noise: float = 0.3):
    """ "Pretrained" vectors in which synonyms are neighbours.

    A word of a synonym group gets its group's centre (the mean of the centres, for a word in two
    groups) plus ``noise`` times a word-specific random vector; any other word gets a random
    vector of its own. All random vectors have length about 1, so synonyms lie about
    ``noise * sqrt(2)`` apart and unrelated words about ``sqrt(2)``.

    Args:
      words: words to embed (looked up by normalised form); default :func:`corpus_words`.

    Returns:
      ``(words, vectors)``: the words as a list and float32 (len(words), dim) vectors.
    """
    words = corpus_words() if words is None else list(words)
    groups_of: dict[str, list[str]] = {}
    for group, members in SYNONYM_GROUPS.items():
        for w in members:
            groups_of.setdefault(w, []).append(group)
    rows = []
    for w in map(normalize_word, words):
        own = _unit_vector("word:" + w, dim, seed)
        groups = groups_of.get(w)
        rows.append(
            own if not groups else np.mean([_unit_vector("group:" + g, dim, seed) for g in groups], 0) + noise * own
        )
    return words, np.asarray(rows, np.float32).reshape(len(words), dim)
