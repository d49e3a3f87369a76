"""What every benchmark script shares: the benchmark model, its batches, round-robin timing, the record
of where a number was measured, and how results are written.

The scripts import it as a sibling (``python benchmarks/bench_step.py`` puts ``benchmarks/`` on the
path). The benchmark model is the window model at window 5, relu, a softmax head of 9 classes,
float32, trained with Adam at lr 1e-3, on word ids drawn Zipf-distributed or uniformly.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from jaxbackprop import files, model, provenance

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
WINDOW, CLASSES, LR, NUM_BATCHES = 5, 9, 1e-3, 8
ZIPF_EXPONENT = 1.07  # word frequencies: p(rank) ~ rank^-1.07, truncated to the vocabulary

JAX_TRAIN = ("jax_grad", "manual", "sparse", "flax")
TORCH_TRAIN = ("torch_dense", "torch_sparse", "torch_compile", "torch_graphs")
PASSES = ("jax_fwd", "jax_fwdbwd_rows", "jax_fwdbwd_grad", "torch_fwd", "torch_fwdbwd")
ALL = JAX_TRAIN + TORCH_TRAIN + PASSES


@dataclasses.dataclass(frozen=True)
class Shape:
    """One benchmark shape: batch B, vocabulary V, embedding width d, how word ids are drawn, and
    the variants timed at it."""

    batch: int
    vocab: int
    dim: int
    ids: str  # "zipf" or "uniform"
    variants: tuple = ALL

    @property
    def name(self):
        return f"B={self.batch} V={self.vocab // 1000}k d={self.dim} {self.ids}"


def model_config(shape: Shape, hidden: int) -> model.ModelConfig:
    """The benchmark model at ``shape``, with the fast row lookup (:mod:`jaxbackprop.fast`) that
    training uses."""
    return model.ModelConfig(
        vocab_size=shape.vocab, embed_dim=shape.dim, window=WINDOW, hidden_dim=hidden, num_classes=CLASSES, fast=True
    )


def make_batches(shape: Shape, seed=0):
    """``NUM_BATCHES`` batches of windows (NUM_BATCHES, B, 5) and labels (NUM_BATCHES, B), int32."""
    rng = np.random.default_rng(seed)
    if shape.ids == "zipf":
        p = np.arange(1, shape.vocab + 1, dtype=np.float64) ** -ZIPF_EXPONENT
        windows = rng.choice(shape.vocab, size=(NUM_BATCHES, shape.batch, WINDOW), p=p / p.sum())
    else:
        windows = rng.integers(0, shape.vocab, (NUM_BATCHES, shape.batch, WINDOW))
    labels = rng.integers(0, CLASSES, (NUM_BATCHES, shape.batch))
    return windows.astype(np.int32), labels.astype(np.int32)


# ----------------------------------------------------------------------------- timing


class Runner:
    """One variant: ``run(n)`` takes n steps (cycling the batches) and waits for the result.

    ``threads`` is the thread count the variant runs with (None: its framework's default);
    ``info`` is copied into its result row (compile time, working memory, ...).
    """

    def __init__(self, name, run, *, threads=None, info=None):
        self.name, self.run, self.threads, self.info = name, run, threads, dict(info or {})
        self.times = []  # seconds per step, one entry per repeat


def calibrate(runner, min_time):
    """Steps per repeat so that one repeat lasts about min_time (at least one step)."""
    t = time.perf_counter()
    runner.run(1)
    per_step = time.perf_counter() - t
    return max(1, int(min_time / max(per_step, 1e-6)))


def time_round_robin(runners, repeats, min_time, set_threads=None):
    """Warm up each runner, then ``repeats`` rounds in which every runner runs one repeat.

    Round-robin, so that load from other processes on a shared machine lands on all variants alike.
    ``set_threads(n)`` is called before each runner with its ``threads`` (and with None at the end):
    how torch's thread count is switched per variant.
    """
    set_threads = set_threads or (lambda threads: None)
    steps = {}
    for r in runners:
        set_threads(r.threads)
        r.run(2)  # warm-up (compiles are done before; this settles caches and allocators)
        steps[r.name] = calibrate(r, min_time)
    for _ in range(repeats):
        for r in runners:
            set_threads(r.threads)
            n = steps[r.name]
            t = time.perf_counter()
            r.run(n)
            r.times.append((time.perf_counter() - t) / n)
    set_threads(None)


def median_ms(runner) -> float:
    """The runner's median step time over its repeats, in milliseconds."""
    return statistics.median(runner.times) * 1e3


def spread(times):
    """``(median, q1, q3)`` of a list of times."""
    q1, q3 = np.percentile(times, [25, 75])
    return statistics.median(times), float(q1), float(q3)


# ----------------------------------------------------------------------------- records and files


def environment(**extra) -> dict:
    """Where and how a benchmark ran: date, the command (no machine paths), the machine, versions and
    commit (:func:`jaxbackprop.provenance.environment`, CPU model included), the BLAS/OpenMP/XLA
    variables of the process, then ``extra`` (the benchmark's own settings)."""
    variables = ("OMP_", "MKL_", "XLA_", "GLIBC_")
    env = {k: os.environ[k] for k in sorted(os.environ) if "BLAS" in k or k.startswith(variables)}
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name] + provenance.portable_argv(sys.argv)),
        **provenance.environment(),
        "env": env,
        **extra,
    }


