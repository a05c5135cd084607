"""The interactive map (``report/map.py``): the files written and the data in them, no
network in the page, ``pixsort cluster`` writing and linking it, ``pixsort serve``
answering ``/map`` for a clusterer, and the page itself in Debian's Chromium
(``@pytest.mark.browser``: points drawn, hover tooltip, filter, box selection to CSV,
click to neighbours; screenshot at ``/tmp/pixsort-map-page.png`` and in ``tmp_path``)."""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from pixsort.report.map import ATLAS_SIDE, build_map, nearest_indices, write_map

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
SCREENSHOT = Path("/tmp/pixsort-map-page.png")


def map_data(page: str) -> dict:
    match = re.search(r"<script>window\.PIXSORT_MAP=(.*?);</script>", page, re.S)
    assert match, "the page holds no inline map data"
    return json.loads(match.group(1))


def sample(n: int = 400, seed: int = 0):
    """Four groups of points (each its own colour of image), a split, a score."""
    rng = np.random.default_rng(seed)
    cluster = np.arange(n) % 4
    centres = np.array([[0, 0], [6, 0], [0, 6], [6, 6]], dtype=float)
    xy = centres[cluster] + rng.normal(0, 0.8, (n, 2))
    images = np.zeros((n, 12, 12, 3), dtype=np.uint8)
    images[..., 0] = (60 * cluster)[:, None, None]
    images[..., 2] = 200
    split = np.where(rng.random(n) < 0.25, "test", "train")
    score = rng.random(n)
    paths = [f"/data/{['cat', 'dog', 'owl', 'fox'][c]}/img_{i:04d}.png" for i, c in enumerate(cluster)]
    return xy, images, paths, {"cluster": cluster, "split": split, "score": score}


# -- the files and their data -----------------------------------------------------------------


def test_write_map_writes_the_page_and_atlases_with_the_points_data(tmp_path):
    xy, images, paths, fields = sample(300)
    nb = nearest_indices(np.c_[xy, np.zeros(len(xy))], 5)
    page = write_map(tmp_path, xy, paths, images=images, fields=fields, neighbours=nb, inline_atlas=False, title="t")
    assert page == tmp_path / "map.html"
    atlas = tmp_path / "map_atlas" / "atlas_0.jpg"
    with Image.open(atlas) as im:
        assert im.format == "JPEG"
        assert im.size == (ATLAS_SIDE * 32, 5 * 32)  # 300 thumbnails: 5 rows of 64
        # thumbnail 1 (cluster 1: red 60, blue 200) sits in tile (1, 0)
        r, g, b = im.convert("RGB").getpixel((32 + 16, 16))
        assert abs(r - 60) < 20 and g < 20 and abs(b - 200) < 20
    data = map_data(page.read_text(encoding="utf-8"))
    assert data["n"] == 300 and data["paths"] == paths
    x, y = np.array(data["x"]), np.array(data["y"])
    assert x.min() >= 0 and max(x.max(), y.max()) == pytest.approx(1, abs=1e-5)
    span = (xy.max(0) - xy.min(0)).max()
    np.testing.assert_allclose(x, (xy[:, 0] - xy[:, 0].min()) / span, atol=1e-5)
    np.testing.assert_allclose(y, (xy[:, 1] - xy[:, 1].min()) / span, atol=1e-5)
    by = {f["name"]: f for f in data["fields"]}
    assert by["cluster"]["kind"] == "category" and by["cluster"]["categories"] == ["0", "1", "2", "3"]
    assert by["cluster"]["codes"] == fields["cluster"].tolist()
    assert by["split"]["categories"] == ["test", "train"]
    assert by["score"]["kind"] == "number"
    np.testing.assert_allclose(by["score"]["values"], fields["score"], rtol=1e-4)
    assert data["colour_by"] == "cluster"
    assert data["neighbours"]["k"] == 5 and data["neighbours"]["index"] == nb.ravel().tolist()
    assert data["atlas"]["urls"] == ["map_atlas/atlas_0.jpg"]


