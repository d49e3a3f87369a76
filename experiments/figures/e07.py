"""E07's plots: the rate table (seeds as dots, mean and 95% interval per rate); the schedules, and each
arm minus constant paired by seed at the tuned rate and at the high rate."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from jaxbackprop import plots

STAGES = {"tuned": "tuned rate", "high": "high rate (secondary: warm-up)"}


def draw(result: dict, out: Path) -> list:
    return [rates(result, out), schedules(result, out)]


def _seeds_and_interval(ax, x, values, iv, color, jitter=0.08):
    """Each seed as a dot (slightly spread), the mean as a diamond with its 95% interval."""
    spread = np.linspace(-jitter, jitter, len(values)) if len(values) > 1 else [0.0]
    ax.plot(np.asarray(x) * (1 + np.asarray(spread)), values, "o", ms=4, alpha=0.5, color=color)
    err = None if iv["half_width"] is None else [[iv["half_width"]], [iv["half_width"]]]
    ax.errorbar([x * 1.25], [iv["mean"]], yerr=err, fmt="D", ms=6, capsize=4, color=color, zorder=3)


def rates(result: dict, out: Path) -> str:
    fig, (ax_f1, ax_loss) = plt.subplots(1, 2, figsize=(13, 4.4), layout="constrained")
    tuned, n = result["judgement"]["tuned_rate"], len(result["config"]["selection_seeds"])
    for r in result["rates"]:
        lr = r["learning_rate"]
        color = "tab:green" if lr == tuned else "tab:red" if r["failed"] == n and lr > tuned else "tab:blue"
        _seeds_and_interval(ax_f1, lr, r["final_dev_f1"], r["f1"], color)
        if r["diverged"]:
            ax_f1.annotate(f"{r['diverged']} diverged", (lr, 0.02), ha="center", fontsize=7, color="tab:red")
        losses = [x for x in r["final_train_loss"] if x is not None]
        if losses:
            _seeds_and_interval(ax_loss, lr, losses, r["train_loss"], color)
    ax_f1.set(
        xscale="log",
        xlabel="learning rate (constant)",
        ylabel="final dev entity F1 (diverged seed: 0)",
        title=f"rate table: {n} seeds (dots), mean and 95% interval; green: tuned",
    )
    ax_loss.set(
        xscale="log",
        yscale="log",
        xlabel="learning rate (constant)",
        ylabel="final-epoch mean training loss",
        title="training loss (finite runs only)",
    )
    for ax in (ax_f1, ax_loss):
        ax.grid(alpha=0.3)
    plots.save(fig, out / "learning_rates.png")
    return "learning_rates.png"


def schedules(result: dict, out: Path) -> str:
    stages = [s for s in STAGES if any(c["stage"] == s for c in result["comparisons"])]
    fig, axes = plt.subplots(
        1, 1 + len(stages), figsize=(6.5 * (1 + len(stages)), 5), squeeze=False, layout="constrained"
    )
    ax_lr, *ax_diffs = axes[0]
    for arm in (a for a in result["arms"] if a["stage"] == "tuned"):
        x = np.arange(len(arm["lr_per_step"])) * arm["lr_step_stride"] / result["steps_per_epoch"]
        ax_lr.plot(x, arm["lr_per_step"], label=arm["schedule"])
    ax_lr.set(
        xlabel="epoch",
        ylabel="learning rate",
        title=f"schedules at the tuned rate {result['judgement']['tuned_rate']:g}",
    )
    ax_lr.legend(fontsize=8)
    for ax, stage in zip(ax_diffs, stages):
        mine = [c for c in result["comparisons"] if c["stage"] == stage]
        for i, c in enumerate(mine):
            color = {"above": "tab:green", "below": "tab:red"}.get(c["side"], "tab:gray")
            spread = np.linspace(-0.12, 0.12, len(c["differences"])) if len(c["differences"]) > 1 else [0.0]
            ax.plot(i + np.asarray(spread), c["differences"], "o", ms=4, alpha=0.5, color=color)
            err = None if c["half_width"] is None else [[c["half_width"]], [c["half_width"]]]
            ax.errorbar([i + 0.3], [c["mean"]], yerr=err, fmt="D", ms=6, capsize=4, color=color, zorder=3)
        ax.axhline(result["config"]["bar"], color="k", lw=1, ls="--", label=f"bar {result['config']['bar']:g}")
        ticks = [f"{c['a']} - {c['b']}".replace("warmup_", "warm-up ") for c in mine]
        ax.set_xticks(range(len(mine)), ticks, fontsize=7, rotation=30, ha="right")
        rate = next(a["learning_rate"] for a in result["arms"] if a["stage"] == stage)
        ax.set(ylabel="final dev F1 difference, paired by seed", title=f"{STAGES[stage]} {rate:g}: A - B")
        ax.legend(fontsize=8)
    for ax in axes[0]:
        ax.grid(alpha=0.3)
    fig.suptitle(f"schedules ({result['corpus_short']}): seeds (dots), mean and 95% interval; green: above the bar")
    plots.save(fig, out / "schedules.png")
    return "schedules.png"
