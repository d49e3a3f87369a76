"""Several devices and processes: ``train --devices 4``, and two ``jaxbackprop --coordinator ... train``
processes on this machine, each train as one device does.

Each process is a fresh interpreter with 2 forced CPU devices; ``jax.distributed.initialize``
joins them through a coordinator on a free localhost port, and Gloo (jax's CPU collectives)
carries the all-reduces, so each batch is split over the 4 devices of both processes. This is
what ``srun`` / ``mpirun`` start on a cluster, one process per host. The test checks that the
run's final parameters and optimizer state equal those of one process on one device, that
process 0 alone writes the run directory and prints, and that the other process writes nothing.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers import TINY, float32_tolerance

from jaxbackprop import cli, data, synthetic

ROOT = Path(__file__).resolve().parents[1]
PROCESSES, DEVICES_EACH = 2, 2
# plain SGD: Adam's m / sqrt(v) would turn the round-off of a gradient entry that nearly cancels (a
# rare word's embedding) into a step of full size, which no float32 bound derived from eps covers
RUN = dict(TINY, optimizer="sgd", learning_rate=0.1)
TIMEOUT = 240  # seconds each process may take; both together take ~20-35 s on 2 busy cores


def _flags(tiny: dict) -> list[str]:
    return [f"--{k.replace('_', '-')}={v}" for k, v in tiny.items()]


def _free_port() -> int:
    """A port nothing listens on now (the coordinator binds it a moment later)."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def corpus_files(tmp_path_factory):
    """``(options, training windows)``: tiny CoNLL files, train (200 sentences), dev and test."""
    folder = tmp_path_factory.mktemp("corpus")
    c = synthetic.synthetic_corpus(seed=1, n_train=200, n_dev=40, n_test=40)
    for split in ("train", "dev", "test"):
        data.write_conll(c[split], folder / f"{split}.conll")
    options = [f"--{split}={folder / f'{split}.conll'}" for split in ("train", "dev", "test")]
    return options, sum(len(s.tokens) for s in c["train"])  # one window per token


def _launch(argv: list[str], index: int, port: int, processes: int = PROCESSES) -> subprocess.Popen:
    """Process ``index`` of the run, as a user starts it by hand on each host."""
    env = {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={DEVICES_EACH}",
        "JAX_PLATFORMS": "cpu",
        "JAX_CPU_COLLECTIVES_IMPLEMENTATION": "gloo",
    }
    hosts = ["--coordinator", f"localhost:{port}", "--num-processes", str(processes), "--process-id", str(index)]
    return subprocess.Popen(
        [sys.executable, "-m", "jaxbackprop.cli", *hosts, *argv],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run_together(argvs: list[list[str]]) -> list[tuple[int, str, str]]:
    """Start one process per argv, wait for all; ``(returncode, stdout, stderr)`` of each."""
    port = _free_port()
    procs = [_launch(argv, i, port) for i, argv in enumerate(argvs)]
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=TIMEOUT)
            results.append((proc.returncode, out, err))
    finally:
        for proc in procs:  # one that failed leaves the other waiting for its all-reduce
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return results


