"""E09's plot: test F1 (all entities; entities with an unseen word) against the training-set size per arm,
seeds as dots and the 95% interval as bars; and the paired differences to fine-tuning with their intervals."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from jaxbackprop import plots

COLORS = {"finetune": "tab:red", "pretrained_frozen": "tab:blue", "frozen": "tab:gray"}
LABELS = {"finetune": "fine-tuned", "pretrained_frozen": "pretrained rows fixed", "frozen": "all rows fixed"}
PANELS = (
    ("test_f1", "test entity F1", "all test entities"),
    ("test_unseen_f1", "test entity F1", "test entities with a word unseen in training"),
)


def _offsets(n: int, width: float = 0.06) -> np.ndarray:
    """Horizontal offsets (in log10 units) that keep n arms at one size apart."""
    return (np.arange(n) - (n - 1) / 2) * width


def draw(result: dict, out: Path) -> list:
    sizes, arms, runs = result["config"]["sizes"], result["config"]["arms"], result["runs"]
    agg = result["aggregate"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.2))
    for ax, (key, ylabel, title) in zip(axes[:2], PANELS):
        for arm, dx in zip(arms, _offsets(len(arms))):
            xs, means, halves = [], [], []
            for size in sizes:
                x = size * 10**dx
                seeds = [r[key] for r in runs if r["size"] == size and r["arm"] == arm and r[key] is not None]
                ax.plot([x] * len(seeds), seeds, "o", ms=3, alpha=0.4, color=COLORS[arm])
                iv = agg[str(size)]["arms"][arm].get(key)
                if iv is not None:
                    xs.append(x)
                    means.append(iv["mean"])
                    halves.append(iv["half_width"] or 0.0)
            ax.errorbar(xs, means, yerr=halves, fmt="D-", ms=5, capsize=4, color=COLORS[arm], label=LABELS[arm])
        ax.set(xscale="log", xlabel="training sentences", ylabel=ylabel, title=title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    ax = axes[2]
    shown = [("pretrained_frozen", "test_f1", "-"), ("pretrained_frozen", "test_unseen_f1", "--")]
    shown += [("frozen", "test_f1", "-")]
    for (arm, key, style), dx in zip(shown, _offsets(len(shown))):
        pts = [(s, agg[str(s)]["differences"].get(f"{arm}-finetune:{key}")) for s in sizes]
        pts = [(s * 10**dx, d) for s, d in pts if d is not None]
        if pts:
            err = [d["half_width"] or 0.0 for _, d in pts]
            what = "all entities" if key == "test_f1" else "entities with an unseen word"
            ax.errorbar(
                [x for x, _ in pts],
                [d["mean"] for _, d in pts],
                yerr=err,
                fmt="o" + style,
                capsize=4,
                color=COLORS[arm],
                label=f"{LABELS[arm]} - fine-tuned, {what}",
            )
    ax.axhline(result["config"]["bar"], color="k", lw=0.8)
    ax.set(xscale="log", xlabel="training sentences", ylabel="paired test F1 difference")
    ax.set_title("paired difference to fine-tuning")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    ax.grid(alpha=0.3)
    seeds = len(result["seeds"])
    fig.suptitle(
        f"frozen vs fine-tuned word vectors ({result['corpus_short']}): {seeds} seeds (dots), mean and 95% interval"
    )
    plots.save(fig, out / "frozen_vs_finetuned.png")
    return ["frozen_vs_finetuned.png"]
