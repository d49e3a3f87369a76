"""The embedded synthetic corpus, its synonym vectors, and writing them as files (data, embeddings, files)."""

import collections
import os

import numpy as np
import pytest

from jaxbackprop import data, embeddings, files, synthetic
from jaxbackprop.data import Sentence
from jaxbackprop.features import CASINGS, casing_id, normalize_word
from jaxbackprop.vocab import RESERVED, build_vocab


@pytest.fixture(scope="module")
def corpus():
    return synthetic.synthetic_corpus(seed=0)


def words_of(sentences):
    return collections.Counter(normalize_word(t) for s in sentences for t in s.tokens)


def test_same_seed_same_corpus_other_seed_other_corpus(corpus):
    assert synthetic.synthetic_corpus(seed=0) == corpus
    assert synthetic.synthetic_corpus(seed=1, n_train=50)["train"] != corpus["train"][:50]


def test_default_sizes_and_independent_splits(corpus):
    assert [len(corpus[k]) for k in ("train", "dev", "test")] == [3000, 500, 500]
    small = synthetic.synthetic_corpus(seed=0, n_train=10, n_dev=20, n_test=5)
    assert small["train"] == corpus["train"][:10] and small["dev"] == corpus["dev"][:20]
    assert small["test"] == corpus["test"][:5]


def test_sentences_are_valid_iob2_with_all_four_types(corpus):
    for split in corpus.values():
        for s in split:
            assert isinstance(s, Sentence) and len(s.tokens) == len(s.tags) > 0
            assert data.iob1_to_iob2(s.tags) == s.tags  # every entity starts with B-
    tags = {t for s in corpus["train"] for t in s.tags}
    assert tags == {"O"} | {f"{p}-{x}" for x in ("PER", "ORG", "LOC", "MISC") for p in "BI"}


def test_corpus_looks_like_text(corpus):
    tokens = [t for s in corpus["train"] for t in s.tokens]
    casings = collections.Counter(CASINGS[casing_id(t)] for t in tokens)
    assert all(casings[c] > 100 for c in ("lower", "upper", "title", "digit", "other"))
    assert sum(all(not ch.isalpha() or ch.isupper() for t in s.tokens for ch in t) for s in corpus["train"]) > 100
    assert all(s.tokens[0][0] == s.tokens[0][0].upper() for s in corpus["train"])  # capitalised start
    # ambiguity on purpose: the same word is tagged as more than one entity type
    types = collections.defaultdict(set)
    for s in corpus["train"]:
        for t, tag in zip(s.tokens, s.tags):
            types[t.lower()].add(tag[2:])
    assert {"PER", "LOC"} <= types["washington"] and {"LOC", "ORG"} <= types["boston"]


def test_held_out_words_appear_only_in_dev_and_test(corpus):
    held = synthetic.held_out_words()
    train, dev, test = (words_of(corpus[k]) for k in ("train", "dev", "test"))
    assert held and not held & set(train)
    for word in held:
        assert dev[word] >= 5 and test[word] >= 5, word
        group = next(g for g, w in synthetic.HELD_OUT.items() if w == word)
        assert set(synthetic.SYNONYM_GROUPS[group]) - {word} <= set(train)  # its synonyms are seen


def test_the_lecture_story_tv_and_telly_in_training_television_unseen(corpus):
    # docs/derivation.md and the lecture: training contains TV and telly but never television
    train, dev = words_of(corpus["train"]), words_of(corpus["dev"])
    assert synthetic.HELD_OUT["tv"] == "television"
    assert train["tv"] >= 20 and train["telly"] >= 20 and train["television"] == 0
    assert dev["television"] >= 5


def test_corpus_words_cover_every_generated_word(corpus):
    every = set(synthetic.corpus_words())
    for split in corpus.values():
        assert set(words_of(split)) <= every
    assert synthetic.held_out_words() <= every


def cosine(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_synonyms_are_neighbours():
    words, vectors = synthetic.synthetic_vectors()
    assert vectors.dtype == np.float32 and vectors.shape == (len(words), 50)
    vec = dict(zip(words, vectors))
    assert cosine(vec["television"], vec["tv"]) > 0.8 and cosine(vec["television"], vec["telly"]) > 0.8
    assert abs(cosine(vec["television"], vec["car"])) < 0.5 and abs(cosine(vec["leeds"], vec["helen"])) < 0.5
    # each held-out word's nearest other word belongs to its own group
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    for group, word in synthetic.HELD_OUT.items():
        sims = unit @ unit[words.index(word)]
        sims[words.index(word)] = -np.inf
        assert words[int(np.argmax(sims))] in synthetic.SYNONYM_GROUPS[group], word


def test_vectors_depend_on_the_word_not_on_the_list():
    _, a = synthetic.synthetic_vectors(["telly", "the", "TV"], dim=8)
    _, b = synthetic.synthetic_vectors(["tv", "telly"], dim=8)
    np.testing.assert_array_equal(a[[0, 2]], b[[1, 0]])
    _, c = synthetic.synthetic_vectors(["telly"], dim=8, seed=1)
    assert not np.allclose(a[0], c[0])


def test_pipeline_gives_held_out_words_their_own_pretrained_rows(corpus):
    words, vectors = synthetic.synthetic_vectors()
    vocab = build_vocab(corpus["train"], extra_words=words)
    E, coverage = embeddings.embedding_matrix(vocab, words, vectors, 0)
    assert coverage["found"] == len(vocab) - len(RESERVED)
    for word in synthetic.held_out_words():
        np.testing.assert_array_equal(E[vocab.index[word]], vectors[words.index(word)])


# ----------------------------------------------------------------------------- writing files


def test_write_conll_round_trip(tmp_path, corpus):
    path = tmp_path / "train.txt"
    path.write_text("old contents\n")
    data.write_conll(corpus["dev"], path)
    assert data.read_conll(path) == corpus["dev"]
    assert os.listdir(tmp_path) == ["train.txt"]  # no temporary file left behind
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)


def test_write_embeddings_round_trip(tmp_path):
    words, vectors = synthetic.synthetic_vectors()
    path = tmp_path / "vectors.txt"
    embeddings.write_embeddings(words, vectors, path)
    back_words, back_vectors = embeddings.read_embeddings(path)
    assert back_words == words
    np.testing.assert_array_equal(back_vectors, vectors)  # float32 written exactly
    assert os.listdir(tmp_path) == ["vectors.txt"]


def test_bad_rows_are_rejected_before_writing(tmp_path):
    path = tmp_path / "out.txt"
    with pytest.raises(ValueError, match="sentence 1: token 'New York' .* whitespace"):
        data.write_conll([Sentence(("a",), ("O",)), Sentence(("New York",), ("B-LOC",))], path)
    with pytest.raises(ValueError, match="illegal tag 'LOC'"):
        data.write_conll([Sentence(("a",), ("LOC",))], path)
    with pytest.raises(ValueError, match="shape"):
        embeddings.write_embeddings(["a", "b"], np.zeros((3, 2)), path)
    assert os.listdir(tmp_path) == []


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "keep.txt"
    path.write_text("old\n")

    def lines():
        yield "new line\n"
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"), files.atomic_path(path) as tmp, open(tmp, "w") as f:
        f.writelines(lines())
    assert path.read_text() == "old\n" and os.listdir(tmp_path) == ["keep.txt"]
