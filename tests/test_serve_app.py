"""The serving app end to end, on small models fitted once per session.

The default models are SYNTHETIC (no ../shared needed): a pixels k-means clusterer
fitted on three groups of 32x32 PNG files (dark, bright, striped), so thumbnails
resolve, and a one-epoch seed-cnn classifier fitted on dark vs bright images.  The
real chest X-ray versions of the parity tests and of the long load test run where
../shared/data is beside the checkout and skip elsewhere.

* every route and every refusal through FastAPI's TestClient;
* ``pixsort serve`` started as a real process on 127.0.0.1: bound to loopback by
  default, with several workers, and a short bounded load whose answers match a
  direct model call (the long real-data load is ``@pytest.mark.slow``);
* the upload page in Debian's Chromium (``@pytest.mark.browser``): pick an image, see
  its decision; pick one for the clusterer, see its cluster and neighbour thumbnails.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from tests.conftest import shared_path

from pixsort.data import decode_image, load_images, open_dataset
from pixsort.serve.app import create_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip

SYNTHETIC_CLASSES = ["dark", "bright"]


def local_client(app) -> TestClient:
    """A TestClient that names the server as a browser on this machine does (Host: 127.0.0.1)."""
    return TestClient(app, base_url="http://127.0.0.1")


# -- synthetic images and models, made once per session --------------------------------------


def synthetic_images(kind: str, n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """``n`` uint8 RGB images (n, size, size, 3): dark noise, bright noise or horizontal stripes."""
    rng = np.random.default_rng([seed, ("dark", "bright", "striped").index(kind)])
    if kind == "dark":
        images = rng.integers(0, 60, (n, size, size, 3))
    elif kind == "bright":
        images = rng.integers(195, 256, (n, size, size, 3))
    else:
        images = np.zeros((n, size, size, 3), dtype=np.int64)
        images[:, (np.arange(size) * 32 // size) % 4 < 2] = 255  # two rows on, two off (at 32 px)
        images = images + rng.integers(-20, 21, images.shape)
    return np.clip(images, 0, 255).astype(np.uint8)


def write_images(folder: Path, stem: str, images: np.ndarray, fmt: str = "PNG") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, pixels in enumerate(images):
        path = folder / f"{stem}-{i:02d}.{fmt.lower().replace('jpeg', 'jpg')}"
        Image.fromarray(pixels).save(path, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
        paths.append(path)
    return paths


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """train/{dark,bright,striped}/*.png (20 each) and uploads/*.jpg (2 of each, 64x64, not trained on)."""
    root = tmp_path_factory.mktemp("synthetic")
    for kind in ("dark", "bright", "striped"):
        write_images(root / "train" / kind, kind, synthetic_images(kind, 20))
        # drawn like the training images, shown at twice the size: the model sees them at 32 px again
        held_out = synthetic_images(kind, 2, seed=1).repeat(2, axis=1).repeat(2, axis=2)
        write_images(root / "uploads", kind, held_out, fmt="JPEG")
    return root


@pytest.fixture(scope="session")
def uploads(synthetic_root) -> list[Path]:
    """Held-out image files to upload: dark, dark, bright, bright, striped, striped (64x64 JPEG)."""
    return [
        synthetic_root / "uploads" / f"{kind}-{i:02d}.jpg" for kind in ("dark", "bright", "striped") for i in (0, 1)
    ]


@pytest.fixture(scope="session")
def classifier_dir(tmp_path_factory) -> Path:
    from pixsort.classify.estimator import ImageClassifier

    images = np.concatenate([synthetic_images("dark", 20), synthetic_images("bright", 20)])
    labels = np.repeat([0, 1], 20)
    clf = ImageClassifier("seed-cnn", epochs=1, image_size=32, progress=False)
    clf.fit(images, labels, classes=SYNTHETIC_CLASSES)
    folder = tmp_path_factory.mktemp("models") / "synthetic-seed-cnn"
    clf.save(folder)
    return folder


@pytest.fixture(scope="session")
def clusterer_dir(synthetic_root, tmp_path_factory) -> Path:
    from pixsort.cluster.images import ImageClusterer

    clusterer = ImageClusterer(
        features="pixels", n_clusters=3, cache_dir=tmp_path_factory.mktemp("cache"), progress=False
    )
    clusterer.fit(synthetic_root / "train")
    folder = tmp_path_factory.mktemp("models") / "synthetic-pixels-kmeans"
    clusterer.save(folder)
    return folder


@pytest.fixture(scope="session")
def classifier_client(classifier_dir):
    with local_client(create_app(classifier_dir)) as client:
        yield client


@pytest.fixture(scope="session")
def clusterer_client(clusterer_dir):
    with local_client(create_app(clusterer_dir)) as client:
        yield client


# -- real models (chest X-rays), fitted once per session where ../shared is there -----------


@pytest.fixture(scope="session")
def xrays(tmp_path_factory):
    """40 chest X-rays (20 per class) decoded at 64 px, and a few held-out files to upload."""
    root = shared_path("chest_xray", "train")
    dataset = open_dataset(root)
    rng = np.random.default_rng(0)
    picked = [rng.choice(np.flatnonzero(dataset.labels == c), 24, replace=False) for c in (0, 1)]
    train = np.concatenate([p[:20] for p in picked])
    held_out = [dataset.paths[i] for p in picked for i in p[20:]]
    decoded = load_images(dataset.subset(train), size=64, cache_dir=tmp_path_factory.mktemp("cache"), progress=False)
    return decoded, [Path(p) for p in held_out]


@pytest.fixture(scope="session")
def xray_classifier_dir(xrays, tmp_path_factory) -> Path:
    from pixsort.classify.estimator import ImageClassifier

    decoded, _ = xrays
    clf = ImageClassifier("seed-cnn", epochs=1, image_size=64, progress=False)
    clf.fit(decoded.images, decoded.labels, classes=decoded.class_names, decode_settings=decoded.settings)
    folder = tmp_path_factory.mktemp("models") / "xray-seed-cnn"
    clf.save(folder)
    return folder


@pytest.fixture(scope="session")
def xray_clusterer_dir(xrays, tmp_path_factory) -> Path:
    from pixsort.cluster.images import ImageClusterer

    decoded, _ = xrays
    clusterer = ImageClusterer(features="pixels", n_clusters=3, progress=False)
    clusterer.fit(decoded)
    folder = tmp_path_factory.mktemp("models") / "xray-pixels-kmeans"
    clusterer.save(folder)
    return folder


# -- helpers ------------------------------------------------------------------------------------


def upload(*files: tuple[str, bytes] | Path, content_type: str = "image/jpeg") -> list:
    parts = []
    for f in files:
        name, data = (f.name, f.read_bytes()) if isinstance(f, Path) else f
        parts.append(("files", (name, data, content_type)))
    return parts


def png_bytes(size=(48, 40), mode="L") -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(1).integers(0, 255, (size[1], size[0]), dtype=np.uint8)
    Image.fromarray(pixels, mode="L").convert(mode).save(buffer, format="PNG")
    return buffer.getvalue()


def expected_classifier_results(model, files: list[Path]) -> list[dict]:
    """What /predict must answer for ``files``, from a direct call of the model."""
    images = np.stack([decode_image(p, model.decode_settings)[0] for p in files])
    proba = model.predict_proba(images)
    decisions = model.predict(images)
    return [
        {"probabilities": dict(zip(model.classes_, row.tolist())), "decision": model.classes_[d], "score": row[1]}
        for row, d in zip(proba, decisions)
    ]


def expected_clusterer_results(model, files: list[Path], n_neighbors: int = 5) -> list[dict]:
    images = np.stack([decode_image(p, model.decode_settings)[0] for p in files])
    clusters = model.predict(images)
    distances = model.transform(images)
    nn_dist, nn_index = model.kneighbors(images, n_neighbors=n_neighbors)
    return [
        {"cluster": int(c), "distance": float(row[c]), "neighbor_indices": ni.tolist(),
         "neighbor_distances": nd.tolist()}
        for c, row, nd, ni in zip(clusters, distances, nn_dist, nn_index)
    ]  # fmt: skip


def assert_classifier_result(result: dict, expected: dict) -> None:
    probs = result["probabilities"]
    assert list(probs) == list(expected["probabilities"])
    assert list(probs.values()) == pytest.approx(list(expected["probabilities"].values()), abs=1e-5)
    assert result["decision"] == expected["decision"]
    assert result["score"] == pytest.approx(expected["score"], abs=1e-5)


def assert_clusterer_result(result: dict, expected: dict, model) -> None:
    assert result["cluster"] == expected["cluster"]
    assert 0 <= result["cluster"] < model.n_clusters_
    assert result["distance"] == pytest.approx(expected["distance"], rel=1e-5, abs=1e-6)
    neighbours = result["neighbors"]
    assert [n["index"] for n in neighbours] == expected["neighbor_indices"]
    assert [n["distance"] for n in neighbours] == pytest.approx(expected["neighbor_distances"], rel=1e-5, abs=1e-6)
    assert [n["name"] for n in neighbours] == [Path(model.train_paths_[i]).name for i in expected["neighbor_indices"]]
    assert all(n["thumbnail_url"] == f"/thumbnails/{n['index']}" for n in neighbours)


def check_classifier_predict(client, model_dir: Path, files: list[Path], size: tuple[int, int]) -> None:
    from pixsort.workflows import load_model

    model = load_model(model_dir)
    response = client.post("/predict", files=upload(*files))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["kind"] == "classifier"
    assert [r["filename"] for r in body["results"]] == [p.name for p in files]  # order kept
    for result, expected in zip(body["results"], expected_classifier_results(model, files), strict=True):
        assert_classifier_result(result, expected)
        assert result["threshold"] == pytest.approx(model.threshold_)
        assert (result["format"], result["width"], result["height"]) == ("JPEG", *size)


def check_clusterer_predict(client, model_dir: Path, files: list[Path]) -> None:
    from pixsort.workflows import load_model

    model = load_model(model_dir)
    response = client.post("/predict", files=upload(*files))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["kind"] == "clusterer"
    for result, expected in zip(body["results"], expected_clusterer_results(model, files), strict=True):
        assert_clusterer_result(result, expected, model)


def count_calls(obj, names: tuple[str, ...], calls: list) -> None:
    """Replace ``obj.<name>`` (on the instance) by a wrapper that records each call."""
    for name in names:
        real = getattr(obj, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            calls.append(_name)
            return _real(*args, **kwargs)

        setattr(obj, name, counted)


# -- classifier routes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model_fixture, methods",
    [
        ("classifier_dir", ("predict_proba", "predict")),
        ("clusterer_dir", ("assign", "embed", "predict", "transform", "kneighbors")),
    ],
)
def test_health_answers_without_touching_the_model(model_fixture, methods, request, uploads):
    app = create_app(request.getfixturevalue(model_fixture))
    calls: list[str] = []
    count_calls(app.state.model, methods, calls)
    predictor = app.state.batcher.fn
    app.state.batcher.fn = lambda images: calls.append("predictor") or predictor(images)
    with local_client(app) as client:
        after_start = list(calls)
        assert after_start[0] == "predictor" and len(after_start) >= 2  # the warm-up ran, and was counted
        for _ in range(5):
            response = client.get("/health")
            assert response.status_code == 200
            assert response.json()["status"] == "ok"
            assert response.json()["kind"] == model_fixture.removesuffix("_dir")
        assert client.get("/").status_code == 200
        assert calls == after_start  # not one model call for /health (nor for the page)
        assert client.post("/predict", files=upload(uploads[0])).status_code == 200
        assert calls[len(after_start)] == "predictor"  # the counters do see a real request


def test_model_route_describes_the_saved_classifier(classifier_client, classifier_dir):
    from pixsort.workflows import load_model

    model = load_model(classifier_dir)
    info = classifier_client.get("/model").json()
    assert info["kind"] == "classifier"
    assert info["name"] == "synthetic-seed-cnn"
    assert info["classes"] == SYNTHETIC_CLASSES
    assert info["threshold"] == pytest.approx(model.threshold_)
    assert info["positive_class"] == "bright"
    assert info["validation_metrics"]["roc_auc"] == pytest.approx(model.validation_metrics_["roc_auc"])
    assert info["decode"] == model.decode_settings.to_dict()
    assert info["max_upload_bytes"] == 20 * 1024 * 1024 and info["auth_required"] is False
    assert info["max_images_per_request"] == 64


def test_predict_gives_the_models_own_probabilities_and_decision(classifier_client, classifier_dir, uploads):
    check_classifier_predict(classifier_client, classifier_dir, uploads, size=(64, 64))


def test_content_type_and_file_name_are_not_trusted(classifier_client):
    # a real PNG sent as text/plain named .txt is served ...
    ok = classifier_client.post("/predict", files=upload(("notes.txt", png_bytes()), content_type="text/plain"))
    assert ok.status_code == 200 and ok.json()["results"][0]["format"] == "PNG"
    # ... and a PDF claiming to be a JPEG is refused
    pdf = classifier_client.post("/predict", files=upload(("scan.jpg", b"%PDF-1.7\n%\xe2\xe3\n1 0 obj")))
    assert pdf.status_code == 415
    assert pdf.json() == {
        "error": "unsupported_media_type",
        "message": pdf.json()["message"],
        "filename": "scan.jpg",
    }


def test_grayscale_and_rgba_uploads_are_converted_for_the_model(classifier_client):
    for mode in ("L", "RGBA", "P"):
        response = classifier_client.post("/predict", files=upload((f"x-{mode}.png", png_bytes(mode=mode))))
        assert response.status_code == 200, (mode, response.text)


def test_decompression_bomb_is_refused_with_422(classifier_client):
    from tests.test_serve_uploads import png_claiming

    response = classifier_client.post("/predict", files=upload(("bomb.png", png_claiming(60_000, 60_000))))
    assert response.status_code == 422
    assert response.json()["error"] == "too_many_pixels" and response.json()["filename"] == "bomb.png"


def float_tiff(width: int, height: int) -> bytes:
    """A small deflate-compressed float32 TIFF of ``width`` x ``height`` (4 bytes a pixel decoded)."""
    buffer = io.BytesIO()
    Image.new("F", (width, height), 0.5).save(buffer, format="TIFF", compression="tiff_adobe_deflate")
    return buffer.getvalue()


def test_uploads_have_a_lower_pixel_limit_than_training(classifier_dir):
    from tests.test_serve_uploads import png_claiming

    # 45 MP: under the decoder's own 64 MP limit, over the server's default 40 MP
    with local_client(create_app(classifier_dir)) as client:
        response = client.post("/predict", files=upload(("big.png", png_claiming(7500, 6000))))
    assert response.status_code == 422 and response.json()["error"] == "too_many_pixels"
    assert "40,000,000" in response.json()["message"]


def test_decoded_memory_of_a_request_is_budgeted_from_the_headers(classifier_dir, monkeypatch):
    import pixsort.serve.uploads as uploads_module

    decoded = []
    real = uploads_module.decode_upload
    monkeypatch.setattr(uploads_module, "decode_upload", lambda *a: decoded.append(a[1]) or real(*a))
    with local_client(create_app(classifier_dir, max_decoded_mb=8)) as client:
        # one float TIFF of 500x500: 1 MB of float32, ~10 MB while converted, from a file of a few KB
        small = float_tiff(500, 500)
        assert len(small) < 100_000
        response = client.post("/predict", files=upload(("float.tif", small)))
        assert response.status_code == 413, response.text
        assert response.json()["error"] == "decode_budget_exceeded" and "8 MB" in response.json()["message"]
        # twenty bilevel PNGs of 1000x700 (0.7 MB each decoded): 14 MB together
        buffer = io.BytesIO()
        Image.new("1", (1000, 700), 1).save(buffer, format="PNG")
        many = client.post("/predict", files=upload(*[(f"b{i}.png", buffer.getvalue()) for i in range(20)]))
        assert many.status_code == 413 and many.json()["error"] == "decode_budget_exceeded"
        assert decoded == []  # refused before any pixel was decoded
        # within the budget: decoded and answered
        ok = client.post("/predict", files=upload(*[(f"b{i}.png", buffer.getvalue()) for i in range(5)]))
        assert ok.status_code == 200 and len(decoded) == 5


def test_decodes_are_limited_process_wide(classifier_dir, monkeypatch):
    import pixsort.serve.uploads as uploads_module

    slots = threading.BoundedSemaphore(1)
    monkeypatch.setattr(uploads_module, "_decode_slots", slots)
    running, most = [0], [0]
    lock = threading.Lock()
    real = uploads_module.decode_upload

    def counted(*args):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        try:
            return real(*args)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(uploads_module, "decode_upload", counted)
    app = create_app(classifier_dir)
    with local_client(app) as client:
        threads = [
            threading.Thread(target=client.post, args=("/predict",), kwargs={"files": upload(("x.png", png_bytes()))})
            for _ in range(6)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert most[0] == 1


def test_truncated_and_empty_files_are_refused(classifier_client, uploads):
    data = uploads[0].read_bytes()
    cut = classifier_client.post("/predict", files=upload(("cut.jpg", data[: len(data) // 4])))
    assert cut.status_code == 422 and cut.json()["error"] == "truncated"
    empty = classifier_client.post("/predict", files=upload(("empty.jpg", b"")))
    assert empty.status_code == 422 and empty.json()["error"] == "empty"


def test_one_bad_file_refuses_the_whole_request_and_names_it(classifier_client, uploads):
    response = classifier_client.post("/predict", files=upload(uploads[0], ("evil.jpg", b"MZ\x90\x00 not a jpeg")))
    assert response.status_code == 415
    assert response.json()["filename"] == "evil.jpg"


def test_missing_files_field_is_a_clear_422(classifier_client):
    response = classifier_client.post("/predict", data={"image": "nope"})
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
    assert "files" in response.json()["message"]


def test_thumbnails_are_a_clusterer_thing(classifier_client):
    response = classifier_client.get("/thumbnails/0")
    assert response.status_code == 404 and response.json()["error"] == "not_found"


def test_openapi_docs_list_the_routes(classifier_client):
    spec = classifier_client.get("/openapi.json").json()
    assert {"/predict", "/model", "/health", "/thumbnails/{index}"} <= set(spec["paths"])
    predict = spec["paths"]["/predict"]["post"]
    assert "multipart/form-data" in predict["requestBody"]["content"]
    assert {"200", "413", "415", "422"} <= set(predict["responses"])
    assert classifier_client.get("/docs").status_code == 200


def test_upload_page_is_served_with_a_strict_content_security_policy(classifier_client):
    response = classifier_client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert 'data-testid="file-input"' in response.text


# -- limits, auth, settings, loading once, inference off the loop -------------------------------


def test_upload_over_the_limit_is_413_json(classifier_dir, uploads):
    with local_client(create_app(classifier_dir, max_upload_mb=0.05)) as client:  # 52 KB
        big = ("big.png", png_bytes(size=(400, 400)))  # ~160 KB of noise
        response = client.post("/predict", files=upload(big))
        assert response.status_code == 413
        assert response.json()["error"] == "payload_too_large"
        assert response.json()["limit_bytes"] == int(0.05 * 1024 * 1024)
        assert client.post("/predict", files=upload(uploads[0])).status_code == 200  # small ones still pass


def test_too_many_files_in_one_request_is_refused(classifier_dir, uploads):
    with local_client(create_app(classifier_dir, max_images=2)) as client:
        response = client.post("/predict", files=upload(*uploads[:3]))
    assert response.status_code == 400 and "files" in response.json()["message"].lower()


def test_api_key_guards_predict_model_and_thumbnails_but_not_health_or_page(classifier_dir, uploads):
    with local_client(create_app(classifier_dir, api_key="s3cret")) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/").status_code == 200
        for response in (
            client.post("/predict", files=upload(uploads[0])),
            client.post("/predict", files=upload(uploads[0]), headers={"X-API-Key": "wrong"}),
            client.get("/model"),
            client.get("/thumbnails/0"),
        ):
            assert response.status_code == 401
            assert response.json()["error"] == "unauthorized"
            assert response.headers["www-authenticate"] == "X-API-Key"
        good = client.post("/predict", files=upload(uploads[0]), headers={"X-API-Key": "s3cret"})
        assert good.status_code == 200
        assert client.get("/model", headers={"X-API-Key": "s3cret"}).json()["auth_required"] is True


def test_the_model_is_loaded_once_and_inference_runs_off_the_event_loop(classifier_dir, uploads, monkeypatch):
    import pathlib

    import pixsort.serve.app as app_module

    loads, metadata_reads = [], []
    real_load, real_read_text = app_module.load_model, pathlib.Path.read_text
    monkeypatch.setattr(app_module, "load_model", lambda path: loads.append(path) or real_load(path))

    def spying_read_text(self, *args, **kwargs):
        if self.name == "model.json":
            metadata_reads.append(sys._getframe(1).f_globals["__name__"])
        return real_read_text(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "read_text", spying_read_text)
    app = create_app(classifier_dir)
    on_event_loop = []
    predictor = app.state.batcher.fn

    def spying_predictor(images):
        try:
            asyncio.get_running_loop()
            on_event_loop.append(True)
        except RuntimeError:
            on_event_loop.append(False)
        return predictor(images)

    app.state.batcher.fn = spying_predictor
    with local_client(app) as client:
        for path in uploads[:3]:
            assert client.post("/predict", files=upload(path)).status_code == 200
        assert client.get("/model").status_code == 200
    assert len(loads) == 1
    # model.json is read once, by the model-folder helper, never by the serving code itself
    assert metadata_reads == ["pixsort.base.modelfile"]
    serve_modules = [m for name, m in sys.modules.items() if name.startswith("pixsort.serve")]
    assert not [m.__name__ for m in serve_modules if "read_model_meta" in vars(m)]  # not even imported
    assert on_event_loop == [False] * 4  # the start-up warm-up and three requests, all on worker threads


def test_settings_are_passed_as_arguments_and_the_worker_factory_pickles(classifier_dir, monkeypatch):
    import functools
    import pickle

    from pixsort.serve.settings import ServeSettings

    for name in ("PIXSORT_MODEL", "PIXSORT_MAX_UPLOAD_MB", "PIXSORT_API_KEY", "PIXSORT_MAX_BATCH", "PIXSORT_THREADS"):
        monkeypatch.setenv(name, "0")  # nothing reads these any more: they would break the app if read
    settings = ServeSettings(max_upload_mb=0.5, api_key="Zq9", max_batch=4)
    assert "Zq9" not in repr(settings)  # the key stays out of logs
    factory = pickle.loads(pickle.dumps(functools.partial(create_app, str(classifier_dir), settings)))
    with local_client(factory()) as client:
        assert client.app.state.settings == settings
        assert client.app.state.batcher.max_batch == 4
        info = client.get("/model", headers={"X-API-Key": "Zq9"}).json()
    assert info["max_upload_bytes"] == 512 * 1024 and info["auth_required"] is True
    # keyword arguments override the settings object, one field at a time
    app = create_app(classifier_dir, settings, api_key=None, max_images=3)
    assert app.state.settings == ServeSettings(max_upload_mb=0.5, max_images=3, max_batch=4)
    with pytest.raises(TypeError):
        create_app(classifier_dir, 0.5)  # max_upload_mb is a keyword now


def test_bad_settings_are_refused_up_front(classifier_dir, monkeypatch):
    import pixsort.serve.app as app_module
    from pixsort.serve.settings import ServeSettings

    monkeypatch.setattr(app_module, "load_model", lambda path: pytest.fail("loaded a model for bad settings"))
    for bad in (
        {"max_upload_mb": 0},
        {"max_upload_mb": float("nan")},
        {"api_key": "  "},
        {"max_images": 0},
        {"n_neighbors": -1},
        {"max_batch": 0},
        {"threads": 0},
        {"threads": 1.5},
    ):
        with pytest.raises(ValueError):
            create_app(classifier_dir, **bad)
        with pytest.raises(ValueError):
            ServeSettings(**bad)
    with pytest.raises(TypeError):
        create_app(classifier_dir, max_uplod_mb=1)  # a misspelt setting is not ignored


def test_host_header_not_on_the_allow_list_is_400(classifier_dir, uploads):
    # DNS rebinding: a page on attacker.example resolved to 127.0.0.1 must not reach the model
    app = create_app(classifier_dir)
    with TestClient(app, base_url="http://attacker.example") as client:
        answers = (client.get("/model"), client.get("/health"), client.post("/predict", files=upload(uploads[0])))
        for response in answers:
            assert response.status_code == 400 and response.json()["error"] == "invalid_host"
        assert client.get("/model", headers={"Host": "attacker.example:8000"}).status_code == 400
    with TestClient(app, base_url="http://localhost:8000") as client:
        assert client.get("/model").status_code == 200
        for host in ("127.0.0.1:8000", "[::1]:8000", "LOCALHOST"):
            assert client.get("/model", headers={"Host": host}).status_code == 200, host
    with TestClient(create_app(classifier_dir, allowed_hosts=("pixsort.lan",)), base_url="http://pixsort.lan") as c:
        assert c.get("/model").status_code == 200
        assert c.get("/model", headers={"Host": "localhost"}).status_code == 400


def test_serve_command_allowed_hosts_and_empty_api_key(classifier_dir, monkeypatch):
    import uvicorn
    from typer.testing import CliRunner

    from pixsort.cli import app

    served = []
    monkeypatch.setattr(uvicorn, "run", lambda application, **options: served.append((application, options)))
    monkeypatch.delenv("PIXSORT_API_KEY", raising=False)
    result = CliRunner().invoke(app, ["serve", str(classifier_dir), "--host", "10.1.2.3", "--allowed-host", "pix.lan",
                                      "--allowed-host", "other.lan"])  # fmt: skip
    assert result.exit_code == 0, result.output
    ((application, options),) = served
    assert application.state.settings.allowed_hosts == ("localhost", "127.0.0.1", "::1", "10.1.2.3", "pix.lan",
                                                        "other.lan")  # fmt: skip
    assert options["timeout_keep_alive"] > 0 and options["h11_max_incomplete_event_size"] > 0
    served.clear()
    assert CliRunner().invoke(app, ["serve", str(classifier_dir), "--host", "0.0.0.0"]).exit_code == 0
    assert served[0][0].state.settings.allowed_hosts == ("localhost", "127.0.0.1", "::1")
    served.clear()
    for empty in ("", "  "):
        result = CliRunner().invoke(app, ["serve", str(classifier_dir), "--api-key", empty])
        assert result.exit_code == 2, result.output
        assert "empty" in result.output and not served
    result = CliRunner().invoke(app, ["serve", str(classifier_dir)], env={"PIXSORT_API_KEY": ""})
    assert result.exit_code == 2 and not served


# -- clusterer routes ---------------------------------------------------------------------------


def test_clusterer_predict_gives_cluster_distance_and_neighbours(clusterer_client, clusterer_dir, uploads):
    check_clusterer_predict(clusterer_client, clusterer_dir, uploads)


def test_clusterer_puts_each_kind_of_image_in_its_own_cluster(clusterer_client, uploads):
    results = clusterer_client.post("/predict", files=upload(*uploads)).json()["results"]
    clusters = [r["cluster"] for r in results]
    assert clusters[0] == clusters[1] and clusters[2] == clusters[3] and clusters[4] == clusters[5]
    assert len(set(clusters)) == 3
    for result, kind in zip(results, ("dark", "dark", "bright", "bright", "striped", "striped")):
        assert {n["name"].split("-")[0] for n in result["neighbors"]} == {kind}  # neighbours of its own kind


def test_clusterer_model_route(clusterer_client, clusterer_dir):
    from pixsort.workflows import load_model

    model = load_model(clusterer_dir)
    info = clusterer_client.get("/model").json()
    assert info["kind"] == "clusterer" and info["n_clusters"] == 3
    assert info["name"] == "synthetic-pixels-kmeans"
    assert info["n_train"] == 60 and info["n_neighbors"] == 5
    assert info["cluster_sizes"] == np.bincount(model.labels_, minlength=3).tolist() == [20, 20, 20]
    assert info["validation_metrics"]["silhouette"] == pytest.approx(model.scores_["silhouette"])
    assert info["decode"] == model.decode_settings.to_dict()


def test_clusterer_embeds_each_batch_once_through_assign(clusterer_dir, uploads, monkeypatch):
    from pixsort.cluster.images import ImageClusterer

    embedded, assigned, others = [], [], []
    real_embed, real_assign = ImageClusterer.embed, ImageClusterer.assign

    def counting_embed(self, images):
        embedded.append(len(images))
        return real_embed(self, images)

    def counting_assign(self, images, n_neighbors=5):
        assigned.append((len(images), n_neighbors))
        return real_assign(self, images, n_neighbors=n_neighbors)

    monkeypatch.setattr(ImageClusterer, "embed", counting_embed)
    monkeypatch.setattr(ImageClusterer, "assign", counting_assign)
    for name in ("predict", "transform", "kneighbors"):  # assign answers all three itself
        monkeypatch.setattr(ImageClusterer, name, lambda self, *a, _name=name, **k: others.append(_name))
    with local_client(create_app(clusterer_dir)) as client:
        model = client.app.state.model
        assert "embed" not in vars(model)  # the predictor no longer patches the model
        response = client.post("/predict", files=upload(*uploads[:2]))
    assert response.status_code == 200
    # the start-up warm-up, then the two uploads in one assign call: one extraction per batch
    assert assigned == [(1, 5), (2, 5)]
    assert embedded == [1, 2]
    assert others == []


def test_clusterer_without_neighbours_skips_the_search(clusterer_dir, uploads):
    with local_client(create_app(clusterer_dir, n_neighbors=0)) as client:
        results = client.post("/predict", files=upload(*uploads[:2])).json()["results"]
        assert client.get("/model").json()["n_neighbors"] == 0
    assert [r["neighbors"] for r in results] == [[], []]


def test_thumbnails_show_training_images_by_index_only(clusterer_client):
    response = clusterer_client.get("/thumbnails/0")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(response.content)).size == (96, 96)
    assert clusterer_client.get("/thumbnails/60").status_code == 404
    assert clusterer_client.get("/thumbnails/-1").status_code == 404
    assert clusterer_client.get("/thumbnails/..%2F..%2Fetc%2Fpasswd").status_code in (404, 422)


def test_a_training_image_that_is_gone_is_a_404_not_a_500(clusterer_dir, tmp_path):
    from pixsort.workflows import load_model

    model = load_model(clusterer_dir)
    moved = tmp_path / "moved-model"
    shutil.copytree(clusterer_dir, moved)
    meta = (moved / "model.json").read_text()
    gone = model.train_paths_[0]
    (moved / "model.json").write_text(meta.replace(gone, str(tmp_path / "nowhere.png")))
    with local_client(create_app(moved)) as client:
        response = client.get("/thumbnails/0")
        assert response.status_code == 404 and "no longer there" in response.json()["message"]
        assert client.get("/thumbnails/1").status_code == 200


def test_thumbnails_of_relative_training_paths_come_from_where_the_model_was_fitted(tmp_path, monkeypatch):
    from pixsort.cluster.images import ImageClusterer

    fitted_in, elsewhere = tmp_path / "fitted", tmp_path / "elsewhere"
    for kind in ("dark", "bright"):
        write_images(fitted_in / "train" / kind, kind, synthetic_images(kind, 6))
        # a different file at the same relative path, where the server will run
        write_images(elsewhere / "train" / kind, kind, synthetic_images("striped", 6))
    monkeypatch.chdir(fitted_in)
    clusterer = ImageClusterer(features="pixels", n_clusters=2, progress=False)
    clusterer.fit("train")
    assert not Path(clusterer.train_paths_[0]).is_absolute()
    clusterer.save(tmp_path / "model")
    monkeypatch.chdir(elsewhere)
    with local_client(create_app(tmp_path / "model")) as client:
        response = client.get("/thumbnails/0")
    assert response.status_code == 200
    shown = np.asarray(Image.open(io.BytesIO(response.content)).convert("L"), dtype=float)
    original = decode_image(fitted_in / clusterer.train_paths_[0], decode_settings_rgb96())[0].mean(axis=2)
    impostor = decode_image(elsewhere / clusterer.train_paths_[0], decode_settings_rgb96())[0].mean(axis=2)
    assert np.abs(shown - original).mean() < np.abs(shown - impostor).mean()


def decode_settings_rgb96():
    from pixsort.data import DecodeSettings

    return DecodeSettings(size=96, channels="RGB", resize="crop")


# -- the same parity checks on real chest X-rays (skip without ../shared) -----------------------


@pytest.fixture(scope="session")
def xray_classifier_client(xray_classifier_dir):
    with local_client(create_app(xray_classifier_dir)) as client:
        yield client


def test_xray_classifier_gives_the_models_own_probabilities_and_decision(
    xray_classifier_client, xray_classifier_dir, xrays
):
    _, held_out = xrays
    check_classifier_predict(xray_classifier_client, xray_classifier_dir, held_out, size=(224, 224))
    info = xray_classifier_client.get("/model").json()
    assert info["name"] == "xray-seed-cnn" and info["classes"] == ["NORMAL", "PNEUMONIA"]
    assert info["positive_class"] == "PNEUMONIA"


def test_xray_clusterer_gives_cluster_distance_and_neighbours(xray_clusterer_dir, xrays):
    _, held_out = xrays
    with local_client(create_app(xray_clusterer_dir)) as client:
        check_clusterer_predict(client, xray_clusterer_dir, held_out[:3])
        assert client.get("/model").json()["n_train"] == 40
        assert client.get("/thumbnails/0").status_code == 200


# -- the command line ---------------------------------------------------------------------------


def test_serve_command_refuses_a_folder_that_is_not_a_model(tmp_path):
    from typer.testing import CliRunner

    from pixsort.cli import app

    result = CliRunner().invoke(app, ["serve", str(tmp_path)])
    assert result.exit_code == 2
    assert "model.json not found" in " ".join(result.output.split())  # rich wraps long lines
    assert "upload page" not in result.output


def test_serve_command_loads_the_model_before_it_says_it_serves(classifier_dir, tmp_path, monkeypatch):
    import uvicorn
    from typer.testing import CliRunner

    from pixsort.cli import app

    broken = tmp_path / "broken-model"
    shutil.copytree(classifier_dir, broken)
    (broken / "weights.safetensors").write_bytes(b"not safetensors at all")
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("served a model that does not load"))
    result = CliRunner().invoke(app, ["serve", str(broken)])
    assert result.exit_code == 2, result.output
    assert "weights.safetensors" in result.output.replace("\n", "")  # the one clear error names the broken file
    assert "pixsort serve:" not in result.output and "upload page" not in result.output

    served = []
    monkeypatch.setattr(uvicorn, "run", lambda application, **options: served.append((application, options)))
    result = CliRunner().invoke(app, ["serve", str(classifier_dir), "--max-upload-mb", "2", "--max-batch", "3",
                                      "--port", "8123"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "pixsort serve: classifier synthetic-seed-cnn" in " ".join(result.output.split())
    ((application, options),) = served
    assert options["port"] == 8123 and options["host"] == "127.0.0.1"
    settings = application.state.settings
    assert (settings.max_upload_mb, settings.max_batch, settings.threads, settings.api_key) == (2, 3, None, None)
    assert application.state.predictor.kind == "classifier"


# -- serving through ONNX Runtime -------------------------------------------------------------


@pytest.fixture
def onnx_model_dir(classifier_dir, tmp_path) -> Path:
    """A copy of the synthetic classifier's folder, without an exported graph."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    folder = tmp_path / "synthetic-seed-cnn"
    shutil.copytree(classifier_dir, folder)
    return folder


def torch_fp32(model_dir: Path):
    """The saved classifier in torch at float32: what the exported graph is checked against
    (on a CPU with bf16, ``precision="auto"`` torch rounds through bf16)."""
    from pixsort.workflows import load_model

    model = load_model(model_dir)
    model.network_.set_precision("fp32")
    return model


def test_runtime_onnx_exports_once_and_answers_like_torch(onnx_model_dir, uploads):
    exported = onnx_model_dir / "model.onnx"
    assert not exported.exists()
    app = create_app(onnx_model_dir, runtime="onnx")  # exported (and checked) on the fly
    record = json.loads((onnx_model_dir / "model.onnx.json").read_text())
    assert record["parity"]["max_abs_diff"] <= 1e-4
    assert type(app.state.model).__name__ == "OnnxClassifier"
    model = torch_fp32(onnx_model_dir)
    images = np.stack([decode_image(p, model.decode_settings)[0] for p in uploads])
    expected = model.predict_proba(images)
    with local_client(app) as client:
        response = client.post("/predict", files=upload(*uploads))
        info = client.get("/model").json()
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    got = np.array([list(r["probabilities"].values()) for r in results])
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    assert [r["decision"] for r in results] == [model.classes_[d] for d in model.predict(images)]
    assert [r["threshold"] for r in results] == [pytest.approx(model.threshold_)] * len(uploads)
    assert info["runtime"] == "onnx" and info["classes"] == SYNTHETIC_CLASSES
    assert info["threshold"] == pytest.approx(model.threshold_)

    # a second start reuses the checked export ...
    stamp = exported.stat().st_mtime_ns
    create_app(onnx_model_dir, runtime="onnx")
    assert exported.stat().st_mtime_ns == stamp
    # ... and a model saved anew into the folder (other weights) gets a fresh one
    with torch.no_grad():
        model.network_.trainable[-1][-1].bias.add_(3.0)
    model.network_.set_precision("auto")
    model.save(onnx_model_dir)
    app = create_app(onnx_model_dir, runtime="onnx")
    assert exported.stat().st_mtime_ns != stamp
    changed = torch_fp32(onnx_model_dir).predict_proba(images)
    np.testing.assert_allclose(app.state.model.predict_proba(images), changed, atol=1e-4, rtol=0)
    assert np.abs(changed - expected).max() > 1e-2


def test_several_workers_with_runtime_onnx_share_one_export_made_before_they_start(onnx_model_dir, monkeypatch):
    from typer.testing import CliRunner

    import pixsort.cli.serve_cmd as serve_cmd
    from pixsort.cli import app

    started = []
    monkeypatch.setattr(serve_cmd, "run_workers", lambda factory, **options: started.append(factory))
    result = CliRunner().invoke(app, ["serve", str(onnx_model_dir), "--runtime", "onnx", "--workers", "2"])
    assert result.exit_code == 0, result.output
    exported = onnx_model_dir / "model.onnx"
    assert exported.exists()  # by the parent, before any worker
    ((factory,),) = [started]
    assert factory.args[1].runtime == "onnx"
    stamp = exported.stat().st_mtime_ns
    application = factory()  # what each worker runs: the checked export is reused
    assert exported.stat().st_mtime_ns == stamp
    assert type(application.state.model).__name__ == "OnnxClassifier"


def test_runtime_onnx_is_checked_and_is_for_classifiers(onnx_model_dir, clusterer_dir):
    from pixsort.base.errors import ModelFileError
    from pixsort.serve.settings import ServeSettings

    with pytest.raises(ValueError, match="runtime must be one of torch, onnx"):
        ServeSettings(runtime="tensorrt")
    assert ServeSettings().runtime == "torch"
    with pytest.raises(ModelFileError, match="holds a clusterer: only classifiers"):
        create_app(clusterer_dir, runtime="onnx")


def test_serve_command_takes_runtime_onnx(onnx_model_dir, clusterer_dir, monkeypatch):
    import uvicorn
    from typer.testing import CliRunner

    from pixsort.cli import app

    served = []
    monkeypatch.setattr(uvicorn, "run", lambda application, **options: served.append(application))
    result = CliRunner().invoke(app, ["serve", str(onnx_model_dir), "--runtime", "onnx"])
    assert result.exit_code == 0, result.output
    assert "runtime: onnx" in result.output
    ((application,),) = [served]
    assert application.state.settings.runtime == "onnx" and (onnx_model_dir / "model.onnx").exists()
    refused = CliRunner().invoke(app, ["serve", str(clusterer_dir), "--runtime", "onnx"])
    assert refused.exit_code == 2 and "only classifiers" in " ".join(refused.output.split())
    refused = CliRunner().invoke(app, ["serve", str(clusterer_dir), "--runtime", "onnx", "--workers", "2"])
    assert refused.exit_code == 2 and "only classifiers" in " ".join(refused.output.split())
    refused = CliRunner().invoke(app, ["serve", str(onnx_model_dir), "--runtime", "tf"])
    assert refused.exit_code == 2 and "runtime must be one of" in refused.output


# -- the real server process --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve_process(model_dir: Path, *options: str, ready_s: float = 90):
    """``python -m pixsort serve MODEL`` in a process group of its own, on a free loopback
    port; the whole group (workers included) is stopped on exit."""
    port = free_port()
    command = [
        sys.executable, "-m", "pixsort", "serve", str(model_dir), "--port", str(port),
        "--log-level", "warning", *options,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "PIXSORT_API_KEY"}
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, env=env, start_new_session=True)

        def output() -> str:
            stderr.seek(0)
            return stderr.read().decode(errors="replace")[-2000:]

        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + ready_s
            while True:
                if process.poll() is not None:
                    pytest.fail(f"pixsort serve exited ({process.returncode}): {output()}")
                try:
                    if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"pixsort serve did not become healthy in {ready_s:g} s: {output()}")
                time.sleep(0.1)
            yield base, process
        finally:
            stop_group(process)


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the process group, SIGKILL to whatever is left after 15 s."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # workers that outlived their parent, too
    except ProcessLookupError:
        pass
    process.wait()


@pytest.fixture(scope="session")
def classifier_server(classifier_dir):
    with serve_process(classifier_dir) as (base, process):
        yield base, process


@pytest.fixture(scope="session")
def clusterer_server(clusterer_dir):
    with serve_process(clusterer_dir) as (base, process):
        yield base, process


def test_serve_binds_to_loopback_only_by_default(classifier_server):
    _, process = classifier_server
    listening = [c for c in psutil.Process(process.pid).net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert listening, "the server listens on no socket"
    assert {c.laddr.ip for c in listening} == {"127.0.0.1"}


def test_serve_with_two_workers_answers_and_passes_its_settings_on(clusterer_dir, uploads):
    with serve_process(
        clusterer_dir, "--workers", "2", "--host", "127.0.0.1", "--api-key", "s3cret", "--max-upload-mb", "0.5"
    ) as (base, process):
        for _ in range(4):
            assert httpx.get(f"{base}/health", timeout=10).status_code == 200
        workers = [p for p in psutil.Process(process.pid).children() if "spawn_main" in " ".join(p.cmdline())]
        assert len(workers) == 2
        assert httpx.get(f"{base}/model", timeout=10).status_code == 401  # the key reached the workers
        info = httpx.get(f"{base}/model", headers={"X-API-Key": "s3cret"}, timeout=10).json()
        assert info["max_upload_bytes"] == 512 * 1024 and info["kind"] == "clusterer"
        response = httpx.post(f"{base}/predict", files=upload(uploads[0]), headers={"X-API-Key": "s3cret"}, timeout=30)
        assert response.status_code == 200 and len(response.json()["results"]) == 1
    assert process.poll() is not None
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert alive == []  # the workers went with their parent


def closed_within(sock: socket.socket, bound_s: float) -> tuple[bool, bytes, float]:
    """Read from ``sock`` until the server closes it or ``bound_s`` passes: (closed, bytes read, seconds)."""
    t0 = time.monotonic()
    data = b""
    sock.settimeout(0.25)
    while time.monotonic() - t0 < bound_s:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return True, data, time.monotonic() - t0
        if not chunk:
            return True, data, time.monotonic() - t0
        data += chunk
    return False, data, time.monotonic() - t0


def test_slow_clients_are_cut_off_within_the_request_timeout(classifier_dir):
    with serve_process(classifier_dir, "--request-timeout", "2") as (base, _):
        port = int(base.rsplit(":", 1)[1])
        # nothing at all, and headers trickled one byte every 0.5 s: closed within the bound
        with socket.create_connection(("127.0.0.1", port)) as idle:
            closed, _, took = closed_within(idle, 8)
            assert closed and took < 6, took
        with socket.create_connection(("127.0.0.1", port)) as trickle:
            trickle.settimeout(0.25)
            t0, closed = time.monotonic(), False
            for byte in b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 40:
                try:
                    trickle.sendall(bytes([byte]))
                    if trickle.recv(1) == b"":
                        closed = True
                        break
                except TimeoutError:
                    pass
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
                time.sleep(0.25)
            assert closed and time.monotonic() - t0 < 6
        # whole headers, a body that never comes: 408 and closed
        with socket.create_connection(("127.0.0.1", port)) as slow_body:
            slow_body.sendall(
                b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
                b"Content-Length: 100000\r\n\r\n--x\r\n"
            )
            closed, answer, took = closed_within(slow_body, 8)
            assert closed and took < 6, (took, answer)
            assert answer.startswith(b"HTTP/1.1 408") and b"request_timeout" in answer
        assert httpx.get(f"{base}/health", timeout=5).status_code == 200  # and the server still answers


def run_load(
    base: str, payloads: list[tuple[str, bytes]], n_requests: int, concurrency: int, timeout_s: float = 60
) -> tuple[list, list, dict]:
    """Send ``n_requests`` one-image POST /predict, ``concurrency`` at a time, each with
    ``timeout_s``; (latencies, errors, {payload index: [first result of each answer]})."""
    latencies, errors, answers = [], [], {}
    jobs = iter(range(n_requests))

    async def worker(client: httpx.AsyncClient) -> None:
        for i in jobs:
            name, data = payloads[i % len(payloads)]
            start = time.perf_counter()
            try:
                response = await client.post(f"{base}/predict", files={"files": (name, data, "image/jpeg")})
            except httpx.HTTPError as exc:
                errors.append(repr(exc))
                continue
            if response.status_code != 200 or len(response.json()["results"]) != 1:
                errors.append(f"{response.status_code}: {response.text[:200]}")
            else:
                latencies.append(time.perf_counter() - start)
                answers.setdefault(i % len(payloads), []).append(response.json()["results"][0])

    async def main() -> None:
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(limits=limits, timeout=timeout_s) as client:
            await asyncio.gather(*(worker(client) for _ in range(concurrency)))

    # in a thread of its own: asyncio.run refuses a thread where Playwright's loop runs
    runner = threading.Thread(target=asyncio.run, args=(main(),))
    runner.start()
    runner.join()
    return latencies, errors, answers


@pytest.mark.parametrize("server", ["classifier_server", "clusterer_server"])
def test_short_bounded_load_gets_the_models_own_answers(server, request, uploads, classifier_dir, clusterer_dir):
    from pixsort.workflows import load_model

    base, process = request.getfixturevalue(server)
    assert base.startswith("http://127.0.0.1:")
    payloads = [(p.name, p.read_bytes()) for p in uploads]
    started = time.monotonic()
    latencies, errors, answers = run_load(base, payloads, n_requests=40, concurrency=4, timeout_s=20)
    assert time.monotonic() - started < 60
    assert errors == []
    assert len(latencies) == 40
    assert process.poll() is None  # still up
    if server == "classifier_server":
        model = load_model(classifier_dir)
        for i, expected in enumerate(expected_classifier_results(model, uploads)):
            for result in answers[i]:
                assert result["filename"] == uploads[i].name
                assert_classifier_result(result, expected)
    else:
        model = load_model(clusterer_dir)
        for i, expected in enumerate(expected_clusterer_results(model, uploads)):
            for result in answers[i]:
                assert_clusterer_result(result, expected, model)
    assert sum(len(a) for a in answers.values()) == 40


@pytest.fixture(scope="session")
def xray_classifier_server(xray_classifier_dir):
    with serve_process(xray_classifier_dir) as (base, process):
        yield base, process


@pytest.fixture(scope="session")
def xray_clusterer_server(xray_clusterer_dir):
    with serve_process(xray_clusterer_dir) as (base, process):
        yield base, process


@pytest.mark.slow
@pytest.mark.parametrize("server, n_requests", [("xray_classifier_server", 400), ("xray_clusterer_server", 200)])
def test_bounded_load_on_loopback_has_no_errors(server, n_requests, request, xrays):
    base, process = request.getfixturevalue(server)
    assert base.startswith("http://127.0.0.1:")
    _, held_out = xrays
    payloads = [(p.name, p.read_bytes()) for p in held_out]
    latencies, errors, _ = run_load(base, payloads, n_requests=n_requests, concurrency=8)
    assert errors == []
    assert len(latencies) == n_requests
    assert process.poll() is None  # still up
    assert httpx.get(f"{base}/health").status_code == 200


# -- the page in a real browser -----------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    # module scope: Playwright's sync API keeps an event loop running in this thread
    # while it is open, which would break asyncio.run in later test modules
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: install it with .ci/install-browser.sh (Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.mark.browser
def test_page_classifies_an_uploaded_image(browser, classifier_server, uploads):
    from playwright.sync_api import expect

    base, _ = classifier_server
    positive = SYNTHETIC_CLASSES[1]
    expected = httpx.post(f"{base}/predict", files=upload(uploads[0])).json()["results"][0]
    page = browser.new_page(viewport={"width": 1100, "height": 720})
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{base}/")
    expect(page.get_by_test_id("model-summary")).to_contain_text(", ".join(SYNTHETIC_CLASSES))
    page.get_by_test_id("file-input").set_input_files(str(uploads[0]))
    card = page.get_by_test_id("result").first
    expect(card).to_have_attribute("data-state", "done", timeout=30_000)
    expect(card.get_by_test_id("decision")).to_have_text(expected["decision"])
    expect(card.get_by_test_id("probability-bar")).to_have_count(2)
    expect(card).to_contain_text(f"{100 * expected['probabilities'][positive]:.1f}%")
    page.screenshot(path="/tmp/pixsort-serve-classifier-page.png", full_page=True)
    assert errors == []
    page.close()


@pytest.mark.browser
def test_page_accepts_dropped_files(browser, classifier_server, uploads):
    import base64

    from playwright.sync_api import expect

    base, _ = classifier_server
    page = browser.new_page()
    page.goto(f"{base}/")
    dropped = page.evaluate_handle(
        """([name, b64]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: "image/jpeg" }));
            return transfer;
        }""",
        [uploads[2].name, base64.b64encode(uploads[2].read_bytes()).decode()],
    )
    page.get_by_test_id("drop-zone").dispatch_event("drop", {"dataTransfer": dropped})
    card = page.get_by_test_id("result").first
    expect(card).to_have_attribute("data-state", "done", timeout=30_000)
    expect(card).to_contain_text(uploads[2].name)
    expect(card.get_by_test_id("decision")).to_have_text(re.compile(f"^({'|'.join(SYNTHETIC_CLASSES)})$"))
    page.close()


@pytest.mark.browser
def test_page_shows_a_refusal_for_a_non_image(browser, classifier_server, tmp_path):
    from playwright.sync_api import expect

    base, _ = classifier_server
    fake = tmp_path / "photo.jpg"
    fake.write_bytes(b"%PDF-1.4 definitely not a photo")
    page = browser.new_page()
    page.goto(f"{base}/")
    page.get_by_test_id("file-input").set_input_files(str(fake))
    card = page.get_by_test_id("result").first
    expect(card).to_have_attribute("data-state", "error", timeout=30_000)
    expect(card).to_contain_text("unsupported_media_type")
    page.close()


@contextmanager
def serve_in_thread(app):
    """uvicorn on 127.0.0.1 (a free port) in a thread of this process; stopped on exit."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.02)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.mark.browser
def test_page_asks_for_the_api_key_and_then_works(browser, clusterer_dir, uploads):
    from playwright.sync_api import expect

    with serve_in_thread(create_app(clusterer_dir, api_key="s3cret")) as base:
        page = browser.new_page()
        page.goto(f"{base}/")
        expect(page.get_by_test_id("model-summary")).to_have_text("this server needs an API key")
        page.get_by_label("API key").fill("s3cret")
        page.get_by_role("button", name="Use key").click()
        expect(page.get_by_test_id("model-summary")).to_contain_text(clusterer_dir.name)
        page.get_by_test_id("file-input").set_input_files(str(uploads[0]))
        card = page.get_by_test_id("result").first
        expect(card).to_have_attribute("data-state", "done", timeout=30_000)
        # thumbnails need the key too: they are fetched with it, not linked
        expect(card.locator("[data-testid=neighbor][data-loaded=true]")).to_have_count(5, timeout=30_000)
        page.close()


@pytest.mark.browser
def test_page_shows_the_cluster_and_thumbnails_of_its_nearest_members(browser, clusterer_server, uploads):
    from playwright.sync_api import expect

    base, _ = clusterer_server
    page = browser.new_page(viewport={"width": 1100, "height": 720})
    page.goto(f"{base}/")
    page.get_by_test_id("file-input").set_input_files([str(p) for p in uploads[:2]])
    cards = page.get_by_test_id("result")
    expect(cards).to_have_count(2)
    for i in range(2):
        expect(cards.nth(i)).to_have_attribute("data-state", "done", timeout=30_000)
        expect(cards.nth(i).get_by_test_id("decision")).to_contain_text("cluster ")
    thumbnails = page.locator("[data-testid=neighbor][data-loaded=true]")
    expect(thumbnails).to_have_count(10, timeout=30_000)
    widths = thumbnails.evaluate_all("imgs => imgs.map(img => img.naturalWidth)")
    assert widths == [96] * 10  # real decoded JPEGs, not broken images
    page.screenshot(path="/tmp/pixsort-serve-clusterer-page.png", full_page=True)
    page.close()
