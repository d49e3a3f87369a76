"""Smoke tests of experiments E04 (nonlinearities) and E05 (initialisation): --quick runs, real values."""

import doctest
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import EPS32, EPS64
from test_experiments import _assert_files, _load, run_quick

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
import stats  # noqa: E402  (experiments/ is no package)


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


@pytest.mark.parametrize("name", ["e04_nonlinearities", "e05_initialisation"])
def test_the_docstring_examples_hold(name):
    failed, attempted = doctest.testmod(_load(name), raise_on_error=False)
    assert attempted >= 1 and failed == 0


def test_e04_failure_rule_counts_divergence_collapse_and_the_all_o_tagger():
    failure = _load("e04_nonlinearities").failure
    assert failure([{"dev_f1": 0.9}, {"dev_f1": 0.95}], None, 0.5) is None
    assert failure([{"dev_f1": 0.9}, {"dev_f1": 0.44}], None, 0.5) == "collapsed"  # below half of its best epoch
    assert failure([{"dev_f1": 0.9}, {"dev_f1": 0.46}], None, 0.5) is None
    assert failure([{"dev_f1": 0.0}, {"dev_f1": 0.0}], None, 0.5) == "all-O"
    assert failure([{"dev_f1": 0.5}], 2, 0.5) == failure([], None, 0.5) == "diverged"