def assert_same_training(reference: Path, run: Path, windows: int) -> None:
    """The checkpoints of two runs of RUN, one on one device and one data-parallel, agree."""
    # The two runs differ only in the order of float32 sums: a gradient entry sums 64 rows on one
    # device, and 4 partial sums of 16 rows plus an all-reduce on four, so the gradients differ by
    # ~eps32 |g| sqrt(64). Each of the T SGD steps p - lr g then rounds apart by up to eps32 |p|
    # (lr |g| << |p| makes the gradient's own round-off the smaller part), and with lr small each
    # step passes earlier differences on nearly unchanged, so they pile up at most linearly over
    # T steps: rtol 4 eps32 T relative to each tensor's largest entry (as test_sweep's trained_rtol).
    steps = RUN["epochs"] * -(-windows // RUN["batch_size"])
    rtol = float32_tolerance(steps, 1.0, k=4, worst_case=True)
    expected, actual = _checkpoint(reference), _checkpoint(run)
    assert sorted(actual) == sorted(expected)
    for key, want in expected.items():
        got = actual[key]
        assert got.shape == want.shape and got.dtype == want.dtype, f"{key}: {got.shape} {got.dtype}"
        scale = float(np.max(np.abs(want))) if want.size else 0.0
        err = float(np.max(np.abs(got.astype(np.float64) - want))) if want.size else 0.0
        assert err <= rtol * max(scale, 1e-30), f"{key}: max |diff| {err:.3e} > {rtol:.1e} * {scale:.3e}"


def _checkpoint(run_dir: Path) -> dict:
    """Every array of ``checkpoint.npz`` (parameters and optimizer state after the last epoch)."""
    with np.load(run_dir / "checkpoint.npz") as z:
        return {k: z[k] for k in z.files if k != "__meta__"}


@pytest.mark.slow
@pytest.mark.skipif(
    sys.platform == "win32" or "jax_cpu_collectives_implementation" not in jax.config.values,
    reason="this jax has no CPU collectives across processes (Gloo)",
)
def test_two_processes_train_like_one_device(corpus_files, tmp_path, capsys):
    options, windows = corpus_files
    common = [*options, *_flags(RUN), "--no-progress"]
    reference = tmp_path / "one-device"
    assert cli.main(["train", *common, "--out", str(reference)]) == 0  # this process: one device
    capsys.readouterr()

    runs = [tmp_path / f"process-{i}" for i in range(PROCESSES)]
    results = _run_together([["train", *common, "--out", str(run)] for run in runs])
    for i, (code, out, err) in enumerate(results):
        assert code == 0, f"process {i} exited {code}:\n{out}\n{err[-4000:]}"

    # process 0 prints and writes; the others train in lock-step, silent, and write nothing; Gloo's own
    # "[Gloo] Rank i is connected to ..." line (C++, on file descriptor 1) reaches no one's stdout
    total = PROCESSES * DEVICES_EACH
    lines = results[0][1].splitlines()
    assert lines[0] == (
        f"process 0 of {PROCESSES} ({total} devices in all): training over all devices; "
        "the other processes print nothing"
    )
    assert "best dev F1" in lines[-1] and not any("Gloo" in line for line in lines)
    assert [out for _, out, _ in results[1:]] == [""] * (PROCESSES - 1)
    assert not any(run.exists() for run in runs[1:]), "a process other than 0 wrote a run directory"
    assert sorted(p.name for p in runs[0].iterdir()) == sorted(p.name for p in reference.iterdir())

    assert_same_training(reference, runs[0], windows)


@pytest.mark.slow
def test_devices_4_on_one_process_trains_like_one_device(corpus_files, tmp_path, capsys):
    """``jaxbackprop train --devices 4`` on 4 forced CPU devices: each batch split four ways."""
    options, windows = corpus_files
    common = [*options, *_flags(RUN), "--no-progress"]
    reference = tmp_path / "one-device"
    assert cli.main(["train", *common, "--out", str(reference)]) == 0
    capsys.readouterr()
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    run = tmp_path / "four-devices"
    argv = [sys.executable, "-m", "jaxbackprop.cli", "train", *common, "--devices", "4", "--out", str(run)]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in reference.iterdir())
    assert_same_training(reference, run, windows)


@pytest.mark.parametrize("index", [0, 1])
def test_a_missing_process_ends_the_wait_with_one_line(index, tmp_path):
    """Process ``index`` of 2 started alone: it says what it waits for, and after --init-timeout one line, exit 4."""
    port, timeout = _free_port(), 2
    argv = ["--init-timeout", str(timeout), "train", "--out", str(tmp_path / "run")]
    proc = _launch(argv, index, port)
    out, err = proc.communicate(timeout=TIMEOUT)
    coordinator = f"localhost:{port}"
    assert (proc.returncode, out) == (4, ""), err[-4000:]
    assert err.splitlines() == [
        f"jaxbackprop: process {index} of 2: waiting up to {timeout} s for the other 1 process at coordinator "
        f"{coordinator} (--init-timeout)",
        f"jaxbackprop: error: the 2 processes did not all join at coordinator {coordinator} within {timeout} s: "
        "start every one with the same --coordinator and --num-processes and its own --process-id 0 ... 1 "
        "(--init-timeout waits longer)",
    ]
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_crf_on_three_devices_rounds_the_default_batch_up(corpus_files, tmp_path):
    """``--head crf --devices 3`` at the default --batch-size 1024: its 100 sentences per step (on this
    corpus) do not split three ways, so the run takes 102 and says so, in the user's own units."""
    options, _ = corpus_files
    tiny = {k: v for k, v in RUN.items() if k not in ("batch_size", "epochs")}
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=3", "JAX_PLATFORMS": "cpu"}
    run = tmp_path / "three-devices"
    argv = [sys.executable, "-m", "jaxbackprop.cli", "train", *options, *_flags(tiny), "--epochs=1", "--head=crf"]
    argv += ["--no-progress", "--devices", "3", "--out", str(run)]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    note = "--batch-size 1024 makes 100 sentences per step; 102 here, rounded up to a multiple of the 3 devices"
    assert note in done.stdout.splitlines()
    assert (run / "checkpoint.npz").exists()
