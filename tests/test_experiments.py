"""experiments/: configs, quick-mode safety, the template renderer, and E01-E03, E10 run in --quick mode.

Each smoke test runs a runner's ``--quick`` mode into tmp_path, then checks real values of its
result.json and that its section renders from its template (verdict, command, plots on disk).
"""

import ast
import importlib.util
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import optax
import pytest
from helpers import EPS64, float32_tolerance
from scipy import stats as scipy_stats

from jaxbackprop import files, gradcheck, pipeline, provenance, rundir, sweep_group, synthetic, train
from jaxbackprop.vocab import UNK_ID

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
SCRIPTS = ("e01_computation_graph", "e02_gradient_checks", "e03_vectorisation", "e10_sparse_updates")
CONFIGS = [f"e{n:02d}" for n in range(1, 12)]


def _load(name):
    spec = importlib.util.spec_from_file_location(f"experiments_{name}", EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)  # a runner puts experiments/ on sys.path, for configs/ and figures/
    return module


def run_quick(name: str, out: Path, *extra: str) -> dict:
    """Run ``experiments/<name>.py --quick --out out [extra]``; the result.json it wrote, checked against its return."""
    returned = _load(name).main(["--quick", "--out", str(out), *extra])
    written = json.loads((out / "result.json").read_text())
    assert written == returned and written["quick"] is True
    return written


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Run each script once (--quick) into a shared folder; returns {name: result.json as dict}."""
    root = tmp_path_factory.mktemp("results")
    cache = {}

    def run(name):
        if name not in cache:  # E03 asks for its GPU arm: on a machine without a GPU it is skipped
            cache[name] = run_quick(name, root / name, *(["--gpu"] if name == "e03_vectorisation" else []))
        return cache[name]

    run.root = root
    return run


PNG = b"\x89PNG\r\n\x1a\n"


def _assert_files(folder: Path, result):
    """The section renders from its template with this result's verdict and command; each plot is a PNG
    of a real size; the environment is this process's; no temporary file is left behind."""
    text = _load("make_results").section(result, folder, folder)
    assert f"**Verdict: {result['verdict']}.**" in text
    assert result["command"].startswith(f"python experiments/{result['name']}.py --quick --out ")
    assert f"```bash\n{result['command']}\n```" in text
    for name in result["plots"]:
        head = (folder / name).read_bytes()[:24]  # the signature, then the IHDR chunk: width, height
        width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
        assert head[:8] == PNG and width >= 200 and height >= 150, (name, width, height)
        assert f"/{name})" in text
    env, device = result["environment"], jax.devices()[0]
    assert env["jax"] == jax.__version__ and env["device"] == f"{device.platform}:{device.device_kind}"
    outside_git = (env["git_commit"], env["git_dirty"]) == (None, None)  # e.g. an unpacked source archive
    assert outside_git or (re.fullmatch("[0-9a-f]{40}", env["git_commit"]) and env["git_dirty"] in (True, False))
    assert _load("common").is_verdict(result["verdict"])
    assert not list(folder.glob(f"{files.TMP_PREFIX}*")), "a temporary file was left behind"


# ----------------------------------------------------------------------------- configs and quick mode


