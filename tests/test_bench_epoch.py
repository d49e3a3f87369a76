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
VARIANTS = ["grad_manual", "grad_autodiff", "impl_flax", "sparse"]
TIMES = ("python_loop_s", "compiled_epoch_s", "compiled_progress_s", "steps_sum_s", "compile_s")
RATIOS = ("ratio_compiled_vs_steps", "ratio_compiled_vs_loop", "ratio_progress_vs_compiled")
SWEEP_TIMES = ("sequential_s", "vmapped_s", "one_member_s", "default_s")


def test_bench_epoch_quick(tmp_path):
    out = tmp_path / "x.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_epoch.py"), "--quick", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    result = json.loads(out.read_text())
    assert {"environment", "epochs", "sweep"} <= set(result)
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
    assert [r["members"] for r in result["sweep"]] == [1, 4, 16]
    for row in result["sweep"]:
        assert all(math.isfinite(row[k]) and row[k] > 0 for k in SWEEP_TIMES), row
        assert row["ratio_sequential_vs_vmapped"] == pytest.approx(row["sequential_s"] / row["vmapped_s"], rel=1e-9)
        assert 1 <= row["default_chunk"] <= row["members"]
    assert (
        "| variant |" in proc.stdout
        and "| members |" in proc.stdout
        and f"Machine: {env['cpu_model']}, " in proc.stdout
    )
