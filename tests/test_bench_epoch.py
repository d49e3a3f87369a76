"""benchmarks/bench_epoch.py runs end to end in --quick mode and writes well-formed results.

Results go to pytest's tmp_path. No timing assertions: one row per variant, every time finite and
positive, every ratio finite, and the machine recorded.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ["grad_manual", "grad_autodiff", "sparse"]
TIMES = ("python_loop_s", "compiled_epoch_s", "steps_sum_s", "compile_s")
RATIOS = ("ratio_compiled_vs_steps", "ratio_compiled_vs_loop")


def test_bench_epoch_quick(tmp_path):
    out = tmp_path / "x.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_epoch.py"), "--quick", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    result = json.loads(out.read_text())
    assert {"environment", "epochs", "sweep"} <= set(result) and result["sweep"] is None
    env = result["environment"]
    assert env["cpu_model"] and env["cpu_count"] >= 1 and env["quick"] is True
    assert [r["variant"] for r in result["epochs"]] == VARIANTS
    for row in result["epochs"]:
        assert set(TIMES + RATIOS) <= set(row), row
        # a measured duration is positive; compile_s is a difference of two timings, only finite
        for k in TIMES:
            assert math.isfinite(row[k]) and (k == "compile_s" or row[k] > 0), (k, row)
        # the ratios are what the table says they are: the other timing over the compiled epoch
        assert row["ratio_compiled_vs_steps"] == pytest.approx(row["steps_sum_s"] / row["compiled_epoch_s"], rel=1e-9)
        assert row["ratio_compiled_vs_loop"] == pytest.approx(row["python_loop_s"] / row["compiled_epoch_s"], rel=1e-9)
    assert "| variant |" in proc.stdout and f"Machine: {env['cpu_model']}, " in proc.stdout