def test_the_base_pins_every_training_field():
    """base.py names every TrainConfig field, so a change of the library defaults cannot reach an experiment."""
    tree = ast.parse((EXPERIMENTS / "configs" / "base.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "configure")
    assert sorted(k.arg for k in call.keywords) == sorted(train.flatten(train.TrainConfig()))


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_and_its_overrides_build(name, monkeypatch):
    monkeypatch.syspath_prepend(str(EXPERIMENTS))  # as a runner does, for configs/
    from configs import base

    module = importlib.import_module(f"configs.{name}")
    assert module.__doc__.count("python experiments/") >= 1 and "Expected" in module.__doc__
    quick = base.select(module, quick=True)
    assert quick != module.CONFIG or not module.QUICK
    if hasattr(module, "CONLL"):
        assert base.select(module, conll=True) != module.CONFIG and base.select(module, quick=True, conll=True)
    with pytest.raises(ValueError):
        base.override(module.CONFIG, no_such_field=1)


def test_quick_writes_to_a_scratch_folder_never_to_committed_results(tmp_path):
    common = _load("common")
    args = common.parse_args("e01_computation_graph", "E01.", ["--quick"])
    assert args.out.is_dir() and not args.out.resolve().is_relative_to(common.RESULTS.resolve())
    args.out.rmdir()
    assert common.parse_args("e01_computation_graph", "E01.", []).out == common.RESULTS / "e01_computation_graph"
    with pytest.raises(SystemExit):
        common.parse_args(
            "e01_computation_graph", "E01.", ["--quick", "--out", str(common.RESULTS / "e01_computation_graph")]
        )


def test_a_seed_draws_the_random_rows_of_e_from_one_prepare():
    """Experiments prepare the corpus once for every seed: each seed still draws E's rows without a vector
    (<unk> among them), as preparing again with that seed would, and the pretrained rows stay the vectors."""
    corpus, (words, vectors) = synthetic.synthetic_corpus(seed=0), synthetic.synthetic_vectors()
    train_s, dev_s, pretrained = corpus["train"][:20], corpus["dev"][:5], (words[:10], vectors[:10])
    config = train.configure(hidden_dim=4, seed=0)
    once = pipeline.prepare_for(config, train_s, dev_s, None, pretrained)

    def start_E(seed):
        return np.asarray(rundir.init_run_params(train.configure(config, seed=seed), once)[1]["E"])

    random = ~once.pretrained_rows
    assert random[UNK_ID] and 0 < random.sum() < len(random) - 1
    E0, E1 = start_E(0), start_E(1)
    again = pipeline.prepare_for(train.configure(config, seed=1), train_s, dev_s, None, pretrained)
    assert np.array_equal(E1, again.embeddings)  # one prepare() for both seeds: seed 1 gets seed 1's E
    assert not np.isclose(E0[random], E1[random]).any()  # every entry of every random row redrawn
    assert np.array_equal(E0[~random], E1[~random]) and np.array_equal(E0[~random], once.embeddings[~random])
    assert np.array_equal(start_E(1), E1)  # and the same seed draws the same rows
    # a sweep's members (the experiments' train_table) start from their own seed's E as well
    members = [train.configure(config, seed=s) for s in (0, 1)]
    stacked = sweep_group.init_group(members, once, sweep_group.group_key(config, once), optax.identity())[0]["E"]
    assert np.array_equal(stacked[0], E0) and np.array_equal(stacked[1], E1)


def test_new_code_files_make_the_checkout_dirty_and_results_do_not(tmp_path, monkeypatch):
    from jaxbackprop import provenance

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    (tmp_path / "jaxbackprop").mkdir()
    (tmp_path / "jaxbackprop" / "model.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start")
    monkeypatch.setattr(provenance, "PROJECT_ROOT", tmp_path)
    (tmp_path / "experiments" / "results" / "e99").mkdir(parents=True)
    (tmp_path / "experiments" / "results" / "e99" / "result.json").write_text("{}\n")  # a run's output
    (tmp_path / "notes.txt").write_text("not code\n")
    assert provenance.git_state()["git_dirty"] is False
    (tmp_path / "experiments" / "e99_new.py").write_text("y = 1\n")  # code git does not know yet
    assert provenance.git_state()["git_dirty"] is True
    (tmp_path / "experiments" / "e99_new.py").unlink()
    (tmp_path / "jaxbackprop" / "layers").mkdir()
    (tmp_path / "jaxbackprop" / "layers" / "new.py").write_text("z = 1\n")
    assert provenance.git_state()["git_dirty"] is True


def test_a_result_records_the_code_of_its_start(tmp_path, monkeypatch):
    """A run that starts on changed code and ends after a commit records the dirty start, and the end beside it."""
    common = _load("common")
    start, end = {"git_commit": "a" * 40, "git_dirty": True}, {"git_commit": "b" * 40, "git_dirty": False}
    monkeypatch.setattr(common, "git_state", lambda: start)
    args = common.parse_args("e01_computation_graph", "E01.", ["--quick", "--out", str(tmp_path)])
    monkeypatch.setattr(provenance, "git_state", lambda: end)  # what environment() reads when the run ends
    result = {"name": "e01", "claim": "c", "verdict": "supported", "seeds": [], "plots": []}
    env = common.write_result(args, result, 0.0)["environment"]
    assert (env["git_commit"], env["git_dirty"], env["git_at_end"]) == ("a" * 40, True, end)
    monkeypatch.setattr(provenance, "git_state", lambda: start)
    assert "git_at_end" not in common.write_result(args, result, 0.0)["environment"]


# ----------------------------------------------------------------------------- multiplicity and equivalence


def test_holm_adjusts_p_values_as_by_hand():
    stats = _load("stats")
    # sorted 0.005, 0.01, 0.03, 0.04 (m = 4): x4 = 0.02, x3 = 0.03, x2 = 0.06, x1 = 0.04 -> raised to 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == [0.03, 0.06, 0.06, 0.02]
    assert stats.holm([0.2, None, 0.01]) == [0.2, None, 0.02]  # no test: not counted in m
    assert stats.holm([0.6, 0.5]) == [1.0, 1.0]  # capped at 1


def test_p_value_and_interval_agree_on_resolving():
    stats = _load("stats")
    above = stats.paired([0.93, 0.94, 0.95, 0.96, 0.97], [0.92, 0.92, 0.93, 0.93, 0.95])  # interval above 0
    across = stats.paired([0.93, 0.90, 0.95, 0.96, 0.97], [0.92, 0.92, 0.93, 0.93, 0.95])
    assert stats.side(above) == "above" and stats.p_value(above) < stats.ALPHA
    assert stats.side(across) == "across" and stats.p_value(across) > stats.ALPHA
    # the paired t-test by hand: differences 0.01, 0.02, 0.02, 0.03, 0.02: mean 0.02, sd sqrt(5e-5)
    t = 0.02 / (math.sqrt(5e-5) / math.sqrt(5))
    assert stats.p_value(above) == pytest.approx(2 * scipy_stats.t.sf(t, 4), rel=1e-9)


def test_secondary_comparisons_are_holm_corrected_and_the_primary_is_not():
    common = _load("common")

    def comparison(name, p, n=5):  # a paired difference whose t-test against 0 has two-sided p-value p
        mean = scipy_stats.t.isf(p / 2, n - 1) / math.sqrt(n)
        return {"name": name, "bar": 0.0, "mean": mean, "sd": 1.0, "n": n, "side": "above"}

    rows = common.corrected([comparison("main", 0.03), comparison("x", 0.03), comparison("y", 0.04)], ("main",))
    main, x, y = rows
    assert main["role"] == "primary" and main["side"] == "above" and "p_holm" not in main
    assert (x["role"], x["p_holm"], x["side"], x["side_uncorrected"]) == (
        "secondary",
        pytest.approx(0.06),
        "across",
        "above",
    )
    assert y["p_holm"] == pytest.approx(0.06) and y["side"] == "across"
    alone = common.corrected([comparison("main", 0.03), comparison("x", 0.01)], ("main",))[1]
    assert alone["p_holm"] == pytest.approx(0.01) and alone["side"] == "above"  # one secondary: nothing to correct
    with pytest.raises(ValueError, match="mian"):
        common.corrected(rows, ("mian",))


def test_a_null_within_the_margin_is_an_equivalence_verdict(tmp_path):
    common, stats = _load("common"), _load("stats")
    iv = stats.paired([0.861, 0.859, 0.860, 0.862], [0.860, 0.860, 0.861, 0.860])  # mean 0.00025, +-0.0021
    assert stats.side(iv) == "across" and -0.003 < iv["low"] and iv["high"] < 0.003
    assert common.with_margin("not resolved", iv, 0.003) == "equivalent within ±0.003"
    assert common.with_margin("not resolved", iv, 0.001) == "not resolved"  # the interval reaches past 0.001
    assert common.with_margin("not resolved", iv, None) == "not resolved"  # no margin set: no equivalence
    args = common.parse_args("e11_sentence_likelihood", "E11.", ["--quick", "--out", str(tmp_path)])
    result = {"name": "e11", "claim": "c", "verdict": "equivalent within ±0.003", "seeds": [], "plots": []}
    assert common.write_result(args, result, 0.0)["verdict"] == "equivalent within ±0.003"
    with pytest.raises(ValueError):
        common.write_result(args, result | {"verdict": "equivalent-ish"}, 0.0)


# ----------------------------------------------------------------------------- the template renderer


def test_render_fills_fields_conditions_and_loops():
    render = _load("render").render
    result = {"ok": True, "x": 0.125, "none": None, "xs": [1e-3, 2.0], "rows": [{"k": "a", "f": 1}, {"k": "b", "f": 0}]}
    result["by"] = {"tanh": {"n": 1}, "relu": {"n": 2}}
    assert render("{x:.2f} {x:.0%} {xs:g} {none:.3f}", result) == "0.12 12% 0.001, 2 –"
    assert (
        render("<!--if ok-->yes<!--else-->no<!--end--> <!--if not ok-->yes<!--else-->no<!--end-->", result) == "yes no"
    )
    assert render("<!--if missing.key-->yes<!--else-->no<!--end-->", result) == "no"
    text = "<!--each rows-->{k}<!--if f-->!<!--end--><!--if not last-->,<!--end--><!--end-->"
    assert render(text, result) == "a!,b"
    assert render("<!--each by-->{key}={n} <!--end-->", result) == "tanh=1 relu=2 "
    assert render("a\n<!--if ok-->\nb\n<!--end-->\nc", result) == "a\nb\nc"  # a tag alone on its line takes the line
    for broken in ("<!--if ok-->x", "x<!--end-->", "<!--each xs-->x<!--else-->y<!--end-->"):
        with pytest.raises(ValueError):
            render(broken, result)
    with pytest.raises(KeyError, match="nothing"):
        render("{nothing}", result)


def test_make_results_gathers_the_sections_in_order(results, tmp_path):
    for name in SCRIPTS:
        results(name)
    out, readme, make_results = tmp_path / "RESULTS.md", tmp_path / "README.md", _load("make_results")
    readme.write_text(f"# intro\n{make_results.TABLE_START}\nold rows\n{make_results.TABLE_END}\nafter\n")
    make_results.main(["--results", str(results.root), "--out", str(out), "--readme", str(readme)])
    rows = readme.read_text().splitlines()
    assert rows[:3] == ["# intro", make_results.TABLE_START, rows[2]] and rows[-2:] == [make_results.TABLE_END, "after"]
    assert [r.split(" | ")[0] for r in rows if r.startswith("| E")] == ["| E01", "| E02", "| E03", "| E10"]
    assert all(r.endswith("(--quick) |") for r in rows if r.startswith("| E"))  # quick results say so
    text = out.read_text()
    heads = [line for line in text.splitlines() if line.startswith("## E")]
    assert [h.split(".")[0] for h in heads] == ["## E01", "## E02", "## E03", "## E10"]
    assert "jax" in text.split("## E01")[0] and "--quick" in text and "Commit" in text
    for line in text.splitlines():
        if line.startswith("!["):
            assert (out.parent / line.split("(")[1].rstrip(")")).is_file(), line


def test_results_md_and_the_readme_table_are_generated_from_the_committed_results():
    """RESULTS.md and README's experiments table are what make_results renders from the committed result.json
    files: a stale row, a hand edit or a result.json changed without regenerating fails here."""
    make_results = _load("make_results")
    loaded = make_results.load(make_results.RESULTS)
    assert len(loaded) >= 11  # every experiment has a committed result
    results_md = make_results.HERE / "RESULTS.md"
    assert results_md.read_text() == make_results.results_text(loaded, results_md)
    readme = make_results.README.read_text()
    assert readme == make_results.with_table(readme, make_results.table(loaded))
    rows = [line for line in readme.split(make_results.TABLE_START)[1].splitlines() if line.startswith("| E")]
    assert [r.split(" | ")[0] for r in rows] == [f"| E{n:02d}" for n in range(1, 12)]
    with pytest.raises(SystemExit, match="once each"):
        make_results.with_table("no markers here", "| table |")


# ----------------------------------------------------------------------------- E01-E03, E10


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
        assert row["ratios"]["numeric/backprop_loop"] > 10
    # (c) every size the forward pass depends on grew, each alone, and each point was timed
    grown = {(p["axis"], p["factor"]) for p in r["scaling"]}
    assert grown == {(a, f) for a in ("H", "B", "d") for f in r["config"]["scale_factors"]}
    base = {
        "d": r["config"]["cost_embed_dim"],
        "H": r["config"]["cost_hidden_dim"],
        "B": r["config"]["cost_batch_size"],
    }
    for p in r["scaling"]:  # one size grown at a time: the other two stay at the base
        assert {a: p[a] for a in base} == {a: base[a] * (p["factor"] if a == p["axis"] else 1) for a in base}
        assert sorted(p["us"]) == ["backprop_loop", "backprop_rows_loop", "forward_loop"]
        assert all(0 < v < 1e6 for v in p["us"].values())  # each pass timed: a finite, positive number of µs
    _assert_files(results.root / "e02_gradient_checks", r)


def test_e03_records_blas_settings_and_agrees(results):
    r = results("e03_vectorisation")
    assert "OPENBLAS_CORETYPE" in r["blas_environment"] and "OPENBLAS_L2_SIZE" in r["blas_environment"]
    for row in r["rows"]:
        # all variants computed the same W X, to float32 round-off; an entry sums cols products in [0, 1)
        cols = row["W"][1]
        assert row["max_abs_difference"] <= row["tolerance"] <= float32_tolerance(cols, cols, k=1, worst_case=True)
        # each speed-up is taken round by round (loop and matmul of one round), not as a ratio of medians
        for k, (loop, matmul) in {
            "jax": ("jax_loop", "jax_matmul"),
            "numpy_1thread": ("numpy_loop_1thread", "numpy_matmul_1thread"),
        }.items():
            ratios = sorted(a / b for a, b in zip(row["times_s"][loop], row["times_s"][matmul]))
            assert len(ratios) == r["config"]["repeats"] and row["speedup"][k] == pytest.approx(ratios[1], rel=1e-12)
            assert row["speedup_quartiles"][k] == pytest.approx(
                [(ratios[0] + ratios[1]) / 2, (ratios[1] + ratios[2]) / 2]
            )
        assert row["claim_speedup"] == min(
            row["speedup_quartiles"]["numpy_1thread"][0], row["speedup_quartiles"]["jax"][0]
        )
    assert r["checks"]["blas_cores"] >= 1 and r["checks"]["quiet"]["waited_s"] == 0.0  # --quick does not wait
    # the bar: the lower quartile of the speed-up at least 10x, numpy on one core and JAX; "partly" if any variant's
    wins = [row["claim_speedup"] >= 10 for row in r["rows"]]
    some = any(q[0] >= 10 for row in r["rows"] for q in row["speedup_quartiles"].values())
    assert r["verdict"] == ("supported" if all(wins) else "partly supported" if some else "not supported")
    # --gpu: with a GPU its arms are measured; without one (--quick) the CPU arms ran and the GPU arm is skipped
    gpu = _load("e03_vectorisation").gpu_device()
    assert r["gpu"] == {"requested": True, "device": gpu and f"{gpu.platform}:{gpu.device_kind}"}
    assert r["gpu_measured"] is (gpu is not None)
    assert all(("jax_gpu" in row["speedup"]) is (gpu is not None) for row in r["rows"])
    _assert_files(results.root / "e03_vectorisation", r)


def test_e10_only_batch_rows_change_and_repeats_add(results):
    r = results("e10_sparse_updates")
    for c in r["changed"]:
        assert c["changed_rows"] == c["batch_rows"] and c["changed_equals_batch"] and c["outside_rows_bit_identical"]
    rep = r["repeated"]  # float64: the sum to round-off, a tolerance of float64's order (not a loose one)
    assert rep["max_abs_diff_vs_sum"] <= rep["tolerance"] and rep["tolerance_rel"] < 1e3 * EPS64
    assert rep["rel_diff_if_only_second"] > 1e-3  # keeping one slot only would be wrong by far more
    s, c = r["rows_only_step"], r["config"]  # float32, two programs: equal to round-off, not necessarily bit for bit
    assert s["outside_rows_bit_identical"]
    for k, t in s["tensors"].items():
        assert t["max_abs_diff"] <= t["tolerance"], (k, t)
        # the allowance is float32 round-off (parameters and lr * gradients are below 1 here), nothing looser
        assert t["tolerance"] <= float32_tolerance(c["batch_size"] * c["window"] * c["hidden_dim"], 1.0, k=8)
    steps = {(x["rule"], x["every_row_in_every_batch"]): x for x in r["several_steps"]}
    assert set(steps) == {("adagrad", False), ("adam", False), ("adam", True)}
    for x in steps.values():  # untouched rows keep their bits; the rows-only rules never move an absent row
        assert x["never_rows_bit_identical"] and x["rows_moved_while_absent"]["rows_only"] == 0
        # float64 over a few steps: an allowance of float64's order, nothing looser
        assert x["tolerance"] < 1e-12
    assert steps["adagrad", False]["rows_never_in_a_batch"] > 0 and steps["adagrad", False]["equal_to_roundoff"]
    assert steps["adam", True]["equal_to_roundoff"]  # every row in every batch: lazy Adam is dense Adam
    # dense Adam moves rows that left the batch (stale momentum), so the runs part by far more than round-off
    assert (
        steps["adam", False]["rows_moved_while_absent"]["dense"] > 0 and not steps["adam", False]["equal_to_roundoff"]
    )
    assert r["verdict"] == "supported"
    _assert_files(results.root / "e10_sparse_updates", r)
