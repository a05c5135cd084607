"""Evaluation plots (matplotlib, Agg): curves per epoch, confusion matrix, ROC, PR,
reliability diagram, image grids.  Each function writes one PNG and returns its path."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

from pixsort.classify.metrics import reliability_table  # noqa: E402


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_history(history: list[dict], path: Path) -> Path | None:
    """Train/validation loss and validation accuracy / ROC-AUC per epoch."""
    if not history:
        return None
    ep = [h["epoch"] for h in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    a1.plot(ep, [h["train_loss"] for h in history], "o-", label="train loss")
    a1.plot(ep, [h["val_loss"] for h in history], "o-", label="validation loss")
    a1.set_xlabel("epoch"), a1.set_ylabel("loss"), a1.legend(), a1.grid(alpha=0.3)
    a2.plot(ep, [h["val_accuracy"] for h in history], "o-", label="validation accuracy (t=0.5)")
    if all(h.get("val_roc_auc") is not None for h in history):
        a2.plot(ep, [h["val_roc_auc"] for h in history], "o-", label="validation ROC-AUC")
    a2.set_xlabel("epoch"), a2.set_ylim(None, 1.005), a2.legend(), a2.grid(alpha=0.3)
    for ax in (a1, a2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _save(fig, path)


def plot_confusion(cm, class_names: list[str], path: Path, title: str = "Confusion matrix") -> Path:
    cm = np.asarray(cm)
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(1.2 * k + 2.6, 1.1 * k + 2))
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{cm[i, j]}\n{norm[i, j]:.0%}", ha="center", va="center",
                    color="white" if norm[i, j] > 0.6 else "black", fontsize=9)
    ax.set_xticks(range(k), class_names, rotation=30, ha="right"), ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted"), ax.set_ylabel("true"), ax.set_title(title)
    return _save(fig, path)


def plot_roc(y_true, proba, class_names: list[str], path: Path, threshold: float | None = None) -> Path | None:
    """ROC curve(s): the positive class for two classes (with the operating point),
    one-vs-rest per class otherwise."""
    y = np.asarray(y_true)
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    drawn = False
    for c in ([1] if len(class_names) == 2 else range(len(class_names))):
        if len(np.unique(y == c)) < 2:
            continue
        fpr, tpr, thr = roc_curve(y == c, proba[:, c])
        ax.plot(fpr, tpr, label=class_names[c])
        drawn = True
        if threshold is not None and len(class_names) == 2:
            pred = proba[:, 1] >= threshold
            ax.plot([pred[y == 0].mean()], [pred[y == 1].mean()], "ko", label=f"threshold {threshold:.3f}")
    if not drawn:
        plt.close(fig)
        return None
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_xlabel("1 - specificity (false positive rate)"), ax.set_ylabel("sensitivity (true positive rate)")
    ax.set_title("ROC"), ax.legend(fontsize=8), ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_pr(y_true, proba, class_names: list[str], path: Path) -> Path | None:
    y = np.asarray(y_true)
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    drawn = False
    for c in ([1] if len(class_names) == 2 else range(len(class_names))):
        if len(np.unique(y == c)) < 2:
            continue
        prec, rec, _ = precision_recall_curve(y == c, proba[:, c])
        ax.plot(rec, prec, label=class_names[c])
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("recall"), ax.set_ylabel("precision"), ax.set_title("Precision-recall")
    ax.legend(fontsize=8), ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_reliability(y_true, proba, path: Path, n_bins: int = 10) -> Path:
    """Reliability diagram of the top-label confidence, with the bin counts."""
    t = reliability_table(y_true, proba, n_bins)
    centres = (t["bin_lower"] + t["bin_upper"]) / 2
    filled = t["count"] > 0
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(4.6, 5.2), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    a1.bar(centres[filled], t["accuracy"][filled], width=1 / n_bins, edgecolor="k", alpha=0.7, label="accuracy")
    a1.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    a1.set_ylabel("accuracy"), a1.set_title("Reliability"), a1.legend(fontsize=8)
    a2.bar(centres, t["count"], width=1 / n_bins, edgecolor="k", color="grey")
    a2.set_xlabel("confidence of the predicted class"), a2.set_ylabel("images")
    return _save(fig, path)


def image_grid(images: np.ndarray, titles: list[str], path: Path, cols: int = 6) -> Path | None:
    """A grid of uint8 images ``(n, H, W, C)`` with a title each."""
    n = len(images)
    if n == 0:
        return None
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.1, rows * 2.35), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, title in zip(axes.ravel(), images, titles):
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None)
        ax.set_title(title, fontsize=7)
    return _save(fig, path)
