"""E09's plots: F1 and token accuracy (all, unseen) against the training-set size; how far vectors moved."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from jaxbackprop import plots

COLORS = {"frozen": "tab:blue", "finetune": "tab:red"}
PANELS = (("dev_f1", "dev entity F1"), ("acc_all", "token accuracy, all dev tokens"))
PANELS += (("acc_unseen", "token accuracy, unseen dev tokens"),)


def mean(agg, size, mode, key):
    stat = next(a[key] for a in agg if a["size"] == size and a["mode"] == mode)
    return np.nan if stat is None else stat["mean"]


def draw(result: dict, out: Path) -> list:
    agg, sizes = result["aggregate"], result["config"]["sizes"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, (key, title) in zip(axes, PANELS):
        for mode, color in COLORS.items():
            stats = [next(a[key] for a in agg if a["size"] == s and a["mode"] == mode) for s in sizes]
            xs, st = [s for s, x in zip(sizes, stats) if x], [x for x in stats if x]
            # clipped at 0: the mean of equal floats can land an ulp outside min..max
            err = np.maximum([[x["mean"] - x["min"] for x in st], [x["max"] - x["mean"] for x in st]], 0.0)
            ax.errorbar(xs, [x["mean"] for x in st], yerr=err, fmt="o-", capsize=3, color=color, label=mode)
        ax.set(xscale="log", xlabel="training sentences", title=title)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"frozen vs fine-tuned word vectors ({result['corpus_short']}); mean over seeds, bars: min..max")
    plots.save(fig, out / "frozen_vs_finetuned.png")

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot(sizes, [mean(agg, s, "finetune", "moved_seen_mean") for s in sizes], "o-", label="seen words")
    ax1.plot(sizes, [mean(agg, s, "finetune", "moved_unseen_mean") for s in sizes], "s-", label="unseen dev words")
    ax1.set(xscale="log", xlabel="training sentences", ylabel="mean ||E_final - E_pretrained||")
    ax1.set_title("how far fine-tuning moved the vectors")
    before = [mean(agg, s, "finetune", "neighbour_before") for s in sizes]
    ax2.plot(sizes, before, "o--", color="0.4", label="pretrained")
    after = [mean(agg, s, "finetune", "neighbour_after") for s in sizes]
    ax2.plot(sizes, after, "o-", color="tab:red", label="after fine-tuning")
    ax2.set(
        xscale="log", xlabel="training sentences", ylabel="mean distance", title="unseen word to its nearest seen word"
    )
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    plots.save(fig, out / "vector_movement.png")
    return ["frozen_vs_finetuned.png", "vector_movement.png"]
