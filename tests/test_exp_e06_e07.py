"""Smoke tests of experiments E06 (overfitting and L2) and E07 (learning rates): --quick, real values,
paired differences that are the per-seed differences, verdicts that follow from the intervals."""

import doctest
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import EPS64, TINY, tiny_corpus
from test_experiments import _assert_files, _load, run_quick

from jaxbackprop import sweep, train

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
import schedules  # noqa: E402  (experiments/ is no package)
import stats  # noqa: E402
from common import verdict_of  # noqa: E402

SIDE_TO_PART = {"below": True, "above": False, "across": None}  # a part "lambda - 0 is below 0"


@pytest.fixture(scope="module")
def e06(tmp_path_factory):
    out = tmp_path_factory.mktemp("e06")
    return out, run_quick("e06_overfitting_l2", out)


@pytest.fixture(scope="module")
def e07(tmp_path_factory):
    out = tmp_path_factory.mktemp("e07")
    return out, run_quick("e07_learning_rates", out)


def _by(runs, l2):
    return sorted((r for r in runs if r["l2"] == l2), key=lambda r: r["seed"])


def test_e06_every_lambda_runs_every_seed_and_overfits_without_l2(e06):
    out, r = e06
    seeds, lambdas = r["seeds"], r["config"]["lambdas"]
    assert len(seeds) >= 2 and sorted((x["l2"], x["seed"]) for x in r["runs"]) == sorted(
        (l2, s) for l2 in lambdas for s in seeds
    )
    base, strong = _by(r["runs"], 0.0), _by(r["runs"], lambdas[-1])
    assert base[0]["curve"][0]["train_loss"] != base[1]["curve"][0]["train_loss"]  # a seed changes the run
    for b, s in zip(base, strong):
        curve = b["curve"]
        assert len(curve) == r["training"]["epochs"] and all(row["penalty"] == 0 for row in curve)
        assert curve[-1]["train_loss"] < 0.5 * curve[0]["train_loss"]  # without L2 the training loss keeps falling
        # the quick sizes overfit: the dev loss ends well above its minimum in every seed ...
        assert b["summary"]["dev_rise_rel"] > r["config"]["rise_bar"] and b["summary"]["min_dev_epoch"] < len(curve)
        # ... and L2 keeps W small, fits the training set worse and narrows the gap, seed by seed
        assert s["summary"]["final_w_norm"] < 0.5 * b["summary"]["final_w_norm"]
        assert s["summary"]["final_train_loss"] > b["summary"]["final_train_loss"]
        assert s["summary"]["final_gap"] < b["summary"]["final_gap"]
        last = s["curve"][-1]  # the recorded penalty is lambda/2 (||W||^2 + ||U||^2), in float64
        penalty = 0.5 * s["l2"] * (last["w_norm"] ** 2 + last["u_norm"] ** 2)
        assert last["penalty"] == pytest.approx(penalty, rel=8 * EPS64)
        assert b["summary"]["final_gap"] == pytest.approx(
            b["summary"]["final_dev_loss"] - b["summary"]["final_train_loss"], rel=8 * EPS64
        )
    _assert_files(out, r)


def test_e06_paired_differences_are_the_seeds_differences_and_the_verdict_follows(e06):
    _, r = e06
    j, base = r["judgement"], _by(r["runs"], 0.0)
    for row in r["aggregate"]["paired"]:
        mine = _by(r["runs"], row["l2"])
        for key in ("final_dev_loss", "dev_rise_rel", "final_gap", "final_train_loss"):
            d = row[key]
            assert d["differences"] == pytest.approx(
                [a["summary"][key] - b["summary"][key] for a, b in zip(mine, base)]
            )
            assert d["side_uncorrected"] == stats.side(stats.interval(d["differences"]))
    primary = next(row for row in r["aggregate"]["paired"] if row["l2"] == j["primary_l2"])
    flat = [row[k] for row in r["aggregate"]["paired"] for k in row if k != "l2"]
    assert sorted(c["key"] for c in flat if c["role"] == "primary") == sorted(r["config"]["primary"])
    assert all(primary[k]["role"] == "primary" for k in r["config"]["primary"])
    secondary = [c for c in flat if c["role"] == "secondary"]
    for c, adjusted in zip(secondary, stats.holm([stats.p_value(c, 0.0) for c in secondary])):
        assert c["p_holm"] == pytest.approx(adjusted, rel=1e-12)
        assert c["side"] == ("across" if adjusted >= 0.05 else "above" if c["mean"] > 0 else "below")
    assert j["l2_lowers_dev_loss"] == SIDE_TO_PART[primary["final_dev_loss"]["side"]]
    assert j["l2_costs_training_fit"] == stats.holds(primary["final_train_loss"])
    rise = r["aggregate"]["per_lambda"][0]["dev_rise_rel"]
    assert rise["mean"] == pytest.approx(np.mean([b["summary"]["dev_rise_rel"] for b in base]))
    assert j["rise_side"] == stats.side(rise, r["config"]["rise_bar"])
    parts = [
        j[k] for k in ("overfits_without_l2", "l2_reduces_overfitting", "l2_lowers_dev_loss", "l2_costs_training_fit")
    ]
    assert r["verdict"] == verdict_of(parts)


