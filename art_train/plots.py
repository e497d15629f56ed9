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


def _plot_lines(ax, epochs, rows, keys, style):
    for k in keys:
        ax.plot(epochs, [r.get(k, np.nan) for r in rows], label=k, **style(k))
    ax.legend(fontsize=7)


def plot_curves(rows: list[dict], path):
    """Loss terms, accuracy, and (where measured) each loss part's gradient norm into the tower
    beside the pre-clip total and the share of clipped steps."""
    plt = _plt()
    epochs = [r["epoch"] for r in rows]
    terms = [k for k in rows[-1] if k.startswith(("L_", "mtc_", "sema_")) or k == "loss"]
    grads = [k for k in rows[-1] if k.startswith("grad_L_")]
    fig, axes = plt.subplots(1, 3 if grads else 2, figsize=(16 if grads else 11, 4))
    _plot_lines(axes[0], epochs, rows, terms, style=lambda k: {"lw": 2 if k == "loss" else 1})
    axes[0].set(xlabel="epoch", ylabel="training loss", yscale="log", title="loss terms")
    accuracy = ("val_top1", "val_mean_class_acc", "train_top1")
    _plot_lines(axes[1], epochs, rows, accuracy, style=lambda k: {"marker": "o"})
    axes[1].set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1), title="accuracy")
    if grads:
        _plot_lines(axes[2], epochs, rows, [*grads, "grad_norm_mean"], style=lambda k: {})
        clipped = [100 * r.get("clipped_fraction", 0.0) for r in rows]
        axes[2].set(
            xlabel="epoch",
            ylabel="gradient norm",
            yscale="log",
            title=f"gradients (clipped steps, last epoch: {clipped[-1]:.0f} %)",
        )
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
