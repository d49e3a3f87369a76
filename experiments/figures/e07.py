"""E07's plots: training loss, dev F1 and both against the rate (table 1); the schedules (table 2)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from jaxbackprop import plots


def draw(result: dict, out: Path) -> list:
    return [rates(result, out), schedules(result, out)]


def rates(result: dict, out: Path) -> str:
    rows = result["rates"]
    fig, (ax_loss, ax_f1, ax_lr) = plt.subplots(1, 3, figsize=(16, 4.3))
    for r in rows:
        c = r["curve"]
        label = f"lr {r['learning_rate']:g}" + (f" (diverged, epoch {r['diverged_epoch']})" if r["diverged"] else "")
        (line,) = ax_loss.plot([e["epoch"] for e in c], [e["train_loss"] for e in c], "o-", ms=3, label=label)
        ax_f1.plot([e["epoch"] for e in c], [e["dev_f1"] for e in c], "o-", ms=3, color=line.get_color(), label=label)
        if r["diverged"]:
            ax_loss.axvline(r["diverged_epoch"], color=line.get_color(), ls=":", lw=1)
    ax_loss.set(
        xlabel="epoch", ylabel="mean training loss of the epoch", yscale="log", title="constant rate: training loss"
    )
    ax_f1.set(xlabel="epoch", ylabel="entity F1", title="dev entity F1")
    ok = [r for r in rows if not r["diverged"]]
    lrs = [r["learning_rate"] for r in ok]
    ax_lr.plot(lrs, [r["best_dev_f1"] for r in ok], "o-", label="best dev F1")
    ax_lr.plot(lrs, [r["final_dev_f1"] for r in ok], "s--", label="final dev F1")
    dead = [r["learning_rate"] for r in rows if r["diverged"]]
    ax_lr.plot(dead, [0] * len(dead), "x", color="tab:red", ms=12, mew=2, label="diverged")
    ax_tl = ax_lr.twinx()
    ax_tl.plot(lrs, [r["final_train_loss"] for r in ok], "^:", color="0.4", label="final train loss")
    ax_tl.set(yscale="log", ylabel="final training loss")
    ax_lr.set(
        xscale="log", xlabel="learning rate", ylabel="entity F1", title="dev F1 and training loss", ylim=(-0.03, 1.03)
    )
    ax_lr.legend(loc="lower left", fontsize=8)
    ax_tl.legend(loc="lower right", fontsize=8)
    for ax in (ax_loss, ax_f1, ax_lr):
        ax.grid(alpha=0.3)
    ax_loss.legend(fontsize=8)
    plots.save(fig, out / "learning_rates.png")
    return "learning_rates.png"


def schedules(result: dict, out: Path) -> str:
    fig, (ax_s, ax_loss, ax_f1) = plt.subplots(1, 3, figsize=(16, 4.3))
    high, n = result["checks"]["high_rate"], len(result["config"]["seeds"])
    for s in result["schedules"]:
        steps = np.arange(len(s["lr_per_step"])) * s["lr_step_stride"] / result["steps_per_epoch"]
        marker, ls = ("o", "-") if s["learning_rate"] == high else ("s", "--")
        label = f"{s['schedule']}, lr {s['learning_rate']:g}"
        (line,) = ax_s.plot(steps, s["lr_per_step"], ls=ls, label=label)
        c = s["mean_curve"]
        for ax, key in ((ax_loss, "train_loss"), (ax_f1, "dev_f1")):
            ax.plot(
                [e["epoch"] for e in c],
                [e[key] for e in c],
                marker=marker,
                ls=ls,
                ms=3,
                color=line.get_color(),
                label=label,
            )
    seeds = f"mean of {n} seed{'s' * (n > 1)}"
    ax_s.set(xlabel="epoch", ylabel="learning rate", title=f"schedules (solid: the high rate {high:g})")
    ax_loss.set(
        xlabel="epoch", ylabel="mean training loss of the epoch", yscale="log", title=f"training loss ({seeds})"
    )
    ax_f1.set(xlabel="epoch", ylabel="entity F1", title=f"dev entity F1 ({seeds})")
    for ax in (ax_s, ax_loss, ax_f1):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    plots.save(fig, out / "schedules.png")
    return "schedules.png"
