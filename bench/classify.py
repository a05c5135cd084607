"""Classification benchmark: validation metrics, training time and inference speed.

    flock /tmp/pixsort-heavy.lock python bench/classify.py --out /tmp/pixsort-bench-classify \
        [--sets chest,mnist] [--models seed-cnn,partial:efficientnet_lite0] [--threads 2]

For every (data set, model) pair this trains through the same pipeline as
``pixsort train`` (model folder, metrics.json, predictions.csv, report.html under
``OUT/<set>/<model>``) and records, on the validation split only:

* accuracy, ROC-AUC, sensitivity and specificity at the stored threshold (Youden's J
  unless ``--target-sensitivity``), balanced accuracy, ECE;
* training seconds (everything ``fit`` does: feature caching, oversampling, epochs,
  threshold) and, separately, decode seconds (cached after the first run);
* inference images/s of ``predict_proba`` on the decoded validation images.

Data sets (the official test splits are never read):

``chest``  ``../shared/data/chest_xray`` train, 15 % held out for validation by
           patient (``--group-pattern``), seeded: no patient on both sides.
``mnist``  ``../shared/data/pneumoniamnist/pneumoniamnist_trainval.npz``, its own val
           split (524 images), images kept at their native 28x28.

Run it under the heavy lock: timings are only honest with the cores to itself.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from pixsort.base.runtime import available_cores, tune_cpu
from pixsort.workflows import train_classifier

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SETS = {
    "chest": (DATA / "chest_xray", r"(person\d+|IM-\d+|NORMAL2-IM-\d+)"),
    "mnist": (DATA / "pneumoniamnist" / "pneumoniamnist_trainval.npz", None),
}


def run_one(set_name: str, model: str, out: Path, params: dict, cache_dir: Path | None) -> dict:
    data, group_pattern = SETS[set_name]
    folder = out / set_name / model.replace(":", "_")
    started = time.perf_counter()
    outcome = train_classifier(
        data, folder, model, group_pattern=group_pattern, cache_dir=cache_dir, progress=True, **params
    )
    total = time.perf_counter() - started
    clf = outcome.classifier
    m = outcome.evaluation.metrics
    # inference speed on the decoded validation images (after one warm-up batch)
    val_images = np.asarray(outcome.validation.images)
    clf.predict_proba(val_images[:32])
    t0 = time.perf_counter()
    clf.predict_proba(val_images)
    infer = time.perf_counter() - t0
    row = {
        "set": set_name,
        "model": model,
        "params": {k: str(v) for k, v in params.items()},
        "n_train": m.get("n_train"),
        "n_val": m.get("n"),
        "val_accuracy": m["accuracy"],
        "val_balanced_accuracy": m["balanced_accuracy"],
        "val_roc_auc": m["roc_auc"],
        "val_pr_auc": m["pr_auc"],
        "val_ece": m["ece"],
        "threshold": clf.threshold_,
        "threshold_method": clf.threshold_info_.get("method"),
        "val_sensitivity": m["sensitivity"],
        "val_specificity": m["specificity"],
        "train_seconds": round(outcome.fit_seconds, 1),
        "decode_seconds": round(outcome.decode_seconds, 1),
        "pipeline_seconds": round(total, 1),
        "epochs_run": len(clf.history_),
        "best_epoch": clf.training_["best_epoch"],
        "stopped": clf.training_["stopped"],
        "cached_features": clf.training_["cached_features"],
        "n_parameters": clf.n_parameters_,
        "inference_images_per_s": round(len(val_images) / infer, 1),
        "model_dir": str(outcome.model_dir),
        "threads": _threads(),
    }
    return row


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("/tmp/pixsort-bench-classify"))
    ap.add_argument("--sets", default="chest,mnist")
    ap.add_argument("--models", default="partial:efficientnet_lite0,probe:efficientnet_lite0,seed-cnn")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: available cores)")
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--target-sensitivity", type=float, default=None)
    ap.add_argument(
        "--param",
        action="append",
        default=[],
        help="extra ImageClassifier parameter as key=value (JSON value), e.g. --param epochs=5",
    )
    args = ap.parse_args()
    tune_cpu(args.threads)
    params = {}
    for item in args.param:
        key, _, value = item.partition("=")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    if args.target_sensitivity is not None:
        params["target_sensitivity"] = args.target_sensitivity
    args.out.mkdir(parents=True, exist_ok=True)
    results_file = args.out / "results.jsonl"
    print(f"cores available: {available_cores()}, torch threads: {_threads()}", flush=True)
    for set_name in args.sets.split(","):
        for model in args.models.split(","):
            row = run_one(set_name, model, args.out, dict(params), args.cache_dir)
            print(json.dumps(row), flush=True)
            with results_file.open("a") as f:
                f.write(json.dumps(row) + "\n")
    print(f"results: {results_file}")


if __name__ == "__main__":
    main()
