"""Every mistake a user makes ends `jaxbackprop` with one line on stderr and no traceback.

Each case runs the command as a user would (``cli.main`` on tiny files in ``tmp_path``; one in
a fresh process) and pins the whole of stderr: one line, which names the file and line, or the
option and what it allows. ``--debug`` or ``JAXBACKPROP_DEBUG=1`` adds the traceback.
"""

import dataclasses
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from jaxbackprop import (
    ModelConfig,
    backprop,
    check_matrix,
    checkpoint,
    cli,
    data,
    gradcheck,
    graph_demo,
    model,
    optim,
    pipeline,
    rundir,
    settings,
    sweep,
    train,
)
from jaxbackprop.files import write_json, write_text

TRAIN = "EU B-ORG\nrejects O\nGerman B-MISC\ncall O\n\nPeter B-PER\nBlackburn I-PER\n"
DEV = "EU B-ORG\nrejects O\n\nPeter B-PER\n"
TINY = "--epochs 1 --hidden-dim 4 --window 3 --feature-dim 0 --embed-dim 4 --min-count 1 --batch-size 64".split()
TINY += ["--no-progress"]


def run(capsys, *argv) -> tuple[int, str]:
    """Exit code and stderr of ``jaxbackprop argv``; stderr must be exactly one line, no traceback."""
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as e:  # argparse's errors exit from inside parse_args
        code = e.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return code, err.rstrip("\n")


def write(path: Path, content) -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


@pytest.fixture
def files(tmp_path):
    return write(tmp_path / "train.txt", TRAIN), write(tmp_path / "dev.txt", DEV)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """The files `evaluate` and `predict` read from a run (config, vocabulary, best parameters),
    written the way `train` writes them on the two tiny files, but without the seconds of compiling."""
    root = tmp_path_factory.mktemp("trained")
    sentences = data.read_conll(write(root / "train.txt", TRAIN))
    write(root / "dev.txt", DEV)
    config = train.configure(window=3, hidden_dim=4, feature_dim=0, embed_dim=4, min_count=1)
    prepared = pipeline.prepare_for(config, sentences, sentences)
    model_cfg = pipeline.model_config(config, prepared)
    run = root / "run"
    record = {"train": dataclasses.asdict(config), "model": dataclasses.asdict(model_cfg), "tags": prepared.tags}
    write_json(run / "config.json", record)
    write_text(run / "vocab.json", prepared.vocab.to_json())
    params = {name: np.zeros(shape, np.float32) for name, shape in model.param_shapes(model_cfg).items()}
    checkpoint.save_tree(run / "best.npz", params, {"epoch": 1, "dev_f1": 0.0})
    return run


# ----------------------------------------------------------------------------- data files

BAD_FILES = {
    "wrong column count": (
        b"EU NNP B-ORG\nrejects VBZ\n",
        ":2: expected 3 columns like the first token line, got 2: 'rejects VBZ'",
    ),
    "illegal tag": (b"EU B-ORG\nrejects X-FOO\n", ":2: illegal tag 'X-FOO': expected 'O', 'B-TYPE' or 'I-TYPE'"),
    "not UTF-8": (b"EU B-ORG\n\nM\xfcnchen B-LOC\n", ":3: not UTF-8 text (invalid start byte)"),
    "empty": (b"", ":0: no sentences found (the file is empty or holds only blank/DOCSTART lines)"),
}


@pytest.mark.parametrize("case", BAD_FILES)
@pytest.mark.parametrize("option", ["--train", "--dev"])
def test_a_malformed_conll_file_names_its_line(capsys, files, tmp_path, case, option):
    content, problem = BAD_FILES[case]
    bad = write(tmp_path / "bad.txt", content)
    paths = {"--train": files[0], "--dev": files[1], option: bad}
    code, err = run(capsys, "train", "--train", paths["--train"], "--dev", paths["--dev"], *TINY)
    assert (code, err) == (2, f"jaxbackprop: error: {bad}{problem}")


