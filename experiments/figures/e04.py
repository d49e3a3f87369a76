"""E04's plots: learning curves per activation; first-layer gradients and unit activity at init and trained."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from jaxbackprop import plots

COLORS = {"sigmoid": "tab:red", "tanh": "tab:blue", "hardtanh": "tab:cyan", "relu": "tab:green"}
COLORS |= {"leaky_relu": "tab:olive", "prelu": "tab:purple"}
PANELS = (
    ("grad_W", "||dJ/dW||  (first layer)", True),
    ("grad_x_per_window", "mean ||d loss_b / d x_b||  (rows of dJ/dE)", True),
    ("mean_fprime", "mean f'(z) on the batch", False),
    ("dead_fraction", "dead units (f' = 0 on every dev window)", False),
)


def draw(result: dict, out: Path) -> list:
    return [curves(result, out), gradients(result, out)]


def curves(result: dict, out: Path) -> str:
    fig, (ax_f1, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
    for r in result["runs"]:
        epochs, color = [e["epoch"] for e in r["history"]], COLORS.get(r["activation"])
        ax_f1.plot(epochs, [e["dev_f1"] for e in r["history"]], "o-", ms=3, color=color, label=r["activation"])
        ax_loss.plot(epochs, [e["train_loss"] for e in r["history"]], "o-", ms=3, color=color, label=r["activation"])
    ax_f1.set(xlabel="epoch", ylabel="dev entity F1", title="dev F1 per epoch", ylim=(-0.02, 1.0))
    ax_loss.set(xlabel="epoch", ylabel="mean training cross-entropy", title="training loss per epoch")
    for ax in (ax_f1, ax_loss):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    t = result["training"]
    title = f"SGD lr {t['learning_rate']}, H={t['hidden_dim']}, batch {t['batch_size']}, same seed"
    fig.suptitle(f"{result['corpus_short']}: {title}", fontsize=10)
    plots.save(fig, out / "learning_curves.png")
    return "learning_curves.png"


def gradients(result: dict, out: Path) -> str:
    runs = result["runs"]
    names = [r["activation"] for r in runs]
    x = np.arange(len(names))
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    for ax, (key, title, log) in zip(axes.ravel(), PANELS):
        init = [r["at_init"][key] for r in runs]
        done = [np.nan if r["trained"][key] is None else r["trained"][key] for r in runs]
        ax.bar(x - 0.2, init, 0.4, label="at initialisation", color="0.65")
        ax.bar(x + 0.2, done, 0.4, label="after training (best dev epoch)", color=[COLORS.get(n) for n in names])
        ax.set_xticks(x, names, fontsize=8)
        ax.set_title(title, fontsize=10)
        if key == "dead_fraction":  # often all zero: write the numbers so an empty panel still reads
            ax.set_ylim(0, max(0.05, 1.2 * np.nanmax([*init, *done])))
            for xi, v in zip(x + 0.2, done):
                ax.annotate(f"{100 * v:.1f}%", (xi, v), ha="center", va="bottom", fontsize=7)
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3, axis="y")
    axes[0, 0].legend(fontsize=8)
    n = result["config"]["probe_windows"]
    fig.suptitle(
        f"{result['corpus_short']}: gradient reaching the first layer on a fixed batch of {n} training windows"
    )
    plots.save(fig, out / "first_layer_gradients.png")
    return "first_layer_gradients.png"
