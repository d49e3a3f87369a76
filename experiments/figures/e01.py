"""E01's plot: each input's gradient beside its wiggle estimates (f(v + h) - f(v)) / h."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from jaxbackprop import plots


def draw(result: dict, out: Path) -> list:
    fig, ax = plt.subplots(figsize=(6, 3.4))
    names, hs = list("xyz"), [r["h"] for r in result["wiggles"]["x"]]
    width = 0.8 / (len(hs) + 1)
    ax.bar([i - 0.4 + width / 2 for i in range(3)], result["grads"], width, label="backprop", color="black")
    for j, h in enumerate(hs):
        slopes = [result["wiggles"][k][j]["slope"] for k in names]
        ax.bar([i - 0.4 + width * (j + 1.5) for i in range(3)], slopes, width, label=f"wiggle h={h:g}", alpha=0.7)
    ax.text(2, 0.15, "0 for every h: max routes nothing to z", ha="center", fontsize=8)
    ax.set_xticks(range(3), [f"df/d{k}" for k in names])
    ax.set(ylabel="gradient", title="f = (x + y) max(y, z) at (1, 2, 0)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    plots.save(fig, out / "gradients.png")
    return ["gradients.png"]
