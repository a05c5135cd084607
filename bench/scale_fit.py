"""The fit at large n from an embedding set: ``pixsort cluster --embeddings`` on sets grown
from a real one, to measure time and peak memory of everything after the embedding.

    flock /tmp/pixsort-heavy.lock python bench/scale_fit.py /tmp/pixsort-scale/store-10000 \
        --sizes 10000 50000 100000 --work /tmp/pixsort-scale-fit

The source set (``pixsort embed`` of real images) is repeated to ``n`` rows; every
copy after the first gets seeded Gaussian noise of ``--noise`` times each dimension's
standard deviation, so no two rows are equal and neighbour search, smoothing and k-means
work on ``n`` distinct points with the source's cluster structure.  The paths repeat the
source's (the report shows some of them; they are real files).  This is a load test of
the fit: the embedding stage's own cost at n is measured by ``bench/scale.py``.  ACC is
printed against the source labels, but the copies make it easier than a real set of
that size would be, so it is no quality figure.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import PIXSORT, cpu_name, run_measured


def grow_set(source: Path, n: int, folder: Path, noise: float, seed: int = 0) -> Path:
    import pandas as pd

    from pixsort.features.store import read_embedding_set
    from pixsort.report.embeddings import EmbeddingSetWriter

    if (folder / "store.json").exists():
        return folder
    src = read_embedding_set(source)
    vectors = np.asarray(src.vectors)
    loaded = src.items[src.items["status"] == "loaded"].sort_values("row").reset_index(drop=True)
    scale = vectors.std(axis=0, keepdims=True) * noise
    writer = EmbeddingSetWriter(folder, n, vectors.shape[1])
    rng = np.random.default_rng(seed)
    rows = []
    for copy in range(-(-n // len(vectors))):
        take = min(len(vectors), n - copy * len(vectors))
        block = vectors[:take]
        if copy:
            block = block + rng.standard_normal(block.shape, dtype=np.float32) * scale
        writer.write(block.astype(np.float32))
        part = loaded.iloc[:take].copy()
        part["row"] = np.arange(copy * len(vectors), copy * len(vectors) + take)
        if copy:  # a distinct key per copy: the content hash names the vector's origin only
            part["content_hash"] = part["content_hash"].astype(str) + f"-copy{copy}"
        rows.append(part)
    meta = {k: v for k, v in src.meta.items() if k not in {"kind", "format", "n", "dim", "checksum"}}
    return writer.close(pd.concat(rows, ignore_index=True), meta)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", type=Path, help="an embedding set (pixsort embed)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000])
    ap.add_argument("--work", type=Path, default=Path("/tmp/pixsort-scale-fit"))
    ap.add_argument("--noise", type=float, default=0.3)
    ap.add_argument("--k", type=int, default=10)
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    results = {"cpu": cpu_name(), "source": str(args.source), "noise": args.noise, "sizes": {}}
    for n in args.sizes:
        store = grow_set(args.source, n, args.work / f"store-{n}", args.noise)
        out = args.work / f"out-{n}"
        shutil.rmtree(out, ignore_errors=True)
        cmd = [*PIXSORT, "cluster", "--embeddings", str(store), "--out", str(out), "--score"]
        r = run_measured([*cmd, "--k", str(args.k), "--view", "pca"])
        metrics = out / "metrics.json"
        if metrics.exists():
            m = json.loads(metrics.read_text())
            r["timings_s"] = m.get("timings_s")
            r["accuracy"] = m.get("accuracy")
        results["sizes"][n] = r
        (args.work / "scale_fit.json").write_text(json.dumps(results, indent=1))
        stages = ", ".join(f"{k} {v:.1f}" for k, v in (r.get("timings_s") or {}).items())
        print(f"n={n}: rc {r['rc']}, wall {r['wall_s']} s, peak RSS {r['peak_rss_mb']} MB; fit stages: {stages}",
              flush=True)  # fmt: skip
        if r["rc"]:
            print(r["tail"])
    print(f"CPU: {results['cpu']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