def test_e04_tunes_each_rate_then_pairs_activations_by_seed(run):
    r, folder = run("e04_nonlinearities")
    acts, seeds, config = r["config"]["activations"], r["seeds"], r["config"]
    runs = {(x["activation"], x["seed"]): x for x in r["runs"]}
    assert set(runs) == {(a, s) for a in acts for s in seeds}
    # the tuned rate: the best final dev F1 on the tuning seed among the rates where no run failed
    for a in acts:
        grid = [t for t in r["tuning"] if t["activation"] == a]
        assert sorted(t["learning_rate"] for t in grid) == sorted(config["rates"])
        ok = [t for t in grid if t["failure"] is None]
        assert r["tuned"][a]["learning_rate"] == max(ok, key=lambda t: t["final_dev_f1"])["learning_rate"]
        assert r["tuned"][a]["failed_rates"] == [t["learning_rate"] for t in grid if t["failure"]]
        assert all(runs[a, s]["learning_rate"] == r["tuned"][a]["learning_rate"] for s in seeds)
        assert all(t["failure"] != "all-O" or t["final_dev_f1"] == 0 for t in grid)
    # the same seed starts every activation from the same W: sigmoid's f' <= 1/4 gives the smallest gradient
    for s in seeds:
        assert 0.2 < runs["sigmoid", s]["at_init"]["mean_fprime"] <= 0.25
        assert runs["tanh", s]["at_init"]["mean_fprime"] > 0.9 and 0.3 < runs["relu", s]["at_init"]["mean_fprime"] < 0.7
        others = [a for a in acts if a != "sigmoid"]
        assert all(runs["sigmoid", s]["at_init"]["grad_W"] < runs[a, s]["at_init"]["grad_W"] for a in others)
        # a PReLU unit's f' is 1 or alpha: its pairs are flat only if |alpha| <= 1e-3, whatever alpha's sign
        trained = runs["prelu", s]["trained"]
        assert runs["prelu", s]["at_init"]["flat_pairs"] == 0  # alpha starts at 0.25
        assert trained["flat_pairs"] == 0 or abs(trained["prelu_alpha"]) <= 1e-3, trained
        assert trained["dead_fraction"] == 0 or trained["prelu_alpha"] == 0, trained
        assert runs["relu", s]["at_init"]["flat_pairs"] == pytest.approx(runs["relu", s]["at_init"]["off_fraction"])
    # every difference is seed i of A minus seed i of B, and its side follows from its interval and bar
    comparisons = {c["name"]: c for c in r["comparisons"]}
    d = comparisons["grad_W:relu-sigmoid"]
    expected = [runs["relu", s]["at_init"]["grad_W"] - runs["sigmoid", s]["at_init"]["grad_W"] for s in seeds]
    assert d["differences"] == pytest.approx(expected, abs=1e-12) and d["wins"] == len(seeds)
    d = comparisons["test_f1:tanh-relu"]
    assert d["bar"] == config["fine_bar"] and d["b"] == "relu"
    assert d["differences"] == pytest.approx([runs["tanh", s]["test_f1"] - runs["relu", s]["test_f1"] for s in seeds])
    # the primary comparisons by their own interval; the others by their Holm-adjusted p-value
    assert {c["name"] for c in r["comparisons"] if c["role"] == "primary"} == set(config["primary"])
    secondary = [c for c in r["comparisons"] if c["role"] == "secondary"]
    for c, adjusted in zip(secondary, stats.holm([stats.p_value(c, c["bar"]) for c in secondary])):
        assert c["p_holm"] == pytest.approx(adjusted, rel=1e-12) and c["side_uncorrected"] == stats.side(c, c["bar"])
        assert c["side"] == ("across" if adjusted >= 0.05 else "above" if c["mean"] > c["bar"] else "below")
    for c in r["comparisons"]:
        assert c["n"] == len(seeds) and (c["role"] == "secondary" or c["side"] == stats.side(c, c["bar"]))
    family = comparisons["speed:relu_family-tanh_family"]
    assert family["a"] == "relu+prelu" and family["b"] == "tanh"
    per_seed = [
        np.mean([runs[a, s]["mean_dev_f1"] for a in ("relu", "prelu")]) - runs["tanh", s]["mean_dev_f1"] for s in seeds
    ]
    assert family["differences"] == pytest.approx(per_seed)
    # the verdict follows from the parts, each part from its intervals
    parts = r["parts"]
    sides = [c["side"] for n, c in comparisons.items() if n.startswith("grad_W:")]
    expected = False if "below" in sides else True if set(sides) == {"above"} else None
    assert parts["sigmoid_smallest_first_layer_gradient"] is expected
    # dead-free is read off the trained units: one dead unit in one seed would break it
    e04 = _load("e04_nonlinearities")
    dead_run = [
        dict(x, trained=dict(x["trained"], dead_fraction=0.01)) if x["activation"] == "prelu" and x["trained"] else x
        for x in r["runs"]
    ]
    config_obj = e04.base.select(e04.e04, quick=True)
    assert e04.judge(r["runs"], r["comparisons"], config_obj)["leaky_prelu_dead_free"] is True
    assert e04.judge(dead_run, r["comparisons"], config_obj)["leaky_prelu_dead_free"] is False
    assert r["verdict"] == _load("common").verdict_of([parts[k] for k in _load("e04_nonlinearities").JUDGED])
    # the step time of every activation, measured on the same batch (values are timings: only that each was taken)
    assert sorted(r["step_time"]) == sorted(acts)
    assert all(t["median_us"] > 0 and t["calls_per_repeat"] >= 1 for t in r["step_time"].values())
    _assert_files(folder, r)
    text = _load("make_results").section(r, folder, folder)
    assert "| f | tuned rate" in text and "Time of one training step" in text


def test_e05_drift_fits_the_growth_of_round_off():
    drift = _load("e05_initialisation").drift
    trace = [{"step": s, "max_unit_difference_rel": 2e-16 * 3 ** (s / 100), "distinct_units": 1} for s in (0, 100, 300)]
    d = drift(trace, math.sqrt(EPS64))
    assert d["growth_per_100_steps"] == pytest.approx(3.0) and d["within_tolerance"] and not d["bit_identical"]
    assert d["steps_to_tolerance"] == pytest.approx(100 * math.log(math.sqrt(EPS64) / 2e-16, 3))
    zero = drift([{"step": s, "max_unit_difference_rel": 0.0, "distinct_units": 1} for s in (0, 1)], 1e-8)
    assert zero["bit_identical"] and zero["growth_per_100_steps"] is None and zero["first_nonzero_step"] is None


