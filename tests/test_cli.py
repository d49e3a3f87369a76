"""The console command as a user calls it."""

import json
import subprocess
import sys

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


def test_train_points_to_sparse_updates_for_a_large_vocabulary(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "LARGE_VOCAB", 10)  # the embedded corpus has a few hundred words
    args = ["train", "--epochs", "1", "--hidden-dim", "8", "--batch-size", "256", "--no-progress"]
    assert cli.main([*args, "--run-dir", str(tmp_path / "dense")]) == 0
    out = capsys.readouterr().out
    assert "note: a vocabulary of" in out and "--sparse updates only the rows in the batch" in out
    assert cli.main([*args, "--sparse", "--run-dir", str(tmp_path / "sparse")]) == 0
    assert "note: a vocabulary of" not in capsys.readouterr().out
