"""Load measurement of ``pixsort serve``: latency, throughput and memory under concurrency.

For each model the real CLI is started on 127.0.0.1 (a free port) in a subprocess, warmed
up, then sent ``--requests`` POST /predict requests of one image each, ``--concurrency``
at a time, from an asyncio httpx client in this process.  Reported per model:

* p50 / p95 / p99 latency (client side, whole request) and requests/s;
* errors (any non-200 answer or transport failure);
* RSS of the server process: after start-up (model loaded, idle) and the peak sampled
  every 20 ms during the load;
* the server's model calls, to show how many requests shared a batch.

The client shares the machine's cores with the server, as it would on a 2-core box
serving a local reverse proxy; run it under ``flock /tmp/pixsort-heavy.lock`` so no other
heavy job skews the figures.

Example::

    flock /tmp/pixsort-heavy.lock python bench/serve.py /tmp/models/xray-cnn /tmp/models/xray-kmeans \\
        --images ../shared/data/chest_xray/train/PNEUMONIA --requests 500 --concurrency 8 --out /tmp/serve-bench.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import psutil

from pixsort.base.runtime import cpu_description

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", type=Path, help="saved model folders")
    parser.add_argument("--images", type=Path, required=True, help="folder of images to upload (cycled)")
    parser.add_argument("--n-images", type=int, default=64, help="distinct images to cycle through")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=16, help="requests sent first and not measured")
    parser.add_argument("--max-batch", type=int, nargs="+", default=[32], help="server --max-batch values to compare")
    parser.add_argument("--threads", type=int, nargs="+", default=[0], help="server --threads values (0 = default)")
    parser.add_argument("--cores", type=int, default=2, help="pin the server to this many cores (0 = no pinning)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/pixsort-serve-bench.json"))
    args = parser.parse_args(argv)

    images = sorted(p for p in args.images.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[: args.n_images]
    if not images:
        parser.error(f"no images under {args.images}")
    payloads = [(p.name, p.read_bytes()) for p in images]

    rows = []
    for model in args.models:
        for threads in args.threads:
            for max_batch in args.max_batch:
                row = measure(model, payloads, args, max_batch, threads)
                rows.append(row)
                print(_line(row), flush=True)
    args.out.write_text(json.dumps({"machine": _machine(), "runs": rows}, indent=2))
    print(f"wrote {args.out}")
    return 0 if all(r["errors"] == 0 for r in rows) else 1


def measure(model: Path, payloads: list[tuple[str, bytes]], args, max_batch: int, threads: int = 0) -> dict:
    port = _free_port()
    command = [
        sys.executable, "-c", "import sys; from pixsort.cli import main; sys.argv[0] = 'pixsort'; main()",
        "serve", str(model), "--host", "127.0.0.1", "--port", str(port),
        "--log-level", "warning", "--max-batch", str(max_batch),
        *(["--threads", str(threads)] if threads else []),
    ]  # fmt: skip
    if args.cores:
        command = ["taskset", "-c", f"0-{args.cores - 1}", *command]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        startup_s = _wait_healthy(base, server)
        process = psutil.Process(server.pid)
        kind = httpx.get(f"{base}/model").json()["kind"]
        asyncio.run(_load(base, payloads, args.warmup, args.concurrency))
        rss_idle = process.memory_info().rss
        sampler = _RssSampler(process)
        cpu_before = _cpu_snapshot(process)
        sampler.start()
        latencies, errors, wall = asyncio.run(_load(base, payloads, args.requests, args.concurrency))
        sampler.stop()
        cpu = _cpu_used(cpu_before, _cpu_snapshot(process), wall)
        rss_after = process.memory_info().rss
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    lat = np.array(latencies) * 1000
    return {
        "model": str(model),
        "kind": kind,
        "max_batch": max_batch,
        "threads": threads or None,
        "requests": args.requests,
        "concurrency": args.concurrency,
        "errors": errors,
        "p50_ms": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
        "p95_ms": round(float(np.percentile(lat, 95)), 1) if len(lat) else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 1) if len(lat) else None,
        "requests_per_s": round(len(lat) / wall, 1),
        "startup_s": round(startup_s, 2),
        "rss_idle_mb": round(rss_idle / 2**20, 1),
        "rss_peak_mb": round(max(sampler.peak, rss_after) / 2**20, 1),
        "rss_after_mb": round(rss_after / 2**20, 1),
        **cpu,
    }


def _cpu_snapshot(server: psutil.Process) -> tuple[float, float, float]:
    """CPU seconds so far: the whole machine (busy), the server, this client."""
    machine = psutil.cpu_times()
    busy = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)
    s, c = server.cpu_times(), psutil.Process().cpu_times()
    return busy, s.user + s.system, c.user + c.system


def _cpu_used(before, after, wall: float) -> dict:
    """Cores kept busy during the load: by the server, by the client, by everything else
    on the machine (other people's jobs: the noise in these figures)."""
    busy, server, client = (b - a for a, b in zip(before, after))
    return {
        "server_cores": round(server / wall, 2),
        "client_cores": round(client / wall, 2),
        "other_cores": round(max(0.0, busy - server - client) / wall, 2),
    }


async def _load(base: str, payloads, n_requests: int, concurrency: int) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    errors = 0
    counter = iter(range(n_requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        for i in counter:
            name, data = payloads[i % len(payloads)]
            t0 = time.perf_counter()
            try:
                response = await client.post(f"{base}/predict", files={"files": (name, data)})
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - t0)
            else:
                errors += 1

    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return latencies, errors, wall


class _RssSampler(threading.Thread):
    def __init__(self, process: psutil.Process, every_s: float = 0.02):
        super().__init__(daemon=True)
        self.process, self.every_s, self.peak = process, every_s, 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return
            self._stop_event.wait(self.every_s)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def _wait_healthy(base: str, server: subprocess.Popen, timeout_s: float = 120) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout_s:
        if server.poll() is not None:
            raise RuntimeError(f"server exited: {server.stderr.read().decode(errors='replace')[-2000:]}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return time.perf_counter() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"server at {base} not healthy after {timeout_s}s")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _machine() -> dict:
    return {
        "cpus_visible": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu": cpu_description(),  # model, the vector units that decide the speed, cores
        "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
    }


def _line(r: dict) -> str:
    return (
        f"{r['kind']:<10} {Path(r['model']).name:<20} batch<={r['max_batch']:<3} threads {r['threads'] or 'all':<3} "
        f"p50 {r['p50_ms']} ms  p95 {r['p95_ms']} ms  {r['requests_per_s']} req/s  errors {r['errors']}  "
        f"RSS idle {r['rss_idle_mb']} MB peak {r['rss_peak_mb']} MB  "
        f"cores: server {r['server_cores']} client {r['client_cores']} others {r['other_cores']}"
    )


if __name__ == "__main__":
    sys.exit(main())
