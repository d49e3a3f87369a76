"""E10's plot: how far each row of E moved in one SGD step; a repeated word's change against its two slots'."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from jaxbackprop import plots


def draw(result: dict, out: Path) -> list:
    c, r = result["changed"][0], result["repeated"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11.5, 4))
    norms, ids = np.asarray(c["row_change_norm"]), np.asarray(c["batch_ids"], int)
    rest = np.setdiff1d(np.arange(len(norms)), ids)
    ax1.plot(rest, norms[rest], "|", color="0.6", ms=4, label=f"{len(rest)} rows not in the batch (all exactly 0)")
    ax1.plot(ids, norms[ids], "o", ms=3, color="tab:red", label=f"{len(ids)} rows in the batch")
    ax1.set(xlabel="row of E (word id)", ylabel="||E_new[r] - E[r]||", title=f"one SGD step, V = {c['V']}")
    ax1.legend(fontsize=8)
    twice, first, second = (np.asarray(r[k]) for k in ("change_twice", "change_first_slot", "change_second_slot"))
    lim = float(np.max(np.abs(twice))) * 1.1
    ax2.plot([-lim, lim], [-lim, lim], "k:", lw=1)
    ax2.plot(twice, first + second, "o", label="slot 1 + slot 2")
    ax2.plot(twice, first, "x", label="slot 1 alone")
    ax2.plot(twice, second, "+", label="slot 2 alone")
    ax2.set(xlabel="change of the word used twice (each of d coordinates)", ylabel="change with two distinct ids")
    ax2.set_title("a repeated word gets both updates")
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    plots.save(fig, out / "sparse_updates.png")
    return ["sparse_updates.png"]
