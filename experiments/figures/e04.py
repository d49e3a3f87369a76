"""E04's plots: the rate grid per activation; each activation's seeds with 95% intervals; the paired differences."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from jaxbackprop import plots

COLORS = {"sigmoid": "tab:red", "tanh": "tab:blue", "hardtanh": "tab:cyan", "relu": "tab:green"}
COLORS |= {"leaky_relu": "tab:olive", "prelu": "tab:purple"}
PANELS = (  # (run key, aggregate key, y label, log scale)
    ("test_f1", "test_f1", "test entity F1 (final epoch)", False),
    ("mean_dev_f1", "mean_dev_f1", "mean dev F1 over the epochs (speed)", False),
    ("at_init.grad_W", "at_init_grad_W", "||dJ/dW|| at initialisation", True),
    ("trained.flat_pairs", "trained_flat_pairs", "share of (window, unit) pairs with |f'| <= 1e-3, trained", False),
)
METRICS = (("grad_W", "||dJ/dW|| at init"), ("speed", "mean dev F1 over epochs"), ("test_f1", "test F1"))


def draw(result: dict, out: Path) -> list:
    return [rates(result, out), activations(result, out), differences(result, out)]


def rates(result: dict, out: Path) -> str:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for a, tuned in result["tuned"].items():
        mine = [r for r in result["tuning"] if r["activation"] == a]
        grid = sorted({r["learning_rate"] for r in mine})
        f1 = [np.mean([r["final_dev_f1"] for r in mine if r["learning_rate"] == lr]) for lr in grid]
        bad = [any(r["failure"] for r in mine if r["learning_rate"] == lr) for lr in grid]
        ax.plot(grid, f1, "-", color=COLORS.get(a), label=f"{a} (tuned {tuned['learning_rate']:g})")
        ax.plot(
            [g for g, b in zip(grid, bad) if not b],
            [f for f, b in zip(f1, bad) if not b],
            "o",
            ms=4,
            color=COLORS.get(a),
        )
        ax.plot([g for g, b in zip(grid, bad) if b], [f for f, b in zip(f1, bad) if b], "x", ms=7, color=COLORS.get(a))
        ax.plot([tuned["learning_rate"]], [tuned["dev_f1"]], "o", ms=11, mfc="none", color=COLORS.get(a))
    ax.set_xscale("log")
    ax.set(xlabel="SGD learning rate", ylabel="final dev entity F1", ylim=(-0.02, 1.0))
    seeds = ", ".join(str(s) for s in result["config"]["tune_seeds"])
    ax.set_title(f"rate tuning (seed {seeds}): x = failed (diverged / collapsed / all-O), ring = tuned", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(f"{result['corpus_short']}: each activation's rate, tuned on dev", fontsize=10)
    plots.save(fig, out / "rate_tuning.png")
    return "rate_tuning.png"


def _value(run: dict, key: str):
    for part in key.split("."):
        run = None if run is None else run[part]
    return np.nan if run is None else run


def activations(result: dict, out: Path) -> str:
    names = [a for a in result["config"]["activations"] if a in result["aggregate"]]
    fig, axes = plt.subplots(2, 2, figsize=(12, 7.5), layout="constrained")
    for ax, (key, agg_key, label, log) in zip(axes.ravel(), PANELS):
        for i, a in enumerate(names):
            seeds = [_value(r, key) for r in result["runs"] if r["activation"] == a]
            jitter = np.linspace(-0.12, 0.12, len(seeds)) if len(seeds) > 1 else [0.0]
            ax.plot(i + np.asarray(jitter), seeds, "o", ms=4, alpha=0.5, color=COLORS.get(a))
            iv = result["aggregate"][a][agg_key]
            err = None if iv["half_width"] is None else [[iv["half_width"]], [iv["half_width"]]]
            ax.errorbar([i + 0.3], [iv["mean"]], yerr=err, fmt="D", ms=6, capsize=4, color=COLORS.get(a))
        ax.set_xticks(range(len(names)), names, fontsize=8)
        ax.set_ylabel(label, fontsize=9)
        if log:
            ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3)
    n = len(result["seeds"])
    fig.suptitle(
        f"{result['corpus_short']}: each activation at its tuned rate, {n} seeds (dots), mean and 95% interval"
    )
    plots.save(fig, out / "activations.png")
    return "activations.png"


def differences(result: dict, out: Path) -> str:
    fig, axes = plt.subplots(1, len(METRICS), figsize=(15, 4.2), layout="constrained")
    for ax, (prefix, label) in zip(axes, METRICS):
        rows = [c for c in result["comparisons"] if c["name"].startswith(prefix + ":")]
        for y, c in enumerate(rows):
            color = {"above": "tab:green", "below": "tab:red", "across": "0.4"}[c["side"]]
            if c["low"] is not None:
                ax.plot([c["low"], c["high"]], [y, y], "-", lw=2, color=color)
            ax.plot([c["mean"]], [y], "D", ms=6, color=color)
            ax.plot([c["bar"]], [y], "|", ms=14, mew=2, color="k")
        ax.axvline(0, color="0.7", lw=1)
        ax.set_yticks(range(len(rows)), [f"{c['a']} - {c['b']}" for c in rows], fontsize=8)
        ax.set(xlabel=f"paired difference in {label}", title=f"{label}: A - B (| = bar)")
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(
        f"{result['corpus_short']}: paired by seed, 95% intervals (green above the bar, red below, grey across)",
        fontsize=10,
    )
    plots.save(fig, out / "differences.png")
    return "differences.png"
