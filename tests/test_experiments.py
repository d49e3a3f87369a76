"""Smoke test of experiments/: every script runs in --quick mode and writes what it promises."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from helpers import EPS64, float32_tolerance

from jaxbackprop import gradcheck

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
SCRIPTS = ("e01_computation_graph", "e02_gradient_checks", "e03_vectorisation", "e10_sparse_updates")


def _load(name):
    spec = importlib.util.spec_from_file_location(f"experiments_{name}", EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def run_quick(name: str, out: Path) -> dict:
    """Run ``experiments/<name>.py --quick --out out``; the result.json it wrote, checked against its return."""
    returned = _load(name).main(["--quick", "--out", str(out)])
    written = json.loads((out / "result.json").read_text())
    assert written["verdict"] == returned["verdict"] and written["quick"] is True
    return written


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Run each script once (--quick) into a shared folder; returns {name: result.json as dict}."""
    root = tmp_path_factory.mktemp("results")
    cache = {}

    def run(name):
        if name not in cache:
            cache[name] = run_quick(name, root / name)
        return cache[name]

    run.root = root
    return run


def _assert_files(folder: Path, result):
    assert (folder / "section.md").stat().st_size > 0
    text = (folder / "section.md").read_text()
    assert "**Verdict:" in text and result["command"] in text
    for line in text.splitlines():
        if line.startswith("!["):
            assert (folder / line.split("(")[1].rstrip(")")).stat().st_size > 0, line
    assert result["environment"]["jax"] and result["verdict"] in ("supported", "partly supported", "not supported")
    assert not list(folder.glob("*.tmp")), "a temporary file was left behind"


def test_e01_reproduces_the_lecture_example(results):
    r = results("e01_computation_graph")
    assert r["values"]["f"] == 6.0 and r["grads"] == [2.0, 5.0, 0.0] and r["jax_grads"] == [2.0, 5.0, 0.0]
    # float64: f(1, 2.1, 0) - f(1, 2, 0) = 6.51 - 6, each rounded to within a few eps64 of |f| ~ 6.5
    assert abs(r["wiggle"]["delta_f"] - 0.51) <= 16 * EPS64 * 6.51 and r["wiggle"]["predicted"] == 0.5
    p = r["patterns"]
    assert p["plus_distributes"]["to_x"] == p["plus_distributes"]["to_y"] == 2.0
    assert (p["max_routes"]["to_y"], p["max_routes"]["to_z"]) == (3.0, 0.0)
    assert (p["times_switches"]["to_a"], p["times_switches"]["to_b"]) == (2.0, 3.0)
    assert r["verdict"] == "supported"
    _assert_files(results.root / "e01_computation_graph", r)


def test_e02_two_sided_converges_faster_and_numeric_is_slow(results):
    r = results("e02_gradient_checks")
    one, two = r["accuracy"]["one_sided"], r["accuracy"]["two_sided"]
    assert two["truncation_slope"] > one["truncation_slope"] + 0.5
    assert 0.7 < one["truncation_slope"] < 1.3 and 1.6 < two["truncation_slope"] < 2.4
    assert two["min_median_rel_error"] < one["min_median_rel_error"]
    for row in r["cost"]:
        assert row["numeric_vs_manual_rel"] <= gradcheck.NUMERIC_RTOL  # the full numeric gradient is a gradient
        assert row["numeric_over_backprop"] > 10
    _assert_files(results.root / "e02_gradient_checks", r)


def test_e03_records_blas_settings_and_agrees(results):
    r = results("e03_vectorisation")
    assert "OPENBLAS_CORETYPE" in r["blas_environment"] and "OPENBLAS_L2_SIZE" in r["blas_environment"]
    for row in r["rows"]:
        # all variants computed the same W X, to float32 round-off; an entry sums cols products in [0, 1)
        cols = row["W"][1]
        assert row["max_abs_difference"] <= row["tolerance"] <= float32_tolerance(cols, cols, k=1, worst_case=True)
        assert row["jax_speedup"] > 0 and row["numpy_speedup"] > 0
    _assert_files(results.root / "e03_vectorisation", r)


def test_e10_only_batch_rows_change_and_repeats_add(results):
    r = results("e10_sparse_updates")
    for c in r["changed"]:
        assert c["changed_rows"] == c["batch_rows"] and c["changed_equals_batch"] and c["outside_rows_bit_identical"]
    rep = r["repeated"]  # float64: the sum to round-off, a tolerance of float64's order (not a loose one)
    assert rep["max_abs_diff_vs_sum"] <= rep["tolerance"] and rep["tolerance_rel"] < 1e3 * EPS64
    assert rep["rel_diff_if_only_second"] > 1e-3  # keeping one slot only would be wrong by far more
    s = r["rows_only_step"]
    if s["available"]:  # float32, two programs: equal to round-off, not necessarily bit for bit
        assert s["outside_rows_bit_identical"]
        for k, diff in s["max_abs_diff"].items():
            assert diff <= s["tolerance"][k], (k, diff, s["tolerance"][k])
            # the allowance is float32 round-off (parameters and lr * gradients are below 1 here), nothing looser
            assert s["tolerance"][k] <= float32_tolerance(r["config"]["batch_size"] * r["config"]["window"] * r["config"]["hidden_dim"], 1.0, k=8)
    assert r["verdict"] == "supported"
    _assert_files(results.root / "e10_sparse_updates", r)


def test_make_results_gathers_the_sections_in_order(results, tmp_path):
    for name in SCRIPTS:
        results(name)
    out = tmp_path / "RESULTS.md"
    _load("make_results").main(["--results", str(results.root), "--out", str(out)])
    text = out.read_text()
    heads = [line for line in text.splitlines() if line.startswith("## E")]
    assert [h.split(".")[0] for h in heads] == ["## E01", "## E02", "## E03", "## E10"]
    assert "jax" in text.split("## E01")[0] and "--quick" in text
    for line in text.splitlines():
        if line.startswith("!["):
            assert (out.parent / line.split("(")[1].rstrip(")")).is_file(), line
