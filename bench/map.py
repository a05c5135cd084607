"""The interactive map at scale: write a map of N synthetic points and measure it in
headless Chromium (Debian's, through Playwright).

Measured:

* Python: seconds to compute the neighbours (NeighbourSearch) and to write the page and
  its atlases; the page's and the atlases' sizes;
* browser: time from navigation start to the first complete draw (``performance.now()``
  at the end of the first frame), and the wall time of ``page.goto`` until then;
* pan frames zoomed out (all points as dots) and zoomed in (thumbnails from the atlases):
  the script time of ``draw()`` over 200 synchronous pans, and the full frame time (the
  interval between animation frames, raster and composite included) over 120 animated
  pan frames; a real mouse drag (frames counted, the draw time of each);
* hover pick time (grid lookup) over 2,000 positions, and a filter's recompute + draw;
* JS heap (CDP ``Performance.getMetrics`` JSHeapUsedSize after a forced GC) and the RSS of
  all Chromium processes.

Run it under the shared lock (it keeps a core busy for a minute)::

    flock /tmp/pixsort-heavy.lock python bench/map.py --n 50000 --out /tmp/map-bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

CHROMIUM = "/usr/bin/chromium"
# 200 synchronous pan frames (each a full draw()), their draw times in ms
PAN = "[...Array(200)].map((_, i) => pixsortMap.pan(i % 2 ? {dx} : -{dx}, {dy}))"
# 120 animation frames, each panning by a few pixels: the intervals between frames are
# the full frame time (script, raster, composite), as a user dragging sees it
ANIMATE = """() => new Promise(done => { const t = [], step = k => { t.push(performance.now());
  if (t.length > 120) { done(t.slice(1).map((v, i) => v - t[i])); return; }
  pixsortMap.pan(k % 2 ? DX : -DX, 1); requestAnimationFrame(step); }; requestAnimationFrame(step); })"""
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def synthetic(n: int, seed: int = 0):
    """``n`` points in 20 Gaussian groups, a small image per point, and its fields."""
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 20, n)
    centres = rng.normal(0, 10, (20, 2))
    xy = centres[groups] + rng.normal(0, 1.2, (n, 2))
    palette = rng.integers(0, 256, (20, 3)).astype(np.uint8)
    stripes = (np.arange(16)[None, :] % 4 < 2).astype(np.uint8)

    def image(i: int) -> np.ndarray:
        img = np.empty((16, 16, 3), dtype=np.uint8)
        img[:] = palette[groups[i]]
        img[:, :, (i % 3)] = img[:, :, (i % 3)] // 2 + 100 * np.repeat(stripes, 16, axis=0)
        return img

    fields = {
        "cluster": groups,
        "split": np.where(rng.random(n) < 0.2, "test", "train"),
        "flag": rng.random(n) < 0.05,
        "outlier_score": rng.random(n),
        "distance": rng.random(n) * 2,
    }
    embeddings = np.c_[xy, rng.normal(0, 0.5, (n, 8))]
    return xy, image, [f"/data/group_{g:02d}/img_{i:06d}.png" for i, g in enumerate(groups)], fields, embeddings


def chromium_rss() -> int:
    total = 0
    for child in psutil.Process().children(recursive=True):
        try:
            if "chrom" in child.name().lower():
                total += child.memory_info().rss
        except psutil.Error:
            pass
    return total


def stats_ms(values: list[float]) -> dict:
    v = sorted(values)
    return {
        "median": round(statistics.median(v), 3),
        "p95": round(v[int(0.95 * (len(v) - 1))], 3),
        "max": round(v[-1], 3),
        "n": len(v),
    }


def measure(page_path: Path, width: int, height: int, zoom_in: float) -> dict:
    from playwright.sync_api import sync_playwright

    out: dict = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": width, "height": height})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        cdp = page.context.new_cdp_session(page)
        cdp.send("Performance.enable")
        t0 = time.perf_counter()
        page.goto(page_path.as_uri(), timeout=120_000)
        page.wait_for_function("window.pixsortMap && pixsortMap.stats.firstDrawAt !== null", timeout=120_000)
        out["goto_to_first_draw_s"] = round(time.perf_counter() - t0, 3)
        out["first_draw_ms_since_navigation"] = round(page.evaluate("pixsortMap.stats.firstDrawAt"), 1)
        out["first_frame"] = page.evaluate("({drawn: pixsortMap.stats.drawn, mode: pixsortMap.stats.mode})")

        out["pan_zoomed_out_ms"] = stats_ms(
            page.evaluate("[...Array(200)].map((_, i) => pixsortMap.pan(i % 2 ? 3 : -3, 1))")
        )
        out["drawn_zoomed_out"] = page.evaluate("pixsortMap.stats.drawn")
        out["frame_interval_zoomed_out_ms"] = stats_ms(page.evaluate(ANIMATE.replace("DX", "3")))
        # a real drag: mouse events -> requestAnimationFrame draws
        before = page.evaluate("pixsortMap.stats.frames")
        page.mouse.move(width / 2, height / 2)
        page.mouse.down()
        t = time.perf_counter()
        page.mouse.move(width / 2 + 300, height / 2 + 150, steps=60)
        drag_s = time.perf_counter() - t
        page.mouse.up()
        page.wait_for_timeout(100)
        frames = page.evaluate("pixsortMap.stats.frames") - before
        out["mouse_drag"] = {
            "moves": 60,
            "frames": frames,
            "wall_s": round(drag_s, 3),
            "draw_ms": stats_ms(page.evaluate(f"pixsortMap.stats.frameMs.slice(-{max(frames, 1)})")),
        }
        out["hover_pick_ms_per_call"] = round(
            page.evaluate(
                """() => { const c = document.getElementById('map'), w = c.width, h = c.height;
                const t = performance.now(); let hits = 0;
                for (let k = 0; k < 2000; k++) { if (pixsortMap.pick((k * 37) % w, (k * 53) % h) >= 0) hits++; }
                return (performance.now() - t) / 2000; }"""
            ),
            4,
        )
        page.evaluate("pixsortMap.fit()")
        out["filter_ms"] = round(
            page.evaluate(
                "(() => { const t = performance.now(); pixsortMap.setFilter('cluster', '3'); pixsortMap.pan(0, 0);"
                " return performance.now() - t; })()"
            ),
            2,
        )
        out["drawn_after_filter"] = page.evaluate("pixsortMap.stats.drawn")
        page.evaluate("pixsortMap.setFilter('cluster', null); pixsortMap.fit()")
        page.evaluate("pixsortMap.zoom(zoom_in); pixsortMap.centreOn(0)".replace("zoom_in", str(zoom_in)))
        page.wait_for_function("pixsortMap.stats.mode === 'thumbnails'", timeout=30_000)
        page.wait_for_timeout(1500)  # the atlases under the view load
        out["pan_zoomed_in_ms"] = stats_ms(
            page.evaluate("[...Array(200)].map((_, i) => pixsortMap.pan(i % 2 ? 4 : -4, 2))")
        )
        out["drawn_zoomed_in"] = page.evaluate("pixsortMap.stats.drawn")
        out["frame_interval_zoomed_in_ms"] = stats_ms(page.evaluate(ANIMATE.replace("DX", "4")))
        cdp.send("HeapProfiler.collectGarbage")
        metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        out["js_heap_used_mb"] = round(metrics["JSHeapUsedSize"] / 2**20, 1)
        out["js_heap_total_mb"] = round(metrics["JSHeapTotalSize"] / 2**20, 1)
        out["chromium_rss_mb"] = round(chromium_rss() / 2**20, 1)
        shot = page_path.parent / "bench-map.png"
        page.screenshot(path=str(shot))
        out["screenshot"] = str(shot)
        out["page_errors"] = errors
        browser.close()
    return out


def main() -> None:
    from pixsort.report.map import nearest_indices, write_map

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--folder", type=Path, default=None, help="where the map is written (default: a temp folder)")
    parser.add_argument("--out", type=Path, default=None, help="JSON of the figures")
    parser.add_argument("--zoom", type=float, default=12.0, help="zoom factor of the thumbnail measurement")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=800)
    a = parser.parse_args()
    folder = a.folder or Path(tempfile.mkdtemp(prefix="pixsort-map-bench-"))
    xy, image, paths, fields, embeddings = synthetic(a.n)
    t = time.perf_counter()
    nb = nearest_indices(embeddings, 8)
    neighbours_s = time.perf_counter() - t
    t = time.perf_counter()
    page = write_map(folder, xy, paths, images=image, fields=fields, neighbours=nb, links=None, title="bench")
    write_s = time.perf_counter() - t
    atlases = sorted((folder / "map_atlas").glob("*.jpg"))
    result = {
        "n": a.n,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "load_avg_before": [round(x, 2) for x in os.getloadavg()],
        "python": {
            "neighbours_s": round(neighbours_s, 2),
            "write_map_s": round(write_s, 2),
            "html_mb": round(page.stat().st_size / 2**20, 2),
            "atlases": len(atlases),
            "atlas_mb": round(sum(p.stat().st_size for p in atlases) / 2**20, 2),
        },
        "browser": measure(page, a.width, a.height, a.zoom),
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "folder": str(folder),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if a.out:
        a.out.write_text(text)


if __name__ == "__main__":
    main()
