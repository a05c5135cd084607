"""``MODEL_CARD.md``: what a trained classifier is, what it was trained and measured on,
how its decision threshold was chosen, what it is for and where it falls short.

Written into the model folder by every ``pixsort train`` and rewritten by ``pixsort
calibrate``, from what the model folder itself holds (``model.json``: the recipe, the
training record, the provenance the training workflow left, the calibration), so a
card can always be rebuilt from the model alone.
"""

from __future__ import annotations

import os
from pathlib import Path

from pixsort.report.classification import SET_NAMES, SHOWN_METRICS, with_interval

CARD_FILE = "MODEL_CARD.md"
_RECIPE_KEYS = ("epochs", "batch_size", "lr", "optimizer", "weight_decay", "schedule", "balance", "patience", "monitor")


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    def cell(v: object) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return out


def _metrics_rows(sets: dict[str, dict]) -> tuple[list[str], list[list[object]]]:
    header = ["metric", *[SET_NAMES.get(n, n) for n in sets]]
    rows: list[list[object]] = [["images", *[m.get("n", "") for m in sets.values()]]]
    for key, label in SHOWN_METRICS:
        if any(m.get(key) is not None for m in sets.values()):
            rows.append([label, *[with_interval(m, key) for m in sets.values()]])
    rows.append(["ECE", *[("n/a" if m.get("ece") is None else f"{m['ece']:.3f}") for m in sets.values()]])
    return header, rows


def _threshold_text(clf, provenance: dict) -> str:
    info = getattr(clf, "threshold_info_", {}) or {}
    if clf.threshold_ is None:
        return "No threshold: the predicted class is the most probable one."
    where = info.get("chosen_on") or "the " + SET_NAMES.get(provenance.get("selection_set"), "validation split")
    method = info.get("method")
    if method == "sensitivity":
        how = f"the highest threshold with sensitivity >= {info.get('target_sensitivity')} on {where}"
    elif method == "youden":
        how = f"Youden's J (sensitivity + specificity - 1) maximised on {where}"
    elif method == "fixed":
        how = f"a fixed value ({info.get('note', 'set by hand')})"
    else:
        how = str(method)
    achieved = ""
    if info.get("sensitivity") is not None and info.get("specificity") is not None:
        achieved = f" There it gave sensitivity {info['sensitivity']:.3f} and specificity {info['specificity']:.3f}."
    return f"'{clf.classes_[1]}' when its probability is >= {clf.threshold_:.4f}, chosen by {how}.{achieved}"


def _limits(clf, provenance: dict) -> list[str]:
    sets = provenance.get("validation_sets") or {}
    lines = []
    carved, external = sets.get("carved"), sets.get("external")
    if carved and external:
        compare = "; ".join(
            f"{label} carved {with_interval(carved, key)} vs external {with_interval(external, key)}"
            for key, label in (("balanced_accuracy", "balanced accuracy"), ("roc_auc", "ROC-AUC"))
            if carved.get(key) is not None and external.get(key) is not None
        )
        lines.append(
            "A validation split carved from the training site tends to overstate performance at a new site: it "
            f"shares the scanners, protocols, population and time of the training images. Here: {compare}."
        )
        for warning in provenance.get("validation_warnings") or []:
            lines.append(f"Warning: {warning}.")
    else:
        lines.append(
            "A validation split carved from the training site overstates performance at a new site: it shares the "
            "scanners, protocols, population and time of the training images. No external validation was given "
            "(`pixsort train ... --val-data DIR`), so the numbers above say nothing about other sites."
        )
    lines.append(
        "Not a diagnostic device: it has not been cleared or approved for clinical use and must not decide anyone's "
        "care. It sees only the pixels of one image, at the decode size above, without history or other views."
    )
    lines.append(
        "Predictive values (PPV, NPV) and the threshold depend on how common each class is; they move with the "
        "prevalence at a new site. Recalibrate there (`pixsort calibrate MODEL LOCAL_LABELLED_DIR`)."
    )
    lines.append(
        "The 95% intervals resample images, not patients, sites or training runs: they are the least uncertainty "
        "there is, not all of it."
    )
    return lines


