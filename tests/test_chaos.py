"""Chaos: ``kill -9`` a running ``pixsort cluster`` / ``pixsort embed`` at a seeded random
moment, rerun it to completion on the same cache, and its outputs equal a clean run's in
a fresh cache (clusters.csv; vectors.npy and items.csv).

The synthetic folder (3 kinds x 100 PNGs of 24 px) makes a pixels-features run last a few
seconds; the kill moment is drawn uniformly in 0.3..0.9 of the clean run's measured
duration, so it lands in start-up, decoding, caching or clustering depending on the draw.
One kill point per command in the default suite, several behind ``@pytest.mark.slow``.
The ``train --resume`` case is not covered here.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.test_serve_app import synthetic_images, write_images

SRC = Path(__file__).resolve().parents[1] / "src"
N_PER_KIND = 100


@pytest.fixture(scope="module")
def chaos_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("chaos-data")
    for kind in ("dark", "bright", "striped"):
        write_images(root / kind, kind, synthetic_images(kind, N_PER_KIND, size=24, seed=3))
    return root


def command(kind: str, data: Path, out: Path, cache: Path) -> list[str]:
    args = [sys.executable, "-m", "pixsort", kind, str(data), "--out", str(out), "--features", "pixels"]
    args += ["--cache-dir", str(cache)]
    if kind == "cluster":
        args += ["--k", "3", "--view", "pca", "--smoothing", "0"]  # the run's own work, not t-SNE's
    return args


def env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}


def run_clean(kind: str, data: Path, out: Path, cache: Path) -> float:
    t0 = time.monotonic()
    done = subprocess.run(command(kind, data, out, cache), env=env(), capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    return time.monotonic() - t0


def kill_at(kind: str, data: Path, out: Path, cache: Path, after_s: float) -> bool:
    """Start the command, SIGKILL it ``after_s`` seconds in; True if it was still running."""
    process = subprocess.Popen(
        command(kind, data, out, cache), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        process.wait(timeout=after_s)
        return False
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        return True


def assert_same_outputs(kind: str, got: Path, want: Path) -> None:
    if kind == "cluster":
        pd.testing.assert_frame_equal(pd.read_csv(got / "clusters.csv"), pd.read_csv(want / "clusters.csv"))
    else:
        assert np.array_equal(np.load(got / "vectors.npy"), np.load(want / "vectors.npy"))
        pd.testing.assert_frame_equal(pd.read_csv(got / "items.csv"), pd.read_csv(want / "items.csv"))


@pytest.fixture(scope="module")
def clean_runs(chaos_data, tmp_path_factory) -> dict[str, tuple[Path, float]]:
    """Each command once, uninterrupted, in a fresh cache: (output folder, seconds)."""
    runs = {}
    for kind in ("cluster", "embed"):
        base = tmp_path_factory.mktemp(f"clean-{kind}")
        runs[kind] = base / "out", run_clean(kind, chaos_data, base / "out", base / "cache")
    return runs


def kill_and_rerun(kind: str, seed: int, chaos_data: Path, clean_runs, tmp_path: Path) -> None:
    want, clean_s = clean_runs[kind]
    after_s = float(np.random.default_rng([seed, len(kind)]).uniform(0.3, 0.9)) * clean_s
    out, cache = tmp_path / "out", tmp_path / "cache"
    # the clean run was timed under another load: a run that ends before its kill moment
    # is started again (fresh outputs and cache) with the moment halved
    for _ in range(3):
        if kill_at(kind, chaos_data, out, cache, after_s):
            break
        shutil.rmtree(tmp_path)
        tmp_path.mkdir()
        after_s /= 2
    else:
        pytest.fail(f"{kind} finished before every kill moment (last {after_s:.2f} s, clean run {clean_s:.2f} s)")
    run_clean(kind, chaos_data, out, cache)
    assert_same_outputs(kind, out, want)


@pytest.mark.parametrize("kind", ["cluster", "embed"])
def test_kill_9_then_rerun_equals_a_clean_run(kind, chaos_data, clean_runs, tmp_path):
    kill_and_rerun(kind, 0, chaos_data, clean_runs, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1, 7))
@pytest.mark.parametrize("kind", ["cluster", "embed"])
def test_kill_9_at_more_points(kind, seed, chaos_data, clean_runs, tmp_path):
    kill_and_rerun(kind, seed, chaos_data, clean_runs, tmp_path)