def test_e05_zero_start_is_dead_with_tanh_and_symmetric_with_sigmoid_in_both_precisions(run):
    r, folder = run("e05_initialisation")
    H, seeds = r["training"]["hidden_dim"], r["seeds"]
    runs = {(x["activation"], x["arm"], x["seed"]): x for x in r["runs"]}
    for s in seeds:
        # tanh from zeros: f(0) = 0 and U = 0, so every gradient but dJ/dc is exactly 0, and only c moves
        dead = runs["tanh", "zeros", s]
        assert dead["nonzero_grads_at_start"] == ["c"] and dead["moved"] == ["c"] and dead["test_f1"] == 0
        # sigmoid from zeros: h = 1/2 gives dJ/dU != 0 (identical columns), and then every parameter moves
        sig = runs["sigmoid", "zeros", s]
        assert sig["nonzero_grads_at_start"] == ["U", "c"] and {"W", "U", "E"} <= set(sig["moved"])
        assert sig["end"]["distinct_units"] == 1 and sig["end"]["W_rank"] <= 1
        for arm in ("normal", "xavier"):  # a random start: H distinct units from step 0 to the end
            assert (
                runs["sigmoid", arm, s]["start"]["distinct_units"]
                == H
                == runs["sigmoid", arm, s]["end"]["distinct_units"]
            )
    assert r["parts"]["tanh"]["zeros_dead"] and not r["parts"]["sigmoid"]["zeros_dead"]
    # the symmetry traced step by step in both precisions, each against sqrt(eps) of its own dtype
    traces = {(t["dtype"], t["seed"]): t for t in r["traces"] if t["activation"] == "sigmoid"}
    assert set(traces) == {(d, s) for d in ("float32", "float64") for s in seeds}
    for (dtype, _), t in traces.items():
        assert t["rtol"] == pytest.approx(math.sqrt(EPS32 if dtype == "float32" else EPS64))
        assert [p["step"] for p in t["trace"]][:3] == [0, 1, 2] and t["within_tolerance"]
        assert all(p["distinct_units"] == 1 and p["max_unit_difference_rel"] <= t["rtol"] for p in t["trace"])
        assert t["trace"][-1]["W_norm"] > 0  # the units did move, together
    # paired by seed: the difference is per seed, and "held" follows from the side the claim needs
    for c in r["comparisons"]:
        xs = [runs[c["activation"], c["a"], s]["test_f1"] - runs[c["activation"], c["b"], s]["test_f1"] for s in seeds]
        assert c["differences"] == pytest.approx(xs) and c["side_uncorrected"] == stats.side(c, c["bar"])
        assert c["held"] == (None if c["side"] == "across" else c["side"] == c["claimed"])
        assert c["kind"] == "xavier-normal" and r["parts"][c["activation"]]["xavier_beats_normal"] == c["held"]
    # xavier - normal for tanh is the primary comparison; sigmoid's is the one secondary (Holm over one: its own p)
    roles = {c["activation"]: c for c in r["comparisons"]}
    assert roles["tanh"]["role"] == "primary" and roles["tanh"]["side"] == roles["tanh"]["side_uncorrected"]
    assert roles["sigmoid"]["role"] == "secondary"
    assert roles["sigmoid"]["p_holm"] == pytest.approx(stats.p_value(roles["sigmoid"], roles["sigmoid"]["bar"]))
    assert all(a["arm"] != "one_unit" for a in r["aggregate"])  # no longer compared: not optimisation-equivalent
    parts = [p[k] for p in r["parts"].values() for k in _load("e05_initialisation").JUDGED if k in p]
    assert r["verdict"] == _load("common").verdict_of(parts)
    _assert_files(folder, r)
    assert "a dead network" in _load("make_results").section(r, folder, folder)
