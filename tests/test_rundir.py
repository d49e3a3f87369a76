"""A run is never lost: a run directory is not overwritten unasked, resume continues exactly the
recorded run (or refuses, changing nothing), and a run killed between any two writes resumes to
the files of an uninterrupted run."""

import dataclasses
import json
import os
import shutil

import helpers
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import TINY as TINY_RUN

from jaxbackprop import checkpoint, files, model, optim, pipeline, resume, rundir, step, synthetic, train

TINY = dict(TINY_RUN, epochs=3)
TIMINGS = ("seconds", "train_seconds")


class Killed(BaseException):
    """Like SIGINT arriving between two writes: no ``except Exception`` catches it."""


@pytest.fixture(scope="module")
def corpus():
    return helpers.tiny_corpus()


@pytest.fixture(scope="module", autouse=True)
def shared_steps():
    """Compiling the step is most of a TINY run's time, and every run here would compile its own;
    the step is a pure function of the configuration, so runs with equal ones share it."""
    steps, make_step = {}, step.make_step

    def make_step_once(config, model_cfg, params, steps_per_epoch):
        opt_state, train_step = make_step(config, model_cfg, params, steps_per_epoch)
        return opt_state, steps.setdefault((config, model_cfg, steps_per_epoch), train_step)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train, "make_step", make_step_once)
        yield


run = helpers.quiet_run


@pytest.fixture(scope="module")
def finished(corpus, tmp_path_factory):
    """An uninterrupted TINY run: (its directory, the names of the files it replaced, in order)."""
    run_dir = tmp_path_factory.mktemp("finished")
    with pytest.MonkeyPatch.context() as mp:
        writes = count_writes(mp, run_dir)
        run(train.configure(**TINY), corpus, run_dir)
    return run_dir, writes


def count_writes(mp, run_dir, kill_at=None) -> list:
    """Patch ``os.replace`` (the last step of every atomic write) to record the run files written
    into ``run_dir``, raising :class:`Killed` instead of the ``kill_at``-th (1-based)."""
    writes, replace = [], os.replace

    def counting_replace(src, dst):
        if os.path.dirname(os.path.abspath(dst)) == os.path.abspath(run_dir):
            if len(writes) + 1 == kill_at:
                raise Killed(f"killed before writing {os.path.basename(dst)}")
            writes.append(os.path.basename(dst))
        return replace(src, dst)

    mp.setattr(os, "replace", counting_replace)
    return writes


def file_bytes(run_dir) -> dict:
    return {p.name: p.read_bytes() for p in sorted(run_dir.iterdir())}


def without_timings(obj):
    if isinstance(obj, dict):
        return {k: without_timings(v) for k, v in obj.items() if k not in TIMINGS}
    if isinstance(obj, list):
        return [without_timings(v) for v in obj]
    return obj


def npz_contents(path) -> tuple:
    with np.load(path) as z:
        meta = json.loads(bytes(z["__meta__"]).decode())
        return without_timings(meta), {k: z[k] for k in z.files if k != "__meta__"}


def assert_same_run(got_dir, want_dir):
    """Every run file equal, bit for bit, except the timings (and the plot, drawn from the same rows)."""
    assert sorted(p.name for p in got_dir.iterdir()) == sorted(p.name for p in want_dir.iterdir())
    for name in ("config.json", "vocab.json"):
        assert (got_dir / name).read_bytes() == (want_dir / name).read_bytes(), name
    got, want = (without_timings(files.read_jsonl(d / "metrics.jsonl")) for d in (got_dir, want_dir))
    assert got == want, "metrics.jsonl"
    got, want = (without_timings(json.loads((d / "summary.json").read_text())) for d in (got_dir, want_dir))
    assert got == want, "summary.json"
    for name in ("checkpoint.npz", "best.npz"):
        (got_meta, got_arrays), (want_meta, want_arrays) = npz_contents(got_dir / name), npz_contents(want_dir / name)
        assert got_meta == want_meta, name
        assert got_arrays.keys() == want_arrays.keys(), name
        for k in want_arrays:
            np.testing.assert_array_equal(got_arrays[k], want_arrays[k], err_msg=f"{name}: {k}")


def copy_of(run_dir, tmp_path):
    return shutil.copytree(run_dir, tmp_path / "copy")


# ----------------------------------------------------------------------------- never overwritten unasked


