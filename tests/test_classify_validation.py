"""Validation that tells the truth, end to end on synthetic folders: the carved split
grouped by patient and copies by default, an external validation set (``--val-data``)
that selects the model and the threshold while the carved split is still evaluated,
intervals everywhere, the warning when the two disagree, and the model card."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pixsort.classify.threshold import choose_threshold
from pixsort.workflows import train_classifier
from pixsort.workflows.classification import validation_warnings
from synthetic import level_picture, write_class_folders

CI_KEYS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "roc_auc", "pr_auc")


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small trainings: one torch thread (conftest)


def _kaggle_name(cls: str, i: int, group: int) -> str:
    # two images a patient: IM-00gg-000k for NORMAL, persongg_virus_i for PNEUMONIA
    return f"IM-{group:04d}-{i % 2 + 1:04d}" if cls == "NORMAL" else f"person{group}_virus_{i}"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """``train/``: 24 + 24 Kaggle-named images (two a patient), and one NORMAL image
    copied byte for byte under another patient's name; ``external/``: 20 + 20 images of
    the same task; ``flipped/``: 20 + 20 whose labels are the other way round."""
    root = tmp_path_factory.mktemp("validation")
    files = write_class_folders(
        root / "data" / "train",
        {"NORMAL": 24, "PNEUMONIA": 24},
        lambda c, i, hw, rng: level_picture(c, hw, rng),
        base_size=20,
        name="{cls}_{i}_{group}",
    )
    for cls, paths in files.items():  # rename to Kaggle patient names
        for i, path in enumerate(paths):
            path.rename(path.with_name(_kaggle_name(cls, i, i // 2) + path.suffix))
    first = sorted((root / "data" / "train" / "NORMAL").glob("IM-0000-0001.*"))[0]
    shutil.copy(first, root / "data" / "train" / "NORMAL" / f"IM-0099-0001{first.suffix}")
    write_class_folders(root / "external", {"NORMAL": 20, "PNEUMONIA": 20},
                        lambda c, i, hw, rng: level_picture(c, hw, rng), base_size=20, seed=7)  # fmt: skip
    write_class_folders(root / "flipped", {"NORMAL": 20, "PNEUMONIA": 20},
                        lambda c, i, hw, rng: level_picture(c, hw, rng, flip=True), base_size=20, seed=8)  # fmt: skip
    return root


def _train(folders, out, **kw):
    params = dict(epochs=2, image_size=16, batch_size=16, validation_fraction=0.25, progress=False, workers=0)
    params.update(kw)
    return train_classifier(folders / "data", out, "seed-cnn", cache_dir=folders / "cache", **params)


@pytest.fixture(scope="module")
def carved_run(folders, tmp_path_factory):
    out = tmp_path_factory.mktemp("carved_run")
    return _train(folders, out), out


@pytest.fixture(scope="module")
def external_run(folders, tmp_path_factory):
    out = tmp_path_factory.mktemp("external_run")
    return _train(folders, out, val_data=folders / "flipped"), out


# ----------------------------------------------------------------------------- default grouping


def test_carved_split_groups_kaggle_patients_and_copies_by_default(carved_run):
    outcome, out = carved_run
    metrics = json.loads((out / "metrics.json").read_text())
    g = metrics["grouping"]
    assert g["method"] == "patients+copies" and g["pattern_source"] == "kaggle"
    assert g["n_items"] == 49 and g["n_patient_groups"] == 25  # 12 + 12 patients and IM-0099
    assert g["n_exact_copy_groups"] == 1 and g["n_copy_groups_across_patients"] == 1
    assert g["n_groups"] == 24  # IM-0099 joins IM-0000 through the copy
    assert outcome.grouping.n_groups == 24 and "24 groups of 49 images" in g["description"]

    def patient(path):
        name = Path(path).name
        return "IM-0000" if name.startswith("IM-0099") else re.match(r"(IM-\d+|person\d+)", name).group(0)

    predictions = pd.read_csv(out / "predictions.csv")
    val = set(predictions["path"])
    every = set(outcome.validation.dataset.paths)
    assert val <= every and len(val) == metrics["n_val"]
    assert {patient(p) for p in val}.isdisjoint({patient(p) for p in every - val})
    # the copy and its original sit on one side
    copy_pair = [p for p in every if Path(p).name.startswith(("IM-0000-0001", "IM-0099"))]
    assert len(copy_pair) == 2 and len({p in val for p in copy_pair}) == 1


def test_no_groups_splits_single_images(folders, tmp_path):
    outcome = _train(folders, tmp_path / "run", groups=False, epochs=1)
    g = json.loads((tmp_path / "run" / "metrics.json").read_text())["grouping"]
    assert g["method"] == "none" and "--no-groups" in g["description"]
    assert outcome.grouping.groups is None
    with pytest.raises(ValueError, match="contradict"):
        _train(folders, tmp_path / "run2", groups=False, group_pattern=r"person\d+")


# ----------------------------------------------------------------------------- intervals and the carved-only run


def test_carved_only_run_reports_intervals_in_every_output(carved_run):
    outcome, out = carved_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["selection_set"] == "carved" and list(metrics["validation_sets"]) == ["carved"]
    assert metrics["split"] == "validation" and metrics["n"] == metrics["n_val"]
    for key in CI_KEYS:
        lo, hi = metrics["ci95"][key]
        assert lo <= metrics[key] <= hi
        assert metrics["validation_sets"]["carved"]["ci95"][key] == [lo, hi]
    html = (out / "report.html").read_text()
    acc = metrics["accuracy"]
    lo, hi = metrics["ci95"]["accuracy"]
    assert f"{acc:.3f} [{lo:.3f}, {hi:.3f}]" in html
    assert metrics["validation_warnings"] == [] and "Warning:" not in html
    model = json.loads((out / "model" / "model.json").read_text())
    assert model["provenance"]["selection_set"] == "carved" and model["validation_metrics"]["ci95"]
    assert (
        model["provenance"]["counts"]["train"]["NORMAL"] + model["provenance"]["counts"]["carved validation"]["NORMAL"]
        == 25
    )


# ----------------------------------------------------------------------------- external validation


def test_external_set_selects_the_model_and_the_threshold(external_run, folders):
    outcome, out = external_run
    clf = outcome.classifier
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["selection_set"] == "external" and metrics["split"] == "external"
    assert set(metrics["validation_sets"]) == {"carved", "external"}
    assert metrics["n_external"] == 40 == metrics["n"]  # the top level is the selection set
    # fit selected on the external images: its validation is the external set ...
    assert clf.training_["n_val"] == 40 and clf.training_["val_counts"] == [20, 20]
    # ... and the threshold is the one Youden's J picks on the external probabilities
    choice = choose_threshold(clf.val_labels_, clf.val_proba_[:, 1], "youden")
    assert clf.threshold_ == choice.threshold
    external = outcome.validation_sets["external"]
    np.testing.assert_array_equal(external.proba, clf.val_proba_)
    # the carved split is still carved and evaluated, at that threshold, in its own folder
    carved = json.loads((out / "carved" / "metrics.json").read_text())
    assert carved["n"] == metrics["n_val"] == metrics["validation_sets"]["carved"]["n"]
    assert carved["threshold"] == clf.threshold_
    assert len(pd.read_csv(out / "carved" / "predictions.csv")) == carved["n"]
    assert len(pd.read_csv(out / "predictions.csv")) == 40
    for name in ("carved", "external"):
        for key in CI_KEYS:
            assert metrics["validation_sets"][name]["ci95"][key] is not None
    html = (out / "report.html").read_text()
    assert "carved validation split" in html and "external validation set" in html and "carved/report.html" in html


def test_disagreeing_validations_warn_in_metrics_report_and_card(external_run):
    """The flipped external set scores far below chance while the carved split scores
    near 1: the ROC-AUC intervals cannot overlap."""
    outcome, out = external_run
    metrics = json.loads((out / "metrics.json").read_text())
    carved, external = metrics["validation_sets"]["carved"], metrics["validation_sets"]["external"]
    assert carved["ci95"]["roc_auc"][0] > external["ci95"]["roc_auc"][1]
    assert outcome.warnings == metrics["validation_warnings"] and len(outcome.warnings) >= 1
    assert any("ROC-AUC" in w and "do not overlap" in w for w in outcome.warnings)
    html = (out / "report.html").read_text()
    assert "Warning: carved and external validation disagree" in html
    card = (out / "model" / "MODEL_CARD.md").read_text()
    assert "Warning: carved and external validation disagree" in card


def test_validation_warnings_compare_intervals_only():
    def m(auc, ci, bacc=0.8, bci=(0.7, 0.9)):
        return {"roc_auc": auc, "balanced_accuracy": bacc, "ci95": {"roc_auc": ci, "balanced_accuracy": list(bci)}}

    assert validation_warnings({"carved": m(0.99, [0.97, 1.0]), "external": m(0.95, [0.9, 0.98])}) == []
    lines = validation_warnings({"carved": m(0.99, [0.97, 1.0]), "external": m(0.88, [0.84, 0.92])})
    assert len(lines) == 1 and "carved 0.990 [0.970, 1.000] vs external 0.880 [0.840, 0.920]" in lines[0]
    assert validation_warnings({"carved": m(0.99, [0.97, 1.0])}) == []  # one set: nothing to compare


def test_external_set_with_unknown_classes_is_refused(folders, tmp_path):
    from pixsort.data import SourceError

    odd = tmp_path / "odd"
    write_class_folders(odd, {"NORMAL": 3, "COVID": 3}, lambda c, i, hw, rng: level_picture(c, hw, rng), base_size=16)
    with pytest.raises(SourceError, match="classes the training data lacks: \\['COVID'\\]"):
        _train(folders, tmp_path / "run", val_data=odd)


# ----------------------------------------------------------------------------- the model card


def test_model_card_of_a_carved_only_run(carved_run):
    outcome, out = carved_run
    card = (out / "model" / "MODEL_CARD.md").read_text()
    assert outcome.model_card == out / "model" / "MODEL_CARD.md"
    counts = outcome.classifier.provenance_["counts"]
    n0, n1 = counts["train"]["NORMAL"], counts["train"]["PNEUMONIA"]
    assert f"| train | {n0} | {n1} | {n0 + n1} |" in card
    assert "# Model card: seed-cnn" in card and "| epochs | 2 |" in card
    assert outcome.grouping.describe() in card
    m = outcome.evaluation.metrics
    lo, hi = m["ci95"]["roc_auc"]
    assert f"| ROC-AUC | {m['roc_auc']:.3f} [{lo:.3f}, {hi:.3f}] |" in card
    assert f">= {outcome.classifier.threshold_:.4f}, chosen by Youden's J" in card
    assert "No external validation was given" in card and "Not a diagnostic device" in card
    assert "Temperature: 1.0 (not calibrated)" in card
    from pixsort.base.runtime import cpu_description

    assert cpu_description()["model"] in card and f"Training: {outcome.fit_seconds:.1f} s" in card


def test_model_card_names_carved_and_external_numbers(external_run):
    outcome, out = external_run
    card = (out / "model" / "MODEL_CARD.md").read_text()
    sets = outcome.classifier.provenance_["validation_sets"]
    for key, label in (("balanced_accuracy", "balanced accuracy"), ("roc_auc", "ROC-AUC")):
        c, e = sets["carved"], sets["external"]
        expected = (
            f"{label} carved {c[key]:.3f} [{c['ci95'][key][0]:.3f}, {c['ci95'][key][1]:.3f}] vs external "
            f"{e[key]:.3f} [{e['ci95'][key][0]:.3f}, {e['ci95'][key][1]:.3f}]"
        )
        assert expected in card
    assert "| external validation | 20 | 20 | 40 |" in card
    assert "maximised on the external validation set" in card
    assert "No external validation was given" not in card


# ----------------------------------------------------------------------------- the command line


def test_cli_train_with_val_data_prints_both_sets_and_the_warning(folders, tmp_path):
    from typer.testing import CliRunner

    from pixsort.cli import app

    out = tmp_path / "cli"
    args = ["train", str(folders / "data"), "--out", str(out), "--model", "seed-cnn", "--epochs", "2",
            "--image-size", "16", "--val-fraction", "0.25", "--val-data", str(folders / "flipped"), "--no-groups",
            "--cache-dir", str(folders / "cache"), "--workers", "0"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "carved validation" in text and "external validation" in text
    metrics = json.loads((out / "metrics.json").read_text())
    e = metrics["validation_sets"]["external"]
    lo, hi = e["ci95"]["roc_auc"]
    assert f"{e['roc_auc']:.4f} [{lo:.4f}, {hi:.4f}]" in text
    assert "warning: carved and external validation disagree" in text
    assert metrics["grouping"]["method"] == "none"
    assert (out / "model" / "MODEL_CARD.md").exists()
    missing = CliRunner().invoke(app, ["train", str(folders / "data"), "--out", str(out), "--val-data", "/nope"])
    assert missing.exit_code == 2 and "does not exist" in missing.output
