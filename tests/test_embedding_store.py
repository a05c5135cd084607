"""The sharded embedding store: whole entries only, concurrent writers, bounded file count,
damaged shards recomputed, old one-file-per-image caches folded in."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from pixsort.features import cache as store_module
from pixsort.features.cache import EmbeddingCache


def _vectors(n: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def test_put_then_lookup_round_trips_and_marks_missing(tmp_path):
    store = EmbeddingCache(tmp_path, "ext/a")
    vecs = _vectors(5)
    store.put([f"k{i}" for i in range(5)], vecs)
    got, found = EmbeddingCache(tmp_path, "ext/a").lookup(["k3", "nope", "k0", "../../etc"])
    assert found.tolist() == [True, False, True, False]
    np.testing.assert_array_equal(got[0], vecs[3])
    np.testing.assert_array_equal(got[2], vecs[0])
    assert not got[1].any()
    assert EmbeddingCache(tmp_path, "ext/b").lookup(["k0"])[1].tolist() == [False]  # another extractor
    # what is stored, without reading a vector: the same answer as the lookup's
    assert EmbeddingCache(tmp_path, "ext/a").contains(["k3", "nope", "k0", "../../etc"]).tolist() == found.tolist()
    assert EmbeddingCache(tmp_path, "ext/a").contains(["k0"], dim=4).tolist() == [False]  # another width
    assert EmbeddingCache(tmp_path, "ext/b").contains([]).shape == (0,)


def _mapped_kb(path) -> int:
    """Resident kB of this process's mappings of ``path`` (/proc/self/smaps)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split()
            if len(head) >= 5 and "-" in head[0]:  # a mapping's first line: range perms offset dev inode [path]
                inside = len(head) >= 6 and head[5] == str(path)
            elif inside and head[0] == "Rss:":
                total += int(head[1])
    return total


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="needs Linux /proc")
def test_a_lookup_leaves_no_shard_page_in_this_process(tmp_path):
    """Rows are copied out of the memmap and its pages dropped from the process: a warm fit
    would otherwise hold every shard it read (640 MB at 50,000 images) to its end."""
    vecs = _vectors(4096, dim=512)
    keys = [f"k{i}" for i in range(len(vecs))]
    EmbeddingCache(tmp_path, "ext/a").put(keys, vecs)
    store = EmbeddingCache(tmp_path, "ext/a")
    got, found = store.lookup(keys)
    assert found.all()
    np.testing.assert_array_equal(got, vecs)
    (shard,) = store._shards
    path = (store.shard_dir / f"{shard.name}.npy").resolve()
    assert _mapped_kb(path) <= 8, "the shard's pages stayed mapped"  # 8 MB were read
    assert float(shard.matrix[10, 3]) == float(vecs[10, 3])  # and the memmap still reads
    assert _mapped_kb(path) > 0  # the probe sees a mapping that is read


def test_odd_keys_stay_inside_the_store(tmp_path):
    store = EmbeddingCache(tmp_path / "c", "ext")
    store.put(["../../escape", "a/b"], _vectors(2))
    assert [v is not None for v in store.get(["../../escape", "a/b"])] == [True, True]
    assert not (tmp_path / "escape").exists()
    assert all(p.is_relative_to(tmp_path / "c") for p in (tmp_path).rglob("*") if p.is_file())


def test_file_count_grows_with_shards_not_images(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "MAX_SHARDS", 4)
    store = EmbeddingCache(tmp_path, "ext")
    for b in range(12):
        store.put([f"b{b}-{i}" for i in range(50)], _vectors(50, seed=b))
    n_manifests = len(list(store.shard_dir.glob("*.json")))
    assert n_manifests <= 4 + 1
    assert store.n_files() <= 2 * n_manifests + 2  # matrix + manifest per shard, identity, lock
    fresh = EmbeddingCache(tmp_path, "ext")
    got, found = fresh.lookup([f"b{b}-{i}" for b in range(12) for i in range(50)])
    assert found.all()
    np.testing.assert_array_equal(got[-50:], _vectors(50, seed=11))
    assert len(fresh) == 600


def test_a_damaged_shard_is_ignored_and_its_rows_count_as_missing(tmp_path):
    store = EmbeddingCache(tmp_path, "ext")
    store.put(["a", "b"], _vectors(2))
    store.put(["c"], _vectors(1, seed=1))
    manifest = next(m for m in store.shard_dir.glob("*.json") if '"a"' in m.read_text())
    matrix = manifest.with_suffix(".npy")
    data = bytearray(matrix.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the last value
    matrix.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match="damaged embedding shard"):
        _, found = EmbeddingCache(tmp_path, "ext").lookup(["a", "b", "c"])
    assert found.tolist() == [False, False, True]


