"""Planted problems on the Kaggle chest X-ray train split, found by ``pixsort audit``.

* flips: a symlinked copy of the split with 50 files (seed 0) linked under the other
  class; share of them in the top 100 of label_issues.csv;
* near-copies: 100 X-rays (seed 0), each copied once as resized to 60%, re-encoded at
  JPEG quality 50 or cropped by 5% (in turn), added to the split; recall of them in
  their original's duplicate group, and the false groups (groups holding no planted pair
  that are not byte-identical sets);
* the 24 byte-identical groups of the split;
* the time of each audit (warm embedding cache after the first).

    flock /tmp/pixsort-heavy.lock python bench/audit.py --cache-dir /tmp/audit2/cache --work /tmp/audit2/bench
"""

from __future__ import annotations

import argparse
import io
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from pixsort import audit
from pixsort.base.runtime import cpu_description

XRAY = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "chest_xray" / "train"


def link_tree(src: Path, dst: Path, flip: set[str] = frozenset()) -> None:
    classes = sorted(p.name for p in src.iterdir() if p.is_dir())
    for cls in classes:
        for f in sorted((src / cls).iterdir()):
            target_cls = classes[1 - classes.index(cls)] if f.name in flip else cls
            (dst / target_cls).mkdir(parents=True, exist_ok=True)
            os.symlink(f, dst / target_cls / f.name)


def near_copy(path: Path, how: str) -> Image.Image:
    im = Image.open(path).convert("RGB")
    if how == "resized":
        return im.resize((round(im.width * 0.6), round(im.height * 0.6)), Image.BILINEAR)
    if how == "reencoded":
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=50)
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    dx, dy = round(im.width * 0.025), round(im.height * 0.025)
    return im.crop((dx, dy, im.width - dx, im.height - dy))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache-dir", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--data", default=str(XRAY))
    args = ap.parse_args()
    src, work = Path(args.data), Path(args.work)
    files = sorted(p for p in src.rglob("*.jpeg"))
    rng = np.random.default_rng(0)
    results = {"cpu": cpu_description(), "load_before": os.getloadavg()}

    # 1. the split as it is: time (warm) and the byte-identical groups
    t = time.perf_counter()
    plain = audit(src, work / "out_plain", cache_dir=args.cache_dir, progress=False)
    results["plain_seconds"] = time.perf_counter() - t
    results["plain_timings"] = plain.summary["timings"]
    d = plain.outputs.duplicates
    exact = d[d["kind"] == "exact"]["group"].nunique()
    results["plain_duplicates"] = plain.summary["duplicates"]
    results["exact_groups_found"] = int(exact)

    # 2. 50 flipped labels
    flip = {files[i].name for i in rng.choice(len(files), 50, replace=False)}
    tree = work / "flipped"
    if not tree.exists():
        link_tree(src, tree, flip)
    t = time.perf_counter()
    run = audit(tree, work / "out_flipped", cache_dir=args.cache_dir, progress=False)
    results["flipped_seconds"] = time.perf_counter() - t
    issues = run.outputs.label_issues
    top = issues.head(100)["path"].map(lambda p: Path(p).name)
    results["flipped_in_top100"] = int(top.isin(flip).sum())
    results["n_label_issues"] = len(issues)
    table = run.outputs.table.dropna(subset=["label_quality"]).sort_values("label_quality")
    results["flipped_in_lowest100_quality"] = int(table.head(100)["path"].map(lambda p: Path(p).name).isin(flip).sum())

    # 3. 100 near-copies
    tree = work / "near"
    picks = [files[i] for i in rng.choice(len(files), 100, replace=False)]
    hows = ["resized", "reencoded", "cropped"]
    planted = {}
    if not tree.exists():
        link_tree(src, tree)
    for k, f in enumerate(picks):
        how = hows[k % 3]
        target = tree / f.parent.name / f"{f.stem}__{how}.png"
        if not target.exists():
            near_copy(f, how).save(target)
        planted[str(tree / f.parent.name / f.name)] = (str(target), how)
    t = time.perf_counter()
    run = audit(tree, work / "out_near", cache_dir=args.cache_dir, progress=False)
    results["near_seconds"] = time.perf_counter() - t
    tab = run.outputs.table.set_index("path")
    found = dict.fromkeys(hows, 0)
    for orig, (copy, how) in planted.items():
        g1, g2 = tab.loc[orig, "group"], tab.loc[copy, "group"]
        found[how] += int(not pd.isna(g1) and g1 == g2)
    results["near_recall"] = sum(found.values()) / len(planted)
    results["near_recall_by_kind"] = {h: found[h] / sum(1 for v in planted.values() if v[1] == h) for h in hows}
    groups = run.outputs.duplicates
    planted_groups = {tab.loc[o, "group"] for o in planted} | {tab.loc[c, "group"] for c, _ in planted.values()}
    other = groups[~groups["group"].isin(planted_groups)]
    false = other[other["kind"] != "exact"]["group"].nunique()
    results["n_groups"] = int(groups["group"].nunique())
    results["false_groups"] = int(false)
    results["false_group_share"] = false / max(1, groups["group"].nunique())
    sims_copy = [float(run.auditor.nearest_similarity_[np.flatnonzero(run.rows == tab.index.get_loc(c))[0]])
                 for c, _ in planted.values()]  # fmt: skip
    from pixsort.auditing.duplicates import hash_distance

    H = run.auditor.pixel_hashes_
    for how in hows:
        where = {int(r): k for k, r in enumerate(run.rows)}  # table row -> audited image
        kind = [(o, c) for o, (c, h) in planted.items() if h == how]
        pairs = [(where[tab.index.get_loc(o)], where[tab.index.get_loc(c)]) for o, c in kind]
        bits = hash_distance(H, np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]))
        results[f"copy_hash_bits_{how}_min_median_95pct_max"] = np.quantile(bits, [0, 0.5, 0.95, 1]).tolist()
    plain_bits = plain.auditor.nearest_hash_distance_[plain.auditor.exact_group_ < 0]
    quantiles = np.quantile(plain_bits, [0, 0.001, 0.01, 0.5]).tolist()
    results["distinct_nearest_hash_bits_min_0.1pct_1pct_median"] = quantiles
    results["distinct_within_bits"] = {b: int((plain_bits <= b).sum()) for b in (8, 9, 10, 11, 12)}
    results["copy_similarity_quantiles"] = np.quantile(sims_copy, [0, 0.05, 0.5]).round(4).tolist()
    plain_nn = plain.auditor.nearest_similarity_[plain.auditor.exact_group_ < 0]
    results["distinct_nearest_similarity_quantiles"] = np.quantile(plain_nn, [0.5, 0.99, 0.999, 1]).round(4).tolist()
    results["load_after"] = os.getloadavg()
    print(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
