"""A standing corpus of bad and odd inputs, run through ``pixsort inspect --json`` and
``pixsort cluster --features pixels``: every file ends up loaded or skipped with a named
reason, nothing hangs, no command ends in a traceback."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from tests.test_data_decode import EPS, png_with_header_size

REASON = re.compile(r"^[a-z_]+(:|$)")


def _jpeg_bytes(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", **kw)
    return buf.getvalue()


def _build(root: Path) -> dict[str, str | None]:
    """The corpus under ``root/odd`` (+ plain images under ``root/good``); name -> expected reason (None: loads)."""
    rng = np.random.default_rng(0)
    good, odd = root / "good", root / "odd"
    good.mkdir(parents=True)
    odd.mkdir()
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(good / f"g{i}.png")
    noise = Image.fromarray(rng.integers(0, 255, (64, 48, 3), dtype=np.uint8))
    expected: dict[str, str | None] = {}

    def put(name: str, data: bytes, reason: str | None) -> None:
        (odd / name).write_bytes(data)
        expected[name] = reason

    def save(name: str, im: Image.Image, reason: str | None = None, **kw) -> None:
        im.save(odd / name, **kw)
        expected[name] = reason

    put("empty.jpg", b"", "empty")
    jpeg = _jpeg_bytes(noise)
    put("truncated.jpg", jpeg[: len(jpeg) // 2], "truncated")
    png = io.BytesIO()
    noise.save(png, "PNG")
    put("truncated.png", png.getvalue()[: len(png.getvalue()) // 2], "truncated")
    put("eps.jpg", EPS, "unsupported_format")
    put("text.png", b"hello, I am not a picture\n", "not_an_image")
    put("._appledouble.jpg", b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ", "not_an_image")
    put("readme.txt", b"notes", "not_an_image")
    put("garbage.gif", b"GIF89a" + bytes(rng.integers(0, 255, 200, dtype=np.uint8)), None)  # reason varies
    put("zero_dims.png", png_with_header_size(0, 0), None)  # Pillow's answer varies; any named reason
    put("huge_dims.png", png_with_header_size(100_000, 100_000), "too_many_pixels")
    save("strip.png", Image.new("L", (2000, 10)), "bad_aspect_ratio")
    ico = io.BytesIO()
    Image.new("RGB", (16, 16)).save(ico, "ICO")
    put("icon.png", ico.getvalue(), "unsupported_format")
    os.mkfifo(odd / "fifo.jpg")
    expected["fifo.jpg"] = "not_a_regular_file"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(odd / "socket.png"))
    sock.close()
    expected["socket.png"] = "not_a_regular_file"
    os.symlink(odd / "nowhere.png", odd / "dangling.png")
    expected["dangling.png"] = "missing"
    os.symlink(odd / "loop.png", odd / "loop.png")
    expected["loop.png"] = "symlink_loop"
    (odd / "folder.jpg").mkdir()  # a folder named like an image: walked, not an item
    # odd but usable
    save("sixteen_bit.png", Image.fromarray(np.arange(16 * 16, dtype=np.uint16).reshape(16, 16) * 250))
    pal = Image.new("P", (16, 16), 1)
    pal.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    save("palette_transparency.png", pal, transparency=0)
    save("cmyk.jpg", Image.new("CMYK", (16, 16), (10, 200, 30, 0)))
    exif = Image.Exif()
    exif[0x0112] = 6
    put("exif_rotated.jpg", _jpeg_bytes(noise, exif=exif.tobytes()), None)
    frames = [Image.new("P", (16, 16), i) for i in range(3)]
    frames[0].save(odd / "animated.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    expected["animated.gif"] = None
    save("rgba.png", Image.new("RGBA", (16, 16), (255, 0, 0, 128)))
    save("la.png", Image.new("LA", (16, 16), (100, 50)))
    save("one_bit.bmp", Image.new("1", (16, 16), 1))
    save("float.tiff", Image.fromarray(rng.random((16, 16)).astype(np.float32)))
    save("photo.webp", noise, format="WEBP")
    put("jpeg_named.png", jpeg, None)
    save("ñandú 图 with spaces.png", Image.new("RGB", (16, 16), (1, 2, 3)))
    return expected


def _run(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PIXSORT_CACHE": str(cache)}
    out = subprocess.run([sys.executable, "-m", "pixsort", *args], capture_output=True, text=True, timeout=300, env=env)
    assert "Traceback" not in out.stderr and "Traceback" not in out.stdout, out.stderr
    return out


def _check_rows(rows: dict[str, tuple[str, str]], expected: dict[str, str | None]) -> None:
    assert len(expected) >= 25
    for name, reason in expected.items():
        assert name in rows, f"{name} is neither loaded nor skipped"
        status, why = rows[name]
        if reason is None:
            assert status == "loaded" or REASON.match(why), (name, status, why)
        else:
            assert status == "skipped" and why.startswith(reason), (name, status, why)
    for name, (status, why) in rows.items():
        assert status == "loaded" or REASON.match(why), (name, why)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, str | None]]:
    root = tmp_path_factory.mktemp("bad") / "corpus"
    return root, _build(root)


def test_inspect_names_every_bad_file(corpus, tmp_path):
    root, expected = corpus
    out = _run("inspect", str(root), "--json", "--manifest", str(tmp_path / "m.csv"), cache=tmp_path / "cache")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    manifest = pd.read_csv(tmp_path / "m.csv", keep_default_na=False)
    rows = {Path(p).name: (s, r) for p, s, r in zip(manifest["path"], manifest["status"], manifest["reason"])}
    _check_rows(rows, expected)
    listed = {Path(f["path"]).name for f in info["skipped_files"]}
    assert listed == {n for n, (s, _) in rows.items() if s == "skipped"}


def test_cluster_pixels_runs_through_the_corpus(corpus, tmp_path):
    root, expected = corpus
    out_dir = tmp_path / "out"
    args = ("cluster", str(root), "--out", str(out_dir), "--features", "pixels", "--size", "12", "--k", "2")
    out = _run(*args, cache=tmp_path / "cache")
    assert out.returncode == 0, out.stderr
    manifest = pd.read_csv(out_dir / "manifest.csv", keep_default_na=False)
    rows = {Path(p).name: (s, r) for p, s, r in zip(manifest["path"], manifest["status"], manifest["reason"])}
    _check_rows(rows, expected)
