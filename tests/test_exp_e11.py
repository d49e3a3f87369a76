"""E11 (word- vs sentence-level likelihood) in --quick mode, and the interval arithmetic of experiments/stats.py."""

import math
import sys
from pathlib import Path

import pytest
from test_experiments import _assert_files, run_quick

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
import stats  # noqa: E402  (experiments/ is no package)


def test_interval_is_students_t_over_the_seeds():
    values = [0.90, 0.91, 0.93, 0.92, 0.89]
    iv = stats.interval(values)
    mean = sum(values) / 5
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 4)
    # t(0.975, 4) = 2.7764451 (tables); float64 arithmetic on five numbers agrees to ~1e-15
    assert iv["mean"] == pytest.approx(mean, abs=1e-15) and iv["sd"] == pytest.approx(sd, rel=1e-12)
    assert iv["half_width"] == pytest.approx(2.7764451 * sd / math.sqrt(5), rel=1e-7)
    assert stats.interval([0.9])["half_width"] is None and stats.side(stats.interval([0.9])) == "across"


def test_paired_differences_cancel_what_both_arms_share():
    shared = [0.80, 0.90, 0.85, 0.70, 0.95]  # a seed effect far larger than the gap
    a, b = [x + 0.01 for x in shared], shared
    d = stats.paired(a, b)
    assert d["mean"] == pytest.approx(0.01, abs=1e-12) and d["wins"] == 5
    assert stats.verdict(d) == "supported"  # paired: the seed effect is gone
    assert stats.side(stats.interval(a)) == "above" and stats.interval(a)["low"] < max(b)  # unpaired would overlap
    assert stats.verdict(stats.paired(b, a)) == "not supported"
    assert stats.verdict(stats.paired([0.1, 0.3, 0.2], [0.2, 0.2, 0.2])) == "not resolved"
    with pytest.raises(ValueError, match="one value per seed"):
        stats.paired([1.0], [1.0, 2.0])


@pytest.fixture(scope="module")
def e11(tmp_path_factory):
    folder = tmp_path_factory.mktemp("e11")
    return run_quick("e11_sentence_likelihood", folder), folder


def test_e11_scores_each_arm_and_pairs_them_by_seed(e11):
    r, folder = e11
    seeds = r["seeds"]
    runs = {(x["arm"], x["seed"]): x for x in r["runs"]}
    assert set(runs) == {(arm, s) for arm in ("softmax_argmax", "softmax_viterbi", "crf") for s in seeds}
    for seed in seeds:
        # both decoders of the softmax arm come from one run (one best epoch, one training time)
        arg, vit = runs["softmax_argmax", seed], runs["softmax_viterbi", seed]
        assert arg["best_epoch"] == vit["best_epoch"] and arg["train_seconds"] == vit["train_seconds"]
        for arm in ("softmax_viterbi", "crf"):  # rescored from the params = train's own scores at the best epoch
            assert runs[arm, seed]["dev_f1"] == pytest.approx(runs[arm, seed]["summary_dev_f1"], abs=1e-12)
            assert runs[arm, seed]["test_f1"] == pytest.approx(runs[arm, seed]["summary_test_f1"], abs=1e-12)
        # the synthetic corpus has a vector for every word: every entity is covered
        assert runs["crf", seed]["test_uncovered_share"] == 0 and runs["crf", seed]["test_uncovered_f1"] is None
        assert runs["crf", seed]["test_covered_f1"] == runs["crf", seed]["test_f1"]
    d = r["aggregate"]["differences"]["crf-softmax_viterbi:test_f1"]
    assert d["differences"] == pytest.approx(
        [runs["crf", s]["test_f1"] - runs["softmax_viterbi", s]["test_f1"] for s in seeds]
    )
    assert r["config"]["primary"] == ["crf-softmax_viterbi:test_f1"] and d["role"] == "primary"
    margin = r["config"]["margin"]
    if stats.equivalent(d, margin):  # the whole interval within the margin fixed before the run
        assert r["verdict"] == f"equivalent within ±{margin:g}"
    else:
        assert r["verdict"] == {"above": "supported", "below": "not supported", "across": "not resolved"}[d["side"]]
    assert r["judgement"]["crf_vs_viterbi_test"] == d["side"]
    assert len(r["comparisons"]) == 6
    secondary = [c for c in r["aggregate"]["differences"].values() if c["role"] == "secondary"]
    assert len(secondary) == len(r["aggregate"]["differences"]) - 1
    tested = [c for c in secondary if c["p"] is not None]
    for c, adjusted in zip(tested, stats.holm([c["p"] for c in tested])):  # Holm over this experiment's secondaries
        assert c["p_holm"] == pytest.approx(adjusted, rel=1e-12)
        assert c["side"] == ("across" if adjusted >= 0.05 else "above" if c["mean"] > c["bar"] else "below")
    _assert_files(folder, r)