def test_atlases_split_at_the_atlas_size_and_stale_ones_are_removed(tmp_path):
    n = ATLAS_SIDE * ATLAS_SIDE + 3
    images = np.full((n, 4, 4), 128, dtype=np.uint8)
    xy = np.random.default_rng(1).random((n, 2))
    write_map(tmp_path, xy, [str(i) for i in range(n)], images=images, inline_atlas=False)
    assert sorted(p.name for p in (tmp_path / "map_atlas").iterdir()) == ["atlas_0.jpg", "atlas_1.jpg"]
    write_map(tmp_path, xy[:10], [str(i) for i in range(10)], images=images[:10], inline_atlas=False)
    assert sorted(p.name for p in (tmp_path / "map_atlas").iterdir()) == ["atlas_0.jpg"]


def test_the_page_reaches_no_other_host_and_user_text_cannot_end_the_script(tmp_path):
    xy, images, paths, fields = sample(50)
    paths[0] = "</script><script>alert(1)</script>.png"
    fields["split"] = fields["split"].astype(object)
    fields["split"][1] = "<img src=x onerror=alert(2)>"
    page = write_map(tmp_path, xy, paths, images=images, fields=fields).read_text(encoding="utf-8")
    assert "<script>alert" not in page and "<img src=x" not in page
    assert not re.search(r"https?://", page), "the page names another host"
    assert not re.search(r"""(src|href)\s*=\s*["']?//""", page)
    assert "fetch(" not in page and "XMLHttpRequest" not in page
    data = map_data(page)
    assert data["paths"][0] == paths[0]  # the text itself survives, as data
    assert data["atlas"]["urls"][0].startswith("data:image/jpeg;base64,")  # small sets: inline


def test_links_are_relative_for_files_on_disk_and_absent_for_array_members(tmp_path):
    img = tmp_path / "images" / "a b.png"
    img.parent.mkdir()
    Image.new("RGB", (8, 8), "red").save(img)
    page = write_map(tmp_path / "out", np.array([[0.0, 0], [1, 1]]), [str(img), "set.npz:x[3]"])
    data = map_data(page.read_text(encoding="utf-8"))
    assert data["links"] == ["../images/a%20b.png", None]
    assert (page.parent / data["links"][0].replace("%20", " ")).resolve() == img.resolve()


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        build_map(np.zeros((3, 3)), ["a", "b", "c"])
    with pytest.raises(ValueError, match="2 paths for 3"):
        build_map(np.zeros((3, 2)), ["a", "b"])
    with pytest.raises(ValueError, match="field 'f'"):
        build_map(np.zeros((3, 2)), ["a", "b", "c"], fields={"f": [1, 2]})
    with pytest.raises(ValueError, match="finite"):
        build_map(np.array([[0, 0], [np.nan, 1]]), ["a", "b"])
    with pytest.raises(ValueError, match="colour_by"):
        build_map(np.zeros((2, 2)), ["a", "b"], fields={"s": [0.1, 0.2]}, colour_by="s")


def test_nearest_indices_match_brute_force_cosine():
    Z = np.random.default_rng(3).normal(size=(120, 6))
    got = nearest_indices(Z, 4)
    U = Z / np.linalg.norm(Z, axis=1, keepdims=True)
    S = U @ U.T
    np.fill_diagonal(S, -np.inf)
    np.testing.assert_array_equal(got, np.argsort(-S, axis=1, kind="stable")[:, :4])


def test_an_unreadable_image_is_a_grey_tile_not_a_failed_map(tmp_path):
    good = np.zeros((8, 8, 3), dtype=np.uint8)

    def image(i):
        if i == 1:
            raise OSError("gone")
        return good

    page = build_map(np.array([[0.0, 0], [1, 1]]), ["a", "b"], images=image, inline_atlas=False)
    with Image.open(io.BytesIO(page.atlases[0])) as im:
        assert im.getpixel((5, 5))[0] < 30 and abs(im.getpixel((32 + 5, 5))[0] - 200) < 20


# -- pixsort cluster and pixsort serve ---------------------------------------------------------------


