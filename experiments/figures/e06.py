"""E06's plot: training and dev cross-entropy, dev F1 and ||W|| per epoch, one line per lambda."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from jaxbackprop import plots


def draw(result: dict, out: Path) -> list:
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5), gridspec_kw={"hspace": 0.3})
    (ax_train, ax_dev), (ax_f1, ax_w) = axes
    for run in result["runs"]:
        c, s = run["curve"], run["summary"]
        ep, label = [r["epoch"] for r in c], f"lambda = {run['l2']:g}"
        (line,) = ax_train.plot(ep, [r["train_loss"] for r in c], "o-", ms=3, label=label)
        color = line.get_color()
        ax_dev.plot(ep, [r["dev_loss"] for r in c], "o-", ms=3, color=color, label=label)
        ax_dev.plot([s["min_dev_epoch"]], [s["min_dev_loss"]], "*", ms=14, color=color, mec="k")
        ax_f1.plot(ep, [r["dev_f1"] for r in c], "o-", ms=3, color=color, label=label)
        ax_w.plot(ep, [r["w_norm"] for r in c], "o-", ms=3, color=color, label=label)
    ax_train.set(
        xlabel="epoch", ylabel="cross-entropy (no penalty)", yscale="log", title="training loss (whole subset)"
    )
    ax_dev.set(xlabel="epoch", ylabel="cross-entropy (no penalty)", title="dev loss (* = its minimum)")
    ax_f1.set(xlabel="epoch", ylabel="entity F1", title="dev entity F1")
    ax_w.set(xlabel="epoch", ylabel="||W|| (Frobenius)", title="size of the weights")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    s, t = result["sizes"], result["training"]
    model = f"H = {t['hidden_dim']}, {t['optimizer']} {t['learning_rate']:g}"
    fig.suptitle(f"{s['train_sentences']} training sentences ({s['train_windows']} windows), {model}")
    plots.save(fig, out / "overfitting_l2.png")
    return ["overfitting_l2.png"]
