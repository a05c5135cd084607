"""Chaos: ``kill -9`` a running ``pixsort cluster`` / ``pixsort embed`` at a seeded random
moment, rerun it to completion on the same cache, and its outputs equal a clean run's in
a fresh cache (clusters.csv; vectors.npy and items.csv).

The synthetic folder (3 kinds x 100 PNGs of 24 px) makes a pixels-features run last a few
seconds; the kill moment is drawn uniformly in 0.3..0.9 of the clean run's measured
duration, so it lands in start-up, decoding, caching or clustering depending on the draw.
One kill point per command in the default suite, several behind ``@pytest.mark.slow``.

``train`` is killed after its first committed checkpoint (``state.json`` appears), at a
seeded delay into the following epoch, then continued with ``--resume``: the saved model's
weights must be bit-identical to an uninterrupted run's.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file
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


def run_to_end(args: list[str]) -> float:
    """Run a command to its end (it must succeed); its seconds."""
    t0 = time.monotonic()
    done = subprocess.run(args, env=env(), capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    return time.monotonic() - t0


def run_clean(kind: str, data: Path, out: Path, cache: Path) -> float:
    return run_to_end(command(kind, data, out, cache))


def kill_until_caught(kill: Callable[[float], bool], moment: float, tmp_path: Path, what: str) -> None:
    """``kill(moment)`` starts a run and kills it, True if it was caught running.  A run
    that ends before its moment (the timing was taken under another load) is started
    again, fresh outputs and cache, with the moment halved, up to 3 times."""
    for _ in range(3):
        if kill(moment):
            return
        shutil.rmtree(tmp_path)
        tmp_path.mkdir()
        moment /= 2
    pytest.fail(f"{what} finished before every kill moment (last {moment:.2f} s)")


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
    kill_until_caught(
        lambda s: kill_at(kind, chaos_data, out, cache, s), after_s, tmp_path, f"{kind} (clean run {clean_s:.2f} s)"
    )
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


TRAIN_EPOCHS = 4


@pytest.fixture(scope="module")
def noise_data(tmp_path_factory) -> Path:
    """Two classes of random-noise pictures: nothing to learn but memorising, so every epoch
    moves the weights (on the easy kinds above the loss is 0 after one epoch)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("chaos-noise")
    rng = np.random.default_rng(11)
    for label in ("a", "b"):
        (root / label).mkdir()
        for i in range(60):
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / label / f"{i:03d}.png")
    return root


def train_command(data: Path, out: Path, cache: Path, resume: bool = False) -> list[str]:
    args = [sys.executable, "-m", "pixsort", "train", str(data), "--out", str(out), "--model", "seed-cnn"]
    args += ["--epochs", str(TRAIN_EPOCHS), "--patience", str(TRAIN_EPOCHS), "--image-size", "16", "--no-groups"]
    args += ["--workers", "0", "--cache-dir", str(cache)]
    return args + (["--resume"] if resume else [])


def checkpoint_times(data: Path, out: Path, cache: Path) -> list[float]:
    """Run train to completion; the moments (s from start) at which each checkpoint was committed."""
    state = out / "checkpoint" / "state.json"
    t0, seen, last = time.monotonic(), [], None
    log = out.parent / "clean-train.log"  # a file, not a pipe: nobody reads while the run writes
    with log.open("wb") as sink:
        process = subprocess.Popen(train_command(data, out, cache), env=env(), stderr=sink, stdout=subprocess.DEVNULL)
        while process.poll() is None:
            try:
                stamp = state.stat().st_mtime_ns
            except FileNotFoundError:
                stamp = None
            if stamp is not None and stamp != last:
                seen.append(time.monotonic() - t0)
                last = stamp
            time.sleep(0.002)
    assert process.returncode == 0, log.read_text(errors="replace")[-2000:]
    return seen


def model_weights(out: Path) -> dict[str, np.ndarray]:
    """The saved model's tensors and the final checkpoint's (last epoch's weights + optimizer)."""
    files = sorted((out / "model").glob("*.safetensors"))
    assert files, f"no weights in {out / 'model'}"
    tensors = {f"model/{f.name}:{k}": v for f in files for k, v in load_file(str(f)).items()}
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    last = load_file(str(out / "checkpoint" / state["files"]["last"]["file"]))
    return tensors | {f"checkpoint/last:{k}": v for k, v in last.items()}


@pytest.fixture(scope="module")
def clean_train(noise_data, tmp_path_factory) -> tuple[Path, float]:
    """The uninterrupted run's output folder and its seconds per epoch."""
    base = tmp_path_factory.mktemp("clean-train")
    commits = checkpoint_times(noise_data, base / "out", base / "cache")
    assert len(commits) >= 2, commits
    return base / "out", (commits[-1] - commits[0]) / (len(commits) - 1)


def kill_train_and_resume(seed: int, data: Path, clean_train, tmp_path: Path) -> None:
    want, epoch_s = clean_train
    out, cache = tmp_path / "out", tmp_path / "cache"
    state = out / "checkpoint" / "state.json"

    def kill_after_first_checkpoint(delay: float) -> bool:
        process = subprocess.Popen(
            train_command(data, out, cache), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 300
            while not state.exists() and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.002)
            time.sleep(delay)
            running = process.poll() is None
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
        return running and state.exists()

    # a seeded moment within the epoch after the first commit: mid-step, mid-save or between renames
    delay = float(np.random.default_rng([seed, 7]).uniform(0.05, 0.95)) * epoch_s
    kill_until_caught(kill_after_first_checkpoint, delay, tmp_path, "train (after its first checkpoint)")
    assert not list((out / "model").glob("*.safetensors")), "killed after the model was saved: no resume tested"
    run_to_end(train_command(data, out, cache, resume=True))
    got, expected = model_weights(out), model_weights(want)
    assert got.keys() == expected.keys()
    for name, array in expected.items():
        assert np.array_equal(got[name], array), f"{name} differs after kill -9 and --resume"


def test_kill_9_in_training_then_resume_gives_the_same_weights(noise_data, clean_train, tmp_path):
    kill_train_and_resume(0, noise_data, clean_train, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1, 4))
def test_kill_9_in_training_at_more_points(seed, noise_data, clean_train, tmp_path):
    kill_train_and_resume(seed, noise_data, clean_train, tmp_path)
