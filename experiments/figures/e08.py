"""E08's plot: best dev F1 against the learning rate, one line per optimizer, with each one's good band."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from jaxbackprop import plots


def draw(result: dict, out: Path) -> list:
    band = result["config"]["band"]
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for opt, r in result["robustness"].items():
        rates = [float(k) for k in r["f1_by_rate"]]
        f1 = [np.nan if v is None else v for v in r["f1_by_rate"].values()]
        (line,) = ax.plot(rates, f1, "o-", ms=4, label=f"{opt} ({r['n_good']} good)", lw=2.2 if opt == "sgd" else 1.3)
        ax.plot(r["diverged_rates"], [0.0] * len(r["diverged_rates"]), "x", ms=8, color=line.get_color())
        if r["best_f1"] is not None:
            ax.plot(r["good_rates"], [r["best_f1"] - band] * len(r["good_rates"]), "_", ms=10, color=line.get_color())
    ax.set(xscale="log", xlabel="learning rate (constant)", ylabel="best dev entity F1")
    ax.set_title(f"F1 vs rate ({result['corpus_short']}); x: diverged, dashes: rates within {band:g} of the best")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    plots.save(fig, out / "f1_vs_rate.png")
    return ["f1_vs_rate.png", "sweep/heatmap.png"]