def test_warmup_constant_is_warmup_cosines_warmup_then_the_peak():
    failed, attempted = doctest.testmod(schedules, raise_on_error=False)
    assert attempted >= 3 and failed == 0
    config = train.configure(**{**TINY, "learning_rate": 0.3, "epochs": 4})
    warm, cos = (schedules.rate_table(config, name, 10) for name in ("warmup_constant", "warmup_cosine"))
    np.testing.assert_array_equal(warm[:11], cos[:11])  # the same linear warm-up over the first epoch
    assert warm[0] == 0 and np.all(warm[10:] == np.float32(0.3)) and cos[-1] < 0.01
    with pytest.raises(ValueError, match="unknown schedule"):
        schedules.make_schedule(config, "linear", 10)


def test_train_arm_is_the_sweeps_run(tmp_path):
    """A library schedule trained by schedules.train_arm is the run sweep.run_sweep trains: same
    initialisation, data order and steps (one compiled program), so the same losses and F1."""
    corpus = tiny_corpus()
    config = train.configure(**{**TINY, "schedule": "constant", "learning_rate": 0.5, "seed": 3})
    arms = [schedules.train_arm(config, name, corpus) for name in ("constant", "step")]
    table = [{"schedule": name, "seed": 3} for name in ("constant", "step")]
    sweep.run_sweep(table, corpus, tmp_path, base=config, chunk=1, devices=None, log=lambda *_: None)
    curves = json.loads((tmp_path / "curves.json").read_text())
    for arm, swept in zip(arms, curves):
        assert [e["train_loss"] for e in arm["curve"]] == [e["train_loss"] for e in swept["epochs"]]
        assert [e["dev_f1"] for e in arm["curve"]] == [e["dev_f1"] for e in swept["epochs"]]
        # dev loss: the same sum of float32 cross-entropies, reduced by another program
        np.testing.assert_allclose(
            [e["dev_loss"] for e in arm["curve"]], [e["dev_loss"] for e in swept["epochs"]], rtol=1e-5
        )
    assert arms[0]["curve"][-1]["train_loss"] != arms[1]["curve"][-1]["train_loss"]  # the schedule reached the steps


def test_e07_a_slow_learner_is_not_collapsed():
    """Collapsed means the F1 fell from the run's best; a run still rising is slow (below the tuned rate) and a
    run low throughout above the tuned rate is stuck: only collapses, stuck runs and divergences fail."""
    e07 = _load("e07_learning_rates")
    config = e07.base.select(e07.e07, quick=True)  # rates 0.01, 3, 6, 1e4; seeds 0, 1
    curves = {0.01: ([0.1, 0.3], [0.1, 0.32]), 3.0: ([0.7, 0.8], [0.75, 0.8]), 6.0: ([0.7, 0.2], [0.1, 0.15])}

    def run(lr, seed, curve):
        epochs = [{"dev_f1": f} for f in curve]
        return {"learning_rate": lr, "seed": seed, "curve": epochs, "diverged": not curve, "diverged_epoch": None}

    runs = [
        run(lr, s, c) | e07.final_scores([{"dev_f1": f, "train_loss": 1.0} for f in c], False)
        for lr, cs in curves.items()
        for s, c in enumerate(cs)
    ]
    runs += [run(1e4, s, []) | e07.final_scores([], True) for s in (0, 1)]
    rates, tuned = e07.summarise_rates(runs, config)
    by = {x["learning_rate"]: x for x in rates}
    assert tuned == 3.0
    assert (by[0.01]["collapsed"], by[0.01]["slow"], by[0.01]["failed"]) == (0, 2, 0)  # rising: slow, not failed
    assert (by[6.0]["collapsed"], by[6.0]["stuck"], by[6.0]["failed"]) == (1, 1, 2)  # fell 0.7 -> 0.2; low throughout
    assert by[1e4]["failed"] == by[1e4]["diverged"] == 2