def test_a_shard_checksummed_once_is_not_hashed_again_until_it_changes(tmp_path, monkeypatch):
    store = EmbeddingCache(tmp_path, "ext")
    store.put(["a", "b"], _vectors(2))
    matrix = next(store.shard_dir.glob("*.npy"))
    hour_ago = time.time_ns() - 3600 * 10**9
    os.utime(matrix, ns=(hour_ago, hour_ago))  # settled: older than its check by far
    hashed = []
    real_hash = store_module.hash_file
    monkeypatch.setattr(store_module, "hash_file", lambda path: hashed.append(path) or real_hash(path))
    assert EmbeddingCache(tmp_path, "ext").lookup(["a", "b"])[1].all()
    assert len(hashed) == 1 and (store.dir / store_module.VERIFIED_FILE).is_file()
    store_module._INDEXES.clear()  # as a new process
    assert EmbeddingCache(tmp_path, "ext").lookup(["a", "b"])[1].all()
    assert len(hashed) == 1  # the record stood for the checksum
    data = bytearray(matrix.read_bytes())
    data[-1] ^= 0xFF  # rewritten: its modification time moves past the record's
    matrix.write_bytes(bytes(data))
    store_module._INDEXES.clear()
    with pytest.warns(RuntimeWarning, match="damaged embedding shard"):
        assert not EmbeddingCache(tmp_path, "ext").lookup(["a", "b"])[1].any()
    assert len(hashed) == 2


def test_a_fresh_shard_is_checksummed_by_every_process(tmp_path, monkeypatch):
    store = EmbeddingCache(tmp_path, "ext")
    store.put(["a"], _vectors(1))  # written just now: a change within the clock's grain could keep its time
    hashed = []
    real_hash = store_module.hash_file
    monkeypatch.setattr(store_module, "hash_file", lambda path: hashed.append(path) or real_hash(path))
    for _ in range(2):
        store_module._INDEXES.clear()
        assert EmbeddingCache(tmp_path, "ext").lookup(["a"])[1].all()
    assert len(hashed) == 2 and not (store.dir / store_module.VERIFIED_FILE).exists()


def test_a_matrix_without_its_manifest_belongs_to_nobody(tmp_path):
    # what a kill -9 between the two renames leaves behind
    store = EmbeddingCache(tmp_path, "ext")
    store.put(["a"], _vectors(1))
    store.shard_dir.joinpath("orphan.npy").write_bytes(b"\x93NUMPY half")
    _, found = EmbeddingCache(tmp_path, "ext").lookup(["a", "orphan"])
    assert found.tolist() == [True, False]


def _writer(root, worker: int) -> None:
    store = EmbeddingCache(root, "ext")
    for b in range(10):
        store.put([f"w{worker}-{b}-{i}" for i in range(20)], _vectors(20, seed=worker * 100 + b))


def test_two_concurrent_writers_lose_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "MAX_SHARDS", 6)  # merges happen while both write
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(tmp_path, w)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    keys = [f"w{w}-{b}-{i}" for w in range(2) for b in range(10) for i in range(20)]
    got, found = EmbeddingCache(tmp_path, "ext").lookup(keys)
    assert found.all()
    np.testing.assert_array_equal(got[:20], _vectors(20, seed=0))
    np.testing.assert_array_equal(got[-20:], _vectors(20, seed=109))


KILL_SCRIPT = """
import sys, numpy as np
from pixsort.features.cache import EmbeddingCache
store = EmbeddingCache(sys.argv[1], "ext")
rng = np.random.default_rng(0)
for b in range(10_000):
    store.put([f"{b}-{i}" for i in range(64)], rng.normal(size=(64, 256)).astype(np.float32))
"""