@pytest.fixture(scope="module")
def clustered(tmp_path_factory):
    from pixsort.cli import app

    base = tmp_path_factory.mktemp("map-cluster")
    rng = np.random.default_rng(0)
    for name, colour in {"red": (220, 30, 30), "blue": (30, 40, 220)}.items():
        (base / "images" / name).mkdir(parents=True)
        for i in range(8):
            pixels = np.clip(np.array(colour)[None, None] + rng.normal(0, 12, (12, 12, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(base / "images" / name / f"{name}{i}.png")
    out = base / "out"
    args = ["cluster", str(base / "images"), "--out", str(out), "--features", "pixels", "--size", "12",
            "--k", "2", "--view", "pca", "--seed", "0", "--cache-dir", str(base / "cache")]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return base, out


def test_cluster_command_writes_the_map_and_links_it_from_the_report(clustered):
    from pixsort.cluster.images import ImageClusterer

    base, out = clustered
    data = map_data((out / "map.html").read_text(encoding="utf-8"))
    clusters = (out / "clusters.csv").read_text(encoding="utf-8")
    assert data["n"] == 16 and all(Path(p).name in clusters for p in data["paths"])
    by = {f["name"]: f for f in data["fields"]}
    assert {"cluster", "class", "distance_to_centre", "silhouette", "representative"} <= set(by)
    # two clean colours, two clusters: each cluster is one class
    pairs = {(c, k) for c, k in zip(by["cluster"]["codes"], by["class"]["codes"])}
    assert len(pairs) == 2
    assert all((out / link).resolve().is_file() for link in data["links"])
    assert len(data["neighbours"]["index"]) == 16 * 8
    assert 'href="map.html"' in (out / "report.html").read_text(encoding="utf-8")
    model = ImageClusterer.load(out / "model")
    assert model.map_positions_.shape == (16, 2)
    x = np.array(data["x"])
    p = model.map_positions_.astype(float)
    np.testing.assert_allclose(x, (p[:, 0] - p[:, 0].min()) / (p.max(0) - p.min(0)).max(), atol=1e-4)


def test_serve_answers_map_for_a_clusterer_and_404_for_a_classifier(clustered, tmp_path):
    from pixsort.serve.app import create_app

    base, out = clustered
    with TestClient(create_app(out / "model"), base_url="http://127.0.0.1") as client:
        response = client.get("/map")
        assert response.status_code == 200
        assert "default-src 'none'" in response.headers["content-security-policy"]
        data = map_data(response.text)
        assert data["n"] == 16 and data["links"][3] == "/thumbnails/3"
        assert data["atlas"]["urls"] == ["/map/atlas/0.jpg"]
        atlas = client.get("/map/atlas/0.jpg")
        assert atlas.status_code == 200 and atlas.headers["content-type"] == "image/jpeg"
        with Image.open(io.BytesIO(atlas.content)) as im:
            assert im.size == (ATLAS_SIDE * 32, 32)
            red = data["paths"].index(next(p for p in data["paths"] if "red" in Path(p).name))
            r, g, b = im.convert("RGB").getpixel((red * 32 + 16, 16))
            assert r > 150 and b < 100
        assert client.get("/map/atlas/1.jpg").status_code == 404


def test_a_browser_opens_the_keyed_map_through_the_key_form(clustered):
    """Behind --api-key a browser gets a form, not a JSON 401; the right key sets an
    HttpOnly SameSite=Strict cookie (a digest, not the key) that opens the map, its atlases
    and thumbnails, and never a POST."""
    from pixsort.serve.app import create_app

    base, out = clustered
    html_accept = {"accept": "text/html,application/xhtml+xml"}
    with TestClient(create_app(out / "model", api_key="s3cret"), base_url="http://127.0.0.1") as client:
        assert client.get("/map").json()["error"] == "unauthorized"  # an API client still gets JSON
        asked = client.get("/map", headers=html_accept)
        assert asked.status_code == 401 and asked.headers["content-type"].startswith("text/html")
        assert 'action="/key"' in asked.text and 'value="/map"' in asked.text
        assert "form-action 'self'" in asked.headers["content-security-policy"]
        wrong = client.post("/key", data={"key": "guess", "next": "/map"}, follow_redirects=False)
        assert wrong.status_code == 401 and "wrong" in wrong.text and "set-cookie" not in wrong.headers
        assert client.get("/map").status_code == 401
        right = client.post("/key", data={"key": "s3cret", "next": "/thumbnails/3"}, follow_redirects=False)
        assert right.status_code == 303 and right.headers["location"] == "/thumbnails/3"
        cookie = right.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "s3cret" not in cookie
        assert client.get("/map").status_code == 200
        assert client.get("/map/atlas/0.jpg").status_code == 200
        assert client.get("/thumbnails/3").status_code == 200
        image = io.BytesIO()
        Image.new("RGB", (32, 32), (200, 30, 30)).save(image, format="PNG")
        posted = client.post("/predict", files=[("files", ("a.png", image.getvalue(), "image/png"))])
        assert posted.status_code == 401  # the cookie opens pages, the API needs the header
        elsewhere = client.post("/key", data={"key": "s3cret", "next": "//evil.example/x"}, follow_redirects=False)
        assert elsewhere.headers["location"] == "/map"
        client.cookies.clear()
        assert client.get("/map/atlas/0.jpg").status_code == 401


def test_map_route_is_404_for_a_classifier():
    import asyncio
    from types import SimpleNamespace

    from starlette.exceptions import HTTPException

    from pixsort.serve.app import map_atlas, map_page

    request = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(map=None)))  # a classifier's app state
    for call in (map_page(request), map_atlas(request, 0)):
        with pytest.raises(HTTPException) as err:
            asyncio.run(call)
        assert err.value.status_code == 404 and "classifier" in str(err.value.detail)


# -- the page in a browser -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: install it with .ci/install-browser.sh (Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.mark.browser
def test_map_page_draws_hovers_filters_selects_and_shows_neighbours(browser, tmp_path):
    xy, images, paths, fields = sample(400)
    paths[5] = "=HYPERLINK(evil).png"
    nb = nearest_indices(xy, 6)
    page_path = write_map(tmp_path, xy, paths, images=images, fields=fields, neighbours=nb, inline_atlas=False)
    page = browser.new_page(viewport={"width": 1100, "height": 720}, accept_downloads=True)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(page_path.as_uri())
    page.wait_for_function("window.pixsortMap && window.pixsortMap.stats.frames > 0")
    stats = page.evaluate("pixsortMap.stats")
    assert stats["drawn"] == 400 and stats["shown"] == 400
    # pixels (from a screenshot: file:// atlases make the canvas unreadable to scripts):
    # a thumbnail of cluster 1 (red 60, blue 200) is drawn where point 1 is
    p1 = page.evaluate("pixsortMap.screenOf(1)")
    shot = Image.open(io.BytesIO(page.screenshot(clip={"x": p1["x"] - 1, "y": p1["y"] - 1, "width": 3, "height": 3})))
    r, g, b = shot.convert("RGB").getpixel((1, 1))
    assert (r, g, b) != (250, 251, 253) and b > 120

    target = 7
    pos = page.evaluate(f"pixsortMap.screenOf({target})")
    page.mouse.move(pos["x"], pos["y"])
    tip = page.get_by_test_id("tooltip")
    tip.wait_for(state="visible")
    # the nearest point under the cursor is the one hovered (points may overlap)
    hovered = page.evaluate(f"pixsortMap.pick({pos['x']} - document.getElementById('map').getBoundingClientRect().left,"
                            f" {pos['y']} - document.getElementById('map').getBoundingClientRect().top)")  # fmt: skip
    assert Path(paths[hovered]).name in tip.inner_text()
    assert f"cluster\t{fields['cluster'][hovered]}" in tip.inner_text()

    page.get_by_test_id("filter-cluster").select_option(label=f"cluster: 2 ({int((fields['cluster'] == 2).sum())})")
    page.wait_for_function("pixsortMap.stats.shown === 100")
    page.wait_for_function("pixsortMap.stats.drawn === 100")
    assert "100 of 400 shown" in page.get_by_test_id("count").inner_text()
    page.get_by_test_id("filter-cluster").select_option("-1")
    page.wait_for_function("pixsortMap.stats.drawn === 400")

    # box selection (shift+drag) around everything, then the CSV download
    page.keyboard.down("Shift")
    page.mouse.move(2, 50)
    page.mouse.down()
    page.mouse.move(600, 400, steps=4)
    page.mouse.move(1098, 718, steps=4)
    page.mouse.up()
    page.keyboard.up("Shift")
    assert page.evaluate("pixsortMap.stats.selected") == 400
    with page.expect_download() as download:
        page.get_by_test_id("export").click()
    csv = Path(download.value.path()).read_text(encoding="utf-8").splitlines()
    assert csv[0] == "path,cluster,split,score" and len(csv) == 401
    assert "'=HYPERLINK(evil).png,1," in "\n".join(csv)
    page.get_by_test_id("clear-selection").click()
    assert page.evaluate("pixsortMap.stats.selected") == 0

    # a lasso (shift+drag along a path) round the left half of the canvas
    page.get_by_test_id("selection-tool").select_option("lasso")
    box = page.get_by_test_id("map").bounding_box()
    left, top, mid, bottom = box["x"] + 2, box["y"] + 2, box["x"] + box["width"] / 2, box["y"] + box["height"] - 2
    expected = page.evaluate(
        f"[...Array(400).keys()].filter(i => {{ const p = pixsortMap.screenOf(i);"
        f" return p.x > {left} && p.x < {mid} && p.y > {top} && p.y < {bottom}; }}).length"
    )
    assert 0 < expected < 400
    page.keyboard.down("Shift")
    page.mouse.move(left, top)
    page.mouse.down()
    for x, y in [(mid, top), (mid, bottom), (left, bottom), (left, top + 1)]:
        page.mouse.move(x, y, steps=3)
    page.mouse.up()
    page.keyboard.up("Shift")
    assert page.evaluate("pixsortMap.stats.selected") == expected
    page.get_by_test_id("clear-selection").click()

    page.mouse.click(pos["x"], pos["y"])
    panel = page.get_by_test_id("panel")
    panel.wait_for(state="visible")
    clicked = page.evaluate("document.querySelector('[data-testid=panel-path]').textContent")
    i = paths.index(clicked)
    shown = page.evaluate("[...document.querySelectorAll('[data-testid=neighbour]')].map(c => +c.dataset.index)")
    assert shown == nb[i].tolist()
    page.mouse.move(5, 700)
    page.evaluate(f"pixsortMap.zoom(3); pixsortMap.centreOn({i})")
    page.wait_for_function("pixsortMap.stats.mode === 'thumbnails'")
    page.wait_for_timeout(300)
    page.screenshot(path=str(tmp_path / "map.png"))
    page.screenshot(path=str(SCREENSHOT))
    assert (tmp_path / "map.png").stat().st_size > 10_000
    assert all(u.startswith("file://") or u.startswith("blob:") for u in requests), requests
    assert errors == []
    page.close()


@pytest.mark.browser
def test_served_map_draws_thumbnails_under_the_servers_security_policy(browser, clustered):
    from tests.test_serve_app import serve_process

    _, out = clustered
    with serve_process(out / "model") as (base, _process):
        page = browser.new_page(viewport={"width": 1000, "height": 640})
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
        page.goto(f"{base}/map")
        page.wait_for_function("window.pixsortMap && pixsortMap.stats.frames > 0")
        assert page.evaluate("pixsortMap.stats.drawn") == 16
        # the atlas came from /map/atlas/0.jpg and the thumbnails are drawn (script-readable:
        # same origin, so the canvas is not tainted)
        page.wait_for_function("pixsortMap.stats.mode === 'thumbnails' && pixsortMap.stats.frames > 1")
        page.wait_for_timeout(300)
        rgb = page.evaluate(
            """() => { const c = document.getElementById('map'), p = pixsortMap.screenOf(0);
            const r = c.getBoundingClientRect(), x = Math.round(p.x - r.left), y = Math.round(p.y - r.top);
            return [...c.getContext('2d').getImageData(x, y, 1, 1).data]; }"""
        )
        assert rgb[:3] != [250, 251, 253]
        pos = page.evaluate("pixsortMap.screenOf(0)")
        page.mouse.click(pos["x"], pos["y"])
        page.get_by_test_id("panel").wait_for(state="visible")
        assert page.get_attribute("[data-testid=open-image]", "href").startswith("/thumbnails/")
        assert page.locator("[data-testid=neighbour]").count() == 8
        assert problems == []
        page.close()


def test_atlas_tiles_of_packed_images_come_from_the_stored_pixels_not_an_enlarged_copy(monkeypatch):
    from pixsort.data import DecodeSettings
    from pixsort.data.lazy import PackedImages
    from pixsort.report import map as map_module

    rng = np.random.default_rng(0)
    small = [rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8) for _ in range(3)]
    packed = PackedImages(np.concatenate([s.ravel() for s in small]), np.array([0, 192, 384]), np.full((3, 2), 8),
                          DecodeSettings(size=64))  # fmt: skip
    assert packed[0].shape == (64, 64, 3) and packed.stored(1).shape == (8, 8, 3)
    assert np.array_equal(packed.stored(2), small[2])
    enlarged = []
    monkeypatch.setattr(PackedImages, "_one", lambda self, i: enlarged.append(i) or small[i])
    from_packed = map_module._atlases(packed, 3, 16)
    assert enlarged == []  # no image was made at the decode size for its thumbnail
    assert from_packed == map_module._atlases(small, 3, 16)