def test_resume_without_a_checkpoint_is_an_error_that_changes_nothing(finished, corpus, tmp_path):
    run_dir = copy_of(finished[0], tmp_path)
    (run_dir / "checkpoint.npz").unlink()
    before = file_bytes(run_dir)
    with pytest.raises(rundir.RunDirError, match=r"checkpoint\.npz: no checkpoint to resume from .*--overwrite"):
        run(train.configure(**TINY), corpus, run_dir, resume=True)
    assert file_bytes(run_dir) == before
    with pytest.raises(rundir.RunDirError, match=r"checkpoint\.npz: no checkpoint to resume from \(.*holds no run\)"):
        run(train.configure(**TINY), corpus, tmp_path / "new", resume=True)
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("name", rundir.RESULT_FILES)
def test_a_directory_holding_any_result_is_not_overwritten_unasked(name, corpus, tmp_path):
    (tmp_path / name).write_text("precious\n")
    with pytest.raises(
        rundir.RunDirError, match=rf"already holds a run \({name}\); use --resume .* --overwrite .* --run-dir"
    ):
        run(train.configure(**TINY), corpus, tmp_path)
    assert file_bytes(tmp_path) == {name: b"precious\n"}


def test_overwrite_replaces_only_the_run_files(finished, corpus, tmp_path):
    run_dir = copy_of(finished[0], tmp_path)
    (run_dir / "metrics.jsonl").write_text("an earlier run's rows\n")
    (run_dir / "notes.txt").write_text("mine\n")
    before = file_bytes(run_dir)
    with pytest.raises(rundir.RunDirError, match="already holds a run"):
        run(train.configure(**TINY), corpus, run_dir)
    assert file_bytes(run_dir) == before
    run(train.configure(**TINY), corpus, run_dir, overwrite=True)
    assert (run_dir / "notes.txt").read_text() == "mine\n"
    (run_dir / "notes.txt").unlink()
    assert_same_run(run_dir, finished[0])
    # an empty directory, or one holding only the user's files, needs no flag
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine\n")
    run(train.configure(**TINY), corpus, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine\n"


# ----------------------------------------------------------------------------- resume continues exactly the run


@pytest.mark.parametrize(
    "change, expected",
    [
        (
            dict(activation="tanh", learning_rate=1e-3),
            r"activation: run has 'relu', given 'tanh'; learning_rate: run has 0\.01, given 0\.001\)",
        ),
        (dict(dropout=0.5, seed=3), r"dropout: run has 0\.3, given 0\.5; seed: run has 0, given 3\)"),
        (dict(epochs=2), r"epochs: run has 3, given 2 \(epochs may only grow\)"),
    ],
)
def test_resume_with_other_settings_lists_the_differences_and_changes_nothing(finished, corpus, change, expected):
    before = file_bytes(finished[0])
    with pytest.raises(
        rundir.RunDirError, match=r"cannot resume with other settings or data than the run's \(" + expected
    ):
        run(train.configure(**{**TINY, **change}), corpus, finished[0], resume=True)
    assert file_bytes(finished[0]) == before


def test_resume_with_other_data_names_what_differs(finished, corpus):
    c = synthetic.synthetic_corpus(seed=1, n_train=200, n_dev=40, n_test=40)
    other_train = synthetic.synthetic_corpus(seed=7, n_train=200, n_dev=40, n_test=40)["train"]
    vectors = synthetic.synthetic_vectors(dim=12)
    before = file_bytes(finished[0])
    with pytest.raises(
        rundir.RunDirError, match=r"vocab\.json: run has \d+ words, given \d+, first different at \d+ \(.+ vs .+\)"
    ) as error:
        run(
            train.configure(**TINY),
            pipeline.prepare(other_train, c["dev"], c["test"], vectors, window=3),
            finished[0],
            resume=True,
        )
    assert "fingerprint" not in str(error.value), "the windows' ids follow the vocabulary: their hashes add nothing"
    # the same vocabulary and tags, another dev set: only the fingerprint tells
    with pytest.raises(rundir.RunDirError, match=r"\(dev data: run has fingerprint \w+, given \w+\)"):
        run(
            train.configure(**TINY),
            pipeline.prepare(c["train"], c["dev"][:-1], c["test"], vectors, window=3),
            finished[0],
            resume=True,
        )
    assert file_bytes(finished[0]) == before


def test_more_epochs_are_allowed_only_where_the_schedule_does_not_span_them():
    step = dict(TINY, schedule="step")
    assert (
        resume.config_differences(dataclasses.asdict(train.configure(**step)), train.configure(**{**step, "epochs": 9}))
        == []
    )
    cosine = dict(TINY, schedule="cosine")
    (problem,) = resume.config_differences(
        dataclasses.asdict(train.configure(**cosine)), train.configure(**{**cosine, "epochs": 9})
    )
    assert problem.startswith("epochs: run has 3, given 9 (the cosine schedule spans all epochs")


def test_resume_with_more_epochs_equals_the_longer_run(finished, corpus, tmp_path):
    run(train.configure(**{**TINY, "epochs": 2}), corpus, tmp_path)
    run(train.configure(**TINY), corpus, tmp_path, resume=True)
    assert json.loads((tmp_path / "config.json").read_text())["train"]["epochs"] == 3
    assert_same_run(tmp_path, finished[0])


# ----------------------------------------------------------------------------- every optimizer resumes


def raw_leaves(tree) -> list:
    """The leaves as numpy arrays, a typed PRNG key as its words (numpy cannot hold a key)."""
    return [np.asarray(jax.random.key_data(x) if checkpoint._is_key(x) else x) for x in jax.tree.leaves(tree)]


@pytest.mark.parametrize("name", optim.optimizer_names())
def test_every_optimizer_state_goes_through_a_checkpoint_and_continues_exactly(name, tmp_path):
    """Each listed optimizer's state after a step is saved and reloaded bit for bit, and the next
    step from the reloaded state equals the next step from the original (noisy_sgd's state holds a
    typed PRNG key, which numpy cannot hold: it crashed the first checkpoint)."""
    config = train.configure(**TINY, optimizer=name)
    cfg = model.ModelConfig(vocab_size=7, embed_dim=3, window=3, hidden_dim=4, num_classes=3)
    params = model.init_params(jax.random.key(0), cfg)
    grads = jax.tree.map(lambda p: jnp.cos(7.0 * p + 1.0), params)  # nonzero, unlike the params' own entries
    tx = optim.make_transform(config, params, steps_per_epoch=2)

    def step_from(params, state):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    state = step_from(params, tx.init(params))
    checkpoint.save_tree(tmp_path / "checkpoint.npz", state, {"epoch": 1})
    loaded, meta = checkpoint.load_tree(tmp_path / "checkpoint.npz", jax.eval_shape(lambda: state))
    assert meta == {"epoch": 1} and jax.tree.structure(loaded) == jax.tree.structure(state)
    for got, want in ((loaded, state), (step_from(*loaded), step_from(*state))):
        for a, b in zip(raw_leaves(got), raw_leaves(want), strict=True):
            np.testing.assert_array_equal(a, b, err_msg=name)
            assert a.dtype == b.dtype, name


def test_a_noisy_sgd_run_resumes_to_the_uninterrupted_files(corpus, tmp_path):
    """The optimizer whose state holds a PRNG key, end to end: trained, checkpointed and resumed
    from epoch 1, it ends with the files of the uninterrupted run (the noise continues its stream)."""
    config = train.configure(**{**TINY, "optimizer": "noisy_sgd", "epochs": 2})
    run(config, corpus, tmp_path / "whole")
    run(train.configure(config, epochs=1), corpus, tmp_path / "resumed")
    run(config, corpus, tmp_path / "resumed", resume=True)
    assert_same_run(tmp_path / "resumed", tmp_path / "whole")


# ----------------------------------------------------------------------------- killed at any instant


def test_a_run_killed_before_any_write_resumes_to_the_uninterrupted_files(finished, corpus, tmp_path):
    """For every k, kill the run before its k-th write, resume it, compare every file."""
    reference, writes = finished
    assert writes.count("checkpoint.npz") == TINY["epochs"] and writes[-2:] == ["summary.json", "learning_curve.png"]
    config = train.configure(**TINY)
    for k, name in enumerate(writes, 1):
        run_dir = tmp_path / f"killed-before-write-{k}-{name}"
        with pytest.MonkeyPatch.context() as mp, pytest.raises(Killed):
            count_writes(mp, run_dir, kill_at=k)
            run(config, corpus, run_dir)
        if (run_dir / "checkpoint.npz").exists():
            run(config, corpus, run_dir, resume=True)
        else:  # killed in epoch 1: nothing to resume, and saying so changes nothing
            before = file_bytes(run_dir) if run_dir.exists() else None
            with pytest.raises(rundir.RunDirError, match="no checkpoint to resume from"):
                run(config, corpus, run_dir, resume=True)
            assert (file_bytes(run_dir) if run_dir.exists() else None) == before
            run(config, corpus, run_dir, overwrite=True)
        assert_same_run(run_dir, reference)


def test_divergence_names_the_checkpoint_only_when_there_is_one(corpus, tmp_path, monkeypatch):
    run_epoch = train.run_epoch

    def diverge_in(epoch_to_fail):
        def fake(*args, **kwargs):
            params, opt_state, loss = run_epoch(*args, **kwargs)
            return params, opt_state, float("nan") if args[5] == epoch_to_fail else loss

        return fake

    monkeypatch.setattr(train, "run_epoch", diverge_in(1))
    with pytest.raises(
        train.TrainingDiverged, match=r"^epoch 1: .*; stopped, no epoch had finished, so there is no checkpoint$"
    ):
        run(train.configure(**TINY), corpus, tmp_path / "first")
    monkeypatch.setattr(train, "run_epoch", diverge_in(2))
    with pytest.raises(
        train.TrainingDiverged, match=r"^epoch 2: .*the last good checkpoint \(epoch 1\) is kept in .*checkpoint\.npz$"
    ):
        run(train.configure(**TINY), corpus, tmp_path / "second")
    assert checkpoint.read_meta(tmp_path / "second" / "checkpoint.npz")["epoch"] == 1


# ----------------------------------------------------------------------------- damaged files are named


def npz_variants(good: bytes, tmp_path):
    np.savez(tmp_path / "foreign.npz", x=np.ones(3))
    np.save(tmp_path / "array.npy", np.ones(3))
    middle = bytearray(good)
    middle[len(good) // 2] ^= 0xFF
    return {
        "empty": b"",
        "text": b"not a checkpoint\n",
        "truncated": good[: len(good) // 2],
        "last byte missing": good[:-1],
        "flipped byte": bytes(middle),
        "foreign npz": (tmp_path / "foreign.npz").read_bytes(),
        "npy": (tmp_path / "array.npy").read_bytes(),
    }


def test_load_tree_names_a_file_that_is_not_a_checkpoint(finished, tmp_path):
    good = (finished[0] / "best.npz").read_bytes()
    template = rundir.load_params(finished[0], rundir.load_run(finished[0])[1])[0]
    for what, content in npz_variants(good, tmp_path).items():
        path = tmp_path / "best.npz"
        path.write_bytes(content)
        with pytest.raises(checkpoint.CheckpointError, match=r"best\.npz: not a jaxbackprop checkpoint") as error:
            checkpoint.load_tree(path, template)
        assert "\n" not in str(error.value), what
    with pytest.raises(checkpoint.CheckpointError, match=r"dir\.npz: is a directory, not a jaxbackprop checkpoint"):
        checkpoint.load_tree((tmp_path / "dir.npz").mkdir() or tmp_path / "dir.npz", template)
    with pytest.raises(FileNotFoundError, match=r"absent\.npz: no such checkpoint file"):
        checkpoint.load_tree(tmp_path / "absent.npz", template)


@pytest.mark.parametrize("name", ["config.json", "vocab.json", "best.npz"])
def test_load_run_names_a_missing_or_damaged_file(finished, tmp_path, name):
    run_dir = copy_of(finished[0], tmp_path)
    (run_dir / name).unlink()
    with pytest.raises(FileNotFoundError, match=rf"{name}: no such file|{name}: no best checkpoint"):
        rundir.load_run(run_dir)
    (run_dir / name).write_text('{"train": ')
    with pytest.raises(ValueError, match=rf"{name}:(1:11: not valid JSON| not a jaxbackprop)"):
        rundir.load_run(run_dir)


def test_a_run_written_before_the_features_rename_still_loads(finished, tmp_path):
    """Older runs recorded a flat "train" section with casing_dim, casing_size in "model", and the
    feature table as "Ecase" in their checkpoints; evaluate and predict still read them."""
    run_dir = copy_of(finished[0], tmp_path)
    conf = json.loads((run_dir / "config.json").read_text())
    old_names = {"feature_dim": "casing_dim", "feature_vocab_size": "casing_size"}
    flat = {old_names.get(k, k): v for k, v in train.flatten(rundir.config_from_json(conf["train"])).items()}
    model_section = {old_names.get(k, k): v for k, v in conf["model"].items()}
    files.write_json(run_dir / "config.json", {**conf, "train": flat, "model": model_section})
    with np.load(run_dir / "best.npz") as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(bytes(arrays["__meta__"]).decode())
    meta["treedef"] = meta["treedef"].replace("'F'", "'Ecase'")
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(run_dir / "best.npz", **arrays)
    config, model_cfg, _, _, params = rundir.load_run(run_dir)
    want_config, want_model_cfg, _, _, want_params = rundir.load_run(finished[0])
    assert (config, model_cfg) == (want_config, want_model_cfg) and "F" in params
    for k in want_params:
        np.testing.assert_array_equal(params[k], want_params[k])
