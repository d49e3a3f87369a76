"""CoNLL reading, per-word features, vocabulary, windows and pretrained vectors (data, features, vocab, embeddings)."""

import logging
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxbackprop import data, embeddings
from jaxbackprop.data import DataError, Sentence
from jaxbackprop.features import CASINGS, NUM_CASINGS, PAD_CASING, casing_id, normalize_word
from jaxbackprop.vocab import END_ID, RESERVED, START_ID, UNK_ID, Vocab, build_vocab

CONLL_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "conll2003"

IOB1 = """-DOCSTART- -X- O O

EU NNP I-NP I-ORG
rejects VBZ I-VP O
German JJ I-NP I-MISC
call NN I-NP O
. . O O

Peter NNP I-NP I-PER
Blackburn NNP I-NP I-PER
Smith NNP I-NP B-PER
in IN I-PP O
New NNP I-NP I-LOC
York NNP I-NP I-LOC
Inc NNP I-NP I-ORG
"""
IOB2_TAGS = [
    ("B-ORG", "O", "B-MISC", "O", "O"),
    ("B-PER", "I-PER", "B-PER", "O", "B-LOC", "I-LOC", "B-ORG"),
]


def tags_of(sentences):
    return [s.tags for s in sentences]


def raises_at(text, line, *fragments, name="corpus.txt"):
    with pytest.raises(DataError) as err:
        data.parse_conll(text, name)
    message = str(err.value)
    assert message.startswith(f"{name}:{line}: "), message
    assert err.value.line == line and err.value.file == name
    for fragment in fragments:
        assert fragment in message
    return message


# ----------------------------------------------------------------------------- reader


def test_iob1_is_converted_to_iob2_exactly():
    sentences = data.parse_conll(IOB1)
    assert tags_of(sentences) == IOB2_TAGS
    assert sentences[1].tokens == ("Peter", "Blackburn", "Smith", "in", "New", "York", "Inc")


def test_iob2_input_is_left_unchanged():
    text = "\n\n".join("\n".join(f"w{i} {t}" for i, t in enumerate(tags)) for tags in IOB2_TAGS)
    assert tags_of(data.parse_conll(text)) == IOB2_TAGS


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]), max_size=12))
def test_iob1_to_iob2_is_idempotent_and_valid(tags):
    once = data.iob1_to_iob2(tags)
    assert data.iob1_to_iob2(once) == once
    for prev, tag in zip(("O",) + once, once):
        assert not tag.startswith("I-") or prev[2:] == tag[2:]  # every I-X continues an X
    assert [t[2:] for t in once] == [t[2:] for t in tags]  # types never change


@pytest.mark.parametrize("separator", ["", "   ", "\t", " \t  "])
def test_whitespace_only_lines_separate_sentences(separator):
    text = f"a O\nb B-PER\n{separator}\nc O\n{separator}\n{separator}\nd O\n"
    assert [s.tokens for s in data.parse_conll(text)] == [("a", "b"), ("c",), ("d",)]


def test_docstart_is_skipped_and_breaks_a_sentence():
    text = "-DOCSTART- -X- -X- O\na NN B-NP O\n-DOCSTART- -X- -X- O\nb NN B-NP B-LOC\n"
    assert data.parse_conll(text) == [Sentence(("a",), ("O",)), Sentence(("b",), ("B-LOC",))]


def test_crlf_and_a_missing_final_newline():
    text = "EU\tI-ORG\r\nrejects\tO\r\n\r\nPeter\tI-PER"
    assert data.parse_conll(text) == [Sentence(("EU", "rejects"), ("B-ORG", "O")), Sentence(("Peter",), ("B-PER",))]


@pytest.mark.parametrize("newline", ["\r", "\r\n"])
def test_a_file_with_cr_line_breaks_gives_the_windows_of_its_lf_twin(tmp_path, newline):
    lf = write_lines(tmp_path / "lf.txt", IOB1, "\n")
    cr = write_lines(tmp_path / "cr.txt", IOB1, newline)
    lf_sents, cr_sents = data.read_conll(lf), data.read_conll(cr)
    assert cr_sents == lf_sents and len(cr_sents) == 2
    vocab, tag_index = build_vocab(lf_sents), data.make_tag_index(data.tags_from(lf_sents))
    lf_ds, cr_ds = (data.make_windows(s, vocab, tag_index, 3) for s in (lf_sents, cr_sents))
    assert len(cr_ds.windows) == 12
    np.testing.assert_array_equal(cr_ds.windows, lf_ds.windows)
    np.testing.assert_array_equal(cr_ds.labels, lf_ds.labels)


