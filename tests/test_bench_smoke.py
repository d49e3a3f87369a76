"""The benchmark script runs end to end in --quick mode and writes a well-formed report.

No timing assertions: only that every expected row is there with a positive throughput. The
PyTorch rows are expected only when torch is installed.
"""

import importlib
import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path

import jax
import pytest

ROOT = Path(__file__).resolve().parents[1]
JAX_ROWS = {"jax_grad", "manual", "sparse", "flax", "jax_fwd", "jax_fwdbwd_rows", "jax_fwdbwd_grad"}
TORCH_ROWS = {"torch_dense", "torch_sparse", "torch_fwd", "torch_fwdbwd"}  # torch_compile: full run only


def test_quick_benchmark_writes_json_and_markdown(tmp_path):
    out, md = tmp_path / "bench.json", tmp_path / "BENCHMARKS.md"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_step.py"), "--quick", "--out", str(out), "--markdown", str(md)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    result = json.loads(out.read_text())
    (shape,) = result["shapes"]
    rows = {r["variant"]: r for r in shape["rows"]}
    expected = JAX_ROWS | (TORCH_ROWS if importlib.util.find_spec("torch") else set())
    assert expected <= set(rows), f"missing rows: {sorted(expected - set(rows))}"
    for name, row in rows.items():
        assert row["windows_per_s"] > 0 and row["step_ms"] > 0, (name, row)
    for name in ("jax_grad", "manual", "sparse", "flax"):
        assert rows[name]["kind"] == "train" and rows[name]["gflops"] > 0, rows[name]
    assert all(v["gflops"] > 0 for v in result["matmul_peak"].values())
    assert result["environment"]["jax"] and "targets" in result
    (memory,) = result["memory"]  # peak memory, one fresh process per variant
    peaks = {r["variant"]: r["peak_mb"] for r in memory["rows"]}
    assert {"manual", "sparse"} <= set(peaks) and all(v is not None and v > 0 for v in peaks.values()), memory
    for e in result["vocab_ratio"]:  # the rows-only step at two vocabularies, timed side by side
        assert e["ids"] in ("zipf", "uniform") and min(e["step_ms"]) > 0
        assert abs(e["ratio"] - e["step_ms"][1] / e["step_ms"][0]) < 1e-9
    assert "| shape |" in md.read_text()


def _bench_module(name):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def test_gpu_results_render_with_the_gpu_facts():
    """The GPU report is written on a machine CI never sees: render the recorded H200 run here."""
    report = _bench_module("bench_report")
    result = json.loads((ROOT / "benchmarks" / "results" / "bench_step_gpu.json").read_text())
    assert result["environment"]["accelerator"] and "numpy" not in result["matmul_peak"]
    text = report.markdown({**result, "targets": report.targets(result)})
    assert text.startswith(f"# Benchmarks: one training step of the window model on {result['environment']['accelerator']}")
    assert "torch 2.11.0+cu130 on cuda (TF32 matmuls off" in text and "jnp_highest" in text
    assert "[1t]" not in text  # thread settings are a CPU matter
    assert text == (ROOT / "BENCHMARKS_GPU.md").read_text(), "BENCHMARKS_GPU.md is stale: rerun bench_report.py"


def test_torch_device_choice():
    bench = _bench_module("bench_step")

    class FakeTorch:  # only what the choice reads: whether torch sees a CUDA device
        def __init__(self, cuda):
            self.cuda = types.SimpleNamespace(is_available=lambda: cuda)

    assert bench.torch_device(None, "auto") is None  # no torch: no torch rows
    # auto: the GPU only when JAX itself runs on one
    assert bench.torch_device(FakeTorch(cuda=True), "auto") == ("cuda" if jax.default_backend() == "gpu" else "cpu")
    assert bench.torch_device(FakeTorch(cuda=False), "auto") == "cpu"
    assert bench.torch_device(FakeTorch(cuda=True), "cuda") == "cuda"
    assert bench.torch_device(FakeTorch(cuda=False), "cpu") == "cpu"
    with pytest.raises(SystemExit, match="torch sees no CUDA device"):
        bench.torch_device(FakeTorch(cuda=False), "cuda")


def test_hugepages_comparison_runs_both_settings():
    bench = _bench_module("bench_hugepages")
    medians = bench.main(["--quick"])
    assert set(medians) == set(bench.SETTINGS)
    for times in medians.values():
        assert set(times) == {f"{v} B={b} V={n // 1000}k" for v, b, n in bench.QUICK_CASES}
        assert all(t > 0 for t in times.values())
