"""PNG plots of training: loss terms and accuracy per epoch, and the confusion matrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from art_edge.files import atomic_write


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(rows: list[dict], path):
    plt = _plt()
    epochs = [r["epoch"] for r in rows]
    terms = [k for k in rows[-1] if k.startswith(("L_", "mtc_", "sema_")) or k == "loss"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for k in terms:
        ax1.plot(epochs, [r.get(k, np.nan) for r in rows], label=k, lw=2 if k == "loss" else 1)
    ax1.set(xlabel="epoch", ylabel="training loss", yscale="log", title="loss terms")
    ax1.legend(fontsize=7)
    for k in ("val_top1", "val_mean_class_acc", "train_top1"):
        ax2.plot(epochs, [r.get(k, np.nan) for r in rows], marker="o", label=k)
    ax2.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1), title="accuracy")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(Path(path), lambda p: fig.savefig(p, format="png", dpi=100))
    plt.close(fig)


def plot_confusion(cm: np.ndarray, classes: list[str], path, title: str = "confusion (rows: true)"):
    plt = _plt()
    n = len(classes)
    fig, ax = plt.subplots(figsize=(max(4, 0.5 * n + 2), max(4, 0.5 * n + 1.5)))
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if n <= 30:
        ax.set_xticks(range(n), classes, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(n), classes, fontsize=7)
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(
                        j,
                        i,
                        int(cm[i, j]),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black",
                    )
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    atomic_write(Path(path), lambda p: fig.savefig(p, format="png", dpi=100))
    plt.close(fig)
