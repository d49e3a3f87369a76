"""Every benchmark script runs end to end in --quick mode and writes well-formed results.

Results go to pytest's tmp_path, never over the committed ones. No timing assertions: only that every
expected row is there, with positive times and finite ratios, and that each JSON records the machine
(CPU model included). The PyTorch rows are expected only when torch is installed.
"""

import ast
import importlib
import importlib.util
import json
import math
import subprocess
import sys
import types
from pathlib import Path

import jax
import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
JAX_ROWS = {"jax_grad", "manual", "sparse", "flax", "jax_fwd", "jax_fwdbwd_rows", "jax_fwdbwd_grad"}
TORCH_ROWS = {"torch_dense", "torch_sparse", "torch_fwd", "torch_fwdbwd"}  # torch_compile: full run only
HAS_TORCH = importlib.util.find_spec("torch") is not None
MACHINE_KEYS = {"device", "jax", "jaxlib", "python", "cpu_model", "cpu_count", "git_commit", "git_dirty"}


def run_script(name, *args, timeout=300):
    cmd = [sys.executable, str(BENCH / name), *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def bench_module(name):
    """A benchmarks/ module, imported as its scripts import each other (their folder on the path)."""
    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCH))


def assert_records_machine(env):
    assert MACHINE_KEYS <= set(env), f"missing: {sorted(MACHINE_KEYS - set(env))}"
    assert env["cpu_model"] and env["cpu_count"] >= 1 and env["jax"] == jax.__version__
    assert env["command"].startswith("python") and str(ROOT) not in env["command"]


def test_bench_step_quick_writes_json_and_markdown(tmp_path):
    out, md = tmp_path / "bench.json", tmp_path / "BENCHMARKS.md"
    run_script("bench_step.py", "--quick", "--out", out, "--markdown", md)

    result = json.loads(out.read_text())
    assert_records_machine(result["environment"])
    (shape,) = result["shapes"]
    rows = {r["variant"]: r for r in shape["rows"]}
    expected = JAX_ROWS | (TORCH_ROWS if HAS_TORCH else set())
    assert expected <= set(rows), f"missing rows: {sorted(expected - set(rows))}"
    for name, row in rows.items():
        assert row["windows_per_s"] > 0 and row["step_ms"] > 0 and row["repeats"] == 3, (name, row)
        assert math.isfinite(row["iqr_pct"]), (name, row)
    for name in ("jax_grad", "manual", "sparse", "flax"):
        assert rows[name]["kind"] == "train" and rows[name]["gflops"] > 0, rows[name]
        assert 0 < rows[name]["pct_of_peak"] and math.isfinite(rows[name]["pct_of_peak"]), rows[name]
    assert all(v["gflops"] > 0 for v in result["matmul_peak"].values())
    targets = {"jax_vs_best_torch", "sparse_vs_torch_sparse", "pct_of_peak_at_4096", "sparse_vocab_ratio"}
    assert set(result["targets"]) == targets
    (memory,) = result["memory"]  # peak memory, one fresh process per variant
    peaks = {r["variant"]: r["peak_mb"] for r in memory["rows"]}
    assert {"manual", "sparse"} <= set(peaks) and all(v is not None and v > 0 for v in peaks.values()), memory
    assert [e["ids"] for e in result["vocab_ratio"]] == ["zipf", "uniform"]
    for e in result["vocab_ratio"]:  # the rows-only step at two vocabularies, timed side by side
        assert min(e["step_ms"]) > 0 and math.isfinite(e["ratio"])
        assert abs(e["ratio"] - e["step_ms"][1] / e["step_ms"][0]) < 1e-9

    text = md.read_text()
    assert "| shape |" in text and "## Targets" in text and "B=64 V=5k d=50 zipf" in text
    assert f"Machine: {result['environment']['cpu_model']}, " in text
    # the report derives from the JSON alone: bench_report.py rewrites the same file from it
    again = tmp_path / "again.md"
    run_script("bench_report.py", out, again)
    assert again.read_text() == text


