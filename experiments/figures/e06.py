"""E06's plot: training and dev cross-entropy per epoch (mean and 95% band over the seeds, one per lambda),
and each lambda minus lambda = 0 paired by seed (seeds as dots, mean and 95% interval)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import stats  # experiments/: on sys.path, as the runner that imports this put it there

from jaxbackprop import plots

PAIRED = {
    "final_dev_loss": "final dev loss",
    "dev_rise_rel": "dev loss rise (relative)",
    "final_gap": "dev - train gap",
}


def _band(ax, runs: list, key: str, color, label: str, log: bool = False) -> None:
    """The mean of ``key`` per epoch over the runs and its 95% interval (Student's t) as a band;
    with ``log``, of its logarithm (the geometric mean: a loss near 0 keeps its band above 0)."""
    n = min(len(r["curve"]) for r in runs)
    f, inverse = (np.log, np.exp) if log else (lambda x: x, lambda x: x)
    ivs = [stats.interval([f(r["curve"][i][key]) for r in runs]) for i in range(n)]
    mean = np.array([iv["mean"] for iv in ivs])
    half = np.array([iv["half_width"] or 0.0 for iv in ivs])
    epochs = np.arange(1, n + 1)
    ax.plot(epochs, inverse(mean), "-", color=color, label=label)
    ax.fill_between(epochs, inverse(mean - half), inverse(mean + half), color=color, alpha=0.2, lw=0)


def draw(result: dict, out: Path) -> list:
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.6))
    ax_train, ax_dev, ax_diff = axes
    lambdas = result["config"]["lambdas"]
    colors = plt.cm.viridis(np.linspace(0, 0.85, len(lambdas)))
    for l2, color in zip(lambdas, colors):
        runs = [r for r in result["runs"] if r["l2"] == l2]
        _band(ax_train, runs, "train_loss", color, f"lambda = {l2:g}", log=True)
        _band(ax_dev, runs, "dev_loss", color, f"lambda = {l2:g}")
    n = len(result["seeds"])
    ax_train.set(
        xlabel="epoch",
        ylabel="cross-entropy (no penalty)",
        yscale="log",
        title="training loss (whole subset): geometric mean, 95% band",
    )
    ax_dev.set(xlabel="epoch", ylabel="cross-entropy (no penalty)", title=f"dev loss: mean and 95% band over {n} seeds")
    width = 0.8 / len(PAIRED)
    for j, (key, label) in enumerate(PAIRED.items()):
        for i, row in enumerate(result["aggregate"]["paired"]):
            d, x = row[key], i + (j - (len(PAIRED) - 1) / 2) * width
            color = f"C{j}"
            ax_diff.plot(
                np.full(len(d["differences"]), x - width / 4), d["differences"], "o", ms=3, alpha=0.5, color=color
            )
            err = None if d["half_width"] is None else [[d["half_width"]], [d["half_width"]]]
            ax_diff.errorbar(
                [x + width / 4],
                [d["mean"]],
                yerr=err,
                fmt="D",
                ms=5,
                capsize=3,
                color=color,
                label=label if i == 0 else None,
            )
    ax_diff.axhline(0, color="k", lw=1)
    ax_diff.set_xticks(range(len(lambdas) - 1), [f"lambda = {l2:g}\nminus 0" for l2 in lambdas[1:]])
    ax_diff.set(ylabel="difference, paired by seed", title="lambda - 0: seeds (dots), mean and 95% interval")
    for ax in axes:
        ax.grid(alpha=0.3)
    ax_train.legend(fontsize=8)
    ax_dev.legend(fontsize=8)
    ax_diff.legend(fontsize=8, loc="upper left")
    s, t = result["sizes"], result["training"]
    model = f"H = {t['hidden_dim']}, {t['optimizer']} {t['learning_rate']:g}"
    fig.suptitle(f"{s['train_sentences']} training sentences ({s['train_windows']} windows), {model}, {n} seeds")
    plots.save(fig, out / "overfitting_l2.png")
    return ["overfitting_l2.png"]