def test_e07_rate_table_fails_large_and_picks_the_tuned_rate(e07):
    out, r = e07
    n = len(r["config"]["selection_seeds"])
    rates = r["rates"]
    assert [x["learning_rate"] for x in rates] == r["config"]["rates"] and all(len(x["seeds"]) == n for x in rates)
    assert rates[-1]["diverged"] == n  # the largest rate: NaN/inf in every seed, the sweep went on
    tuned = max(rates, key=lambda x: x["f1"]["mean"])
    assert r["judgement"]["tuned_rate"] == tuned["learning_rate"]
    fraction = r["config"]["collapse_fraction"]
    for x in rates:  # a failure: diverged, collapsed (fell from its best) or, above the tuned rate, stuck low
        finite = [y for y in r["rate_runs"] if y["learning_rate"] == x["learning_rate"] and y["final_train_loss"]]
        fell = [y["curve"][-1]["dev_f1"] < fraction * max(e["dev_f1"] for e in y["curve"]) for y in finite]
        low = sum(y["final_dev_f1"] < fraction * tuned["f1"]["mean"] and not f for y, f in zip(finite, fell))
        assert x["collapsed"] == sum(fell) and x["failed"] == x["diverged"] + x["collapsed"] + x["stuck"]
        assert (x["stuck"], x["slow"]) == {"above": (low, 0), "below": (0, low), "tuned": (0, 0)}[x["side_of_tuned"]]
    assert (
        r["judgement"]["too_large"]["holds"] is True
        and rates[-1]["learning_rate"] in (r["judgement"]["too_large"]["failed_every_seed"])
    )
    crawl, small = r["judgement"]["crawl"], rates[0]
    assert crawl["ratios"] == pytest.approx(
        [a / b for a, b in zip(small["final_train_loss"], tuned["final_train_loss"])]
    )
    assert r["judgement"]["crawls"] == stats.holds(crawl, r["config"]["crawl_factor"])
    rows = json.loads((out / "sweep_rates" / "results.json").read_text())  # run_sweep's own files
    assert [x["diverged"] for x in rows] == [x["diverged"] for x in r["rate_runs"]]
    assert (out / "sweep_rates" / "curves.png").stat().st_size > 0
    _assert_files(out, r)


def test_e07_schedule_arms_are_paired_by_seed_and_the_verdict_follows(e07):
    _, r = e07
    config, j = r["config"], r["judgement"]
    assert not set(config["selection_seeds"]) & set(config["comparison_seeds"])  # selection and comparison apart
    assert r["high_rate"] is not None and r["high_rate"] > j["tuned_rate"]  # the quick table has a finite high rate
    for c in r["comparisons"]:
        f1 = {
            arm: [
                x["final_dev_f1"]
                for x in sorted(r["arm_runs"], key=lambda x: x["seed"])
                if (x["stage"], x["schedule"]) == (c["stage"], arm)
            ]
            for arm in (c["a"], c["b"])
        }
        assert len(f1[c["a"]]) == len(config["comparison_seeds"])
        assert c["differences"] == pytest.approx([a - b for a, b in zip(f1[c["a"]], f1[c["b"]])])
        assert c["side_uncorrected"] == stats.side(stats.interval(c["differences"]), config["bar"])
    primary = next(c for c in r["comparisons"] if c["role"] == "primary")
    assert (primary["name"], primary["stage"], primary["a"], primary["b"]) == (
        "tuned:step-constant",
        "tuned",
        "step",
        "constant",
    )
    secondary = [c for c in r["comparisons"] if c["role"] == "secondary"]
    assert len(secondary) == len(r["comparisons"]) - 1
    for c, adjusted in zip(secondary, stats.holm([stats.p_value(c, c["bar"]) for c in secondary])):
        assert c["p_holm"] == pytest.approx(adjusted, rel=1e-12)
        assert c["side"] == ("across" if adjusted >= 0.05 else "above" if c["mean"] > c["bar"] else "below")
    assert j["decay_holds"] == stats.holds(primary, config["bar"]) and j["decay"]["side"] == primary["side"]
    assert r["verdict"] == verdict_of([j["too_large"]["holds"], j["crawls"], j["decay_holds"]])
    by = {(a["stage"], a["schedule"]): a for a in r["arms"]}
    steps = r["steps_per_epoch"]
    const, step, warm = (by["tuned", s]["lr_per_step"] for s in ("constant", "step", "warmup_constant"))
    assert max(const) == min(const) == pytest.approx(j["tuned_rate"])
    assert step[0] == pytest.approx(j["tuned_rate"]) and step[-1] < step[0]  # the step schedule decays
    stride = by["tuned", "warmup_constant"]["lr_step_stride"]
    assert warm[0] == 0 and warm[-1] == pytest.approx(j["tuned_rate"]) and warm[steps // stride + 1] == warm[-1]
