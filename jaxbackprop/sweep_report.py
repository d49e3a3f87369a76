"""A sweep's results on disk: results.csv/.json, curves.json, config.json, and the plots drawn from them."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import numpy as np

from jaxbackprop import files
from jaxbackprop.provenance import environment, portable_argv
from jaxbackprop.rundir import SWEEP_FILES, RunDirError, refuse_other_kind

RESULT_FILES = SWEEP_FILES


def check_writable(out_dir: Path, overwrite: bool) -> None:
    """Refuse an ``out_dir`` that is a file or holds a training run, or holds a sweep's results
    when ``overwrite`` is not given."""
    if out_dir.exists() and not out_dir.is_dir():
        raise RunDirError(f"{out_dir}: exists and is not a directory; choose another --out")
    refuse_other_kind(out_dir, "a sweep")
    found = [name for name in RESULT_FILES if (out_dir / name).exists()]
    if found and not overwrite:
        raise RunDirError(
            f"{out_dir}: already holds a sweep's results ({', '.join(found)}); use --overwrite to replace them, "
            f"or another --out"
        )


def remove_temporaries(out_dir: Path) -> None:
    """Delete what a killed sweep left half-written (only :func:`jaxbackprop.files.atomic_path`'s temporaries)."""
    for name in RESULT_FILES:
        files.remove_temporaries(out_dir / name)


def summary_row(row: dict, curve: list, diverged_epoch, group: int, members: int, seconds: float) -> dict:
    """One configuration's line of results.json: its overrides, its best and last epoch, its group."""
    best = max(curve, key=lambda r: r["dev_f1"]) if curve and diverged_epoch is None else None
    last = curve[-1] if curve and diverged_epoch is None else {}
    return {
        **row,
        "best_dev_f1": best and best["dev_f1"],
        "best_epoch": best and best["epoch"],
        "final_train_loss": last.get("train_loss"),
        "final_dev_loss": last.get("dev_loss"),
        "diverged": diverged_epoch is not None,
        "diverged_epoch": diverged_epoch,
        "group": group,
        "members": members,
        "group_seconds": seconds,
    }


def write_results(out_dir: Path, table, configs, rows, curves, run_info: dict) -> None:
    """Write every file of :data:`RESULT_FILES` into ``out_dir``.

    Args:
      table: the sweep's rows of overrides; configs: their TrainConfigs.
      rows: one :func:`summary_row` per configuration; curves: each one's per-epoch metrics.
      run_info: what else config.json records (the base config, epochs, chunk, the plan).
    """
    columns = list(dict.fromkeys(k for r in rows for k in r))
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if r.get(k) is None else r[k]) for k in columns} for r in rows)
    files.write_text(out_dir / "results.csv", text.getvalue())
    files.write_json(out_dir / "results.json", rows)
    files.write_json(out_dir / "curves.json", [{"config": row, "epochs": c} for row, c in zip(table, curves)])
    record = {"table": table, **run_info, "environment": environment(), "command": portable_argv(sys.argv)}
    files.write_json(out_dir / "config.json", record)
    plot_curves(table, curves, out_dir / "curves.png")
    several_heads = len({c.model.head for c in configs}) > 1
    names = [f"{c.optimizer}, {c.model.head}" if several_heads else c.optimizer for c in configs]
    plot_heatmap(names, [c.learning_rate for c in configs], rows, out_dir / "heatmap.png")


def _label(row: dict) -> str:
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()) or "base"


def plot_curves(table, curves, path) -> None:
    """Train loss and dev F1 per epoch, one line per configuration (diverged ones stop early)."""
    from jaxbackprop import plots

    fig, (ax_loss, ax_f1) = plots.plt.subplots(1, 2, figsize=(12, 4))
    for row, curve in zip(table, curves):
        epochs = [r["epoch"] for r in curve]
        (line,) = ax_loss.plot(epochs, [r["train_loss"] for r in curve], "o-", ms=3, label=_label(row))
        ax_f1.plot(epochs, [r["dev_f1"] for r in curve], "o-", ms=3, color=line.get_color())
    ax_loss.set(xlabel="epoch", ylabel="train loss", title="training loss", yscale="log")
    ax_f1.set(xlabel="epoch", ylabel="entity F1", title="dev entity F1")
    for ax in (ax_loss, ax_f1):
        ax.grid(alpha=0.3)
    handles, labels = ax_loss.get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, ncol=1 + len(table) // 25)
    plots.save(fig, path)


def plot_heatmap(optimizers, learning_rates, rows, path) -> None:
    """Best dev F1 per optimizer (its heatmap row name) x learning rate (the best over any other axis);
    x marks divergence."""
    from jaxbackprop import plots

    opts, rates = list(dict.fromkeys(optimizers)), sorted(set(learning_rates))
    grid, dead = np.full((len(opts), len(rates)), np.nan), np.zeros((len(opts), len(rates)), bool)
    for o, lr, r in zip(optimizers, learning_rates, rows):
        i, j = opts.index(o), rates.index(lr)
        if r["diverged"]:
            dead[i, j] = True
        else:
            grid[i, j] = np.fmax(grid[i, j], r["best_dev_f1"])
    fig, ax = plots.plt.subplots(figsize=(1.3 * len(rates) + 2, 0.6 * len(opts) + 1.5))
    image = ax.imshow(np.ma.masked_invalid(grid), vmin=0, vmax=1, cmap="viridis", aspect="auto")
    for i in range(len(opts)):
        for j in range(len(rates)):
            value = grid[i, j]
            text = f"{value:.3f}" if np.isfinite(value) else ("diverged" if dead[i, j] else "")
            if dead[i, j] and np.isfinite(value):
                text += " (x)"  # another configuration in this cell diverged
            color = "white" if not np.isfinite(value) or value < 0.5 else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color=color)
    ax.set(
        xticks=range(len(rates)),
        xticklabels=[f"{r:g}" for r in rates],
        yticks=range(len(opts)),
        yticklabels=opts,
        xlabel="learning rate",
        title="best dev F1 (x: a configuration diverged)",
    )
    ax.set_facecolor("0.3")
    fig.colorbar(image, ax=ax, label="dev entity F1")
    plots.save(fig, path)
