"""Bad paths and bad caches give one clear line and exit code 2, never a traceback."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from pixsort.cli import app
from pixsort.data import SourceError, load_images, open_dataset

runner = CliRunner()


def _images(folder: Path, n: int = 3) -> Path:
    (folder / "A").mkdir(parents=True)
    for i in range(n):
        Image.new("L", (12, 12), 20 * i).save(folder / "A" / f"{i}.png")
    return folder


def _not_a_folder(tmp_path: Path) -> Path:
    """A path no one can write, even root: below a regular file."""
    (tmp_path / "file.txt").write_text("x")
    return tmp_path / "file.txt" / "sub" / "out.csv"


def test_inspect_manifest_naming_a_folder_is_a_clear_error(tmp_path):
    data = _images(tmp_path / "data")
    (tmp_path / "manifest_dir").mkdir()
    for target in (tmp_path / "manifest_dir", _not_a_folder(tmp_path)):
        args = ["inspect", str(data), "--manifest", str(target), "--cache-dir", str(tmp_path / "c")]
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert "error" in result.output and "Traceback" not in result.output


def test_predict_checks_its_output_before_predicting(tmp_path):
    data = _images(tmp_path / "data")
    model = tmp_path / "model"
    model.mkdir()  # not a model: the output check must come first
    result = runner.invoke(app, ["predict", str(model), str(data), "--out", str(_not_a_folder(tmp_path))])
    assert result.exit_code == 2 and "cannot write" in result.output, result.output


def test_pickled_and_truncated_arrays_are_source_errors_naming_the_file(tmp_path):
    pickled = tmp_path / "objects.npy"
    np.save(pickled, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    good = tmp_path / "good.npz"
    np.savez_compressed(good, train_images=np.zeros((4, 8, 8), np.uint8), train_labels=np.zeros(4, np.int64))
    cut_npz = tmp_path / "cut.npz"
    cut_npz.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    npy = tmp_path / "images.npy"
    np.save(npy, np.zeros((50, 32, 32), np.uint8))
    cut_npy = tmp_path / "cutX.npy"
    cut_npy.write_bytes(npy.read_bytes()[:2000])
    pickled_npz = tmp_path / "pickled.npz"
    with zipfile.ZipFile(pickled_npz, "w") as z, z.open("train_images.npy", "w") as f:
        np.save(f, np.array([object()], dtype=object), allow_pickle=True)
    for bad in (pickled, cut_npz, cut_npy, pickled_npz):
        with pytest.raises(SourceError, match=str(bad.name)):
            open_dataset(bad)
        result = runner.invoke(app, ["inspect", str(bad)])
        assert result.exit_code == 2 and bad.name in result.output, result.output


@pytest.fixture
def read_only_cache(tmp_path, monkeypatch):
    """A cache folder every write to fails (EROFS), as a read-only mount does even for root."""
    cache = tmp_path / "ro-cache"
    cache.mkdir()
    import builtins

    real_open = builtins.open
    real_mkdir = Path.mkdir

    def guarded_open(file, mode="r", *a, **k):
        if str(file).startswith(str(cache)) and any(c in mode for c in "wax+"):
            raise OSError(30, "Read-only file system", str(file))
        return real_open(file, mode, *a, **k)

    def guarded_mkdir(self, *a, **k):
        if str(self).startswith(str(cache)) and not self.exists():
            raise OSError(30, "Read-only file system", str(self))
        return real_mkdir(self, *a, **k)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(Path, "mkdir", guarded_mkdir)
    return cache


def test_a_read_only_cache_falls_back_to_decoding_in_memory(tmp_path, read_only_cache):
    data = _images(tmp_path / "data")
    with pytest.warns(RuntimeWarning, match="decoding in memory"):
        decoded = load_images(open_dataset(data), size=8, cache_dir=read_only_cache, workers=0)
    assert len(decoded) == 3 and not os.listdir(read_only_cache)


def test_inspect_with_a_read_only_cache_still_answers(tmp_path, read_only_cache):
    data = _images(tmp_path / "data")
    result = runner.invoke(app, ["inspect", str(data), "--json", "--cache-dir", str(read_only_cache)])
    assert result.exit_code == 0, result.output
    assert '"loaded": 3' in result.output