def test_bench_memory_quick(tmp_path):
    out = tmp_path / "memory.json"
    run_script("bench_memory.py", "--quick", "--out", out)
    result = json.loads(out.read_text())
    assert_records_machine(result["environment"])
    (shape,) = result["memory"]
    rows = {r["variant"]: r for r in shape["rows"]}
    assert {"manual", "sparse"} | ({"torch_sparse"} if HAS_TORCH else set()) == set(rows)
    for row in rows.values():
        assert row["peak_mb"] > 0 and row["baseline_mb"] > 0, row


def test_hugepages_comparison_runs_both_settings(tmp_path):
    bench = bench_module("bench_hugepages")
    out = tmp_path / "hugepages.json"
    medians = bench.main(["--quick", "--out", str(out)])
    assert set(medians) == set(bench.SETTINGS)
    for times in medians.values():
        assert set(times) == {bench.case_name(*case) for case in bench.QUICK_CASES}
        assert all(t > 0 and math.isfinite(t) for t in times.values())
    result = json.loads(out.read_text())
    assert_records_machine(result["environment"])
    assert result["median_ms"] == medians


def test_committed_reports_are_rendered_from_their_json():
    """BENCHMARKS.md and the huge-page report say what their JSON says (bench_report.py made them, and
    bench_epoch.py its own section of BENCHMARKS.md)."""
    report, harness = bench_module("bench_report"), bench_module("harness")
    for json_name, md in [("bench_step.json", "BENCHMARKS.md"), ("bench_step_hugepages.json", None)]:
        result = json.loads((BENCH / "results" / json_name).read_text())
        md_path = ROOT / md if md else (BENCH / "results" / json_name).with_suffix(".md")
        text = report.markdown({**result, "targets": report.targets(result)})
        text = harness.with_sections(text, harness.kept_sections(md_path))  # the other scripts' sections stay
        assert text == md_path.read_text(), f"{md_path.name} is stale: rerun bench_report.py on {json_name}"
    epoch = json.loads((BENCH / "results" / "bench_epoch.json").read_text())
    section = bench_module("bench_epoch").section(epoch).strip()
    assert section in (ROOT / "BENCHMARKS.md").read_text(), "BENCHMARKS.md's bench_epoch section is stale"


def test_gpu_results_render_with_the_gpu_facts():
    """The GPU report is written on a machine CI never sees: render the recorded H200 run here."""
    report = bench_module("bench_report")
    result = json.loads((BENCH / "results" / "bench_step_gpu.json").read_text())
    assert result["environment"]["accelerator"] and "numpy" not in result["matmul_peak"]
    text = report.markdown({**result, "targets": report.targets(result)})
    accelerator = result["environment"]["accelerator"]
    assert text.startswith(f"# Benchmarks: one training step of the window model on {accelerator}")
    assert "torch 2.11.0+cu130 on cuda (TF32 matmuls off" in text and "jnp_highest" in text
    assert "[1t]" not in text  # thread settings are a CPU matter
    assert text == (ROOT / "BENCHMARKS_GPU.md").read_text(), "BENCHMARKS_GPU.md is stale: rerun bench_report.py"


def test_torch_device_choice():
    peers = bench_module("torch_peers")

    class FakeTorch:  # only what the choice reads: whether torch sees a CUDA device
        def __init__(self, cuda):
            self.cuda = types.SimpleNamespace(is_available=lambda: cuda)

    assert peers.torch_device(None, "auto") is None  # no torch: no torch rows
    # auto: the GPU only when JAX itself runs on one
    assert peers.torch_device(FakeTorch(cuda=True), "auto") == ("cuda" if jax.default_backend() == "gpu" else "cpu")
    assert peers.torch_device(FakeTorch(cuda=False), "auto") == "cpu"
    assert peers.torch_device(FakeTorch(cuda=True), "cuda") == "cuda"
    assert peers.torch_device(FakeTorch(cuda=False), "cpu") == "cpu"
    with pytest.raises(SystemExit, match="torch sees no CUDA device"):
        peers.torch_device(FakeTorch(cuda=False), "cuda")


