"""benchmarks/bench_vocab.py: its vocabulary layout, and a --quick run end to end into tmp_path.

No timing assertions: every arm there with positive times, ratios that are what the table says,
the machine recorded; the PyTorch arms only where torch is installed.
"""

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxbackprop import data

ROOT = Path(__file__).resolve().parents[1]
HAS_TORCH = importlib.util.find_spec("torch") is not None
TEXT = "EU B-ORG\nrejects O\nGerman B-MISC\ncall O\n\nthe O\nEU B-ORG\nsaid O\n"


@pytest.fixture
def bench_vocab():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_vocab

        yield bench_vocab
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def test_words_seen_once_are_spread_over_the_table(bench_vocab):
    sentences = data.parse_conll(TEXT)
    rows = bench_vocab.vocabulary_rows(sentences, 1000)
    # <pad> <s> </s> <unk>, then "eu" (twice) keep their ids; the 5 words seen once get distinct rows >= 5
    np.testing.assert_array_equal(rows[:5], np.arange(5))
    assert len(rows) == 10 and len(set(rows[5:].tolist())) == 5 and rows[5:].min() >= 5 and rows.max() < 1000
    with pytest.raises(SystemExit, match="the training file has 10 words, more than the 8 rows"):
        bench_vocab.vocabulary_rows(sentences, 8)


def test_stand_in_words_stay_distinct_in_the_vocabulary(bench_vocab):
    # the vocabulary maps digits to 0, so the stand-in spells its ranks in letters
    assert [bench_vocab.word(r) for r in (0, 25, 26, 27)] == ["a", "z", "ba", "bb"]
    sentences = bench_vocab.stand_in_corpus(sentences=20, tokens=300, words=50)
    assert len(sentences) == 20 and sum(len(s.tokens) for s in sentences) == 300
    windows, labels = bench_vocab.epoch_windows(sentences, 500)
    assert windows.shape == (300, 5) and labels.shape == (300,)
    assert len(np.unique(windows)) > 20  # many words, not the handful "w0", "w00", ... would collapse to


def test_bench_vocab_quick(tmp_path):
    out = tmp_path / "x.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_vocab.py"), "--quick", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    result = json.loads(out.read_text())
    env = result["environment"]
    assert env["cpu_model"] and env["quick"] is True and env["corpus"] == "stand-in" and env["vocab"] == 20_000
    assert [r["batch"] for r in result["batches"]] == [64, 1024]
    expected = {"dense_adam", "rows_adam", "rows_adagrad"} | ({"torch_sparse_adam"} if HAS_TORCH else set())
    for r in result["batches"]:
        assert expected <= set(r["arms"]), r["arms"].keys()
        for arm in r["arms"].values():
            med, q1, q3 = arm["epoch_s"]
            assert 0 < q1 <= med <= q3 and math.isfinite(q3), arm
            assert med == pytest.approx(r["steps_per_epoch"] * arm["step_ms"][0] / 1e3, rel=1e-9)
        x = r["ratios"]["rows_adam_vs_dense_adam"]
        assert x == pytest.approx(r["arms"]["dense_adam"]["step_ms"][0] / r["arms"]["rows_adam"]["step_ms"][0])
    # targets are read at the default batch size and above, one line per rows-only rule, with torch
    assert len(result["targets"]) == (2 if HAS_TORCH else 0)
    assert "| B | steps | dense Adam |" in proc.stdout and f"Machine: {env['cpu_model']}, " in proc.stdout


def test_bench_vocab_names_a_missing_conll_file_in_one_line(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_vocab.py"), "--quick", "--conll", str(tmp_path / "no.txt")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [
        f"bench_vocab: --conll {tmp_path / 'no.txt'}: No such file or directory"
    ]


def test_committed_section_is_rendered_from_its_json(bench_vocab):
    result = json.loads((ROOT / "benchmarks" / "results" / "bench_vocab.json").read_text())
    section = bench_vocab.section(result).strip()
    assert section in (ROOT / "BENCHMARKS.md").read_text(), "BENCHMARKS.md's bench_vocab section is stale"
    assert "| 1024 | 198 |" in section  # the real training file: 203,621 windows, 198 full batches of 1024