@pytest.mark.parametrize("option", ["--dev", "--test"])
def test_a_tag_training_never_showed_names_its_file_and_line(capsys, files, tmp_path, option):
    unseen = write(tmp_path / "unseen.txt", "EU B-ORG\n\nin O\nParis I-LOC\n")  # IOB1: reported as written
    paths = {"--dev": files[1], "--test": files[1], option: unseen}
    code, err = run(capsys, "train", "--train", files[0], "--dev", paths["--dev"], "--test", paths["--test"], *TINY)
    tags = "O, B-MISC, I-MISC, B-ORG, I-ORG, B-PER, I-PER"
    assert (code, err) == (2, f"jaxbackprop: error: {unseen}:4: tag 'I-LOC' is not among the training tags ({tags})")


def test_a_missing_file_or_a_directory_is_named(capsys, files, tmp_path):
    missing = tmp_path / "missing.txt"
    assert run(capsys, "train", "--train", missing, "--dev", files[1]) == (
        2,
        f"jaxbackprop: error: {missing}: No such file or directory",
    )
    assert run(capsys, "train", "--train", files[0], "--dev", tmp_path) == (
        2,
        f"jaxbackprop: error: {tmp_path}: Is a directory",
    )
    code, err = run(capsys, "train", "--train", files[0], "--dev", files[1], "--embeddings", missing)
    assert (code, err) == (2, f"jaxbackprop: error: {missing}: No such file or directory")


def test_a_bad_embeddings_line_is_named(capsys, files, tmp_path):
    vectors = write(tmp_path / "vectors.txt", "eu 0.1 0.2\nrejects 0.3\n")
    code, err = run(capsys, "train", "--train", files[0], "--dev", files[1], "--embeddings", vectors, *TINY)
    assert (code, err) == (2, f"jaxbackprop: error: {vectors}:2: expected 2 values after the word, got 1")


@pytest.mark.parametrize(
    "text, problem",
    [
        ("eu 0.1\nrejects 0.3 0.4\ngerman 0.5 0.6\n", "1: expected 2 values after the word, got 1"),
        ("eu 0.1 0.2\nrejects 1e39 0.4\n", "2: value '1e39' is beyond float32's range (+-3.4e38)"),
    ],
)
def test_a_bad_embeddings_value_or_first_line_is_one_line(capsys, files, tmp_path, text, problem):
    vectors = write(tmp_path / "vectors.txt", text)
    code, err = run(capsys, "train", "--train", files[0], "--dev", files[1], "--embeddings", vectors, *TINY)
    assert (code, err) == (2, f"jaxbackprop: error: {vectors}:{problem}")


def test_files_need_train_and_dev_together(capsys, files):
    code, err = run(capsys, "train", "--dev", files[1])
    assert (code, err) == (
        2,
        "jaxbackprop: error: --dev/--test need --train (without files the embedded synthetic corpus is used)",
    )
    code, err = run(capsys, "sweep", "--train", files[0])
    assert (code, err) == (2, "jaxbackprop: error: --train needs --dev (the best epoch is chosen on dev F1)")


# ----------------------------------------------------------------------------- options


def test_an_unknown_optimizer_lists_optax_optimizers(capsys):
    for command in ("train", "sweep"):
        code, err = run(capsys, command, "--optimizer", "adamm")
        assert code == 2 and err.startswith(
            f"jaxbackprop {command}: error: argument --optimizer: invalid choice: 'adamm' (choose from "
        )
        assert all(f"'{name}'" in err for name in ("sgd", "momentum", "adam", "adamw", "rmsprop", "adagrad"))
    assert "'lbfgs'" not in err and "'scale_by_rprop'" not in err  # needs the loss function / climbs the loss


