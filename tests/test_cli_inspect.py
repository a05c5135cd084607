"""The CLI shell: --help, --version, inspect (text and JSON), exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
from PIL import Image
from tests.conftest import shared_path
from typer.testing import CliRunner

from pixsort import __version__
from pixsort.cli import app

runner = CliRunner()


def test_help_and_version():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "inspect" in result.output
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"pixsort {__version__}"


def test_console_script_installed():
    out = subprocess.run([sys.executable, "-m", "pixsort", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and __version__ in out.stdout


def test_inspect_missing_path_exit_code_2(tmp_path):
    result = runner.invoke(app, ["inspect", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_inspect_json_reports_counts_duplicates_and_skips(tmp_path):
    root = tmp_path / "data" / "train"
    for cls, value in (("cats", 10), ("dogs", 200)):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            Image.new("L", (20, 10 + i), value).save(root / cls / f"{i}.png")
    Image.new("L", (20, 10), 10).save(root / "cats" / "copy.png")  # same bytes as cats/0.png
    (root / "dogs" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    manifest = tmp_path / "manifest.csv"
    result = runner.invoke(
        app,
        [
            "inspect",
            str(tmp_path / "data"),
            "--json",
            "--manifest",
            str(manifest),
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
    )
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["counts"] == {"train": {"cats": 3, "dogs": 2}}
    assert info["skipped"] == 1 and info["skipped_files"][0]["path"].endswith("broken.jpg")
    assert len(info["duplicates"]) == 1 and len(info["duplicates"][0]) == 2
    assert info["modes"] == {"L": 5} and info["sizes"]["min_height"] == 10
    frame = pd.read_csv(manifest)
    assert len(frame) == 6 and (frame["status"] == "skipped").sum() == 1


def test_inspect_real_chest_xray_text(tmp_path):
    root = shared_path("chest_xray")
    result = runner.invoke(app, ["inspect", str(root), "--json", "--cache-dir", str(tmp_path / "c")])
    assert result.exit_code == 0
    info = json.loads(result.output)
    assert info["counts"]["train"] == {"NORMAL": 1341, "PNEUMONIA": 3875}


def test_inspect_json_lists_fifos_and_broken_links_without_hanging(tmp_path):
    import os

    root = tmp_path / "data" / "A"
    root.mkdir(parents=True)
    Image.new("L", (20, 10), 10).save(root / "ok.png")
    os.mkfifo(root / "p.jpg")
    os.symlink(root / "nowhere.png", root / "dangling.png")
    out = subprocess.run(
        [sys.executable, "-m", "pixsort", "inspect", str(tmp_path / "data"), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PIXSORT_CACHE": str(tmp_path / "cache")},
    )
    assert out.returncode == 0, out.stderr
    skipped = {f["path"].rsplit("/", 1)[-1]: f["reason"] for f in json.loads(out.stdout)["skipped_files"]}
    assert skipped["p.jpg"].startswith("not_a_regular_file") and skipped["dangling.png"].startswith("missing")
