"""The console command as a user calls it."""

import json
import os
import subprocess
import sys

import jax
import pytest

from jaxbackprop import cli


def test_check_subset_passes_and_prints_the_table(capsys):
    assert cli.main(["check", "--activation", "tanh", "--head", "softmax"]) == 0
    out = capsys.readouterr().out
    assert "tanh / softmax / repeated words" in out and "PASSED: 0 of the checks" in out
    assert "largest errors per tensor" in out


def test_graph_demo_prints_the_lecture_numbers(capsys):
    assert cli.main(["graph-demo"]) == 0
    out = capsys.readouterr().out
    assert "f = a * b       = 3 * 2       = 6" in out and "df/dy = 2 + 3 = 5" in out


def test_sweep_quick_writes_its_table(tmp_path, capsys):
    assert cli.main(["sweep", "--quick", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "results.json").read_text())
    assert [(r["optimizer"], r["learning_rate"]) for r in rows] == [
        ("sgd", 0.01),
        ("sgd", 0.1),
        ("adam", 0.01),
        ("adam", 0.1),
    ]
    assert (tmp_path / "heatmap.png").stat().st_size > 0
    assert "best dev F1" in capsys.readouterr().out


def test_sweep_has_a_head_axis(tmp_path, capsys):
    argv = ["sweep", "--quick", "--head", "softmax", "--head", "crf", "--optimizer", "adam", "--learning-rate", "0.1"]
    assert cli.main([*argv, "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "results.json").read_text())
    assert [r["head"] for r in rows] == ["softmax", "crf"] and rows[0]["group"] != rows[1]["group"]
    assert all(r["best_dev_f1"] is not None and not r["diverged"] for r in rows)
    printed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in printed if line.startswith(("softmax ", "crf "))] == ["softmax", "crf"]


def test_help_of_every_subcommand_runs():
    out = subprocess.run(
        [sys.executable, "-m", "jaxbackprop.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("check", "graph-demo", "train", "evaluate", "predict", "sweep"):
        assert command in out
        with pytest.raises(SystemExit) as exit_info:
            cli.main([command, "--help"])
        assert exit_info.value.code == 0


def test_old_option_names_are_still_accepted():
    args = cli.build_parser().parse_args(["train", "--casing-dim", "0", "--run-dir", "runs/x"])
    assert (args.feature_dim, args.out) == (0, "runs/x")


def test_bad_option_value_is_rejected_by_name(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--activation", "swish"])
    assert "invalid choice: 'swish'" in capsys.readouterr().err


def test_a_large_vocabulary_trains_rows_only_unless_told(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "LARGE_VOCAB", 10)  # the embedded corpus has a few hundred words
    args = ["train", "--epochs", "1", "--hidden-dim", "8", "--batch-size", "256", "--no-progress"]
    sparse = lambda run: json.loads((tmp_path / run / "config.json").read_text())["train"]["sparse"]  # noqa: E731
    assert cli.main([*args, "--run-dir", str(tmp_path / "auto")]) == 0
    assert "rows-only updates of E (--sparse): a vocabulary of" in capsys.readouterr().out and sparse("auto")
    assert cli.main([*args, "--no-sparse", "--run-dir", str(tmp_path / "dense")]) == 0
    out = capsys.readouterr().out
    assert "note: a vocabulary of" in out and "updates only the rows in the batch" in out and not sparse("dense")
    assert cli.main([*args, "--grad", "autodiff", "--run-dir", str(tmp_path / "autodiff")]) == 0
    assert "note: a vocabulary of" in capsys.readouterr().out and not sparse("autodiff")


def test_devices_takes_a_count_or_all(capsys):
    parse = cli.build_parser().parse_args
    assert parse(["train", "--devices", "all"]).devices == "all"
    assert parse(["train", "--devices", "3"]).devices == 3
    assert parse(["train"]).devices is None  # one device
    assert parse(["sweep"]).devices == "all" and parse(["sweep", "--devices", "2"]).devices == 2
    for wrong in ("0", "two", "-1"):
        with pytest.raises(SystemExit) as exit_info:
            parse(["train", "--devices", wrong])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err == f"jaxbackprop train: error: argument --devices: must be an integer >= 1 or 'all', got '{wrong}'\n"


def test_more_devices_than_there_are_is_one_line_before_the_corpus_loads(capsys):
    n = jax.device_count() + 1
    assert cli.main(["train", "--devices", str(n)]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # refused before the corpus was read
    assert err.startswith(f"jaxbackprop: error: --devices {n}: only {n - 1} device") and err.count("\n") == 1
    if jax.default_backend() == "cpu":
        assert f"XLA_FLAGS=--xla_force_host_platform_device_count={n} gives {n})" in err


def test_distributed_is_for_train_only(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--distributed", "sweep", "--quick"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "jaxbackprop: error: --distributed runs `train` only, not `sweep`\n"


def test_distributed_outside_a_cluster_says_what_to_give():
    """In a fresh process (jax.distributed.initialize must come before JAX starts), no SLURM or MPI job."""
    cluster = ("SLURM_", "OMPI_", "PMI_", "JAX_COORDINATOR", "TPU_", "KUBERNETES_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(cluster) and k != "JAXBACKPROP_DEBUG"}
    done = subprocess.run(
        [sys.executable, "-m", "jaxbackprop.cli", "--distributed", "train", "--epochs", "1"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    err = [line for line in done.stderr.splitlines() if line.startswith("jaxbackprop")]
    assert done.returncode == 2 and done.stdout == "", done.stderr[-2000:]
    assert err == [
        "jaxbackprop: error: jax.distributed.initialize: coordinator_address should be defined. (outside a SLURM "
        "or Open MPI job give all three of --coordinator HOST:PORT, --num-processes P, --process-id I)"
    ]
