"""Closing the loop after an audit: ``train --exclude`` drops (or ``--relabel`` relabels)
the images an audit CSV lists, and ``--dedupe`` keeps one image of each set of copies,
so no copy sits on both sides of the carved validation split."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from pixsort.data import open_dataset
from pixsort.data.exclude import apply_exclusions, read_exclusions
from pixsort.workflows import train_classifier
from synthetic import level_picture, write_class_folders

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """24 + 24 pictures, and 14 byte-identical copies of one NORMAL picture (15 in all)."""
    root = tmp_path_factory.mktemp("loop") / "data"
    files = write_class_folders(root, {"NORMAL": 24, "PNEUMONIA": 24}, lambda c, i, hw, rng: level_picture(c, hw, rng),
                                base_size=20, jpeg_every=0)  # fmt: skip
    first = files["NORMAL"][0]
    copies = [first.with_name(f"copy{k}.png") for k in range(14)]
    for c in copies:
        shutil.copy(first, c)
    return root, files, [first, *copies]


def _train(root, out, **kw):
    params = dict(epochs=1, image_size=16, batch_size=16, validation_fraction=0.25, progress=False, workers=0)
    return train_classifier(root, out, "seed-cnn", cache_dir=root.parent / "cache", **params, **kw)


def _sides(outcome):
    val = set(outcome.validation.keys)
    counts = outcome.classifier.provenance_["counts"]
    return val, sum(counts["train"].values()), sum(counts["carved validation"].values())


@pytest.mark.parametrize("groups", [True, False])
def test_dedupe_keeps_one_of_the_15_identical_files(data, tmp_path, groups):
    root, _, same = data
    outcome = _train(root, tmp_path / "out", dedupe_copies=True, groups=groups)
    _, n_train, n_val = _sides(outcome)
    assert outcome.classifier.provenance_["n_deduped"] == 14
    assert n_train + n_val == 48 + 14 - 14  # the 15 copies are one image, on one side only
    assert outcome.classifier.provenance_["grouping"]["method"] == ("copies" if groups else "none")


def test_without_dedupe_the_copies_still_stay_on_one_side(data, tmp_path):
    root, _, same = data
    outcome = _train(root, tmp_path / "out")
    val, n_train, n_val = _sides(outcome)
    predictions = pd.read_csv(tmp_path / "out" / "predictions.csv")
    in_val = {str(p) for p in same} & set(predictions["path"])
    assert len(in_val) in (0, len(same)) and n_train + n_val == 62


def test_exclude_drops_and_relabel_relabels(data, tmp_path):
    root, files, _ = data
    listed = [str(p) for p in files["PNEUMONIA"][:3]]
    csv = tmp_path / "label_issues.csv"
    pd.DataFrame({"issue_rank": [1, 2, 3], "path": listed, "suggested_label": "NORMAL"}).to_csv(csv, index=False)
    dropped = _train(root, tmp_path / "drop", exclude=csv)
    ex = dropped.classifier.provenance_["exclusion"]
    assert (ex["n_listed"], ex["n_dropped"], ex["n_not_found"]) == (3, 3, 0)
    counts = dropped.classifier.provenance_["counts"]
    assert counts["train"]["PNEUMONIA"] + counts["carved validation"]["PNEUMONIA"] == 21
    moved, info = apply_exclusions(open_dataset(root), csv, relabel=True)
    assert info.n_relabelled == 3 and (moved.labels == moved.class_names.index("NORMAL")).sum() == 24 + 14 + 3


def test_exclusion_lists_by_column_and_keep(tmp_path):
    audit = tmp_path / "audit.csv"
    pd.DataFrame({"path": ["a", "b", "c"], "blurry": ["True", "False", "true"]}).to_csv(audit, index=False)
    assert read_exclusions(f"{audit}:blurry")["path"].tolist() == ["a", "c"]
    dup = tmp_path / "duplicates.csv"
    pd.DataFrame({"group": [0, 0, 0], "path": ["a", "b", "c"], "keep": [True, False, False]}).to_csv(dup, index=False)
    assert read_exclusions(dup)["path"].tolist() == ["b", "c"]
    with pytest.raises(Exception, match="no column 'nope'"):
        read_exclusions(f"{audit}:nope")


def test_cli_relabel_without_a_csv_is_a_clear_error(data, tmp_path):
    from typer.testing import CliRunner

    from pixsort.cli import app

    root, _, _ = data
    result = CliRunner().invoke(app, ["train", str(root), "--out", str(tmp_path / "o"), "--relabel"])
    assert result.exit_code == 2 and "--relabel" in result.output
