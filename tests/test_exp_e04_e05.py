"""Smoke tests of experiments E04 (nonlinearities) and E05 (initialisation): --quick runs, real values."""

import pytest
from helpers import EPS32
from test_experiments import _assert_files, _load, run_quick


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Run a script once (--quick) into its own folder; returns (result.json as dict, folder)."""
    root = tmp_path_factory.mktemp("results")
    cache = {}

    def go(name):
        if name not in cache:
            cache[name] = run_quick(name, root / name), root / name
        return cache[name]

    return go


def test_e04_sigmoid_starves_the_first_layer_and_leaky_units_never_die(run):
    r, folder = run("e04_nonlinearities")
    by = {x["activation"]: x for x in r["runs"]}
    assert set(by) <= {"sigmoid", "tanh", "hardtanh", "relu", "leaky_relu", "prelu"}
    assert {"sigmoid", "tanh", "relu", "prelu"} <= set(by)
    # same initial weights for all: sigmoid's f' <= 1/4 gives the smallest first-layer gradient
    assert 0.2 < by["sigmoid"]["at_init"]["mean_fprime"] <= 0.25
    assert all(by["sigmoid"]["at_init"]["grad_W"] < x["at_init"]["grad_W"] for a, x in by.items() if a != "sigmoid")
    assert by["tanh"]["at_init"]["mean_fprime"] > 0.9 and 0.3 < by["relu"]["at_init"]["mean_fprime"] < 0.7
    assert r["parts"]["sigmoid_smallest_first_layer_gradient"]
    for x in by.values():
        assert len(x["history"]) == r["training"]["epochs"] and not x["diverged"]
        assert x["trained"]["grad_W"] > 0 and x["at_init"]["grad_x_per_window"] > 0
    # a PReLU unit always passes gradient (f' = alpha, not 0, for z <= 0), and its slope is learnt
    assert by["prelu"]["trained"]["dead_fraction"] == 0 and by["prelu"]["trained"]["prelu_alpha"] != 0.25
    assert 0 < by["relu"]["trained"]["off_fraction"] < 1  # some (window, unit) pairs are off
    _assert_files(folder, r)
    assert "| f | best dev F1" in _load("make_results").section(r, folder, folder)


def test_e05_zero_init_keeps_units_identical_and_random_init_breaks_symmetry(run):
    r, folder = run("e05_initialisation")
    H = r["training"]["hidden_dim"]
    act = r["config"]["activations"][0]
    runs = {(x["init"], x["hidden_dim"], x["dropout"]): x for x in r["runs"] if x["activation"] == act}
    zeros, normal, xavier = runs[("zeros", H, 0.0)], runs[("normal", H, 0.0)], runs[("xavier", H, 0.0)]
    # identical up to float32 round-off: units are "the same" within sqrt(eps32) of their scale (a round-off
    # difference, ~eps32, may grow under training; a random start differs by O(1)), and so are the
    # spectrum of W and the hidden activations they produce
    tol = r["same_unit_rtol"]
    assert tol == pytest.approx(EPS32**0.5)
    assert [p["step"] for p in zeros["trace"]][:2] == [0, 1]  # watched from the first step on
    for p in [*zeros["trace"], zeros["best"]]:  # every measurement, from step 0 to the best epoch
        assert p["distinct_units"] == 1 and p["max_unit_difference_rel"] <= tol and p["W_rank"] <= 1
        assert p["distinct_grad_W_rows"] == 1 and p["W_sv2_over_sv1"] <= tol
        assert p["h_std_across_units"] <= tol * p["h_mean_abs"]
    if act == "sigmoid":  # f(0) = 1/2: the units do move, in lockstep
        assert zeros["best"]["W_norm"] > 0 and zeros["best"]["W_rank"] == 1
    for run_ in (normal, xavier):
        assert all(p["distinct_units"] == H for p in run_["trace"])
    assert r["parts"][act]["zeros_stay_symmetric"] and r["parts"][act]["random_inits_break_symmetry"]
    # dropout gives each unit its own mask, so a sigmoid network started at zero does not stay symmetric
    if act == "sigmoid":
        dropout = next(v["dropout"] for v in r["config"]["variants"] if v.get("dropout"))
        assert runs[("zeros", H, dropout)]["best"]["distinct_units"] > 1
    # Xavier learns; zeros is no better than one hidden unit
    assert xavier["best_dev_f1"] > zeros["best_dev_f1"] + 0.2
    assert zeros["best_dev_f1"] <= runs[("xavier", 1, 0.0)]["best_dev_f1"] + 0.02
    _assert_files(folder, r)
