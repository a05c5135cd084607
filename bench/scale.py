"""Scale benchmark: ``pixsort cluster`` (and ``pixsort embed`` + ``cluster --embeddings``)
at growing n, cold and warm, with per-stage times, peak memory, cache size and file count.

Sets: the 10,000 images of the shared CIFAR-10 sample, grown to 25k / 50k by distinct
seeded augmentations (mirror, a shifted crop, brightness and colour jitter, JPEG
quality) written into a scratch folder, so every extra image has its own content hash
and its own embedding.  Labels follow the source image (scored with ``--score``).

Run it alone on the machine, under the shared lock:

    flock /tmp/pixsort-heavy.lock python bench/scale.py --sizes 10000 25000 50000 --work /tmp/pixsort-scale

``--engines local ray`` adds the Ray engine (where ``pixsort[ray]`` is installed);
``--clustimage PYTHON`` runs clustimage's defaults on the first size with that
interpreter (a throw-away venv: ``python -m venv /tmp/climg && /tmp/climg/bin/pip install
clustimage``).  Results go to ``<work>/scale.json`` and a Markdown table on stdout.
Peak memory is polled every 0.1 s over the process tree three ways: the largest sum of RSS
(shared pages of forked decoders count once per process, so it errs high), the largest sum
of PSS (each shared page split among the processes mapping it: the tree's own memory,
counted once) and the main process's own peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CIFAR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10_sample" / "train"
PIXSORT = [sys.executable, "-m", "pixsort"]


def cpu_name() -> str:
    try:
        from pixsort.base.runtime import cpu_description

        return cpu_description()
    except Exception:  # a label only
        return platform.processor() or platform.machine()


def make_set(n: int, folder: Path) -> Path:
    """``folder/<class>/*.jpg``: the CIFAR sample (linked), plus augmented copies up to ``n``."""
    from PIL import Image, ImageEnhance

    marker = folder / f".complete-{n}"
    if marker.exists():
        return folder
    sources = sorted(CIFAR.glob("*/*.jpg"))
    if not sources:
        sys.exit(f"no CIFAR-10 sample under {CIFAR}")
    shutil.rmtree(folder, ignore_errors=True)
    for j in range(n):
        src = sources[j % len(sources)]
        out = folder / src.parent.name / (src.stem + (f"-v{j // len(sources)}" if j >= len(sources) else "") + ".jpg")
        out.parent.mkdir(parents=True, exist_ok=True)
        if j < len(sources):
            os.symlink(src.resolve(), out)
            continue
        rng = np.random.default_rng(j)
        with Image.open(src) as im:
            im = im.convert("RGB")
            if rng.random() < 0.5:
                im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            dx, dy = rng.integers(0, 5, 2)
            im = im.resize((36, 36), Image.Resampling.BILINEAR).crop((dx, dy, dx + 32, dy + 32))
            im = ImageEnhance.Brightness(im).enhance(rng.uniform(0.8, 1.2))
            im = ImageEnhance.Color(im).enhance(rng.uniform(0.7, 1.3))
            im.save(out, quality=int(rng.integers(80, 96)))
    marker.write_text("ok")
    return folder


def run_measured(cmd: list[str], env: dict | None = None) -> dict:
    """Run ``cmd``; wall time, peak tree RSS and PSS and the main process's peak RSS (MB),
    CPU user/system (s), exit code."""
    import resource

    import psutil

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    root = psutil.Process(proc.pid)
    peak = peak_pss = peak_main = 0
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            infos = [p.memory_full_info() for p in tree if p.is_running()]
            peak = max(peak, sum(i.rss for i in infos))
            peak_pss = max(peak_pss, sum(i.pss for i in infos))
            peak_main = max(peak_main, infos[0].rss)
        except (psutil.Error, IndexError):
            pass  # a process ended between listing and reading
        time.sleep(0.1)
    out = proc.stdout.read()
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "cmd": " ".join(cmd),
        "rc": proc.returncode,
        "wall_s": round(time.perf_counter() - start, 2),
        "peak_rss_mb": round(peak / 2**20, 1),
        "peak_pss_mb": round(peak_pss / 2**20, 1),
        "peak_main_rss_mb": round(peak_main / 2**20, 1),
        "user_s": round(ru.ru_utime - before.ru_utime, 1),
        "sys_s": round(ru.ru_stime - before.ru_stime, 1),
        "tail": out[-1500:],
    }