def machine_line(env: dict) -> str:
    """One line for a printed or markdown header: CPU model, CPU count, JAX device, commit."""
    commit = env.get("git_commit")
    source = f", commit {commit[:10]}{' (modified)' if env.get('git_dirty') else ''}" if commit else ""
    return f"{env.get('cpu_model')}, {env.get('cpu_count')} CPUs, JAX {env.get('jax')} on {env.get('device')}{source}"


def write_json(path, result: dict) -> None:
    """``result`` as indented JSON, written atomically (an interrupted run never leaves half a file)."""
    files.write_text(path, json.dumps(result, indent=1))


def write_text(path, text: str) -> None:
    """``text`` written atomically; the sections other scripts keep in the file (:func:`write_section`) stay."""
    files.write_text(path, with_sections(text, kept_sections(path)))


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- section {name}: written by benchmarks/{name}.py -->", f"<!-- end of section {name} -->"


def kept_sections(path) -> list[str]:
    """Every marked section of the markdown file at ``path``, markers included ([] if none, or no file)."""
    path = Path(path)
    text = path.read_text() if path.exists() else ""
    out, start = [], text.find("<!-- section ")
    while start >= 0:
        name = text[start + len("<!-- section ") :].split(":", 1)[0]
        end = text.find(_markers(name)[1], start)
        if end < 0:
            break
        end += len(_markers(name)[1])
        out.append(text[start:end])
        start = text.find("<!-- section ", end)
    return out


def with_sections(text: str, sections: list[str]) -> str:
    """``text`` followed by the marked ``sections``, a blank line between each."""
    return text if not sections else text.rstrip("\n") + "\n\n" + "\n\n".join(sections) + "\n"


def write_section(path, name: str, body: str) -> None:
    """Put ``body`` into the markdown file at ``path`` as section ``name``, replacing an earlier one;
    the rest of the file stays as it was."""
    path = Path(path)
    text = path.read_text() if path.exists() else ""
    begin, end = _markers(name)
    section = f"{begin}\n{body.strip()}\n{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + section + text[text.index(end) + len(end) :]
    else:
        text = with_sections(text, [section])
    files.write_text(path, text)


def arg_parser(doc: str, quick_help: str) -> argparse.ArgumentParser:
    """The scripts' common flags: the docstring's first line as description, and ``--quick``."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--quick", action="store_true", help=quick_help)
    return p