def test_a_cr_only_file_names_the_line_of_its_error(tmp_path):
    path = write_lines(tmp_path / "cr.txt", "EU B-ORG\nrejects O\n\nPeter B-PER\nBlackburn BAD\n", "\r")
    with pytest.raises(DataError, match=re.escape(f"{path}:5: illegal tag 'BAD'")):
        data.read_conll(path)


def write_lines(path: Path, text: str, newline: str) -> Path:
    path.write_bytes(text.replace("\n", newline).encode())
    return path


@pytest.mark.parametrize("sep", ["\t", " ", "  "])
def test_two_column_files(sep, tmp_path):
    path = tmp_path / "two.txt"
    path.write_text(f"EU{sep}B-ORG\nrejects{sep}O\n\nLondon{sep}B-LOC\n")
    assert data.read_conll(path) == [Sentence(("EU", "rejects"), ("B-ORG", "O")), Sentence(("London",), ("B-LOC",))]


def test_wrong_column_count_names_file_and_line():
    raises_at("EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter B-PER\n", 4, "expected 4 columns", "got 2")


def test_single_column_line_is_rejected():
    raises_at("\n\nlonely\n", 3, "at least 2 columns")


@pytest.mark.parametrize("tag", ["B-", "I", "X-PER", "o", "b-PER", "B_PER"])
def test_illegal_tag_names_line_and_tag(tag):
    raises_at(f"a O\nb O\n\nc {tag}\n", 4, "illegal tag", repr(tag))


@pytest.mark.parametrize("text", ["", "\n\n  \n", "-DOCSTART- -X- O O\n\n"])
def test_no_sentences_is_an_error(text):
    raises_at(text, 0, "no sentences")


def test_read_conll_errors_name_the_path(tmp_path):
    path = tmp_path / "bad.conll"
    path.write_text("a O\nb O\nc B-PER extra\n")
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:3: expected 2 columns"):
        data.read_conll(path)
    path.write_bytes(b"a O\n\n\xff O\n")
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:3: not UTF-8"):
        data.read_conll(path)
    path.write_text("")
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:0: "):
        data.read_conll(path)


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)
    assert str(DataError("f.txt", 7, "boom")) == "f.txt:7: boom"


# ----------------------------------------------------------------------------- words, casing categories


@pytest.mark.parametrize(
    "token, expected", [("1996-08-22", "0000-00-00"), ("EU", "eu"), ("3.5%", "0.0%"), ("Mr.", "mr."), ("A4", "a0")]
)
def test_normalize_word(token, expected):
    assert normalize_word(token) == expected


@pytest.mark.parametrize(
    "token, casing",
    [
        ("rejects", "lower"),
        ("eu-wide", "lower"),
        ("EU", "upper"),
        ("U.S.", "upper"),
        ("BRUSSELS", "upper"),
        ("Peter", "title"),
        ("Mr.", "title"),
        ("I", "title"),
        ("McDonald", "mixed"),
        ("iPhone", "mixed"),
        ("1996-08-22", "digit"),
        ("A4", "digit"),
        (".", "other"),
        ("--", "other"),
        ("(", "other"),
    ],
)
def test_casing_id(token, casing):
    assert CASINGS[casing_id(token)] == casing


def test_casings_table():
    assert NUM_CASINGS == len(CASINGS) == len(set(CASINGS))
    assert CASINGS[PAD_CASING] == "pad"


# ----------------------------------------------------------------------------- vocabulary and tags

TINY = [
    Sentence(("The", "EU", "said", "the", "deal"), ("O", "B-ORG", "O", "O", "O")),
    Sentence(("the", "EU", "in", "1996", "and", "1997"), ("O", "B-ORG", "O", "O", "O", "O")),
]


def test_build_vocab_exact_ids():
    v = build_vocab(TINY)
    # the: 3, eu: 2, 0000: 2, then count-1 words alphabetically
    assert v.words == RESERVED + ("the", "0000", "eu", "and", "deal", "in", "said")
    assert v.index["the"] == 4 and len(v) == 11
    assert v.ids(["THE", "Eu", "2001", "unseen"]).tolist() == [4, 6, 5, UNK_ID]
    assert v.ids([]).dtype == np.int32


def test_build_vocab_min_count_and_extra_words():
    v = build_vocab(TINY, min_count=2, extra_words=["cat", "The", "said", "2020", "cat", "Dog"])
    assert v.words == RESERVED + ("the", "0000", "eu", "cat", "said", "dog")
    assert v.ids(["deal", "said"]).tolist() == [UNK_ID, 8]


