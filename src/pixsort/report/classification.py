"""What an evaluation of a classifier leaves in a folder: ``metrics.json``,
``predictions.csv`` (one row per item, skipped ones with their reason), ``plots/``
(confusion matrix, ROC, PR, reliability, per-epoch curves, the learning-rate range
test, the top losses with their Grad-CAM) and ``report.html`` (each metric with its
bootstrap 95% interval; after training, every validation set side by side and a
warning where they disagree).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import precision_recall_curve, roc_curve

from pixsort.classify.evaluation import Evaluation
from pixsort.classify.metrics import reliability_table
from pixsort.report.figures import plain_text, pyplot, save_figure
from pixsort.report.files import write_csv, write_json
from pixsort.report.html import HtmlReport

_PLOTS = (
    ("curves", "Loss and validation metrics per epoch"),
    ("confusion", "Confusion matrix at the chosen threshold"),
    ("roc", "ROC curve; the dot is the operating point"),
    ("pr", "Precision-recall curve"),
    ("reliability", "Reliability diagram (calibration)"),
    ("top_losses", "Top losses, highest first; each title: true class / predicted class, then loss / probability "
     "of the true class; over each image, the Grad-CAM of its predicted class (where the network has one)"),
    ("lr_finder", "Learning-rate range test: the loss per step as the learning rate rises; the line marks the "
     "learning rate trained with"),
)  # fmt: skip


# metrics shown with their intervals, in this order
SHOWN_METRICS = (
    ("accuracy", "accuracy"),
    ("balanced_accuracy", "balanced accuracy"),
    ("sensitivity", "sensitivity"),
    ("specificity", "specificity"),
    ("ppv", "PPV"),
    ("npv", "NPV"),
    ("roc_auc", "ROC-AUC"),
    ("pr_auc", "PR-AUC"),
)
SET_NAMES = {
    "carved": "carved validation split",
    "external": "external validation set",
    "calibration": "calibration set",
}


def with_interval(metrics: dict, key: str, digits: int = 3) -> str:
    """``value [low, high]`` of a metric and its ``ci95`` entry, ``n/a`` when undefined."""
    value = metrics.get(key)
    if value is None:
        return "n/a"
    ci = (metrics.get("ci95") or {}).get(key)
    text = f"{value:.{digits}f}"
    return f"{text} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else text


def sets_table(sets: dict[str, dict]) -> pd.DataFrame:
    """Metrics (rows) of each evaluated set (columns) as ``value [low, high]`` strings."""
    rows = {"images": {SET_NAMES.get(n, n): str(m.get("n", "")) for n, m in sets.items()}}
    for key, label in SHOWN_METRICS:
        if any(m.get(key) is not None for m in sets.values()):
            rows[label] = {SET_NAMES.get(n, n): with_interval(m, key) for n, m in sets.items()}
    for key, label in (("ece", "ECE"), ("log_loss", "log loss")):
        rows[label] = {SET_NAMES.get(n, n): ("n/a" if m.get(key) is None else f"{m[key]:.3f}") for n, m in sets.items()}
    return pd.DataFrame(rows).T


def write_classification_report(
    path: str | os.PathLike, *, title: str, metrics: dict, clf, files: dict[str, Path], predictions: pd.DataFrame
) -> Path:
    """Write ``report.html`` beside the plots in ``files`` (referenced relatively)."""
    path = Path(path)
    spec = getattr(clf, "spec_", {}) or {}
    rep = HtmlReport(title, subtitle=f"model {spec.get('model', '?')}, classes: {', '.join(clf.classes_)}")
    rep.section("Summary")
    summary: dict = {"images": metrics.get("n_images")}
    for key, label in SHOWN_METRICS:
        if key in metrics and key not in ("ppv", "npv"):
            summary[label] = with_interval(metrics, key)
    summary["ECE"] = metrics.get("ece")
    if "sensitivity" in metrics:
        summary["threshold"] = metrics.get("threshold")
    if metrics.get("n_skipped"):
        summary["skipped files"] = metrics["n_skipped"]
    rep.key_values({k: ("n/a" if v is None else v) for k, v in summary.items()})
    if metrics.get("ci95"):
        method = metrics.get("ci_method") or {}
        rep.paragraph(
            f"[low, high]: 95% interval of a {method.get('method', 'bootstrap')} "
            f"({method.get('n_resamples', '?')} resamples, seed {method.get('random_state', 0)}).",
            "note",
        )
    for line in metrics.get("validation_warnings") or []:
        rep.paragraph("Warning: " + line, "warn")
    sets = metrics.get("validation_sets") or {}
    if sets:
        rep.section("Validation sets")
        rep.table(sets_table(sets), caption="Each validation set at the one decision threshold, with 95% intervals")
        selection = metrics.get("selection_set")
        if selection in sets and len(sets) > 1:
            rep.paragraph(
                "The best epoch, early stopping and the threshold were chosen on the "
                f"{SET_NAMES.get(selection, selection)}; the others only measure.",
                "note",
            )
        if "carved" in sets and selection != "carved":
            rep.paragraph("The carved validation split's own report: carved/report.html.", "note")
    grouping = metrics.get("grouping")
    if grouping:
        rep.paragraph(f"Carved validation split: {grouping.get('description', grouping.get('method'))}.", "note")
    info = metrics.get("threshold_info") or {}
    if clf.threshold_ is not None:
        where = "the " + SET_NAMES.get(metrics.get("selection_set"), "validation split")
        if info.get("chosen_on"):
            where = str(info["chosen_on"])
        how = {
            "sensitivity": f"the highest threshold reaching sensitivity >= {info.get('target_sensitivity')} on {where}",
            "youden": f"Youden's J (sensitivity + specificity - 1) maximised on {where}",
            "fixed": "a fixed value",
        }.get(info.get("method"), str(info.get("method")))
        rep.paragraph(
            f"Decision: '{clf.classes_[1]}' when its probability is >= {clf.threshold_:.4f}, chosen by {how}.", "note"
        )
    per_class = metrics.get("per_class")
    if per_class:
        rep.section("Per class")
        rep.table(
            pd.DataFrame(per_class).T,
            caption="Precision, recall (sensitivity) and F1 at the threshold, support (items), one-vs-rest ROC-AUC",
        )
    confused = metrics.get("most_confused")
    if confused is not None:
        rep.section("Most confused")
        if confused:
            rep.table(
                confused_frame(confused),
                index=False,
                max_rows=30,
                caption="Pairs of the confusion matrix off its diagonal, most frequent first",
            )
        else:
            rep.paragraph("No item was taken for another class.", "note")
    for key, caption in _PLOTS:
        if key in files and files[key] is not None:
            rep.image(os.path.relpath(files[key], path.parent), caption=caption)
    training = getattr(clf, "training_", None)
    if training:
        rep.section("Training")
        rep.key_values(
            {
                "best epoch": training.get("best_epoch"),
                "stopped": training.get("stopped"),
                "train images": training.get("n_train"),
                "validation images": training.get("n_val"),
                "parameters": getattr(clf, "n_parameters_", None),
                "fit seconds": round(float(getattr(clf, "fit_seconds_", 0) or 0), 1),
            }
        )
        finder = getattr(clf, "lr_finder_", None)
        if finder:
            rep.paragraph(
                f"Learning rate {finder['chosen']:.3g}, chosen by a range test over {len(finder['lrs'])} steps "
                f"({finder['rule']}).",
                "note",
            )
        cfg = getattr(clf, "train_config_", {}) or {}
        shown = {k: v for k, v in cfg.items() if k != "augment"}
        rep.table(pd.DataFrame([shown]).T.rename(columns={0: "value"}).astype(str), caption="Training settings")
    if "status" in predictions and (predictions["status"] == "skipped").any():
        rep.section("Skipped files")
        rep.table(predictions.loc[predictions["status"] == "skipped", ["path", "reason"]], index=False)
    rep.paragraph("All predictions: predictions.csv; all metrics: metrics.json.", "note")
    return rep.write(path)


def write_evaluation(
    evaluation: Evaluation,
    clf,
    images: np.ndarray,
    out_dir: str | os.PathLike,
    *,
    title: str,
    history: list[dict] | None = None,
    lr_finder: dict | None = None,
    report: bool = True,
) -> Evaluation:
    """Write an :class:`~pixsort.classify.evaluation.Evaluation` of ``clf`` into ``out_dir``:
    plots, ``metrics.json``, ``predictions.csv`` and ``report.html``; returns it with
    ``files`` filled in.  ``images`` are the evaluated uint8 images (for the grids);
    ``history`` (per-epoch rows) and ``lr_finder`` (a range test) add their plots."""
    out = Path(out_dir)
    plot_dir = out / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    classes, metrics, files = clf.classes_, evaluation.metrics, evaluation.files
    if len(evaluation.labels):
        y, p = evaluation.labels, evaluation.proba
        files["confusion"] = plot_confusion(metrics["confusion_matrix"], classes, plot_dir / "confusion.png")
        for key, fn in (
            ("roc", lambda: plot_roc(y, p, classes, plot_dir / "roc.png", clf.threshold_)),
            ("pr", lambda: plot_pr(y, p, classes, plot_dir / "pr.png")),
        ):
            made = fn()
            if made is not None:
                files[key] = made
        files["reliability"] = plot_reliability(y, p, plot_dir / "reliability.png")
        if evaluation.top_loss_tiles is not None and len(evaluation.top_loss_tiles):
            files["top_losses"] = image_grid(
                evaluation.top_loss_tiles, evaluation.top_loss_titles, plot_dir / "top_losses.png", cols=4
            )
    if history:
        made = plot_history(history, plot_dir / "curves.png")
        if made is not None:
            files["curves"] = made
    if lr_finder:
        files["lr_finder"] = plot_lr_finder(lr_finder, plot_dir / "lr_finder.png")
    files["metrics"] = write_json(metrics, out / "metrics.json")
    files["predictions"] = write_csv(evaluation.predictions, out / "predictions.csv")
    if report:
        files["report"] = write_classification_report(
            out / "report.html", title=title, metrics=metrics, clf=clf, files=files, predictions=evaluation.predictions
        )
    return evaluation


def confused_frame(confused: list[dict]) -> pd.DataFrame:
    """The most-confused pairs (``metrics["most_confused"]``) as a table."""
    frame = pd.DataFrame(confused, columns=["true", "predicted", "count", "share"])
    return frame.rename(
        columns={"true": "true class", "predicted": "predicted class", "share": "share of the true class"}
    )


# -- plots -------------------------------------------------------------------------------


def plot_lr_finder(finder: dict, path: Path) -> Path:
    """The range test: each step's loss and the smoothed loss against the learning rate
    (log scale), the chosen learning rate marked."""
    lrs, smoothed = np.asarray(finder["lrs"]), np.asarray(finder["smoothed"])
    fig, ax = pyplot().subplots(figsize=(5.6, 3.8))
    ax.plot(lrs, finder["losses"], color="grey", alpha=0.35, lw=1, label="loss of the step")
    ax.plot(lrs, smoothed, lw=2, label="smoothed loss")
    ax.axvline(finder["chosen"], color="C3", ls="--", label=f"chosen {finder['chosen']:.2g}")
    ax.set_xscale("log"), ax.set_xlabel("learning rate"), ax.set_ylabel("training loss")
    low, top = float(np.min(np.r_[smoothed, finder["losses"]])), float(np.max(smoothed))
    ax.set_ylim(low - 0.05 * (top - low), top + 0.1 * (top - low) + 1e-9)  # the blow-up's raw losses cut off
    ax.set_title("Learning-rate range test"), ax.legend(fontsize=8), ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_history(history: list[dict], path: Path) -> Path | None:
    """Train/validation loss and validation accuracy / ROC-AUC per epoch."""
    if not history:
        return None
    ep = [h["epoch"] for h in history]
    plt = pyplot()
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
    return save_figure(fig, path)


def plot_confusion(cm, class_names: list[str], path: Path, title: str = "Confusion matrix") -> Path:
    cm = np.asarray(cm)
    k = len(class_names)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(1.2 * k + 2.6, 1.1 * k + 2))
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                f"{cm[i, j]}\n{norm[i, j]:.0%}",
                ha="center",
                va="center",
                color="white" if norm[i, j] > 0.6 else "black",
                fontsize=9,
            )
    names = [plain_text(c) for c in class_names]
    ax.set_xticks(range(k), names, rotation=30, ha="right"), ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted"), ax.set_ylabel("true"), ax.set_title(plain_text(title))
    return save_figure(fig, path)


def _curve_classes(y: np.ndarray, n_classes: int) -> list[int]:
    """The classes a ROC or PR curve is drawn for (the positive one of two classes,
    each of more), among those both present and absent in ``y``."""
    return [c for c in ([1] if n_classes == 2 else range(n_classes)) if len(np.unique(y == c)) == 2]


def plot_roc(y_true, proba, class_names: list[str], path: Path, threshold: float | None = None) -> Path | None:
    """ROC curve(s): the positive class for two classes (with the operating point),
    one-vs-rest per class otherwise."""
    y = np.asarray(y_true)
    classes = _curve_classes(y, len(class_names))
    if not classes:
        return None
    fig, ax = pyplot().subplots(figsize=(4.6, 4.2))
    for c in classes:
        fpr, tpr, _ = roc_curve(y == c, proba[:, c])
        ax.plot(fpr, tpr, label=plain_text(class_names[c]))
        if threshold is not None and len(class_names) == 2:
            pred = proba[:, 1] >= threshold
            ax.plot([pred[y == 0].mean()], [pred[y == 1].mean()], "ko", label=f"threshold {threshold:.3f}")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_xlabel("1 - specificity (false positive rate)"), ax.set_ylabel("sensitivity (true positive rate)")
    ax.set_title("ROC"), ax.legend(fontsize=8), ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_pr(y_true, proba, class_names: list[str], path: Path) -> Path | None:
    y = np.asarray(y_true)
    classes = _curve_classes(y, len(class_names))
    if not classes:
        return None
    fig, ax = pyplot().subplots(figsize=(4.6, 4.2))
    for c in classes:
        prec, rec, _ = precision_recall_curve(y == c, proba[:, c])
        ax.plot(rec, prec, label=plain_text(class_names[c]))
    ax.set_xlabel("recall"), ax.set_ylabel("precision"), ax.set_title("Precision-recall")
    ax.legend(fontsize=8), ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_reliability(y_true, proba, path: Path, n_bins: int = 10, title: str = "Reliability") -> Path:
    """Reliability diagram of the top-label confidence, with the bin counts."""
    t = reliability_table(y_true, proba, n_bins)
    centres = (t["bin_lower"] + t["bin_upper"]) / 2
    filled = t["count"] > 0
    plt = pyplot()
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(4.6, 5.2), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    a1.bar(centres[filled], t["accuracy"][filled], width=1 / n_bins, edgecolor="k", alpha=0.7, label="accuracy")
    a1.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    a1.set_ylabel("accuracy"), a1.set_title(plain_text(title)), a1.legend(fontsize=8)
    a2.bar(centres, t["count"], width=1 / n_bins, edgecolor="k", color="grey")
    a2.set_xlabel("confidence of the predicted class"), a2.set_ylabel("images")
    return save_figure(fig, path)


def image_grid(images: np.ndarray, titles: list[str], path: Path, cols: int = 6) -> Path | None:
    """A grid of uint8 images ``(n, H, W, C)`` with a title each."""
    n = len(images)
    if n == 0:
        return None
    rows = int(np.ceil(n / cols))
    plt = pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.1, rows * 2.35), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, title in zip(axes.ravel(), images, titles):
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None)
        ax.set_title(plain_text(title), fontsize=7)
    return save_figure(fig, path)


__all__ = [
    "confused_frame",
    "image_grid",
    "plot_confusion",
    "plot_history",
    "plot_lr_finder",
    "plot_pr",
    "plot_reliability",
    "plot_roc",
    "write_classification_report",
    "write_evaluation",
]