@pytest.mark.parametrize(
    "argv, problem",
    [
        (["train", "--dropout", "1.5"], "argument --dropout: must be a number in [0, 1), got 1.5"),
        (
            ["train", "--window", "4"],
            "argument --window: must be an odd integer in [1, 101] (a centre word and equal context), got 4",
        ),
        (
            ["train", "--window", "20001"],
            "argument --window: must be an odd integer in [1, 101] (a centre word and equal context), got 20001",
        ),
        (["train", "--seed", str(2**63)], f"argument --seed: must be an integer in [0, 4294967295], got {2**63}"),
        (["train", "--seed", str(2**32)], f"argument --seed: must be an integer in [0, 4294967295], got {2**32}"),
        (["sweep", "--seed", str(2**32)], f"argument --seed: must be an integer in [0, 4294967295], got {2**32}"),
        (
            ["train", "--batch-size", "100000000"],
            "argument --batch-size: must be an integer in [1, 65536], got 100000000",
        ),
        (
            ["sweep", "--learning-rate", "0.1", "--learning-rate", "1e-1"],
            "argument --learning-rate: 0.1 is given twice (each value runs once)",
        ),
        (["sweep", "--seed", "1", "--seed", "1"], "argument --seed: 1 is given twice (each value runs once)"),
        (["train", "--resume", "--overwrite"], "argument --overwrite: not allowed with argument --resume"),
        (["train", "--epochs", "0"], "argument --epochs: must be an integer >= 1, got 0"),
        (["train", "--learning-rate", "-1"], "argument --learning-rate: must be a number > 0, got -1.0"),
        (["train", "--seed", "-1"], "argument --seed: must be an integer in [0, 4294967295], got -1"),
        (["train", "--epochs", "two"], "argument --epochs: invalid int value: 'two'"),
        (
            ["train", "--activation", "swish"],
            (
                "argument --activation: invalid choice: 'swish' (choose from "
                "'sigmoid', 'tanh', 'hardtanh', 'relu', 'leaky_relu', 'prelu')"
            ),
        ),
        (["sweep", "--epochs", "0"], "argument --epochs: must be an integer >= 1, got 0"),
        (["sweep", "--learning-rate", "0"], "argument --learning-rate: must be a number > 0, got 0.0"),
        (["sweep", "--chunk", "0"], "argument --chunk: must be an integer >= 1, got 0"),
        (["check", "--directions", "0"], "argument --directions: must be an integer >= 1, got 0"),
        (["evaluate", "--data", "x.txt"], "the following arguments are required: --run"),
    ],
)
def test_an_option_out_of_range_names_the_option_and_the_range(capsys, argv, problem):
    assert run(capsys, *argv) == (2, f"jaxbackprop {argv[0]}: error: {problem}")


@pytest.mark.parametrize("address", ["nonsense", "host:", ":1234", "host:99999", "host:port"])
def test_a_coordinator_that_is_not_host_port_is_refused_as_the_options_are_read(capsys, address):
    assert run(capsys, "--coordinator", address, "train") == (
        2,
        "jaxbackprop: error: argument --coordinator: must be HOST:PORT with a port in 1 ... 65535 "
        f"(e.g. 10.0.0.1:1234), got {address!r}",
    )


def test_refusals_come_before_the_corpus_loads(capsys, tmp_path):
    """Each is refused although --train names no file: the options are checked first."""
    missing = tmp_path / "missing.txt"
    (tmp_path / "a_file").write_text("mine")
    corpus = ["--train", missing, "--dev", missing]
    assert run(capsys, "train", *corpus, "--impl", "flax") == (
        2,
        "jaxbackprop: error: impl='flax' needs grad='autodiff': the flax module is differentiated by jax.grad",
    )
    for command in ("train", "sweep"):
        assert run(capsys, command, *corpus, "--out", tmp_path / "a_file") == (
            2,
            f"jaxbackprop: error: {tmp_path / 'a_file'}: exists and is not a directory; choose another --out",
        )
    assert (tmp_path / "a_file").read_text() == "mine"


