"""E05's plots: every arm's test F1 by seed with 95% intervals; how far apart a zero start's units get."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from jaxbackprop import plots

ARMS = {
    "zeros": "tab:red",
    "normal": "tab:orange",
    "xavier": "tab:blue",
    "one_unit": "0.4",  # results from before the one-unit arm was dropped
    "zeros_dropout": "tab:pink",
}
LABELS = {"one_unit": "xavier, H = 1", "zeros_dropout": "zeros + dropout"}
DTYPES = {"float32": "tab:red", "float64": "tab:blue"}
ZERO_DRAWN_AT = 1e-18  # exactly 0 (bit-identical units) is drawn here, so a log axis shows it


def draw(result: dict, out: Path) -> list:
    plots_ = [f1(result, out)]
    if result["traces"]:
        plots_.append(symmetry(result, out))
    return plots_


def f1(result: dict, out: Path) -> str:
    acts = result["config"]["activations"]
    fig, axes = plt.subplots(1, len(acts), figsize=(5 * len(acts), 4.2), squeeze=False, layout="constrained")
    for ax, act in zip(axes[0], acts):
        rows = [r for r in result["aggregate"] if r["activation"] == act]
        for i, row in enumerate(rows):
            color = ARMS.get(row["arm"], "k")
            seeds = [r["test_f1"] for r in result["runs"] if r["activation"] == act and r["arm"] == row["arm"]]
            jitter = np.linspace(-0.12, 0.12, len(seeds)) if len(seeds) > 1 else [0.0]
            ax.plot(i + np.asarray(jitter), seeds, "o", ms=4, alpha=0.5, color=color)
            iv = row["test_f1"]
            err = None if iv["half_width"] is None else [[iv["half_width"]], [iv["half_width"]]]
            ax.errorbar([i + 0.3], [iv["mean"]], yerr=err, fmt="D", ms=6, capsize=4, color=color)
        ax.set_xticks(range(len(rows)), [LABELS.get(r["arm"], r["arm"]) for r in rows], fontsize=8)
        ax.set(ylabel="test entity F1 (final epoch)", title=f"{act}", ylim=(-0.03, 1.0))
        ax.grid(axis="y", alpha=0.3)
    t = result["training"]
    run = f"{t['optimizer']} lr {t['learning_rate']}, H = {t['hidden_dim']}, {t['epochs']} epochs"
    n = len(result["seeds"])
    fig.suptitle(f"{result['corpus_short']}: {run}; {n} seeds (dots), mean and 95% interval", fontsize=10)
    plots.save(fig, out / "initialisation.png")
    return "initialisation.png"


def symmetry(result: dict, out: Path) -> str:
    acts = sorted({t["activation"] for t in result["traces"]})
    fig, axes = plt.subplots(1, len(acts), figsize=(8 * len(acts), 4.5), squeeze=False, layout="constrained")
    for ax, act in zip(axes[0], acts):
        for dtype, color in DTYPES.items():
            mine = [t for t in result["traces"] if t["activation"] == act and t["dtype"] == dtype]
            for i, t in enumerate(mine):
                steps = [p["step"] + 1 for p in t["trace"]]
                rel = [max(p["max_unit_difference_rel"], ZERO_DRAWN_AT) for p in t["trace"]]
                ax.plot(steps, rel, "-", lw=1, alpha=0.7, color=color, label=f"{dtype} ({len(mine)} seeds)" * (i == 0))
            if mine:
                tol = mine[0]["rtol"]
                ax.axhline(tol, color=color, ls=":", lw=1.2)
                ax.annotate(f"sqrt(eps) of {dtype}", (1, tol), xytext=(2, 2), textcoords="offset points", fontsize=7)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(ZERO_DRAWN_AT / 3, 1)
        ax.set(xlabel="training step + 1", ylabel="max |unit_i - unit_j| / max |entry|")
        ax.set_title(f"{act} from zeros: how far apart the hidden units are (exactly 0 drawn at {ZERO_DRAWN_AT:g})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="center right")
    H = result["training"]["hidden_dim"]
    fig.suptitle(f"{result['corpus_short']}: the {H} hidden units of a zero start, float32 and float64", fontsize=10)
    plots.save(fig, out / "symmetry.png")
    return "symmetry.png"
