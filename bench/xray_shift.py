"""Chest X-ray recipes measured under shift: train on the Kaggle train split, choose the
threshold on validation carved from it (grouped by patient), and measure on
``chest_xray_external_val`` (other patients, another time) -- never trained on.

    flock /tmp/pixsort-heavy.lock python bench/xray_shift.py --out /tmp/xray \
        --recipe '{"name": "partial", "model": "partial:efficientnet_lite0"}' \
        --recipe '{"name": "probe-l1", "model": "probe:efficientnet_lite1"}'

Each recipe is a JSON object: ``name``, ``model`` and any ImageClassifier parameter.
For every recipe one line goes to ``OUT/results.jsonl``: training seconds (the CPU is
recorded), and on the carved validation and on the external set: accuracy, balanced
accuracy, ROC-AUC, sensitivity and specificity at the stored threshold, and the
specificity at the threshold that gives sensitivity >= 0.95 on the carved split.
``--prior-correction`` also reports the external metrics with the logits shifted by
the log ratio of the external to the training class odds (what a known new prior
would do; it uses the external class counts, so it is an upper bound, not a recipe).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from pixsort.base.runtime import tune_cpu
from pixsort.classify.estimator import ImageClassifier
from pixsort.classify.metrics import classification_metrics
from pixsort.classify.threshold import choose_threshold
from pixsort.data import carve_validation, groups_from_pattern, load_images, open_dataset

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PATIENT = r"(person\d+|NORMAL2-IM-\d+|IM-\d+)"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return "unknown"
    name = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "unknown")
    flags = set(next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags")), []))
    extras = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{name} ({', '.join(extras)})"


def measure(y: np.ndarray, proba: np.ndarray, threshold: float, sens95: float) -> dict:
    m = classification_metrics(y, proba, ["NORMAL", "PNEUMONIA"], threshold)
    at95 = proba[:, 1] >= sens95
    return {
        "acc": round(m["accuracy"], 4),
        "bal_acc": round(m["balanced_accuracy"], 4),
        "auc": round(m["roc_auc"], 4),
        "sens": round(m["sensitivity"], 4),
        "spec": round(m["specificity"], 4),
        "spec_at_val_sens95": round(float((~at95[y == 0]).mean()), 4),
        "sens_at_val_sens95": round(float(at95[y == 1].mean()), 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--recipe", action="append", required=True, help="JSON object: name, model, parameters")
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--prior-correction", action="store_true")
    args = ap.parse_args()
    tune_cpu()
    args.out.mkdir(parents=True, exist_ok=True)
    train_ds = open_dataset(DATA / "chest_xray")
    train_ds = carve_validation(train_ds, 0.15, random_state=0, groups=groups_from_pattern(train_ds, PATIENT))
    external_ds = open_dataset(DATA / "chest_xray_external_val")
    for text in args.recipe:
        recipe = json.loads(text)
        name, model = recipe.pop("name"), recipe.pop("model")
        clf = ImageClassifier(model, **{"progress": False, **recipe})
        settings = clf.plan_decode_settings()
        decoded = load_images(train_ds, settings, cache_dir=args.cache_dir, progress=False)
        external = load_images(external_ds, settings, cache_dir=args.cache_dir, progress=False)
        train, val = decoded.select(decoded.splits == "train"), decoded.select(decoded.splits == "val")
        started = time.perf_counter()
        clf.fit(train.images, train.labels, val.images, val.labels, classes=decoded.class_names,
                decode_settings=settings)  # fmt: skip
        seconds = time.perf_counter() - started
        val_proba = clf.val_proba_
        ext_proba = clf.predict_proba(external.images)
        sens95 = choose_threshold(val.labels, val_proba[:, 1], "youden", 0.95).threshold
        row = {
            "name": name,
            "model": model,
            "params": recipe,
            "train_seconds": round(seconds, 1),
            "epochs_run": len(clf.history_),
            "best_epoch": clf.training_["best_epoch"],
            "threshold": round(float(clf.threshold_), 4),
            "carved": measure(val.labels, val_proba, clf.threshold_, sens95),
            "external": measure(external.labels, ext_proba, clf.threshold_, sens95),
            "cpu": cpu_name(),
        }
        if args.prior_correction:
            train_odds = (train.labels == 1).mean() / (train.labels == 0).mean()
            ext_odds = (external.labels == 1).mean() / (external.labels == 0).mean()
            logit = np.log(np.clip(ext_proba[:, 1], 1e-7, 1 - 1e-7) / np.clip(ext_proba[:, 0], 1e-7, 1))
            shifted = 1 / (1 + np.exp(-(logit + np.log(ext_odds / train_odds))))
            row["external_prior_corrected"] = measure(external.labels, np.stack([1 - shifted, shifted], 1),
                                                      clf.threshold_, sens95)  # fmt: skip
        clf.save(args.out / name / "model")
        print(json.dumps(row), flush=True)
        with (args.out / "results.jsonl").open("a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