def model_card_text(clf) -> str:
    """The card of a fitted (or loaded) classifier, as Markdown."""
    provenance = getattr(clf, "provenance_", None) or {}
    calibration = getattr(clf, "calibration_", None)
    spec = getattr(clf, "spec_", {}) or {}
    cfg = getattr(clf, "train_config_", {}) or {}
    training = getattr(clf, "training_", {}) or {}
    params = clf.model_params() if hasattr(clf, "model_params") else {}
    name = spec.get("model") or params.get("model") or "?"
    lines = [f"# Model card: {name}", ""]
    when = provenance.get("trained_at", "unknown time")
    lines.append(
        f"Trained {when} with pixsort {_version()}; this card is written by `pixsort train` and refreshed by "
        "`pixsort calibrate`."
    )
    lines += ["", "## Model", ""]
    positive = f" (positive class: {clf.classes_[1]})" if len(clf.classes_) == 2 else ""
    decode = clf.decode_settings_.to_dict() if hasattr(clf, "decode_settings_") else {}
    if spec.get("backbone"):
        weights = "pretrained (ImageNet) weights" if params.get("pretrained", True) else "random initial weights"
        backbone = f"backbone `{spec['backbone']}` from {weights}"
    else:
        backbone = "trained from scratch (no backbone)"
    lines += [
        f"- Name: `{name}`; {backbone}",
        f"- Classes: {', '.join(clf.classes_)}{positive}",
        f"- Input: images decoded {decode.get('channels', '?')} at {decode.get('size', '?')} "
        f"({decode.get('resize', '?')}), network input {spec.get('input_size', '?')}",
        f"- Parameters: {getattr(clf, 'n_parameters_', '?')}",
    ]
    recipe = [[k, cfg[k]] for k in _RECIPE_KEYS if k in cfg]
    augment = cfg.get("augment")
    if isinstance(augment, dict):
        active = ", ".join(f"{k}={v}" for k, v in augment.items() if v not in (None, 0, 0.0, False))
        recipe.append(["augment", active or "none"])
    if recipe:
        lines += ["", "Recipe:", "", *_table(["setting", "value"], recipe)]

    lines += ["", "## Training data", ""]
    lines.append(f"- Source: `{provenance.get('data', '?')}`")
    if provenance.get("val_data"):
        lines.append(
            f"- External validation: `{provenance['val_data']}` (model selection and threshold; never trained on)"
        )
    grouping = provenance.get("grouping") or {}
    if grouping:
        lines.append(f"- Carved validation split ({provenance.get('validation_fraction', '?')} of train): "
                     f"{grouping.get('description', grouping.get('method'))}")  # fmt: skip
    if provenance.get("n_skipped"):
        lines.append(f"- Files that could not be read (skipped): {provenance['n_skipped']}")
    counts = provenance.get("counts") or {}
    if counts:
        classes = list(clf.classes_)
        rows = [[split, *[c.get(k, 0) for k in classes], sum(c.values())] for split, c in counts.items()]
        lines += ["", *_table(["split", *classes, "total"], rows)]

    lines += ["", "## Metrics", ""]
    sets = dict(provenance.get("validation_sets") or {})
    if not sets and getattr(clf, "validation_metrics_", None):
        sets = {"validation": clf.validation_metrics_}
    if sets:
        header, rows = _metrics_rows(sets)
        lines += [*_table(header, rows), ""]
        selection = provenance.get("selection_set")
        if selection:
            lines.append(f"Best epoch, early stopping and the threshold were chosen on the "
                         f"{SET_NAMES.get(selection, selection)}. [low, high]: 95% bootstrap interval (1000 "
                         "resamples within each class).")  # fmt: skip
        if calibration:
            t0 = calibration.get("threshold_before")
            at = "" if t0 is None else f", threshold {t0:.4f}"
            lines.append(f"These were measured when the model was trained (temperature "
                         f"{calibration.get('temperature_before', 1.0):.4g}{at}); calibration changed both, see "
                         "below.")  # fmt: skip
    if calibration:
        before, after = calibration.get("before") or {}, calibration.get("after") or {}
        lines += [
            "",
            f"Calibrated on `{calibration.get('data')}` ({calibration.get('n')} images, {calibration.get('at', '')}): "
            f"temperature T = {calibration.get('temperature', 1.0):.3f}; "
            f"log loss {calibration.get('nll_before', float('nan')):.4f} -> "
            f"{calibration.get('nll_after', float('nan')):.4f}. "
            "Measured on the same images T and the threshold were fitted on:",
            "",
        ]
        header, rows = _metrics_rows({"before calibration": before, "after calibration": after})
        lines += _table(header, rows)

    lines += ["", "## Decision threshold", "", _threshold_text(clf, provenance)]
    lines.append("")
    temperature = float(getattr(clf, "temperature_", 1.0))
    lines.append(
        f"Temperature: {temperature:.4f} (logits are divided by it before the sigmoid / softmax)."
        if calibration
        else "Temperature: 1.0 (not calibrated)."
    )

    lines += ["", "## Intended use", ""]
    lines.append(
        f"Sorting images like the training images into {', '.join(clf.classes_)}: research, teaching, triage of "
        "collections and second looks, with a person deciding. Use it on images prepared like the training data and "
        "check it on labelled images from the place it is used before relying on it."
    )
    lines += ["", "## Known limits", ""]
    lines += [f"- {line}" for line in _limits(clf, provenance)]

    lines += ["", "## Training time and hardware", ""]
    fit = getattr(clf, "fit_seconds_", None)
    if fit is not None:
        lines.append(f"- Training: {float(fit):.1f} s (decode {float(provenance.get('decode_seconds', 0)):.1f} s); "
                     f"best epoch {training.get('best_epoch')} of {len(getattr(clf, 'history_', []) or [])} "
                     f"({training.get('stopped')})")  # fmt: skip
    cpu = provenance.get("cpu") or {}
    if cpu:
        flags = ", ".join(cpu.get("flags") or []) or "none of avx2/avx512/amx"
        lines.append(f"- CPU: {cpu.get('model')} ({cpu.get('cores')} cores available; flags: {flags})")
    lines.append(
        f"- Precision: {params.get('precision', cfg.get('precision', '?'))}; torch {provenance.get('torch', '?')}"
    )
    return "\n".join(lines) + "\n"


def _version() -> str:
    from pixsort import __version__

    return __version__


def write_model_card(model_dir: str | os.PathLike, clf) -> Path:
    """Write ``MODEL_CARD.md`` into the model folder; returns its path."""
    path = Path(model_dir) / CARD_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(model_card_text(clf), encoding="utf-8")
    return path


__all__ = ["CARD_FILE", "model_card_text", "write_model_card"]