@pytest.mark.parametrize("min_count", [0, -1, 1.5, True])
def test_build_vocab_rejects_bad_min_count(min_count):
    with pytest.raises(ValueError, match="min_count"):
        build_vocab(TINY, min_count=min_count)


def test_vocab_json_round_trip_and_checks():
    v = build_vocab(TINY, extra_words=["café"])
    back = Vocab.from_json(v.to_json())
    assert back == v and back.index == v.index and repr(back) == "Vocab(size=12)"
    with pytest.raises(ValueError, match="reserved"):
        Vocab(("a", "b"))
    with pytest.raises(ValueError, match="duplicate word 'x'"):
        Vocab(RESERVED + ("x", "y", "x"))
    with pytest.raises(ValueError, match="words"):
        Vocab.from_json('["a"]')


def test_suffix_features_are_counted_in_training_and_survive_json():
    sentences = [Sentence(("Bonn", "Berlin", "Dublin", "the", "EU"), ("B-LOC",) * 3 + ("O", "B-ORG"))]
    v = build_vocab(sentences, suffix_len=2, suffix_min_count=2)
    assert v.suffixes == ("in",) and v.features_per_word == 2 and v.feature_vocab_size == NUM_CASINGS + 3
    # title casing, then: "in" (known), "nn" (seen once: the unseen-suffix row), "he" (unseen)
    title, unseen, known = CASINGS.index("title"), NUM_CASINGS + 1, NUM_CASINGS + 2
    assert v.features(["Berlin", "Bonn", "The"]).tolist() == [[title, known], [title, unseen], [title, unseen]]
    back = Vocab.from_json(v.to_json())
    assert back == v and back.suffix_index == v.suffix_index
    assert Vocab.from_json('{"words": ["<pad>", "<s>", "</s>", "<unk>"]}').features_per_word == 1  # older runs
    with pytest.raises(ValueError, match="suffix_len must be an integer >= 0"):
        Vocab(RESERVED, suffix_len=-1)
    with pytest.raises(ValueError, match="suffix_min_count"):
        build_vocab(sentences, suffix_len=2, suffix_min_count=0)


def test_tags_from_is_sorted_with_o_first():
    sentences = [Sentence(("a", "b", "c"), ("B-PER", "O", "I-LOC")), Sentence(("d",), ("B-MISC",))]
    assert data.tags_from(sentences) == ("O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-PER", "I-PER")
    assert data.make_tag_index(("O", "B-PER")) == {"O": 0, "B-PER": 1}


# ----------------------------------------------------------------------------- windows

TWO = [Sentence(("EU", "rejects", "Bonn"), ("B-ORG", "O", "B-LOC")), Sentence(("Peter", "."), ("B-PER", "O"))]
TWO_VOCAB = Vocab(RESERVED + ("eu", "rejects", "peter"))  # bonn and . are unknown
TWO_TAGS = {"O": 0, "B-ORG": 1, "B-LOC": 2, "B-PER": 3}
S, E, U = START_ID, END_ID, UNK_ID
LOW, UP, TITLE, OTHER = (CASINGS.index(c) for c in ("lower", "upper", "title", "other"))


def test_windows_of_three():
    ds = data.make_windows(TWO, TWO_VOCAB, TWO_TAGS, 3)
    assert ds.windows.tolist() == [[S, 4, 5], [4, 5, U], [5, U, E], [S, 6, U], [6, U, E]]
    assert ds.features.tolist() == [
        [0, UP, LOW],
        [UP, LOW, TITLE],
        [LOW, TITLE, 0],
        [0, TITLE, OTHER],
        [TITLE, OTHER, 0],
    ]
    assert ds.labels.tolist() == [1, 0, 2, 3, 0]
    assert ds.sentence_lengths.tolist() == [3, 2]
    assert ds.tokens == [s.tokens for s in TWO]
    assert {a.dtype for a in (ds.windows, ds.features, ds.labels, ds.sentence_lengths)} == {np.dtype(np.int32)}


def test_windows_of_five_pad_both_edges_of_every_sentence():
    ds = data.make_windows(TWO, TWO_VOCAB, TWO_TAGS, 5)
    assert ds.windows.tolist() == [
        [S, S, 4, 5, U],
        [S, 4, 5, U, E],
        [4, 5, U, E, E],
        [S, S, 6, U, E],
        [S, 6, U, E, E],
    ]
    assert ds.features[3].tolist() == [0, 0, TITLE, OTHER, 0]


def test_window_of_one_is_the_word_itself():
    ds = data.make_windows(TWO, TWO_VOCAB, TWO_TAGS, 1)
    assert ds.windows.tolist() == [[4], [5], [U], [6], [U]]