def test_sweep_quick_honours_epochs_and_hidden_dim(capsys, monkeypatch, tmp_path):
    seen = {}

    def fake_run_sweep(table, prepared, out, *, base, **_):
        seen.update(table=table, base=base)
        return []

    monkeypatch.setattr(sweep, "run_sweep", fake_run_sweep)
    assert cli.main(["sweep", "--quick", "--epochs", "3", "--out", str(tmp_path / "sw")]) == 0
    assert (seen["base"].epochs, seen["base"].model.hidden_dim, seen["base"].model.window) == (3, 32, 3)
    assert len(seen["table"]) == 4  # sgd, adam x 1e-2, 1e-1
    assert "4 configurations, 3 epoch(s) each" in capsys.readouterr().out
    assert cli.main(["sweep", "--quick", "--hidden-dim", "8", "--out", str(tmp_path / "sw")]) == 0
    assert (seen["base"].epochs, seen["base"].model.hidden_dim) == (1, 8)


ARGUMENT_ERRORS = [
    ["--help"],
    ["train", "--seed", str(2**63)],
    ["--coordinator", "nonsense", "train"],
    ["train", "--resume", "--overwrite"],
    ["sweep", "--learning-rate", "0.1", "--learning-rate", "0.1"],
    ["train", "--train", "x.txt", "--dev", "x.txt", "--impl", "flax"],
    ["train", "--train", "x.txt"],
]


def test_reading_and_refusing_the_options_does_not_import_jax(tmp_path):
    """JAX takes seconds to import: --help and an argument error answer without it."""
    probe = (
        "import sys\n"
        "from jaxbackprop import cli\n"
        "try:\n"
        "    code = cli.main(sys.argv[1:])\n"
        "except SystemExit as e:\n"
        "    code = e.code\n"
        "print('jax imported' if 'jax' in sys.modules else 'no jax', code, file=sys.stderr)\n"
    )
    for argv in ARGUMENT_ERRORS:
        done = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, cwd=tmp_path)
        *message, last = done.stderr.splitlines()
        assert last == f"no jax {0 if argv == ['--help'] else 2}", (argv, done.stderr)
        assert "Traceback" not in done.stderr and len(message) == (argv != ["--help"]), done.stderr


def test_the_cli_lists_the_optimizers_optax_has():
    """settings.OPTIMIZERS is optax's list written out, so the parser does not import optax (and JAX)."""
    assert settings.OPTIMIZERS == optim.optimizer_names()


def test_settings_that_do_not_go_together_are_one_line(capsys):
    code, err = run(capsys, "train", "--sparse", "--grad", "autodiff")
    assert (code, err) == (
        2,
        "jaxbackprop: error: sparse=True needs grad='manual': only the hand-derived gradient yields E's rows",
    )


def test_every_range_the_cli_checks_is_the_configs():
    """The options are checked by TrainConfig itself, so the library and the command agree."""
    for bad in (
        {"dropout": 1.5},
        {"window": 4},
        {"epochs": 0},
        {"optimizer": "adamm"},
        {"l2": float("nan")},
        {"seed": -1},
    ):
        with pytest.raises(ValueError, match=f"^{next(iter(bad))} must "):
            train.configure(**bad)
    assert "momentum" in optim.optimizer_names() and "lbfgs" not in optim.optimizer_names()


# ----------------------------------------------------------------------------- run directories


def test_evaluate_and_predict_name_a_directory_that_is_not_a_run(capsys, tmp_path, files):
    for argv in (["evaluate", "--data", files[1]], ["predict", "--input", files[1]]):
        code, err = run(capsys, *argv, "--run", tmp_path)
        assert code == 2 and err.startswith(f"jaxbackprop: error: {tmp_path / 'config.json'}: "), err
        assert "not a jaxbackprop run directory" in err


