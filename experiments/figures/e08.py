"""E08's plot: the tuning curves (mean dev F1 against the rate, failures marked, good bands drawn) and
the confirmation (each optimizer at its tuned and its default rate: seeds, means, 95% intervals)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from jaxbackprop import plots


def draw(result: dict, out: Path) -> list:
    tuning, confirmed, band = result["tuning"], result["confirmation"], result["config"]["band"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(15, 5.6), gridspec_kw={"width_ratios": [3, 2]})
    colors = {}
    for opt, t in tuning.items():
        curve = sorted((float(k), v) for k, v in t["f1_by_rate"].items())  # JSON keys come back sorted as text
        (line,) = ax1.plot(*zip(*curve), "o-", ms=3, lw=2.2 if opt == "sgd" else 1.2)
        colors[opt] = line.get_color()
        line.set_label(f"{opt} (band {t['width_decades']:.2g} dec.)")
        ax1.plot(t["diverged_rates"], [0.0] * len(t["diverged_rates"]), "x", ms=8, color=colors[opt])
        f1 = [t["f1_by_rate"][f"{lr:g}"] for lr in t["collapsed_rates"]]
        ax1.plot(t["collapsed_rates"], f1, "v", ms=7, mfc="none", color=colors[opt])
        ax1.plot(
            t["good_rates"], [t["tuned_f1"] - band] * len(t["good_rates"]), "-", lw=5, alpha=0.35, color=colors[opt]
        )
    ax1.set(xscale="log", xlabel="learning rate (constant)", ylabel="best-epoch dev F1, mean over tuning seeds")
    low = result["config"]["collapse_fraction"]
    ax1.set_title(f"tuning; x: NaN loss, v: F1 < {low:g} x best with a finite loss, bars: good band")
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3)
    for i, (opt, c) in enumerate(confirmed.items()):
        d = c["tuning_gain"]  # tuned - default, seed by seed; drawn as default - tuned: how much the default loses
        seeds = [-x for x in d["differences"]]
        ax2.plot(i + np.linspace(-0.08, 0.08, len(seeds)), seeds, "o", ms=3, alpha=0.5, color=colors[opt])
        err = None if d["half_width"] is None else [[d["half_width"]], [d["half_width"]]]
        ax2.errorbar([i + 0.25], [-d["mean"]], yerr=err, fmt="D", ms=6, capsize=4, color=colors[opt])
    ax2.axhline(0.0, color="k", lw=0.8)
    ax2.axhline(-band, color="k", lw=0.8, ls="--", label=f"-band ({band:g}): below it, the default is not good")
    names = [f"{o}\n{t['default_rate']:g} vs {t['tuned_rate']:.3g}" for o, t in tuning.items()]
    ax2.set_xticks(range(len(names)), names, fontsize=7, rotation=25)
    ax2.set_yscale("symlog", linthresh=0.01)  # linear within +-0.01, so both a 0.97 and a 0.002 loss show
    ax2.set_ylim(-1.5, 0.05)
    ax2.set(ylabel="dev F1 at the default rate - at the tuned rate")
    ax2.set_title("the default rate vs the tuned one, paired by fresh seed (95% interval)")
    ax2.grid(axis="y", alpha=0.3)
    ax2.legend(fontsize=7, loc="upper right")
    fig.suptitle(f"optimizers and learning rates ({result['corpus_short']})")
    plots.save(fig, out / "optimizers.png")
    return ["optimizers.png", "sweep/heatmap.png"]
