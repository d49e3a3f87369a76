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
    return ["difference_error.png", "cost.png", *_scaling(result, out)]


def _scaling(result: dict, out: Path) -> list:
    """Forward and backprop time as H, B, d grow (bars: quartiles of the repeats), and their ratio."""
    points = result.get("scaling") or []
    axes_names = list(dict.fromkeys(p["axis"] for p in points))
    if not points:
        return []
    fig, axes = plt.subplots(1, len(axes_names) + 1, figsize=(4.2 * (len(axes_names) + 1), 3.8))
    for ax, axis in zip(axes, axes_names):
        mine = [p for p in points if p["axis"] == axis]
        xs = [p[axis] for p in mine]
        for key, label in (("forward_loop", "forward"), ("backprop_rows_loop", "backprop (dJ/dE as rows)")):
            med = np.array([p["us"][key] for p in mine])
            q = np.array([p["quartiles_us"][key] for p in mine]).T
            ax.errorbar(xs, med, yerr=np.maximum([med - q[0], q[1] - med], 0), fmt="o-", capsize=3, label=label)
        ax.set(xscale="log", yscale="log", xlabel=axis, ylabel="µs per pass (median)", title=f"growing {axis} alone")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    ax = axes[-1]
    for axis, marker in zip(axes_names, "osd"):
        mine = [p for p in points if p["axis"] == axis]
        ax.plot([p["factor"] for p in mine], [p["backprop_rows/forward"] for p in mine], marker + "-", label=axis)
    ax.axhline(result["config"]["ratio_bar"], color="k", ls=":", lw=1, label="the bar")
    ax.set(xscale="log", xlabel="size / base size", ylabel="backprop / forward", title="backprop in forward passes")
    ax.set_ylim(0, result["config"]["ratio_bar"] * 1.2)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    plots.save(fig, out / "scaling.png")
    return ["scaling.png"]