def test_atlas_tiles_of_files_are_decoded_at_their_own_size(tmp_path, monkeypatch):
    from pixsort.data import DecodeSettings
    from pixsort.data import decode as decode_module
    from pixsort.data.lazy import LazyImages
    from pixsort.report import map as map_module

    rng = np.random.default_rng(1)
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"im{i}.png")
        Image.fromarray(rng.integers(0, 256, (10, 10, 3), dtype=np.uint8)).save(paths[-1])
    lazy = LazyImages([str(p) for p in paths], DecodeSettings(size=96))
    assert lazy[0].shape == (96, 96, 3) and lazy.stored(0).shape == (10, 10, 3)
    assert np.array_equal(lazy.stored(2), np.asarray(Image.open(paths[2]).convert("RGB")))
    resized = []
    real = decode_module._resize
    monkeypatch.setattr(decode_module, "_resize", lambda im, st: resized.append(im.size) or real(im, st))
    map_module._atlases(lazy, 3, 16)
    assert resized == []  # nothing made at the 96 px decode size for a 16 px tile


def test_file_links_are_relative_urls_of_the_files_that_exist(tmp_path):
    from pixsort.report.map import file_links

    (tmp_path / "photos" / "a b").mkdir(parents=True)
    (tmp_path / "out").mkdir()
    files = [tmp_path / "photos" / "a b" / "x#1.png", tmp_path / "photos" / "y.png", tmp_path / "out" / "z.png"]
    for f in files:
        f.write_bytes(b"x")
    paths = [str(f) for f in files] + [str(tmp_path / "photos" / "gone.png")]
    links = file_links(paths, tmp_path / "out")
    assert links == ["../photos/a%20b/x%231.png", "../photos/y.png", "z.png", None]
    # a relative path is taken from the working directory, like the files it names
    assert file_links([os.path.relpath(files[1])], tmp_path / "out") == ["../photos/y.png"]
    latin1 = tmp_path / "out" / os.fsdecode(b"\xe9t\xe9.png")  # a name that is not UTF-8
    latin1.write_bytes(b"x")
    assert file_links([str(latin1)], tmp_path / "out") == ["%E9t%E9.png"]


