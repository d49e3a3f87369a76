"""E05's plots: learning curves of every variant; the symmetry of the hidden units along training."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from jaxbackprop import plots

ZERO_DRAWN_AT = 1e-12  # exact zeros (tanh from zero) are drawn here, so a log axis shows them
PANELS = (
    ("distinct_units", "distinct hidden units"),
    ("max_unit_difference_rel", "max |unit_i - unit_j| / max |entry|"),
    ("h_std_across_units", "std of h across units (dev)"),
)


def style(run) -> tuple:
    if run["hidden_dim"] == 1:
        return "0.4", "--"
    return {"zeros": "tab:red", "normal": "tab:orange", "xavier": "tab:blue"}[run["init"]], ":" if run[
        "dropout"
    ] else "-"


def draw(result: dict, out: Path) -> list:
    return [curves(result, out), symmetry(result, out)]


def curves(result: dict, out: Path) -> str:
    acts = result["config"]["activations"]
    fig, axes = plt.subplots(len(acts), 2, figsize=(11, 3.8 * len(acts)), squeeze=False, layout="constrained")
    for (ax_f1, ax_loss), act in zip(axes, acts):
        for r in (r for r in result["runs"] if r["activation"] == act):
            color, ls = style(r)
            e = [h["epoch"] for h in r["history"]]
            ax_f1.plot(e, [h["dev_f1"] for h in r["history"]], "o", ls=ls, ms=3, color=color, label=r["label"])
            ax_loss.plot(e, [h["train_loss"] for h in r["history"]], "o", ls=ls, ms=3, color=color, label=r["label"])
        ax_f1.set(xlabel="epoch", ylabel="dev entity F1", title=f"{act}: dev F1 per epoch", ylim=(-0.02, 1.0))
        ax_loss.set(xlabel="epoch", ylabel="mean training cross-entropy", title=f"{act}: training loss per epoch")
        for ax in (ax_f1, ax_loss):
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    t = result["training"]
    run = f"{t['optimizer']} lr {t['learning_rate']}, H = {t['hidden_dim']}, batch {t['batch_size']}, same seed"
    fig.suptitle(f"{result['corpus_short']}: {run}", fontsize=10)
    plots.save(fig, out / "learning_curves.png")
    return "learning_curves.png"


def symmetry(result: dict, out: Path) -> str:
    acts, H, tol = result["config"]["activations"], result["training"]["hidden_dim"], result["same_unit_rtol"]
    fig, axes = plt.subplots(len(acts), 3, figsize=(14, 3.8 * len(acts)), squeeze=False, layout="constrained")
    for row, act in zip(axes, acts):
        for ax, (key, title) in zip(row, PANELS):
            for r in (r for r in result["runs"] if r["activation"] == act and r["hidden_dim"] > 1):
                color, ls = style(r)
                steps = np.asarray([p["step"] for p in r["trace"]], float)
                values = [p[key] if key == "distinct_units" else max(p[key], ZERO_DRAWN_AT) for p in r["trace"]]
                ax.plot(steps + 1, values, "o", ls=ls, ms=3, color=color, label=r["label"])
            ax.set_xscale("log")
            ax.set(xlabel="training step + 1", title=f"{act}: {title}")
            if key == "distinct_units":
                ax.set_ylim(0, H * 1.08)
            else:
                ax.set_yscale("log")
                ax.set_ylim(ZERO_DRAWN_AT / 3, 10)
                ax.set_ylabel(f"(exactly 0 drawn at {ZERO_DRAWN_AT:g})", fontsize=8)
            if key == "max_unit_difference_rel":
                ax.axhline(tol, color="k", ls=":", lw=1)
                ax.annotate("tolerance", (1, tol), xytext=(2, 2), textcoords="offset points", fontsize=7)
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=7)
    fig.suptitle(f"{result['corpus_short']}: symmetry of the {H} hidden units during training", fontsize=10)
    plots.save(fig, out / "symmetry.png")
    return "symmetry.png"
