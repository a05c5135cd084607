"""A standing corpus of bad and odd inputs, run through ``pixsort inspect --json`` and
``pixsort cluster --features pixels``: every file ends up loaded or skipped with a named
reason, nothing hangs, no command ends in a traceback."""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import socket
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, PngImagePlugin
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
    # odd modes and containers
    save("mode_i.tiff", Image.fromarray((rng.random((16, 16)) * 70000).astype(np.int32)))
    save("sixteen_bit.tiff", Image.fromarray(np.arange(256, dtype=np.uint16).reshape(16, 16) * 200))
    pages = [Image.new("L", (16, 16), v) for v in (10, 128, 250)]
    pages[0].save(odd / "multipage.tiff", save_all=True, append_images=pages[1:])
    expected["multipage.tiff"] = None
    save("cmyk.tiff", Image.new("CMYK", (16, 16), (0, 100, 200, 10)))
    put("progressive.jpg", _jpeg_bytes(noise, progressive=True), None)
    bad_exif = bytearray(jpeg)  # an APP1 Exif segment of garbage right after SOI
    segment = b"Exif\x00\x00" + b"MM\x00\x2a\xff\xff\xff\xff" + bytes(rng.integers(0, 255, 60, dtype=np.uint8))
    bad_exif[2:2] = b"\xff\xe1" + (len(segment) + 2).to_bytes(2, "big") + segment
    put("bad_exif.jpg", bytes(bad_exif), None)
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "x" * 3_000_000, zip=True)
    save("huge_text_chunk.png", Image.new("RGB", (16, 16)), pnginfo=info)
    save("huge_iccp.png", Image.new("RGB", (16, 16)), icc_profile=bytes(2_000_000))
    put("p_without_palette.png", _png_chunks(struct.pack(">IIBBBBB", 4, 4, 8, 3, 0, 0, 0), bytes(4 * 5)), None)
    put("bad_header.bmp", b"BM" + bytes(rng.integers(0, 255, 100, dtype=np.uint8)), None)
    wframes = [Image.new("RGB", (16, 16), (i * 80, 0, 0)) for i in range(3)]
    wframes[0].save(odd / "animated.webp", save_all=True, append_images=wframes[1:], duration=50)
    expected["animated.webp"] = None
    gif = io.BytesIO()
    Image.new("P", (16, 16)).save(gif, "GIF")
    put("gif_no_frame.gif", gif.getvalue()[:13] + b";", None)  # screen descriptor, then the trailer
    # sizes
    save("one_by_one.png", Image.new("L", (1, 1), 7))
    save("one_by_n.png", Image.new("L", (1, 600), 7), "bad_aspect_ratio")
    # names
    save("new\nline.png", Image.new("RGB", (16, 16), (9, 9, 9)))
    save(os.fsdecode(b"latin1_\xe9t\xe9.png"), Image.new("RGB", (16, 16), (4, 4, 4)), None)  # not UTF-8
    save(".hidden.png", Image.new("RGB", (16, 16), (8, 8, 8)), None)
    save("UPPER.JPG", noise, format="JPEG")
    save("double.jpg.png", Image.new("RGB", (16, 16), (5, 6, 7)), format="PNG")
    # other things dressed as images
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("a.txt", "hi")
    put("archive.png", zipped.getvalue(), "not_an_image")
    put("page.jpg", b"<!DOCTYPE html><html><body>hi</body></html>", "not_an_image")
    put("drawing.png", b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>', "not_an_image")
    put("gzipped.png", gzip.compress(png.getvalue()), "not_an_image")
    put("doc.jpg", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n", None)
    tga = io.BytesIO()
    noise.save(tga, "TGA")
    put("targa.jpg", tga.getvalue(), "unsupported_format")
    ppm = io.BytesIO()
    noise.save(ppm, "PPM")
    put("netpbm.png", ppm.getvalue(), "unsupported_format")
    with open(odd / "sparse.jpg", "wb") as handle:  # 64 MiB of holes: hashed in chunks, not an image
        handle.truncate(64 * 2**20)
    expected["sparse.jpg"] = "not_an_image"
    save("no_read.png", Image.new("RGB", (16, 16)), None if os.geteuid() == 0 else "read_error")
    os.chmod(odd / "no_read.png", 0)
    return expected


def _png_chunks(ihdr: bytes, raw: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def _run(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PIXSORT_CACHE": str(cache)}
    out = subprocess.run([sys.executable, "-m", "pixsort", *args], capture_output=True, text=True, timeout=300, env=env)
    assert "Traceback" not in out.stderr and "Traceback" not in out.stdout, out.stderr
    return out


def _as_written(name: str) -> str:
    """A file name as the UTF-8 manifest holds it (bytes that are not UTF-8 as \\udcXX escapes)."""
    return name.encode("utf-8", "backslashreplace").decode("utf-8")


def _check_rows(rows: dict[str, tuple[str, str]], expected: dict[str, str | None]) -> None:
    for name, reason in expected.items():
        name = _as_written(name)
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
    listed = {_as_written(Path(f["path"]).name) for f in info["skipped_files"]}
    assert listed == {n for n, (s, _) in rows.items() if s == "skipped"}


@pytest.fixture(scope="module")
def clustered(corpus, tmp_path_factory) -> Path:
    """``pixsort cluster --features pixels`` on the corpus, run once per module; its output folder."""
    root, _ = corpus
    out_dir = tmp_path_factory.mktemp("clustered") / "out"
    args = ("cluster", str(root), "--out", str(out_dir), "--features", "pixels", "--size", "12", "--k", "2")
    out = _run(*args, cache=out_dir.parent / "cache")
    assert out.returncode == 0, out.stderr
    return out_dir


def _manifest_rows(csv_path: Path) -> dict[str, tuple[str, str]]:
    manifest = pd.read_csv(csv_path, keep_default_na=False)
    return {Path(p).name: (s, r) for p, s, r in zip(manifest["path"], manifest["status"], manifest["reason"])}


def test_cluster_pixels_runs_through_the_corpus(corpus, clustered):
    _, expected = corpus
    _check_rows(_manifest_rows(clustered / "manifest.csv"), expected)


def test_assign_places_or_names_every_bad_file(corpus, clustered, tmp_path):
    root, expected = corpus
    out = _run(
        "assign",
        str(clustered / "model"),
        str(root / "odd"),
        "--out",
        str(tmp_path / "a.csv"),
        cache=tmp_path / "cache",
    )
    assert out.returncode in (0, 2), out.stderr
    assert out.returncode == 0, out.stderr
    frame = pd.read_csv(tmp_path / "a.csv", keep_default_na=False)
    written = " ".join(map(str, frame.to_numpy().ravel()))
    for name in expected:
        assert _as_written(name) in written, f"{name} missing from assign's output"


def _post_every_file(model_dir: Path, corpus) -> int:
    """Each corpus file uploaded alone to ``model_dir``'s server (in-process): a 200 with one
    result or a 4xx JSON error, never a 5xx.  Returns the number of probes."""
    from fastapi.testclient import TestClient

    from pixsort.serve.app import create_app

    root, expected = corpus
    probes = 0
    with TestClient(create_app(model_dir), base_url="http://127.0.0.1") as client:
        for name in expected:
            path = root / "odd" / name
            try:
                data = path.read_bytes() if path.is_file() else b""
            except OSError:
                data = b""
            upload_name = _as_written(name).replace("\n", " ")
            response = client.post("/predict", files=[("files", (upload_name, data, "image/jpeg"))])
            probes += 1
            assert response.status_code < 500, (name, response.status_code, response.text)
            assert response.headers["content-type"].startswith("application/json"), name
            body = response.json()
            if response.status_code == 200:
                assert len(body["results"]) == 1, (name, body)
            else:
                assert 400 <= response.status_code < 500 and body, (name, body)
    return probes


def test_clusterer_server_answers_every_bad_upload_without_a_500(corpus, clustered):
    probes = _post_every_file(clustered / "model", corpus)
    print(f"clusterer server: {probes} bad uploads, none answered 5xx")
    assert probes == len(corpus[1])


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory) -> Path:
    """``pixsort train`` (seed-cnn, 1 epoch, 16 px) on the corpus's two folders (good, odd) as classes."""
    root, _ = corpus
    out_dir = tmp_path_factory.mktemp("trained") / "out"
    args = ("train", str(root), "--out", str(out_dir), "--model", "seed-cnn", "--epochs", "1", "--image-size", "16",
            "--no-groups", "--workers", "0")  # fmt: skip
    out = _run(*args, cache=out_dir.parent / "cache")
    assert out.returncode == 0, out.stderr
    return out_dir


def test_train_skips_every_bad_file_with_its_reason(corpus, trained):
    _, expected = corpus
    skipped = _manifest_rows(trained / "skipped.csv") if (trained / "skipped.csv").exists() else {}
    for name, reason in expected.items():
        name = _as_written(name)
        if reason is not None:
            assert name in skipped and skipped[name][1].startswith(reason), (name, skipped.get(name))
        elif name in skipped:  # a file expected to load may still be refused, but with a named reason
            assert REASON.match(skipped[name][1]), (name, skipped[name])
    assert (trained / "model" / "model.json").exists() and (trained / "metrics.json").exists()


def test_predict_places_or_names_every_bad_file(corpus, trained, tmp_path):
    root, expected = corpus
    args = ("predict", str(trained / "model"), str(root / "odd"), "--out", str(tmp_path / "p.csv"))
    out = _run(*args, cache=tmp_path / "cache")
    assert out.returncode == 0, out.stderr
    rows = _manifest_rows(tmp_path / "p.csv")
    _check_rows(rows, expected)


def test_classifier_server_answers_every_bad_upload_without_a_500(corpus, trained):
    probes = _post_every_file(trained / "model", corpus)
    print(f"classifier server: {probes} bad uploads, none answered 5xx")
    assert probes == len(corpus[1])


def test_the_corpus_holds_at_least_45_kinds(corpus):
    _, expected = corpus
    print(f"bad-input corpus: {len(expected)} kinds")
    assert len(expected) >= 45


def test_evaluate_and_serve_accept_the_train_run_folder(corpus, trained, tmp_path):
    """Issue 13 item 18: the folder given to ``train --out`` names its model too."""
    from pixsort.serve.app import create_app

    root, _ = corpus
    out = _run("evaluate", str(trained), str(root), cache=tmp_path / "cache")
    assert out.returncode == 0, out.stderr
    report = re.search(r"report: (\S+report\.html)", out.stdout + out.stderr)
    assert report and Path(report.group(1)).exists(), out.stderr
    assert create_app(trained) is not None
    missing = _run("evaluate", str(tmp_path), str(root), cache=tmp_path / "cache")
    assert missing.returncode == 2 and "model" in missing.stderr
