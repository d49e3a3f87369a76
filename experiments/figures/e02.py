"""E02's plots: error against h for both differences; cost of one gradient against the parameter count."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from jaxbackprop import plots

EPS64 = float(np.finfo(np.float64).eps)


def draw(result: dict, out: Path) -> list:
    a, rows = result["accuracy"], result["cost"]
    hs = np.asarray(a["h"])
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, color in (("one_sided", "tab:blue"), ("two_sided", "tab:orange")):
        r = a[label]
        for curve in r["rel_error"]:
            ax.loglog(hs, curve, color=color, alpha=0.15, lw=0.8)
        text = f"{label.replace('_', '-')}: slope {r['truncation_slope']:.2f}, min at h={r['h_opt']:.1e}"
        ax.loglog(hs, r["median_rel_error"], "o-", ms=3, color=color, label=text)
    ax.loglog(hs, EPS64 / hs, "k:", lw=1, label="eps / h (round-off scale)")
    ax.set(xlabel="h", ylabel="relative error vs hand-derived gradient", ylim=(1e-13, 10))
    ax.set_title("finite differences on the window model (float64)")
    ax.invert_xaxis()
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    plots.save(fig, out / "difference_error.png")

    P = [r["P"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    passes = {"forward_loop": "forward pass", "backprop_loop": "backprop (dense dJ/dE)"}
    passes |= {"backprop_rows_loop": "backprop (dJ/dE as rows)", "numeric": "full numeric gradient (2P passes)"}
    for key, label in passes.items():
        ax1.loglog(P, [r["seconds"][key] for r in rows], "o-", label=label)
    ax1.loglog(P, [2 * r["P"] * r["seconds"]["forward_loop"] for r in rows], "k:", label="2P × forward pass")
    ax1.set(xlabel="parameters P", ylabel="seconds (median)", title="cost of one gradient")
    ratios = {"numeric/backprop_loop": "numeric / backprop", "backprop_loop/forward_loop": "backprop / forward"}
    ratios["backprop_rows_loop/forward_loop"] = "backprop (rows) / forward"
    for (key, label), style in zip(ratios.items(), ("o-", "s-", "^-")):
        ax2.loglog(P, [r["ratios"][key] for r in rows], style, label=label)
    ax2.set(xlabel="parameters P", ylabel="ratio", title="ratios")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
        ax.set_xticks(P, [str(p) for p in P], fontsize=8)
        ax.minorticks_off()
    plots.save(fig, out / "cost.png")
    return ["difference_error.png", "cost.png"]
