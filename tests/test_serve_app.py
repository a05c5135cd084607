"""The serving app end to end, on REAL small models fitted once per session:

* every route and every refusal through FastAPI's TestClient;
* ``pixsort serve`` started as a real process on 127.0.0.1: bound to loopback by
  default, and a bounded load (several hundred requests, 8 at a time) with no errors;
* the upload page in Debian's Chromium (``@pytest.mark.browser``): pick an X-ray, see
  its decision; pick one for the clusterer, see its cluster and neighbour thumbnails.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from pixsort.data import decode_image, load_images, open_dataset
from pixsort.serve.app import create_app
from tests.conftest import shared_path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip


# -- real models, fitted once per session -------------------------------------------------


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
def classifier_dir(xrays, tmp_path_factory) -> Path:
    from pixsort.classify.estimator import ImageClassifier

    decoded, _ = xrays
    clf = ImageClassifier("seed-cnn", epochs=1, image_size=64, progress=False)
    clf.fit(decoded.images, decoded.labels, classes=decoded.class_names, decode_settings=decoded.settings)
    folder = tmp_path_factory.mktemp("models") / "xray-seed-cnn"
    clf.save(folder)
    return folder


@pytest.fixture(scope="session")
def clusterer_dir(xrays, tmp_path_factory) -> Path:
    from pixsort.cluster.images import ImageClusterer

    decoded, _ = xrays
    clusterer = ImageClusterer(features="pixels", n_clusters=3, progress=False)
    clusterer.fit(decoded)
    folder = tmp_path_factory.mktemp("models") / "xray-pixels-kmeans"
    clusterer.save(folder)
    return folder


@pytest.fixture(scope="session")
def classifier_client(classifier_dir):
    with TestClient(create_app(classifier_dir)) as client:
        yield client


@pytest.fixture(scope="session")
def clusterer_client(clusterer_dir):
    with TestClient(create_app(clusterer_dir)) as client:
        yield client


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


# -- classifier routes --------------------------------------------------------------------


def test_health_answers_without_touching_the_model(classifier_client):
    response = classifier_client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok" and response.json()["kind"] == "classifier"


def test_model_route_describes_the_saved_classifier(classifier_client, classifier_dir):
    from pixsort.models import load_model

    model = load_model(classifier_dir)
    info = classifier_client.get("/model").json()
    assert info["kind"] == "classifier"
    assert info["name"] == "xray-seed-cnn"
    assert info["classes"] == ["NORMAL", "PNEUMONIA"]
    assert info["threshold"] == pytest.approx(model.threshold_)
    assert info["positive_class"] == "PNEUMONIA"
    assert info["validation_metrics"]["roc_auc"] == pytest.approx(model.validation_metrics_["roc_auc"])
    assert info["decode"] == model.decode_settings.to_dict()
    assert info["max_upload_bytes"] == 20 * 1024 * 1024 and info["auth_required"] is False


def test_predict_gives_the_models_own_probabilities_and_decision(classifier_client, classifier_dir, xrays):
    from pixsort.models import load_model

    _, held_out = xrays
    model = load_model(classifier_dir)
    response = classifier_client.post("/predict", files=upload(*held_out))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["kind"] == "classifier"
    assert [r["filename"] for r in body["results"]] == [p.name for p in held_out]  # order kept

    images = np.stack([decode_image(p, model.decode_settings)[0] for p in held_out])
    expected_proba = model.predict_proba(images)
    expected_decision = model.predict(images)
    for result, proba, decision in zip(body["results"], expected_proba, expected_decision):
        probs = result["probabilities"]
        assert list(probs) == ["NORMAL", "PNEUMONIA"]
        assert [probs["NORMAL"], probs["PNEUMONIA"]] == pytest.approx(proba.tolist(), abs=1e-5)
        assert result["decision"] == model.classes_[decision]
        assert result["score"] == pytest.approx(proba[1], abs=1e-5)
        assert result["threshold"] == pytest.approx(model.threshold_)
        assert (result["format"], result["width"], result["height"]) == ("JPEG", 224, 224)


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


def test_truncated_and_empty_files_are_refused(classifier_client, xrays):
    _, held_out = xrays
    data = held_out[0].read_bytes()
    cut = classifier_client.post("/predict", files=upload(("cut.jpg", data[: len(data) // 4])))
    assert cut.status_code == 422 and cut.json()["error"] == "truncated"
    empty = classifier_client.post("/predict", files=upload(("empty.jpg", b"")))
    assert empty.status_code == 422 and empty.json()["error"] == "empty"


def test_one_bad_file_refuses_the_whole_request_and_names_it(classifier_client, xrays):
    _, held_out = xrays
    response = classifier_client.post("/predict", files=upload(held_out[0], ("evil.jpg", b"MZ\x90\x00 not a jpeg")))
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


# -- limits, auth, loading once, inference off the loop ----------------------------------


def test_upload_over_the_limit_is_413_json(classifier_dir, xrays):
    _, held_out = xrays
    with TestClient(create_app(classifier_dir, max_upload_mb=0.05)) as client:  # 52 KB
        big = ("big.png", png_bytes(size=(400, 400)))  # ~160 KB of noise
        response = client.post("/predict", files=upload(big))
        assert response.status_code == 413
        assert response.json()["error"] == "payload_too_large"
        assert response.json()["limit_bytes"] == int(0.05 * 1024 * 1024)
        assert client.post("/predict", files=upload(held_out[0])).status_code == 200  # small ones still pass


def test_too_many_files_in_one_request_is_refused(classifier_dir, xrays):
    _, held_out = xrays
    with TestClient(create_app(classifier_dir, max_images=2)) as client:
        response = client.post("/predict", files=upload(*held_out[:3]))
    assert response.status_code == 400 and "files" in response.json()["message"].lower()


def test_api_key_guards_predict_model_and_thumbnails_but_not_health_or_page(classifier_dir, xrays):
    _, held_out = xrays
    with TestClient(create_app(classifier_dir, api_key="s3cret")) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/").status_code == 200
        for response in (
            client.post("/predict", files=upload(held_out[0])),
            client.post("/predict", files=upload(held_out[0]), headers={"X-API-Key": "wrong"}),
            client.get("/model"),
            client.get("/thumbnails/0"),
        ):
            assert response.status_code == 401
            assert response.json()["error"] == "unauthorized"
        good = client.post("/predict", files=upload(held_out[0]), headers={"X-API-Key": "s3cret"})
        assert good.status_code == 200
        assert client.get("/model", headers={"X-API-Key": "s3cret"}).json()["auth_required"] is True


def test_the_model_is_loaded_once_and_inference_runs_off_the_event_loop(classifier_dir, xrays, monkeypatch):
    import pixsort.serve.app as app_module

    _, held_out = xrays
    loads = []
    real_load = app_module.load_model
    monkeypatch.setattr(app_module, "load_model", lambda path: loads.append(path) or real_load(path))
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
    with TestClient(app) as client:
        for path in held_out[:3]:
            assert client.post("/predict", files=upload(path)).status_code == 200
        assert client.get("/model").status_code == 200
    assert len(loads) == 1
    assert on_event_loop == [False] * 4  # the start-up warm-up and three requests, all on worker threads


def test_app_factory_for_several_workers_reads_the_environment(classifier_dir, monkeypatch):
    from pixsort.serve.app import app_from_env

    monkeypatch.delenv("PIXSORT_MODEL", raising=False)
    with pytest.raises(RuntimeError, match="PIXSORT_MODEL"):
        app_from_env()
    monkeypatch.setenv("PIXSORT_MODEL", str(classifier_dir))
    monkeypatch.setenv("PIXSORT_MAX_UPLOAD_MB", "0.5")
    monkeypatch.setenv("PIXSORT_API_KEY", "k")
    with TestClient(app_from_env()) as client:
        info = client.get("/model", headers={"X-API-Key": "k"}).json()
    assert info["max_upload_bytes"] == 512 * 1024 and info["auth_required"] is True


def test_bad_settings_are_refused_up_front(classifier_dir):
    with pytest.raises(ValueError):
        create_app(classifier_dir, max_upload_mb=0)
    with pytest.raises(ValueError):
        create_app(classifier_dir, api_key="  ")


# -- clusterer routes ---------------------------------------------------------------------


def test_clusterer_predict_gives_cluster_distance_and_neighbours(clusterer_client, clusterer_dir, xrays):
    from pixsort.models import load_model

    _, held_out = xrays
    model = load_model(clusterer_dir)
    response = clusterer_client.post("/predict", files=upload(*held_out[:3]))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["kind"] == "clusterer"

    images = np.stack([decode_image(p, model.decode_settings)[0] for p in held_out[:3]])
    clusters = model.predict(images)
    distances = model.transform(images)
    nn_dist, nn_index = model.kneighbors(images, n_neighbors=5)
    for result, cluster, dist_row, nd, ni in zip(body["results"], clusters, distances, nn_dist, nn_index):
        assert result["cluster"] == int(cluster)
        assert 0 <= result["cluster"] < model.n_clusters_
        assert result["distance"] == pytest.approx(dist_row[cluster], rel=1e-5, abs=1e-6)
        neighbours = result["neighbors"]
        assert [n["index"] for n in neighbours] == ni.tolist()
        assert [n["distance"] for n in neighbours] == pytest.approx(nd.tolist(), rel=1e-5, abs=1e-6)
        assert [n["name"] for n in neighbours] == [Path(model.train_paths_[i]).name for i in ni]
        assert all(n["thumbnail_url"] == f"/thumbnails/{n['index']}" for n in neighbours)


def test_clusterer_model_route(clusterer_client, clusterer_dir):
    from pixsort.models import load_model

    model = load_model(clusterer_dir)
    info = clusterer_client.get("/model").json()
    assert info["kind"] == "clusterer" and info["n_clusters"] == 3
    assert info["n_train"] == 40 and info["n_neighbors"] == 5
    assert info["cluster_sizes"] == np.bincount(model.labels_, minlength=3).tolist()
    assert info["validation_metrics"]["silhouette"] == pytest.approx(model.scores_["silhouette"])
    assert info["decode"] == model.decode_settings.to_dict()


def test_clusterer_embeds_each_batch_once(clusterer_dir, xrays, monkeypatch):
    from pixsort.cluster.images import ImageClusterer

    _, held_out = xrays
    embedded = []
    real_embed = ImageClusterer.embed

    def counting_embed(self, images):
        embedded.append(len(images))
        return real_embed(self, images)

    monkeypatch.setattr(ImageClusterer, "embed", counting_embed)
    with TestClient(create_app(clusterer_dir)) as client:
        response = client.post("/predict", files=upload(*held_out[:2]))
    assert response.status_code == 200
    # the start-up warm-up, then one extraction shared by predict, transform and kneighbors
    assert embedded == [1, 2]


def test_thumbnails_show_training_images_by_index_only(clusterer_client):
    response = clusterer_client.get("/thumbnails/0")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(response.content)).size == (96, 96)
    assert clusterer_client.get("/thumbnails/40").status_code == 404
    assert clusterer_client.get("/thumbnails/-1").status_code == 404
    assert clusterer_client.get("/thumbnails/..%2F..%2Fetc%2Fpasswd").status_code in (404, 422)


def test_serve_command_refuses_a_folder_that_is_not_a_model(tmp_path):
    from typer.testing import CliRunner

    from pixsort.cli import app

    result = CliRunner().invoke(app, ["serve", str(tmp_path)])
    assert result.exit_code == 2
    assert "model.json not found" in " ".join(result.output.split())  # rich wraps long lines


# -- the real server process ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve_process(model_dir: Path, *options: str):
    """``pixsort serve MODEL`` in a subprocess on a free loopback port; stopped on exit."""
    port = free_port()
    command = [
        sys.executable, "-c", "import sys; from pixsort.cli import main; sys.argv[0] = 'pixsort'; main()",
        "serve", str(model_dir), "--port", str(port), "--log-level", "warning", *options,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "PIXSORT_API_KEY"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                pytest.fail(f"pixsort serve exited: {process.stderr.read().decode(errors='replace')[-2000:]}")
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("pixsort serve did not become healthy in 90 s")
            time.sleep(0.1)
        yield base, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
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


def run_load(base: str, payloads: list[tuple[str, bytes]], n_requests: int, concurrency: int) -> tuple[list, list]:
    """Send ``n_requests`` one-image POST /predict, ``concurrency`` at a time; (latencies, errors)."""
    latencies, errors = [], []
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

    async def main() -> None:
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            await asyncio.gather(*(worker(client) for _ in range(concurrency)))

    # in a thread of its own: asyncio.run refuses a thread where Playwright's loop runs
    runner = threading.Thread(target=asyncio.run, args=(main(),))
    runner.start()
    runner.join()
    return latencies, errors


@pytest.mark.parametrize("server, n_requests", [("classifier_server", 400), ("clusterer_server", 200)])
def test_bounded_load_on_loopback_has_no_errors(server, n_requests, request, xrays):
    base, process = request.getfixturevalue(server)
    assert base.startswith("http://127.0.0.1:")
    _, held_out = xrays
    payloads = [(p.name, p.read_bytes()) for p in held_out]
    latencies, errors = run_load(base, payloads, n_requests=n_requests, concurrency=8)
    assert errors == []
    assert len(latencies) == n_requests
    assert process.poll() is None  # still up
    assert httpx.get(f"{base}/health").status_code == 200


# -- the page in a real browser -----------------------------------------------------------


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
def test_page_classifies_an_uploaded_xray(browser, classifier_server, xrays):
    from playwright.sync_api import expect

    base, _ = classifier_server
    _, held_out = xrays
    expected = httpx.post(f"{base}/predict", files=upload(held_out[0])).json()["results"][0]
    page = browser.new_page(viewport={"width": 1100, "height": 720})
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{base}/")
    expect(page.get_by_test_id("model-summary")).to_contain_text("NORMAL, PNEUMONIA")
    page.get_by_test_id("file-input").set_input_files(str(held_out[0]))
    card = page.get_by_test_id("result").first
    expect(card).to_have_attribute("data-state", "done", timeout=30_000)
    expect(card.get_by_test_id("decision")).to_have_text(expected["decision"])
    expect(card.get_by_test_id("probability-bar")).to_have_count(2)
    expect(card).to_contain_text(f"{100 * expected['probabilities']['PNEUMONIA']:.1f}%")
    page.screenshot(path="/tmp/pixsort-serve-classifier-page.png", full_page=True)
    assert errors == []
    page.close()


@pytest.mark.browser
def test_page_accepts_dropped_files(browser, classifier_server, xrays):
    import base64

    from playwright.sync_api import expect

    base, _ = classifier_server
    _, held_out = xrays
    page = browser.new_page()
    page.goto(f"{base}/")
    dropped = page.evaluate_handle(
        """([name, b64]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: "image/jpeg" }));
            return transfer;
        }""",
        [held_out[1].name, base64.b64encode(held_out[1].read_bytes()).decode()],
    )
    page.get_by_test_id("drop-zone").dispatch_event("drop", {"dataTransfer": dropped})
    card = page.get_by_test_id("result").first
    expect(card).to_have_attribute("data-state", "done", timeout=30_000)
    expect(card).to_contain_text(held_out[1].name)
    expect(card.get_by_test_id("decision")).to_have_text(re.compile("^(NORMAL|PNEUMONIA)$"))
    page.close()


@pytest.mark.browser
def test_page_shows_a_refusal_for_a_non_image(browser, classifier_server, tmp_path):
    from playwright.sync_api import expect

    base, _ = classifier_server
    fake = tmp_path / "xray.jpg"
    fake.write_bytes(b"%PDF-1.4 definitely not an x-ray")
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
def test_page_asks_for_the_api_key_and_then_works(browser, clusterer_dir, xrays):
    from playwright.sync_api import expect

    _, held_out = xrays
    with serve_in_thread(create_app(clusterer_dir, api_key="s3cret")) as base:
        page = browser.new_page()
        page.goto(f"{base}/")
        expect(page.get_by_test_id("model-summary")).to_have_text("this server needs an API key")
        page.get_by_label("API key").fill("s3cret")
        page.get_by_role("button", name="Use key").click()
        expect(page.get_by_test_id("model-summary")).to_contain_text("xray-pixels-kmeans")
        page.get_by_test_id("file-input").set_input_files(str(held_out[0]))
        card = page.get_by_test_id("result").first
        expect(card).to_have_attribute("data-state", "done", timeout=30_000)
        # thumbnails need the key too: they are fetched with it, not linked
        expect(card.locator("[data-testid=neighbor][data-loaded=true]")).to_have_count(5, timeout=30_000)
        page.close()


@pytest.mark.browser
def test_page_shows_the_cluster_and_thumbnails_of_its_nearest_members(browser, clusterer_server, xrays):
    from playwright.sync_api import expect

    base, _ = clusterer_server
    _, held_out = xrays
    page = browser.new_page(viewport={"width": 1100, "height": 720})
    page.goto(f"{base}/")
    page.get_by_test_id("file-input").set_input_files([str(p) for p in held_out[:2]])
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
