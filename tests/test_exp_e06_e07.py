"""Smoke tests of experiments E06 (overfitting and L2) and E07 (learning rates): --quick, real values."""

import json

import pytest
from helpers import EPS64
from test_experiments import _assert_files, run_quick


@pytest.fixture(scope="module")
def e06(tmp_path_factory):
    out = tmp_path_factory.mktemp("e06")
    return out, run_quick("e06_overfitting_l2", out)


@pytest.fixture(scope="module")
def e07(tmp_path_factory):
    out = tmp_path_factory.mktemp("e07")
    return out, run_quick("e07_learning_rates", out)


def test_e06_l2_shrinks_weights_and_costs_training_fit(e06):
    out, r = e06
    base, strong = (run["summary"] for run in (r["runs"][0], r["runs"][-1]))
    assert base["l2"] == 0 and strong["l2"] > 0
    assert strong["final_w_norm"] < 0.5 * base["final_w_norm"]  # the penalty keeps W small
    assert strong["final_train_loss"] > base["final_train_loss"]  # ... and the training set is fit worse
    curve = r["runs"][0]["curve"]
    assert len(curve) == r["training"]["epochs"]
    assert curve[-1]["train_loss"] < 0.5 * curve[0]["train_loss"]  # without L2 the training loss keeps falling
    assert all(row["penalty"] == 0 for row in curve)  # lambda = 0: nothing added to the objective
    s = r["runs"][-1]["curve"][-1]  # the recorded penalty is lambda/2 (||W||^2 + ||U||^2)
    # same float64 numbers: only sqrt, squaring and the sum round here, a few eps64 in all
    assert s["penalty"] == pytest.approx(0.5 * strong["l2"] * (s["w_norm"] ** 2 + s["u_norm"] ** 2), rel=8 * EPS64)
    assert base["final_gap"] == pytest.approx(base["final_dev_loss"] - base["final_train_loss"])
    assert base["dev_rise"] >= 0 and 1 <= base["min_dev_epoch"] <= len(curve)
    _assert_files(out, r)


def test_e07_too_large_rate_is_marked_diverged_and_the_sweep_goes_on(e07):
    out, r = e07
    largest, *rest = r["rates"][::-1]
    assert largest["diverged"] and largest["best_dev_f1"] is None and r["checks"]["largest_rate_diverged"]
    assert all(not x["diverged"] and 0 <= x["best_dev_f1"] <= 1 for x in rest)
    assert len(rest[-1]["curve"]) == r["training"]["epochs"]  # the smallest rate ran every epoch
    for sub in ("sweep_rates", "sweep_schedules"):  # run_sweep's own files
        assert (out / sub / "results.csv").stat().st_size > 0 and (out / sub / "curves.png").stat().st_size > 0
    rows = json.loads((out / "sweep_rates" / "results.json").read_text())
    assert [x["diverged"] for x in rows] == [x["diverged"] for x in r["rates"]]
    high = r["checks"]["high_rate"]
    assert high == max(x["learning_rate"] for x in rest)  # schedules run at the largest rate that trained
    by = {s["schedule"]: s for s in r["schedules"] if s["learning_rate"] == high}
    const, step = by["constant"]["lr_per_step"], by["step"]["lr_per_step"]
    assert max(const) == min(const) == high
    assert step[0] == high and step[-1] < step[0]  # the step schedule decays
    _assert_files(out, r)