@pytest.mark.parametrize(
    "content, problem",
    [
        (
            "EU B-ORG\nParis B-LOC\n",
            ":2: tag 'B-LOC' is not among the training tags (O, B-MISC, I-MISC, B-ORG, I-ORG, B-PER, I-PER)",
        ),
        ("EU NNP B-ORG\nrejects VBZ\n", ":2: expected 3 columns like the first token line, got 2: 'rejects VBZ'"),
    ],
)
def test_evaluate_names_the_line_of_a_bad_data_file(capsys, run_dir, tmp_path, content, problem):
    test_file = write(tmp_path / "test.txt", content)
    assert run(capsys, "evaluate", "--run", run_dir, "--data", test_file) == (
        2,
        f"jaxbackprop: error: {test_file}{problem}",
    )


def test_predict_names_a_missing_input(capsys, run_dir, tmp_path):
    missing = tmp_path / "text.txt"
    assert run(capsys, "predict", "--run", run_dir, "--input", missing) == (
        2,
        f"jaxbackprop: error: {missing}: No such file or directory",
    )


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_non_finite_best_parameters_are_named(capsys, run_dir, tmp_path, files, command):
    damaged = tmp_path / "run"
    shutil.copytree(run_dir, damaged)
    params = {name: np.asarray(value) for name, value in rundir.load_run(damaged)[-1].items()}
    params["W"] = np.full_like(params["W"], np.nan)
    checkpoint.save_tree(damaged / "best.npz", params, {"epoch": 1, "dev_f1": 0.0})
    option = "--data" if command == "evaluate" else "--input"
    assert run(capsys, command, "--run", damaged, option, files[1]) == (
        2,
        f"jaxbackprop: error: {damaged / 'best.npz'}: tensor W holds non-finite values (nan or inf); "
        "these parameters cannot tag anything",
    )