def test_round_robin_times_every_runner_in_every_round():
    harness = bench_module("harness")
    calls, threads = [], []

    def runner(name, n_threads=None):
        return harness.Runner(name, lambda n: calls.append((name, n)), threads=n_threads)

    runners = [runner("a"), runner("b", 1)]
    harness.time_round_robin(runners, repeats=3, min_time=0.0, set_threads=threads.append)
    assert [len(r.times) for r in runners] == [3, 3] and all(t >= 0 for r in runners for t in r.times)
    # warm-up (2 steps) and calibration (1 step) per runner, then the rounds alternate a, b, a, b, ...
    assert [name for name, _ in calls] == ["a", "a", "b", "b"] + ["a", "b"] * 3
    assert threads == [None, 1] + [None, 1] * 3 + [None]


def test_benchmark_models_use_the_fast_paths():
    harness = bench_module("harness")
    cfg = harness.model_config(harness.Shape(8, 1000, 4, "zipf"), hidden=16)
    assert cfg.fast and (cfg.window, cfg.num_classes, cfg.hidden_dim) == (harness.WINDOW, harness.CLASSES, 16)


def test_benchmark_modules_import_in_one_direction_and_torch_lazily():
    """No import circle among benchmarks/*.py (each script imports shared modules, never a peer that
    imports it back), and torch is never imported at module level: it is optional."""
    names = {p.stem for p in BENCH.glob("*.py")}
    imports = {}
    for path in BENCH.glob("*.py"):
        tree = ast.parse(path.read_text())
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        found = {a.name for n in top if isinstance(n, ast.Import) for a in n.names}
        found |= {n.module for n in top if isinstance(n, ast.ImportFrom) and n.module}
        assert "torch" not in found, f"{path.name} imports torch at module level"
        nested = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        nested |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        imports[path.stem] = (found | nested) & names
    assert "bench_step" not in imports["bench_memory"]  # bench_step measures memory through bench_memory

    def visit(name, path):
        assert name not in path, "import circle: " + " -> ".join(path + [name])
        for other in imports[name]:
            visit(other, path + [name])

    for name in imports:
        visit(name, [])


def test_machine_record_never_fails_outside_a_git_checkout(tmp_path, monkeypatch):
    from jaxbackprop import provenance

    monkeypatch.setattr(provenance, "PROJECT_ROOT", tmp_path)  # an installed package: no .git above it
    env = provenance.environment()
    assert env["git_commit"] is None and env["git_dirty"] is None
    assert env["cpu_model"] and env["device"].startswith(jax.devices()[0].platform)


def test_results_written_by_runs_do_not_make_the_code_dirty(tmp_path, monkeypatch):
    import subprocess

    from jaxbackprop import provenance

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    (tmp_path / "experiments" / "results").mkdir(parents=True)
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "experiments" / "results" / "result.json").write_text("{}\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start")
    monkeypatch.setattr(provenance, "PROJECT_ROOT", tmp_path)
    assert provenance.git_state()["git_dirty"] is False
    (tmp_path / "experiments" / "results" / "result.json").write_text('{"rerun": true}\n')  # a run's output
    assert provenance.git_state()["git_dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")  # the code itself
    assert provenance.git_state()["git_dirty"] is True


def test_a_marked_section_survives_a_regenerated_report(tmp_path):
    harness = bench_module("harness")
    md = tmp_path / "BENCHMARKS.md"
    harness.write_text(md, "# report\n")
    harness.write_section(md, "bench_epoch", "## epochs\nv1")
    harness.write_text(md, "# report, regenerated\n")  # as bench_step.py rewrites BENCHMARKS.md
    harness.write_section(md, "bench_epoch", "## epochs\nv2")
    assert md.read_text() == (
        "# report, regenerated\n\n<!-- section bench_epoch: written by benchmarks/bench_epoch.py -->\n"
        "## epochs\nv2\n<!-- end of section bench_epoch -->\n"
    )
