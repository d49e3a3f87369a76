"""The benchmark script runs end to end in --quick mode and writes a well-formed report.

No timing assertions: only that every expected row is there with a positive throughput. The
PyTorch rows are expected only when torch is installed.
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

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
    assert "| shape |" in md.read_text()