def naive_windows(token_lists, vocab, window):
    h = window // 2
    rows = []
    for tokens in token_lists:
        padded = [S] * h + vocab.ids(tokens).tolist() + [E] * h
        rows += [padded[i : i + window] for i in range(len(tokens))]
    return np.array(rows, np.int32).reshape(-1, window)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from(["eu", "rejects", "peter", "x", "Y"]), min_size=0, max_size=7), max_size=6),
    st.sampled_from([1, 3, 5, 7, 9]),
)
def test_vectorised_windows_equal_a_plain_loop(token_lists, window):
    ds = data.windows_for_tokens(token_lists, TWO_VOCAB, window)
    np.testing.assert_array_equal(ds.windows, naive_windows(token_lists, TWO_VOCAB, window))
    assert ds.labels is None and ds.sentence_lengths.tolist() == [len(t) for t in token_lists]
    assert ds.features.shape == ds.windows.shape
    # with suffixes: k = 2 feature ids per word, word-major, edge ids beyond the sentence
    vocab = Vocab(TWO_VOCAB.words, suffix_len=2, suffixes=("er", "eu"))
    h, rows = window // 2, []
    for tokens in token_lists:
        padded = (
            [vocab.edge_features().tolist()] * h
            + vocab.features(tokens).tolist()
            + [vocab.edge_features().tolist()] * h
        )
        rows += [sum(padded[i : i + window], []) for i in range(len(tokens))]
    features = data.windows_for_tokens(token_lists, vocab, window).features
    np.testing.assert_array_equal(features, np.array(rows, np.int32).reshape(-1, 2 * window))


@pytest.mark.parametrize("window", [0, 2, 4, -1, 3.0, True])
def test_bad_window(window):
    with pytest.raises(ValueError, match="window must be an odd integer"):
        data.make_windows(TWO, TWO_VOCAB, TWO_TAGS, window)


def test_unknown_tag_names_tag_and_sentence():
    with pytest.raises(ValueError, match=r"sentence 1: tag 'B-PER' is not in the tag set"):
        data.make_windows(TWO, TWO_VOCAB, {"O": 0, "B-ORG": 1, "B-LOC": 2}, 3)


def test_windows_for_tokens_rejects_a_plain_string():
    with pytest.raises(ValueError, match="sentence 0 is a string"):
        data.windows_for_tokens(["EU rejects"], TWO_VOCAB, 3)


# ----------------------------------------------------------------------------- pretrained vectors


