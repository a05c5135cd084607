"""Class names are user text: a folder named like mathtext markup must show as it is
in every figure and page, never be parsed (matplotlib dies on unknown commands)."""

from __future__ import annotations

import json

from tests.synthetic import pattern_image, write_class_folders
from typer.testing import CliRunner

MARKUP = r"$\badcmd{x}$"


def test_train_on_a_class_named_like_mathtext(tmp_path):
    from pixsort.cli import app

    root = tmp_path / MARKUP  # the data folder is user text too (titles name it)
    write_class_folders(
        root / "train",
        {MARKUP: 20, "plain": 20},
        lambda c, i, hw, rng: pattern_image(c, hw, rng, noise=60.0),
        base_size=24,
    )
    out = tmp_path / "run"
    args = ["train", str(root / "train"), "--model", "seed-cnn", "--out", str(out), "--epochs", "1",
            "--image-size", "24", "--val-fraction", "0.3", "--cache-dir", str(tmp_path / "cache"),
            "--workers", "0"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    meta = json.loads((out / "model" / "model.json").read_text())
    assert MARKUP in meta["classes"]
    figures = list(out.rglob("*.png"))
    assert figures, "train drew no figures"


def test_figure_titles_that_name_user_folders_are_plain_text(tmp_path):
    import numpy as np

    from pixsort.report.classification import plot_confusion

    path = plot_confusion(np.eye(2, dtype=int), [MARKUP, "b"], tmp_path / "c.png", title=f"on {MARKUP}")
    assert path.exists()
