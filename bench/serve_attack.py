"""The server's memory under decompression attacks (issue 13, item 2).

Starts ``pixsort serve MODEL`` on 127.0.0.1 and sends, one after another:

* one float32 deflate TIFF (a few hundred KB on the wire, 255 MB as pixels at 7990x7990),
  then two of them at once;
* one request with 20 bilevel PNGs of the same size (a few KB each);

at 7990x7990 (the issue's size, now over the server's 40-megapixel limit) and at
6000x6000 (under it, so the decode budget is what bounds it).

For each attack: the answer's status codes, the wall time, and the server's RSS before
and at its peak (sampled every 20 ms).  Before the fix the float TIFF took the server
from 443 MB to 2,887 MB for 7.7 s and two at once peaked at 5,168 MB.

    flock /tmp/pixsort-heavy.lock python bench/serve_attack.py MODEL_DIR
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve import _free_port, _machine, _RssSampler, _wait_healthy

SIDES = (7990, 6000)  # the size, and one under the server's 40-megapixel limit


def float_tiff(side: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((side, side), np.float32), mode="F").save(buf, "TIFF", compression="tiff_adobe_deflate")
    return buf.getvalue()


def bilevel_png(side: int) -> bytes:
    buf = io.BytesIO()
    Image.new("1", (side, side)).save(buf, "PNG", optimize=True)
    return buf.getvalue()


def attack(base: str, process: psutil.Process, requests: list[list[tuple[str, bytes]]]) -> dict:
    rss_before = process.memory_info().rss
    sampler = _RssSampler(process)
    sampler.start()
    codes: list[int] = []
    details: list[str] = []

    def send(files):
        answer = httpx.post(f"{base}/predict", files=[("files", f) for f in files], timeout=120)
        codes.append(answer.status_code)
        details.append(answer.text[:300])

    t0 = time.perf_counter()
    threads = [threading.Thread(target=send, args=(r,)) for r in requests]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    sampler.stop()
    return {
        "status": sorted(codes),
        "answer": details[0] if details else None,
        "wall_s": round(wall, 2),
        "rss_before_mb": round(rss_before / 2**20, 1),
        "rss_peak_mb": round(max(sampler.peak, process.memory_info().rss) / 2**20, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--out", type=Path, default=Path("/tmp/pixsort-serve-attack.json"))
    args = parser.parse_args()
    port = _free_port()
    command = [
        sys.executable, "-c", "import sys; from pixsort.cli import main; sys.argv[0] = 'pixsort'; main()",
        "serve", str(args.model), "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(base, server)
        process = psutil.Process(server.pid)
        rows = {"idle_mb": round(process.memory_info().rss / 2**20, 1)}
        for side in SIDES:
            tiff, png = float_tiff(side), bilevel_png(side)
            rows[f"{side}px"] = {
                "sizes_bytes": {"float_tiff": len(tiff), "bilevel_png": len(png)},
                "one_float_tiff": attack(base, process, [[("f.tif", tiff, "image/tiff")]]),
                "two_float_tiffs_at_once": attack(base, process, [[("f.tif", tiff, "image/tiff")]] * 2),
                "twenty_bilevel_pngs": attack(base, process, [[(f"b{i}.png", png, "image/png") for i in range(20)]]),
            }
        rows["idle_after_mb"] = round(process.memory_info().rss / 2**20, 1)
    finally:
        server.terminate()
        server.wait(timeout=15)
    rows["machine"] = _machine()
    args.out.write_text(json.dumps(rows, indent=2))
    print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