def write(tmp_path, text, name="vectors.txt"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_read_glove(tmp_path):
    words, vectors = embeddings.read_embeddings(write(tmp_path, "the 0.5 -1\n, 2 3e-1\n1996 1 1\n"))
    assert words == ["the", ",", "1996"]
    np.testing.assert_array_equal(vectors, np.array([[0.5, -1], [2, 0.3], [1, 1]], np.float32))
    assert vectors.dtype == np.float32


def test_read_word2vec_header(tmp_path):
    words, vectors = embeddings.read_embeddings(write(tmp_path, "2 3\ncat 1 2 3 \ndog 4 5 6 \n"))
    assert words == ["cat", "dog"] and vectors.shape == (2, 3)
    with pytest.raises(DataError, match=r":1: header says 3 vectors, the file holds 2"):
        embeddings.read_embeddings(write(tmp_path, "3 3\ncat 1 2 3\ndog 4 5 6\n"))
    with pytest.raises(DataError, match=r":3: expected 3 values after the word, got 2"):
        embeddings.read_embeddings(write(tmp_path, "2 3\ncat 1 2 3\ndog 4 5\n"))


def test_bad_dimension_names_the_line(tmp_path):
    path = write(tmp_path, "a 1 2 3\nb 1 2 3\n\nc 1 2\n")
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:4: expected 3 values after the word, got 2$"):
        embeddings.read_embeddings(path)


def test_a_wrong_first_line_is_the_one_blamed(tmp_path):
    path = write(tmp_path, "a 1 2\nb 1 2 3\nc 1 2 3\nd 1 2 3\n")
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:1: expected 3 values after the word, got 2$"):
        embeddings.read_embeddings(path)


def test_a_no_break_space_belongs_to_the_word(tmp_path):
    # GloVe 840B holds words like "a\u00a0b": only ASCII blanks separate the word from its values
    words, vectors = embeddings.read_embeddings(write(tmp_path, "a\u00a0b 1 2\nc 3 4\n\u00a0d 5 6\n"))
    assert words == ["a\u00a0b", "c", "\u00a0d"]
    np.testing.assert_array_equal(vectors, np.array([[1, 2], [3, 4], [5, 6]], np.float32))


def test_a_value_beyond_float32_is_one_error_without_a_warning(tmp_path):
    path = write(tmp_path, "a 1 2\nb 1e39 2\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "overflow encountered in cast" would be a second line
        with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:2: value '1e39' is beyond float32's range"):
            embeddings.read_embeddings(path)


@pytest.mark.parametrize(
    "value, problem", [("x1", "value 'x1' is not a number"), ("nan", "non-finite value 'nan'"), ("inf", "non-finite")]
)
def test_bad_values_name_the_line(tmp_path, value, problem):
    with pytest.raises(DataError, match=rf":2: {problem}"):
        embeddings.read_embeddings(write(tmp_path, f"a 1 2\nb 1 {value}\n"))


@pytest.mark.parametrize("text", ["", "\n\n", "0 50\n"])
def test_empty_embedding_file(tmp_path, text):
    with pytest.raises(DataError, match=r":0: no word vectors"):
        embeddings.read_embeddings(write(tmp_path, text))


def test_repeated_words_keep_the_first_vector(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="jaxbackprop.data"):
        words, vectors = embeddings.read_embeddings(write(tmp_path, "a 1 1\nb 2 2\na 3 3\na 4 4\n"))
    assert words == ["a", "b"] and vectors[0].tolist() == [1, 1]
    assert "2 repeated word(s)" in caplog.text


def test_embedding_matrix_rows_and_coverage():
    vocab = Vocab(RESERVED + ("the", "0000", "eu", "cat"))
    words = ["The", "the", "1996", "eu", "dog"]
    vectors = np.arange(10, dtype=np.float32).reshape(5, 2)
    E, coverage = embeddings.embedding_matrix(vocab, words, vectors, 0)
    assert E.shape == (8, 2) and E.dtype == np.float32
    # exact match beats normalised match ("the" over "The"); "0000" falls back to "1996"
    np.testing.assert_array_equal(E[4:7], vectors[[1, 2, 3]])
    assert coverage == {"vocab_size": 8, "found": 3, "fraction": 3 / 8}
    E2, _ = embeddings.embedding_matrix(vocab, words, vectors, 0)
    np.testing.assert_array_equal(E, E2)  # same seed, same random rows
    E3, _ = embeddings.embedding_matrix(vocab, words, vectors, 1, scale=0.0)
    assert not E3[:4].any() and not E3[7].any()  # reserved and missing rows are random: N(0, scale^2)


def test_embedding_matrix_random_rows_follow_the_pretrained_spread():
    vocab = Vocab(RESERVED + tuple(f"w{i}" for i in range(4000)))
    vectors = 3.0 * np.random.default_rng(0).standard_normal((10, 20)).astype(np.float32)
    E, coverage = embeddings.embedding_matrix(vocab, [f"p{i}" for i in range(10)], vectors, 0)
    assert coverage["found"] == 0
    assert abs(E.std() - vectors.std()) < 0.05 * vectors.std()


def test_embedding_matrix_accepts_a_jax_key():
    import jax

    vocab = Vocab(RESERVED)
    E1, _ = embeddings.embedding_matrix(vocab, ["a"], np.ones((1, 3)), jax.random.key(3))
    E2, _ = embeddings.embedding_matrix(vocab, ["a"], np.ones((1, 3)), jax.random.key(3))
    np.testing.assert_array_equal(E1, E2)
    with pytest.raises(ValueError, match="shape"):
        embeddings.embedding_matrix(vocab, ["a", "b"], np.ones((1, 3)))


def test_token_coverage():
    assert embeddings.token_coverage(TINY, ["the", "EU", "2000"]) == pytest.approx(7 / 11)  # the x3, eu x2, 0000 x2


# ----------------------------------------------------------------------------- the real corpus


def test_shared_conll2003_copy():
    if not (CONLL_DIR / "eng.train").exists() or not (CONLL_DIR / "train.txt").exists():
        pytest.skip(f"CoNLL-2003 copy not found at {CONLL_DIR} (optional; only this check uses it)")
    iob1, iob2 = data.read_conll(CONLL_DIR / "eng.train"), data.read_conll(CONLL_DIR / "train.txt")
    assert len(iob2) == 14041 and sum(len(s.tokens) for s in iob2) == 203621  # SOURCES.md
    assert iob1 == iob2  # same tokens, and IOB1 -> IOB2 gives exactly the published tags
    assert data.tags_from(iob2) == ("O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER")
