"""Behaviour parity: run a fixed set of small CLI jobs, then compare two runs.

A restructuring must not change what pixsort computes or which files it writes.
Run this once on the code before the change and once after, then compare::

    python bench/parity.py run /tmp/before --src /path/to/old/checkout/src
    python bench/parity.py run /tmp/after
    python bench/parity.py compare /tmp/before /tmp/after

``run`` builds small fixed subsets of ``../shared/data`` (CSV sources, no copies),
and runs demo, cluster (default features, pixels, every method, the SCAN head),
assign, train (seed CNN and partial fine-tuning, one epoch), evaluate, predict and
cluster-table (with --join and --compare), each with its own empty cache.
``compare`` lists files present on one side only, and every CSV cell or JSON value
that differs (timings, seconds and the run folder itself are ignored; PNG and HTML
files are compared by name only).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
IGNORED_KEYS = ("seconds", "timings", "elapsed", "images_per_second", "fit_seconds", "decode_seconds", "uptime")
COMPARED_SUFFIXES = (".csv", ".json")


def _subsets(out: Path) -> dict[str, Path]:
    """Fixed CSV sources: 30 CIFAR images per class, 120+120 X-rays to train on, 30+30 to evaluate."""
    out.mkdir(parents=True, exist_ok=True)
    cifar = out / "cifar300.csv"
    rows = ["path,label"]
    for folder in sorted((SHARED / "cifar10_sample" / "train").iterdir()):
        rows += [f"{p},{folder.name}" for p in sorted(folder.glob("*.jpg"))[:30]]
    cifar.write_text("\n".join(rows) + "\n")
    train, held = ["path,label"], ["path,label"]
    for cls in ("NORMAL", "PNEUMONIA"):
        files = sorted((SHARED / "chest_xray" / "train" / cls).glob("*.jpeg"))
        train += [f"{p},{cls}" for p in files[:120]]
        held += [f"{p},{cls}" for p in files[120:150]]
    (out / "xray_train.csv").write_text("\n".join(train) + "\n")
    (out / "xray_held.csv").write_text("\n".join(held) + "\n")
    return {"cifar": cifar, "xray": out / "xray_train.csv", "held": out / "xray_held.csv"}


def _jobs(out: Path, data: dict[str, Path]) -> list[tuple[str, list[str]]]:
    hero = SHARED / "superhero"
    c, x, h = str(data["cifar"]), str(data["xray"]), str(data["held"])
    return [
        ("demo", ["demo", "--out", f"{out}/demo"]),
        ("cluster_default", ["cluster", c, "--out", f"{out}/cluster_default", "--k", "10", "--score"]),
        ("cluster_pixels", ["cluster", c, "--out", f"{out}/cluster_pixels", "--features", "pixels", "--score"]),
        (
            "cluster_agglomerative",
            [
                "cluster",
                c,
                "--out",
                f"{out}/cluster_agglomerative",
                "--features",
                "pixels",
                "--method",
                "agglomerative",
                "--k",
                "5",
                "--score",
            ],
        ),
        (
            "cluster_hdbscan",
            ["cluster", c, "--out", f"{out}/cluster_hdbscan", "--features", "pixels", "--method", "hdbscan", "--score"],
        ),
        (
            "cluster_spectral",
            [
                "cluster",
                c,
                "--out",
                f"{out}/cluster_spectral",
                "--features",
                "pixels",
                "--method",
                "spectral",
                "--k",
                "5",
                "--score",
            ],
        ),
        (
            "cluster_scan",
            [
                "cluster",
                c,
                "--out",
                f"{out}/cluster_scan",
                "--features",
                "pixels",
                "--head",
                "scan",
                "--k",
                "5",
                "--score",
            ],
        ),
        ("assign", ["assign", f"{out}/cluster_pixels/model", c, "--out", f"{out}/assign/assignments.csv"]),
        ("train_seed", ["train", x, "--out", f"{out}/train_seed", "--epochs", "1"]),
        (
            "train_partial",
            ["train", x, "--out", f"{out}/train_partial", "-m", "partial:efficientnet_lite0", "--epochs", "1"],
        ),
        ("evaluate", ["evaluate", f"{out}/train_seed/model", h, "--out", f"{out}/evaluate"]),
        ("predict", ["predict", f"{out}/train_seed/model", h, "--out", f"{out}/predict/predictions.csv"]),
        (
            "table",
            [
                "cluster-table",
                str(hero / "super_hero_powers.csv"),
                "--id",
                "hero_names",
                "--out",
                f"{out}/table",
                "--join",
                str(hero / "heroes_information.csv"),
                "--on",
                "name",
                "--noun",
                "heroes",
            ],
        ),
        (
            "table_compare",
            [
                "cluster-table",
                str(hero / "super_hero_powers.csv"),
                "--id",
                "hero_names",
                "--out",
                f"{out}/table_compare",
                "--compare",
                "--stability-runs",
                "2",
            ],
        ),
    ]


def run(out: Path, src: str | None, only: list[str] | None) -> int:
    data = _subsets(out / "data")
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = str(Path(src).resolve())
    failed = 0
    for name, args in _jobs(out, data):
        if only and name not in only:
            continue
        env["PIXSORT_CACHE"] = str(out / "cache" / name)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "pixsort", *args], env=env, capture_output=True, text=True)
        (out / "logs").mkdir(parents=True, exist_ok=True)
        (out / "logs" / f"{name}.txt").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
        print(f"{name:24s} exit {proc.returncode}  {time.perf_counter() - start:6.1f} s", flush=True)
        failed += proc.returncode != 0
    return 1 if failed else 0


def _normalise(value, root: str):
    if isinstance(value, dict):
        return {k: _normalise(v, root) for k, v in value.items() if not any(i in k for i in IGNORED_KEYS)}
    if isinstance(value, list):
        return [_normalise(v, root) for v in value]
    if isinstance(value, str):
        return value.replace(root, "<run>")
    return value


def _diff(a, b, where: str, out: list[str], tol: float) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(f"{where}.{k}: only in {'after' if k not in a else 'before'}")
            else:
                _diff(a[k], b[k], f"{where}.{k}", out, tol)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{where}: length {len(a)} vs {len(b)}")
        for i, (u, v) in enumerate(zip(a, b)):
            _diff(u, v, f"{where}[{i}]", out, tol)
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        if not (math.isclose(a, b, rel_tol=tol, abs_tol=tol) or (a != a and b != b)):
            out.append(f"{where}: {a!r} vs {b!r}")
    elif a != b:
        out.append(f"{where}: {str(a)[:80]!r} vs {str(b)[:80]!r}")


def _load(path: Path, root: str):
    if path.suffix == ".json":
        return _normalise(json.loads(path.read_text()), root)
    import pandas as pd

    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame = frame[[c for c in frame.columns if not any(i in c for i in IGNORED_KEYS)]]
    records = frame.to_dict(orient="list")
    for column, values in records.items():
        try:
            records[column] = [float(v) if v != "" else None for v in values]
        except ValueError:
            pass
    return _normalise(records, root)


def compare(before: Path, after: Path, tol: float) -> int:
    skip = ("cache", "logs", "data")

    def files(root: Path) -> set[str]:
        return {
            str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.parts[len(root.parts)] not in skip
        }

    a_files, b_files = files(before), files(after)
    problems = [f"only before: {f}" for f in sorted(a_files - b_files)]
    problems += [f"only after: {f}" for f in sorted(b_files - a_files)]
    compared = 0
    for rel in sorted(a_files & b_files):
        if not rel.endswith(COMPARED_SUFFIXES):
            continue
        compared += 1
        diffs: list[str] = []
        _diff(_load(before / rel, str(before)), _load(after / rel, str(after)), rel, diffs, tol)
        problems += diffs[:20] + ([f"{rel}: ... {len(diffs) - 20} more"] if len(diffs) > 20 else [])
    print(
        f"{len(a_files & b_files)} files on both sides, {compared} CSV/JSON compared, "
        f"{len(a_files ^ b_files)} on one side only, {len(problems)} differences"
    )
    for line in problems:
        print("  " + line)
    return 1 if problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("out", type=Path)
    r.add_argument("--src", help="a src/ folder to import pixsort from (e.g. an older checkout)")
    r.add_argument("--only", nargs="*", help="job names to run")
    c = sub.add_parser("compare")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    c.add_argument("--tol", type=float, default=1e-6, help="relative and absolute tolerance for numbers")
    args = parser.parse_args()
    if args.command == "run":
        return run(args.out.resolve(), args.src, args.only)
    return compare(args.before.resolve(), args.after.resolve(), args.tol)


if __name__ == "__main__":
    sys.exit(main())