def test_kill_9_while_writing_leaves_only_whole_entries(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(tmp_path)])
    shards = EmbeddingCache(tmp_path, "ext").shard_dir
    deadline = time.monotonic() + 60
    while len(list(shards.glob("*.json"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.137)  # mid-write of a later shard, most likely
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    store = EmbeddingCache(tmp_path, "ext")
    assert len(store) > 0
    rng = np.random.default_rng(0)
    n_batches = len(store) // 64
    expected = np.concatenate([rng.normal(size=(64, 256)).astype(np.float32) for _ in range(n_batches)])
    got, found = store.lookup([f"{b}-{i}" for b in range(n_batches) for i in range(64)])
    assert found.all() and len(store) % 64 == 0
    np.testing.assert_array_equal(got, expected)


def test_an_old_one_file_per_image_cache_is_folded_into_a_shard(tmp_path):
    store = EmbeddingCache(tmp_path, "ext")
    vecs = _vectors(3)
    for i, v in enumerate(vecs):
        key = f"abc{i}"
        (store.dir / key[:2]).mkdir(parents=True, exist_ok=True)
        np.save(store.dir / key[:2] / f"{key}.npy", v)
    got, found = store.lookup(["abc0", "abc1", "abc2"])
    assert found.all()
    np.testing.assert_array_equal(got, vecs)
    assert not (store.dir / "ab").exists()
    assert len(list(store.shard_dir.glob("*.json"))) == 1


def test_an_unwritable_cache_warns_and_carries_on(tmp_path):
    (tmp_path / "file").write_text("not a folder")  # fails for root too, unlike a read-only mode
    with pytest.warns(RuntimeWarning, match="cannot write the embedding cache"):
        EmbeddingCache(tmp_path / "file" / "c", "ext").put(["a"], _vectors(1))


def test_a_warm_cache_makes_no_pixel_of_a_lazy_image_set(tmp_path):
    """Cached embeddings of a lazy set (the packed decode, made on access) and of its
    mirror view are read without making a single image; misses make only themselves."""
    from pixsort.data import DecodeSettings
    from pixsort.data.lazy import ImageRows
    from pixsort.features.extract import FeatureSpec, build_extractor, extract_features

    settings = DecodeSettings(size=8)
    pixels = np.random.default_rng(0).integers(0, 255, (6, 8, 8, 3), dtype=np.uint8)

    class Counted(ImageRows):
        made: list = []

        def __init__(self, rows):
            self.rows, self.settings = rows, settings

        def __len__(self):
            return len(self.rows)

        def _one(self, i):
            Counted.made.append(int(self.rows[i]))
            return pixels[self.rows[i]]

        def take(self, positions):
            return Counted(np.asarray(self.rows)[self._positions(positions)])

    spec = FeatureSpec("pixels", tta=False)
    extractor = build_extractor(spec, progress=False, size=8)
    keys = [f"img{i}" for i in range(6)]
    cold = extract_features(extractor, spec, Counted(np.arange(6)), keys, tmp_path, settings, progress=False)
    np.testing.assert_array_equal(cold, extract_features(extractor, spec, pixels, None, None, settings))
    Counted.made.clear()
    warm = extract_features(extractor, spec, Counted(np.arange(6)), keys, tmp_path, settings, progress=False)
    assert Counted.made == [] and np.array_equal(warm, cold)
    more = extract_features(extractor, spec, Counted(np.arange(6)), [*keys[:5], "new"], tmp_path, settings)
    assert Counted.made == [5] and np.array_equal(more, cold)


def test_the_mirror_view_of_a_lazy_set_stays_lazy_chunk_by_chunk(monkeypatch):
    from pixsort.data import DecodeSettings
    from pixsort.data.lazy import ImageRows, MirroredImages, PackedImages
    from pixsort.features import extract

    settings = DecodeSettings(size=(4, 6))
    pixels = np.random.default_rng(0).integers(0, 255, (5, 4, 6, 3), dtype=np.uint8)
    packed = PackedImages(pixels.ravel(), np.arange(5) * pixels[0].size, np.tile([4, 6], (5, 1)), settings)
    monkeypatch.setattr(extract, "CHUNK", 2)
    seen = []

    def run(batch, keys):
        seen.append((type(batch), len(batch), keys))
        return np.asarray(batch).reshape(len(batch), -1)[:, :3].astype(np.float32)

    out = extract._chunked(run, packed, [f"k{i}" for i in range(5)], flip=True)
    assert [s[0] for s in seen] == [MirroredImages] * 3 and [s[1] for s in seen] == [2, 2, 1]
    assert all(issubclass(s[0], ImageRows) for s in seen) and seen[2][2] == ["k4"]
    np.testing.assert_array_equal(out, pixels[:, :, ::-1].reshape(5, -1)[:, :3])
    np.testing.assert_array_equal(MirroredImages(packed)[3], pixels[3][:, ::-1])