def test_a_reader_that_goes_away_ends_the_output_quietly():
    """``jaxbackprop evaluate ... | head -1``: no 'Broken pipe', exit 141 as a process that SIGPIPE ended."""
    command = [sys.executable, "-m", "jaxbackprop.cli", "graph-demo"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as done:
        done.stdout.close()  # before the command writes: every write meets a pipe without a reader
        _, err = done.communicate()
    assert (err, done.returncode) == (b"", 141)


def test_predict_with_its_output_closed_is_one_line(run_dir, files):
    command = f"{shlex.quote(sys.executable)} -m jaxbackprop.cli predict --run {run_dir} --input {files[1]} >&-"
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (
        2,
        "jaxbackprop: error: standard output is closed: predict writes its tags there (redirect it, e.g. > tags.txt)\n",
    )


def test_training_into_a_finished_run_needs_overwrite(capsys, run_dir):
    train_file, dev_file = run_dir.parent / "train.txt", run_dir.parent / "dev.txt"
    code, err = run(capsys, "train", "--train", train_file, "--dev", dev_file, "--run-dir", run_dir, *TINY)
    assert code == 2 and err.startswith(f"jaxbackprop: error: {run_dir}: already holds a run"), err


@pytest.mark.parametrize("damage", ["empty", "truncated", "foreign"])
def test_a_damaged_checkpoint_is_named(capsys, run_dir, tmp_path, damage):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    best = copy / "best.npz"
    if damage == "foreign":
        np.savez(best, weights=np.zeros(3))
    else:
        best.write_bytes(best.read_bytes()[: 0 if damage == "empty" else best.stat().st_size // 2])
    code, err = run(capsys, "evaluate", "--run", copy, "--data", run_dir.parent / "dev.txt")
    assert code == 2 and err.startswith(f"jaxbackprop: error: {best}: not a jaxbackprop checkpoint"), err


def test_a_diverged_run_is_one_line(capsys, files, tmp_path, monkeypatch):
    def diverge(*args, **kwargs):
        raise train.TrainingDiverged("epoch 1: the training loss became nan (learning rate 1e+30 too large?)")

    monkeypatch.setattr(train, "train_and_evaluate", diverge)
    code, err = run(capsys, "train", "--train", files[0], "--dev", files[1], "--run-dir", tmp_path / "run", *TINY)
    assert (code, err) == (
        2,
        "jaxbackprop: error: epoch 1: the training loss became nan (learning rate 1e+30 too large?)",
    )


# ----------------------------------------------------------------------------- gradient check

CFG = ModelConfig(vocab_size=12, embed_dim=3, window=3, hidden_dim=4, num_classes=3, activation="tanh")
BATCH = {"windows": np.array([[5, 7, 5], [7, 1, 2]], np.int32), "labels": np.array([0, 2], np.int32)}


def transposed_U(params, batch, cfg, *, key=None):
    """The hand-derived gradient with dJ/dU transposed: (H, C) instead of U's (C, H)."""
    J, grads = backprop.manual_value_and_grad(params, batch, cfg, key=key)
    return J, {**grads, "U": jnp.transpose(grads["U"])}


def test_a_wrongly_shaped_gradient_names_its_tensor():
    with pytest.raises(ValueError, match=r"^demo: gradient of 'U' has shape \(4, 3\), parameter has \(3, 4\)$"):
        gradcheck.check_gradients(
            check_matrix.check_params(0, CFG), BATCH, CFG, value_and_grad=transposed_U, label="demo"
        )


def test_check_names_the_tensor_whose_gradient_has_the_wrong_shape(capsys, monkeypatch):
    def broken_matrix(**kwargs):
        yield gradcheck.check_gradients(
            check_matrix.check_params(0, CFG), BATCH, CFG, value_and_grad=transposed_U, label="tanh / softmax"
        )

    monkeypatch.setattr(check_matrix, "check_matrix", broken_matrix)
    code, err = run(capsys, "check")
    assert (code, err) == (
        2,
        "jaxbackprop: error: tanh / softmax: gradient of 'U' has shape (4, 3), parameter has (3, 4)",
    )


# ----------------------------------------------------------------------------- how errors print


@pytest.mark.parametrize(
    "error, code, line",
    [
        (
            ZeroDivisionError("float division by zero"),
            3,
            "jaxbackprop: error: internal error: ZeroDivisionError: float division by zero "
            "(run with --debug for the traceback)",
        ),
        (ValueError("a message\n  on two lines"), 2, "jaxbackprop: error: a message on two lines"),
        (PermissionError(13, "Permission denied", "runs/x"), 2, "jaxbackprop: error: runs/x: Permission denied"),
        (KeyboardInterrupt(), 130, "jaxbackprop: interrupted"),
    ],
)
def test_how_each_kind_of_error_prints(capsys, monkeypatch, error, code, line):
    def fail():
        raise error

    monkeypatch.setattr(graph_demo, "demo_text", fail)
    assert run(capsys, "graph-demo") == (code, line)


@pytest.mark.parametrize("where", ["before", "after", "environment"])
def test_debug_adds_the_traceback(capsys, monkeypatch, tmp_path, where):
    missing = tmp_path / "missing.txt"
    argv = ["train", "--train", str(missing), "--dev", str(missing)]
    if where == "environment":
        monkeypatch.setenv("JAXBACKPROP_DEBUG", "1")
    argv = ["--debug", *argv] if where == "before" else [*argv, "--debug"] if where == "after" else argv
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "Traceback (most recent call last):" and "FileNotFoundError" in err[-2]
    assert err[-1] == f"jaxbackprop: error: {missing}: No such file or directory"


def test_the_installed_command_prints_one_line(tmp_path):
    """End to end, in a fresh process: the console script (or ``python -m jaxbackprop.cli``)."""
    missing = tmp_path / "missing.txt"
    script = Path(sys.executable).parent / "jaxbackprop"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "jaxbackprop.cli"]
    env = {k: v for k, v in os.environ.items() if k != "JAXBACKPROP_DEBUG"}
    done = subprocess.run(
        [*command, "train", "--train", str(missing), "--dev", str(missing)],
        check=False,
        capture_output=True,
        text=True,
        env=env,
    )
    assert (done.returncode, done.stdout, done.stderr) == (
        2,
        "",
        f"jaxbackprop: error: {missing}: No such file or directory\n",
    )