def test_many_files_are_decoded_for_the_atlases_by_forked_processes_with_the_same_pixels(tmp_path, monkeypatch):
    from pixsort.data import DecodeSettings, processes
    from pixsort.data import lazy as lazy_module
    from pixsort.data.lazy import LazyImages
    from pixsort.report import map as map_module

    rng = np.random.default_rng(4)
    paths = []
    for i in range(12):
        paths.append(tmp_path / f"im{i}.png")
        Image.fromarray(rng.integers(0, 256, (8 + i, 10, 3), dtype=np.uint8)).save(paths[-1])
    paths.append(tmp_path / "gone.png")  # deleted since it was embedded: a grey tile
    lazy = LazyImages([str(p) for p in paths], DecodeSettings(size=64))
    one_by_one = [lazy.stored(i) for i in range(len(paths))]
    monkeypatch.setattr(lazy_module, "PARALLEL_MIN", 4)
    monkeypatch.setattr(processes, "available_cores", lambda: 2)
    forked = []
    real_context = processes.mp.get_context
    monkeypatch.setattr(processes.mp, "get_context", lambda kind=None: forked.append(kind) or real_context(kind))
    together = lazy.stored_many(np.arange(len(paths)))
    assert forked == ["fork"]
    assert len(together) == len(paths) and all(np.array_equal(a, b) for a, b in zip(together, one_by_one))
    assert (together[-1] == 128).all()
    assert map_module._atlases(lazy, len(paths), 16) == map_module._atlases(one_by_one, len(paths), 16)