def folder_stats(folder: Path) -> dict:
    files = [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
    return {"files": len(files), "mb": round(sum(p.stat().st_size for p in files) / 2**20, 1)}


def cluster_run(data: Path, out: Path, cache: Path, extra: list[str]) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    res = run_measured(
        [*PIXSORT, "cluster", str(data), "--out", str(out), "--score", "--cache-dir", str(cache), *extra]
    )
    metrics = out / "metrics.json"
    if metrics.exists():
        m = json.loads(metrics.read_text())
        res["timings_s"] = m.get("timings_s")
        res["scores"] = {k: m.get(k) for k in ("accuracy", "nmi", "ari", "n_images", "n_clusters")}
    res["cache"] = {
        "embeddings": folder_stats(cache / "embeddings"),
        "decoded": folder_stats(cache / "decoded"),
        "all": folder_stats(cache),
    }
    return res


def clustimage_run(python: str, data: Path, work: Path) -> dict:
    script = work / "clustimage_run.py"
    script.write_text(
        "import sys, time\nfrom clustimage import Clustimage\n"
        "t = time.perf_counter()\ncl = Clustimage()\nres = cl.fit_transform(sys.argv[1])\n"
        "print('clustimage clusters', len(set(res['labels'])), 'in', round(time.perf_counter() - t, 1), 's')\n"
    )
    flat = work / "clustimage-input"
    if not flat.exists():  # clustimage reads one folder of files
        flat.mkdir(parents=True)
        for p in sorted(data.glob("*/*.jpg")):
            os.symlink(p.resolve(), flat / f"{p.parent.name}_{p.name}")
    return run_measured([python, str(script), str(flat)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 25_000, 50_000])
    ap.add_argument("--work", type=Path, default=Path("/tmp/pixsort-scale"))
    ap.add_argument("--k", type=int, default=10, help="fixed k, as the targets are stated (0: chosen)")
    ap.add_argument("--view", default="pca", help="report view (t-SNE of the 5,000-point sample costs ~1 min)")
    ap.add_argument("--engines", nargs="+", default=["local"])
    ap.add_argument("--clustimage", default=None, help="python of a venv with clustimage installed")
    ap.add_argument("--skip-cold", action="store_true", help="reuse the caches of an earlier run")
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    extra = ["--view", args.view, *(["--k", str(args.k)] if args.k else [])]
    results: dict = {"cpu": cpu_name(), "cores": os.cpu_count(), "sizes": {}}
    for n in args.sizes:
        data = make_set(n, args.work / f"set-{n}")
        cache = args.work / f"cache-{n}"
        row: dict = {}
        for engine in args.engines:
            engine_extra = [*extra, *(["--engine", engine] if engine != "local" else [])]
            tag = "" if engine == "local" else f"-{engine}"
            if not args.skip_cold:
                shutil.rmtree(cache, ignore_errors=True)
                row[f"cold{tag}"] = cluster_run(data, args.work / f"out-{n}-cold{tag}", cache, engine_extra)
            row[f"warm{tag}"] = cluster_run(data, args.work / f"out-{n}-warm{tag}", cache, engine_extra)
        store = args.work / f"store-{n}"
        shutil.rmtree(store, ignore_errors=True)
        row["embed_warm"] = run_measured([*PIXSORT, "embed", str(data), "--out", str(store), "--cache-dir", str(cache)])
        row["embed_store"] = folder_stats(store)
        out = args.work / f"out-{n}-from-store"
        shutil.rmtree(out, ignore_errors=True)
        row["cluster_from_store"] = run_measured(
            [*PIXSORT, "cluster", "--embeddings", str(store), "--out", str(out), "--score", *extra]
        )
        results["sizes"][n] = row
        (args.work / "scale.json").write_text(json.dumps(results, indent=1))
    if args.clustimage:
        n = args.sizes[0]
        results["clustimage"] = clustimage_run(args.clustimage, args.work / f"set-{n}", args.work)
        (args.work / "scale.json").write_text(json.dumps(results, indent=1))
    print(f"CPU: {results['cpu']}, {results['cores']} cores\n")
    print("| n | run | wall s | peak tree RSS / PSS / main RSS MB | stages (s) | ACC | cache files | cache MB |")
    print("|---|---|---|---|---|---|---|---|")
    for n, row in results["sizes"].items():
        for name, r in row.items():
            if not isinstance(r, dict) or "wall_s" not in r:
                continue
            stages = ", ".join(f"{k} {v:.1f}" for k, v in (r.get("timings_s") or {}).items())
            acc = (r.get("scores") or {}).get("accuracy")
            cache = (r.get("cache") or {}).get("all", {})
            acc_text = "" if acc is None else f"{acc:.3f}"
            memory = f"{r['peak_rss_mb']} / {r.get('peak_pss_mb', '')} / {r.get('peak_main_rss_mb', '')}"
            print(f"| {n} | {name} | {r['wall_s']} | {memory} | {stages} | {acc_text} | "
                  f"{cache.get('files', '')} | {cache.get('mb', '')} |")  # fmt: skip
    if "clustimage" in results:
        r = results["clustimage"]
        memory = f"{r['peak_rss_mb']} / {r.get('peak_pss_mb', '')} / {r.get('peak_main_rss_mb', '')}"
        print(f"| {args.sizes[0]} | clustimage defaults | {r['wall_s']} | {memory} | | | | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
