"""PNG plots made from the JSON results (never the other way round)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402

from jaxbackprop.files import atomic_path  # noqa: E402


def save(fig, path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)


def learning_curve(history, path, title: str = "") -> None:
    """Train loss, dev loss and dev F1 per epoch, from the rows of ``metrics.jsonl``."""
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_f1) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax_loss.plot(epochs, [r["train_loss"] for r in history], "o-", label="train loss")
    ax_loss.plot(epochs, [r["dev_loss"] for r in history], "s-", label="dev loss")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_loss.legend()
    ax_f1.plot(epochs, [r["dev_f1"] for r in history], "o-", color="tab:green")
    ax_f1.set(xlabel="epoch", ylabel="entity F1", title="dev entity F1")
    for ax in (ax_loss, ax_f1):
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    save(fig, path)
