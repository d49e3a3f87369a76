"""E11's plot: each arm's dev and test F1 by seed with its 95% interval; F1 on entities with and without vectors."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from jaxbackprop import plots

LABELS = {"softmax_argmax": "softmax, argmax", "softmax_viterbi": "softmax, IOB2 Viterbi", "crf": "CRF, Viterbi"}
COLORS = {"softmax_argmax": "tab:gray", "softmax_viterbi": "tab:blue", "crf": "tab:red"}


def _interval_bar(ax, x, iv, color, label=None):
    """The mean as a marker, the 95% interval as an error bar (none with one seed)."""
    err = None if iv["half_width"] is None else [[iv["half_width"]], [iv["half_width"]]]
    ax.errorbar([x], [iv["mean"]], yerr=err, fmt="D", ms=7, capsize=5, color=color, label=label, zorder=3)


def draw(result: dict, out: Path) -> list:
    arms, runs = result["aggregate"]["arms"], result["runs"]
    names = [a for a in LABELS if a in arms]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
    for ax, split in zip(axes[:2], ("dev", "test")):
        for i, arm in enumerate(names):
            seeds = [r[f"{split}_f1"] for r in runs if r["arm"] == arm]
            jitter = np.linspace(-0.12, 0.12, len(seeds)) if len(seeds) > 1 else [0.0]
            ax.plot(i + np.asarray(jitter), seeds, "o", ms=4, alpha=0.5, color=COLORS[arm])
            _interval_bar(ax, i + 0.3, arms[arm][f"{split}_f1"], COLORS[arm])
        ax.set_xticks(range(len(names)), [LABELS[a] for a in names], fontsize=8)
        ax.set(ylabel=f"{split} entity F1", title=f"{split}: seeds (dots), mean and 95% interval")
        ax.grid(axis="y", alpha=0.3)
    ax = axes[2]
    for i, arm in enumerate(names):
        for j, kind in enumerate(("covered_f1", "uncovered_f1")):
            iv = arms[arm].get(f"test_{kind}")
            if iv is not None:  # None: no such entity (the synthetic corpus has a vector for every word)
                _interval_bar(ax, j + (i - 1) * 0.15, iv, COLORS[arm], LABELS[arm] if j == 0 else None)
    share = arms[names[0]]["test_uncovered_share"]["mean"]
    ax.set_xticks([0, 1], ["every word\nhas a vector", f"a word has none\n({share:.0%} of the entities)"], fontsize=8)
    ax.set(xlim=(-0.5, 1.5), ylabel="test entity F1", title="entities by pretrained-vector coverage")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"word-level vs sentence-level likelihood ({result['corpus_short']}, {len(result['seeds'])} seeds)")
    plots.save(fig, out / "sentence_likelihood.png")
    return ["sentence_likelihood.png"]