def test_a_large_clustering_maps_a_sample_with_its_representatives_and_shown_neighbours(monkeypatch):
    from pixsort.cluster.images import ImageClusterer
    from pixsort.report import image_clusters

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (3, 16))
    X = np.repeat(centres, 200, axis=0) + rng.normal(0, 0.35, (600, 16))
    images = rng.integers(0, 255, (600, 4, 4, 3), dtype=np.uint8)
    model = ImageClusterer(features="pixels", n_clusters=3, n_components=None, progress=False)
    model.fit(images)  # fitted stages, replaced below by a clustering of X through the same path
    from pixsort.cluster.images.smooth import NeighbourSmoothing

    Z = X / np.linalg.norm(X, axis=1, keepdims=True)
    model.smoother_ = NeighbourSmoothing(20, 2)
    model.embeddings_ = model.smoother_.fit_transform(Z.astype(np.float32))
    monkeypatch.setattr(image_clusters, "MAP_MAX_POINTS", 150)
    page = image_clusters.cluster_map_page(model, rng.normal(size=(600, 2)), images)
    data = map_data(page.html)
    rows = image_clusters.map_rows(model, 150)
    assert data["n"] == 150 and "a sample of 150 of 600 images" in data["title"]
    assert set(np.flatnonzero(model.representative_)) <= set(rows)
    assert data["paths"] == [model.train_paths_[i] for i in rows]
    nb = np.array(data["neighbours"]["index"]).reshape(150, 8)
    graph = model.smoother_.neighbours_
    for j, r in enumerate(rows):  # each shown neighbour is a shown row among r's graph neighbours, in order
        shown = [rows[v] for v in nb[j] if v >= 0]
        assert shown == [g for g in graph[r] if g in set(rows)][: len(shown)]
    assert (nb >= 0).sum() > 0.5 * nb.size


def test_train_neighbours_are_the_smoothing_graph_and_the_exact_nearest_in_the_reduced_space():
    from pixsort.cluster.images import ImageClusterer
    from pixsort.cluster.images.neighbours import nearest_rows

    rng = np.random.default_rng(3)
    images = rng.integers(0, 255, (300, 6, 6, 3), dtype=np.uint8)
    model = ImageClusterer(features="pixels", n_clusters=3, progress=False).fit(images)
    graph = model.train_neighbours(8)
    assert graph.shape == (300, 8) and graph.dtype == np.int32
    _, exact = nearest_rows(model.smoother_.reference_, model.smoother_.reference_, 8, exclude_self=True)
    assert np.array_equal(graph, exact)
    model.smoother_.neighbours_ = None  # as a loaded model: searched, the same answer
    assert np.array_equal(model.train_neighbours(8), exact)
