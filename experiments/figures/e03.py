"""E03's plot: speed-up of one matmul over a loop of W x_i, and µs per vector against N."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np

from jaxbackprop import plots

GROUPS = {"numpy": "numpy, BLAS on every usable core", "numpy_1thread": "numpy, 1 BLAS thread"}
GROUPS["jax"] = "JAX (jit): loop of calls / one call"
GROUPS["jax_gpu"] = "JAX (jit) on the GPU"  # with --gpu


def draw(result: dict, out: Path) -> list:
    rows = result["rows"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    x = np.arange(len(rows))
    groups = [(k, label) for k, label in GROUPS.items() if all(k in r["speedup"] for r in rows)]
    width = 0.8 / len(groups)
    for i, (k, label) in enumerate(groups):
        med = np.array([r["speedup"][k] for r in rows])
        q = np.array([r["speedup_quartiles"][k] for r in rows]).T
        err = np.maximum([med - q[0], q[1] - med], 0)  # the quartiles of the per-round speed-ups
        ax1.bar(x - 0.4 + width * (i + 0.5), med, width, yerr=err, capsize=2, label=label)
    ax1.axhline(1, color="k", lw=0.8)
    ax1.axhline(10, color="k", ls=":", lw=1, label="10× (an order of magnitude)")
    ax1.set_yscale("log")
    ax1.set_xticks(x, [f"{r['shape'].split(':')[1].strip()}\nN={r['N']}" for r in rows], fontsize=7)
    ax1.set(ylabel="loop time / matmul time", title="speed-up of one matmul over a loop (bars: quartiles)")
    sweep = max({r["shape"] for r in rows}, key=lambda name: sum(r["shape"] == name for r in rows))
    sel = [r for r in rows if r["shape"] == sweep]
    for k in sel[0]["us_per_vector"]:
        style = "o--" if "loop" in k else "o-"
        ax2.loglog([r["N"] for r in sel], [r["us_per_vector"][k] for r in sel], style, label=k.replace("_", " "))
    ax2.set(xlabel="N window vectors", ylabel="µs per vector (median)", title=sweep)
    ax2.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax2.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax1.legend(fontsize=7)
    ax2.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3, which="both")
    plots.save(fig, out / "vectorisation.png")
    return ["vectorisation.png"]
