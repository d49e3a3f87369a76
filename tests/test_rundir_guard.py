"""What keeps a run directory one run's: a lock against a second process, training and sweeps
refusing each other's folders, cleaning only the project's own temporaries, a full disk named
with the way to go on, and a hand-edited epoch count that cannot skew a resumed run."""

import errno
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import helpers
import numpy as np
import pytest

from jaxbackprop import checkpoint, dirlock, files, rundir, sweep, train

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
TINY = dict(helpers.TINY, epochs=1)
run = helpers.quiet_run


def quiet(*_):
    pass


@pytest.fixture(scope="module")
def corpus():
    return helpers.tiny_corpus()


@pytest.fixture(scope="module")
def training_run(corpus, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("training-run")
    run(train.configure(**TINY), corpus, run_dir)
    return run_dir


@pytest.fixture(scope="module")
def a_sweep(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("a-sweep")
    sweep.run_sweep([{"optimizer": "sgd", "learning_rate": 0.1}], corpus, out, base=train.configure(**TINY), log=quiet)
    return out


def file_bytes(directory) -> dict:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def wait_for(condition, what: str, seconds: float = 300.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


# ----------------------------------------------------------------------------- one process at a time

# `jaxbackprop train` that waits after recording its first epoch until the test says go, so the
# second process certainly arrives while the first one holds the directory
HOLD_AFTER_EPOCH_1 = """
import pathlib, sys, time
from jaxbackprop import cli, rundir
committed, go = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
commit = rundir.commit_epoch
def commit_and_wait(*args, **kwargs):
    commit(*args, **kwargs)
    committed.touch()
    while not go.exists():
        time.sleep(0.05)
rundir.commit_epoch = commit_and_wait
sys.exit(cli.main(sys.argv[3:]))
"""
SMALL = ["--window", "3", "--feature-dim", "4", "--epochs", "2", "--schedule", "step", "--no-progress"]


def test_a_second_process_into_a_run_directory_in_use_is_refused(tmp_path):
    """Two real `train` processes into one folder, the second with --overwrite and other settings:
    it is refused in one line naming the first, and the folder is the first one's run throughout."""
    run_dir, committed, go = tmp_path / "run", tmp_path / "committed", tmp_path / "go"
    first = subprocess.Popen(
        [sys.executable, "-c", HOLD_AFTER_EPOCH_1, committed, go, "train", *SMALL, "--hidden-dim", "8"]
        + ["--seed", "0", "--out", run_dir],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: committed.exists() or first.poll() is not None, "the first process's epoch 1")
        assert first.poll() is None, first.communicate()
        second = subprocess.run(
            [sys.executable, "-m", "jaxbackprop.cli", "train", *SMALL, "--hidden-dim", "12", "--seed", "1"]
            + ["--overwrite", "--out", str(run_dir)],
            env=ENV,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        go.touch()
        out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert second.returncode == 2 and "Traceback" not in second.stderr, second.stderr
    assert second.stderr.splitlines()[-1].startswith(
        f"jaxbackprop: error: {run_dir}: in use by another jaxbackprop process (pid {first.pid} on "
    ), second.stderr
    assert second.stderr.splitlines()[-1].endswith(
        "lock file .jaxbackprop-lock); wait for it to end, or choose another --out"
    )
    # the folder holds the first process's run, every file of it, and no lock (initial_E.npz: only on a named table)
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(set(rundir.RUN_FILES) - {rundir.INITIAL_E})
    config, model_cfg, _, _, best = rundir.load_run(run_dir)
    assert (config.seed, model_cfg.hidden_dim, best["W"].shape[0]) == (0, 8, 8)
    meta = checkpoint.read_meta(run_dir / "checkpoint.npz")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert meta["epoch"] == summary["epochs_run"] == 2 and meta["history"] == files.read_jsonl(
        run_dir / "metrics.jsonl"
    )


HOLD_THE_LOCK = """
import sys, time
from jaxbackprop import dirlock
with dirlock.locked(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(600)
"""


def test_a_lock_left_by_a_killed_process_is_taken_over_with_a_note(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_LOCK, tmp_path], env=ENV, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(
            dirlock.DirectoryInUse, match=rf"^{re.escape(str(tmp_path))}: in use by .*\(pid {holder.pid} on "
        ):
            with dirlock.locked(tmp_path):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)  # no finally runs: the lock file stays, the kernel drops the lock
        holder.communicate()
    assert (tmp_path / dirlock.LOCK_NAME).read_text().startswith(f"pid {holder.pid} on ")
    lines = []
    with dirlock.locked(tmp_path, log=lines.append):
        assert (tmp_path / dirlock.LOCK_NAME).read_text().startswith(f"pid {os.getpid()} on ")
    assert len(lines) == 1 and lines[0].startswith(
        f"note: {tmp_path / dirlock.LOCK_NAME}: taking over the lock of pid {holder.pid} on "
    )
    assert lines[0].endswith(", which ended without releasing it (killed?)")
    assert list(tmp_path.iterdir()) == []


def test_a_refused_lock_leaves_no_directory_behind(tmp_path):
    refused = []

    def lock_from_another_thread():
        try:
            with dirlock.locked(tmp_path / "run"):
                pass
        except dirlock.DirectoryInUse as e:
            refused.append(str(e))

    with dirlock.locked(tmp_path / "run"):
        with dirlock.locked(tmp_path / "run" / ".." / "run"):  # the holding thread re-enters, by any spelling
            assert (tmp_path / "run" / dirlock.LOCK_NAME).exists()
        assert (tmp_path / "run" / dirlock.LOCK_NAME).exists()  # still held after the inner block
        other = threading.Thread(target=lock_from_another_thread)
        other.start()
        other.join()
        assert len(refused) == 1 and "in use by another jaxbackprop process" in refused[0]
    with pytest.raises(RuntimeError), dirlock.locked(tmp_path / "new" / "deeper"):
        raise RuntimeError("refused after the lock")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_a_directory_in_use_is_refused_before_the_corpus_loads(tmp_path, command, capsys, monkeypatch):
    """The refusal comes first: the training file, which does not exist, is never opened."""
    from jaxbackprop import cli

    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_LOCK, tmp_path / "run"], env=ENV, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        monkeypatch.chdir(tmp_path)
        assert cli.main([command, "--train", "absent.txt", "--dev", "absent.txt", "--out", "run"]) == 2
    finally:
        holder.send_signal(signal.SIGTERM)
        holder.communicate()
    err = capsys.readouterr().err
    assert err.startswith(f"jaxbackprop: error: run: in use by another jaxbackprop process (pid {holder.pid} on ")
    assert "absent.txt" not in err and len(err.splitlines()) == 1


# ----------------------------------------------------------------------------- a sweep is not a run


def test_train_and_sweep_refuse_each_others_folders_even_with_overwrite(training_run, a_sweep, corpus):
    before = file_bytes(training_run), file_bytes(a_sweep)
    run_files = "config.json, metrics.jsonl, checkpoint.npz, best.npz, summary.json"
    sweep_files = "config.json, results.csv, results.json, curves.json, curves.png, heatmap.png"
    for overwrite in (False, True):
        with pytest.raises(
            rundir.RunDirError,
            match=rf"^{re.escape(str(training_run))}: holds a training run \({run_files}\), not a sweep; "
            r"it is not replaced, even with --overwrite: choose another --out$",
        ):
            sweep.run_sweep([{}], corpus, training_run, base=train.configure(**TINY), overwrite=overwrite, log=quiet)
        with pytest.raises(
            rundir.RunDirError,
            match=rf"^{re.escape(str(a_sweep))}: holds a sweep \({sweep_files}\), not a training run; it is not",
        ):
            run(train.configure(**TINY), corpus, a_sweep, overwrite=overwrite)
    with pytest.raises(rundir.RunDirError, match=r"holds a sweep \(config\.json, results\.csv, .*not a training run"):
        run(train.configure(**TINY), corpus, a_sweep, resume=True)
    assert (file_bytes(training_run), file_bytes(a_sweep)) == before


# ----------------------------------------------------------------------------- only our own temporaries


def test_overwrite_cleans_only_the_projects_own_temporaries(training_run, a_sweep, corpus, tmp_path):
    """A user's file named like a temporary survives --overwrite; an orphan a killed run or sweep left is removed."""
    for directory in (training_run, a_sweep):
        (directory / ".config.json.mybackup.tmp").write_text("mine\n")
        (directory / f"{files.TMP_PREFIX}config.json.k1ll3d").write_text("half a file")
    run(train.configure(**TINY), corpus, training_run, overwrite=True)
    sweep.run_sweep(
        [{"optimizer": "sgd", "learning_rate": 0.1}],
        corpus,
        a_sweep,
        base=train.configure(**TINY),
        overwrite=True,
        log=quiet,
    )
    for directory in (training_run, a_sweep):
        assert (directory / ".config.json.mybackup.tmp").read_text() == "mine\n"
        assert not list(directory.glob(f"{files.TMP_PREFIX}*")), directory
        (directory / ".config.json.mybackup.tmp").unlink()


# ----------------------------------------------------------------------------- a full disk, an edited epoch count


def test_a_full_disk_names_the_file_and_how_to_go_on(corpus, tmp_path, monkeypatch):
    config = train.configure(**dict(TINY, epochs=2))
    savez = np.savez

    def full_disk_in_epoch(epoch):
        def savez_until_full(f, **arrays):
            meta = json.loads(bytes(arrays["__meta__"]).decode())
            if meta.get("epoch") == epoch:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return savez(f, **arrays)

        return savez_until_full

    monkeypatch.setattr(np, "savez", full_disk_in_epoch(2))
    second = tmp_path / "second"
    with pytest.raises(
        rundir.RunDirError,
        # best.npz is written first when epoch 2 improves dev F1, else checkpoint.npz fails
        match=rf"^{re.escape(str(second))}/(best|checkpoint)\.npz: no space left on device; the run is kept up to "
        rf"epoch 1 \({re.escape(str(second / 'checkpoint.npz'))}\): free some space, then continue it with --resume$",
    ):
        run(config, corpus, second)
    assert not list(second.glob(f"{files.TMP_PREFIX}*"))
    monkeypatch.setattr(np, "savez", full_disk_in_epoch(1))
    with pytest.raises(
        rundir.RunDirError,
        match=rf"^{re.escape(str(tmp_path / 'first'))}/best\.npz: no space left on device; no epoch was recorded in "
        r".*: free some space, then start the run again with --overwrite$",
    ):
        run(config, corpus, tmp_path / "first")
    monkeypatch.setattr(np, "savez", savez)
    run(config, corpus, second, resume=True)  # what the line says works
    assert checkpoint.read_meta(second / "checkpoint.npz")["epoch"] == 2


def test_a_hand_edited_epoch_count_cannot_skew_a_resumed_run(corpus, tmp_path):
    """The checkpoint records the epochs its run was given; a resume counts from that, not from an
    edited config.json (which it then rewrites), so summary, metrics and config agree."""
    run_dir = tmp_path / "run"
    run(train.configure(**dict(TINY, epochs=2)), corpus, run_dir)
    conf = json.loads((run_dir / "config.json").read_text())
    files.write_json(run_dir / "config.json", {**conf, "train": {**conf["train"], "epochs": 1}})
    before = file_bytes(run_dir)
    with pytest.raises(rundir.RunDirError, match=r"epochs: run has 2, given 1 \(epochs may only grow\)"):
        run(train.configure(**TINY), corpus, run_dir, resume=True)
    assert file_bytes(run_dir) == before
    summary = run(train.configure(**dict(TINY, epochs=2)), corpus, run_dir, resume=True)
    assert json.loads((run_dir / "config.json").read_text()) == conf and summary["epochs_run"] == 2
