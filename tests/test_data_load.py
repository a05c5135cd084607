"""Sources, the loader, the cache and the manifest: nothing is ever lost silently."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from tests.conftest import shared_path
from tests.test_data_decode import png_with_header_size

import pixsort.data.load as load_module
from pixsort.data import (
    DecodeSettings,
    NoUsableImages,
    SourceError,
    carve_validation,
    groups_from_pattern,
    load_images,
    open_dataset,
)


def _img(path: Path, value: int = 128, size=(16, 12), mode="L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value,) * 3).save(path)
    return path


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    """A class-folder tree with split folders, odd and broken files mixed in."""
    root = tmp_path / "xray"
    for split in ("train", "test"):
        for cls, value in (("NORMAL", 40), ("PNEUMONIA", 200)):
            for i in range(3):
                _img(root / split / cls / f"{cls.lower()}{i}.png", value + i)
    _img(root / "train" / "NORMAL" / "nested" / "deep.jpg", 50, mode="RGB")  # recursive
    (root / "train" / "NORMAL" / "empty.jpeg").write_bytes(b"")
    (root / "train" / "PNEUMONIA" / "notes.jpg").write_text("not an image")
    (root / "train" / "PNEUMONIA" / "bomb.png").write_bytes(png_with_header_size(100_000, 100_000))
    (root / "train" / "PNEUMONIA" / "README.txt").write_text("a stray file")
    return root


def count_decodes(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = load_module.decode_image

    def counting(source, settings, **kw):
        calls.append(str(source))
        return real(source, settings, **kw)

    monkeypatch.setattr(load_module, "decode_image", counting)
    return calls


# -- sources -----------------------------------------------------------------------------


def test_class_folders_with_splits(mixed_folder):
    ds = open_dataset(mixed_folder)
    assert ds.kind == "folders" and ds.class_names == ["NORMAL", "PNEUMONIA"]
    assert len(ds) == 17  # every regular file, whatever its extension
    counts = ds.counts()
    assert counts.loc["train", "NORMAL"] == 5 and counts.loc["test", "PNEUMONIA"] == 3
    deep = ds.paths.index(str(mixed_folder / "train" / "NORMAL" / "nested" / "deep.jpg"))
    assert ds.class_names[ds.labels[deep]] == "NORMAL"


def test_every_file_is_in_the_manifest_loaded_or_skipped(mixed_folder, cache_dir):
    ds = open_dataset(mixed_folder)
    decoded = load_images(ds, size=16, cache_dir=cache_dir, workers=0)
    on_disk = sorted(str(p) for p in mixed_folder.rglob("*") if p.is_file())
    assert sorted(decoded.manifest["path"]) == on_disk
    status = dict(zip(decoded.manifest["path"].map(lambda p: Path(p).name), decoded.manifest["reason"]))
    assert status["empty.jpeg"].startswith("empty")
    assert status["notes.jpg"].startswith("not_an_image")
    assert status["README.txt"].startswith("not_an_image")
    assert status["bomb.png"].startswith("too_many_pixels")
    assert len(decoded) == 13 and len(decoded.skipped) == 4
    assert decoded.images.shape == (13, 16, 16, 3) and decoded.images.dtype == np.uint8
    assert set(decoded.manifest.columns) >= {"path", "label", "split", "status", "reason", "width", "height", "mode"}
    # labels follow the images that were kept
    assert [ds.class_names[i] for i in decoded.labels] == [
        Path(p).parts[-2] if "nested" not in p else "NORMAL" for p in decoded.paths
    ]


def test_flat_folder_unlabeled(tmp_path, cache_dir):
    for i in range(3):
        _img(tmp_path / "pics" / f"{i}.png", 10 * i)
    ds = open_dataset(tmp_path / "pics")
    assert ds.kind == "flat" and not ds.has_labels and ds.class_names == []
    assert len(load_images(ds, size=8, cache_dir=cache_dir)) == 3


def test_npz_medmnist_layout(tmp_path, cache_dir, rng):
    np.savez(
        tmp_path / "m.npz",
        train_images=rng.integers(0, 255, (6, 28, 28), dtype=np.uint8),
        train_labels=np.array([[0], [1], [0], [1], [1], [0]]),
        val_images=rng.integers(0, 255, (2, 28, 28), dtype=np.uint8),
        val_labels=np.array([[1], [0]]),
    )
    ds = open_dataset(tmp_path / "m.npz", class_names=["normal", "pneumonia"])
    assert ds.kind == "arrays" and ds.class_names == ["normal", "pneumonia"]
    assert list(ds.splits) == ["train"] * 6 + ["val"] * 2
    decoded = load_images(ds, size=28, channels="L", cache_dir=cache_dir)
    raw = np.load(tmp_path / "m.npz")["train_images"]
    assert np.array_equal(decoded.images[:6, ..., 0], raw)  # native size: bit-exact
    assert decoded.labels.tolist() == [0, 1, 0, 1, 1, 0, 1, 0]


def test_npy_with_labels_found_beside_it(tmp_path, cache_dir, rng):
    np.save(tmp_path / "trainX.npy", rng.random((5, 10, 10, 3)).astype(np.float32))
    np.save(tmp_path / "trainy.npy", np.array([2, 0, 1, 2, 0]))
    ds = open_dataset(tmp_path / "trainX.npy")
    assert ds.labels.tolist() == [2, 0, 1, 2, 0] and ds.class_names == ["0", "1", "2"]
    assert ds.splits[0] == "train"
    decoded = load_images(ds, size=10, cache_dir=cache_dir)
    assert decoded.images.shape == (5, 10, 10, 3)


def test_csv_source_with_missing_file(tmp_path, cache_dir):
    _img(tmp_path / "imgs" / "a.png", 10)
    _img(tmp_path / "imgs" / "b.png", 20)
    pd.DataFrame({"filename": ["imgs/a.png", "imgs/b.png", "imgs/gone.png"], "class": ["cat", "dog", "cat"]}).to_csv(
        tmp_path / "list.csv", index=False
    )
    ds = open_dataset(tmp_path / "list.csv")
    assert ds.kind == "csv" and ds.class_names == ["cat", "dog"]
    decoded = load_images(ds, size=8, cache_dir=cache_dir)
    assert len(decoded) == 2
    assert decoded.skipped["reason"].tolist() == ["missing: file not found"]


def test_csv_without_path_column_is_a_clear_error(tmp_path):
    pd.DataFrame({"x": [1], "y": [2]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(SourceError, match="--path-column"):
        open_dataset(tmp_path / "bad.csv")


def test_missing_and_empty_sources(tmp_path, cache_dir):
    with pytest.raises(SourceError, match="does not exist"):
        open_dataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no files"):
        open_dataset(tmp_path / "empty")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.jpg").write_text("no")
    with pytest.raises(NoUsableImages) as exc:
        load_images(open_dataset(tmp_path / "junk"), size=8, cache_dir=cache_dir)
    assert "no usable image" in str(exc.value) and len(exc.value.manifest) == 1


# -- cache -------------------------------------------------------------------------------


def test_cache_hit_and_invalidation(tmp_path, cache_dir, monkeypatch):
    paths = [_img(tmp_path / "set" / f"{i}.png", 20 * i) for i in range(4)]
    ds = open_dataset(tmp_path / "set")
    calls = count_decodes(monkeypatch)
    first = load_images(ds, size=8, cache_dir=cache_dir, workers=0)
    assert len(calls) == 4
    calls.clear()
    second = load_images(ds, size=8, cache_dir=cache_dir, workers=0)
    assert calls == []  # unchanged files are never decoded again
    assert isinstance(second.images, np.memmap)  # served straight from the memory-mapped cache
    assert np.array_equal(first.images, second.images)

    _img(paths[2], 250)  # same path, new content
    os.utime(paths[2], ns=(1, 1))
    third = load_images(ds, size=8, cache_dir=cache_dir, workers=0)
    assert calls == [str(paths[2])]
    assert third.images[2].min() >= 249 and np.array_equal(third.images[0], first.images[0])

    calls.clear()
    load_images(ds, size=12, cache_dir=cache_dir, workers=0)  # other settings: other cache
    assert len(calls) == 4


def test_identical_files_decoded_once(tmp_path, cache_dir, monkeypatch):
    for name in ("a.png", "b.png", "c.png"):
        _img(tmp_path / "dups" / name, 99)
    calls = count_decodes(monkeypatch)
    decoded = load_images(open_dataset(tmp_path / "dups"), size=8, cache_dir=cache_dir, workers=0)
    assert len(calls) == 1 and len(decoded) == 3 and len(set(decoded.keys)) == 1


def test_parallel_workers_match_single_process(tmp_path, cache_dir):
    rng = np.random.default_rng(1)
    for i in range(80):
        Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(tmp_path / f"{i:03d}.jpg")
    ds = open_dataset(tmp_path)
    parallel = load_images(ds, size=16, cache_dir=cache_dir / "p", workers=2, progress=False)
    single = load_images(ds, size=16, use_cache=False, workers=0)
    assert np.array_equal(np.asarray(parallel.images), single.images)


def test_no_cache_mode_writes_nothing(tmp_path):
    _img(tmp_path / "one" / "a.png")
    load_images(open_dataset(tmp_path / "one"), size=8, cache_dir=tmp_path / "c", use_cache=False)
    assert not (tmp_path / "c").exists()


# -- splits ------------------------------------------------------------------------------


def _labelled(n_normal: int, n_sick: int, val: int = 0):
    from pixsort.data.sources import ImageDataset

    labels = np.array([0] * n_normal + [1] * n_sick)
    splits = np.array(["train"] * (len(labels) - val) + ["val"] * val, dtype=object)
    return ImageDataset(
        Path("."), "folders", [f"p{i}_x{j}.png" for i, j in enumerate(range(len(labels)))], labels, ["a", "b"], splits
    )


def test_carve_validation_is_stratified_and_seeded():
    ds = _labelled(300, 700, val=16)  # a Kaggle-like 16-image val split is not usable
    a, b = carve_validation(ds, 0.15, random_state=3), carve_validation(ds, 0.15, random_state=3)
    assert list(a.splits) == list(b.splits)
    val = a.splits == "val"
    assert val.sum() == 150 and abs(a.labels[val].mean() - 0.7) < 0.01
    assert list(carve_validation(ds, 0.15, random_state=4).splits) != list(a.splits)


def test_usable_validation_kept_and_test_untouched():
    ds = _labelled(300, 700)
    ds.splits[np.r_[0:60, 400:540]] = "val"  # 60 + 140: both classes, big enough
    ds.splits[60:70] = "test"
    out = carve_validation(ds, 0.15)
    assert (out.splits == ds.splits).all()


def test_grouped_split_keeps_groups_together():
    ds = _labelled(100, 200)
    ds.paths = [f"person{i // 3}_img{i}.png" for i in range(300)]
    groups = groups_from_pattern(ds, r"person\d+")
    out = carve_validation(ds, 0.2, groups=groups)
    assert not set(groups[out.splits == "train"]) & set(groups[out.splits == "val"])
    assert 0.1 < (out.splits == "val").mean() < 0.3


# -- real data ---------------------------------------------------------------------------


def test_real_chest_xray_counts():
    ds = open_dataset(shared_path("chest_xray"))
    counts = ds.counts()
    assert counts.loc["train", "NORMAL"] == 1341 and counts.loc["train", "PNEUMONIA"] == 3875


def test_real_fullres_xrays_decode(cache_dir):
    ds = open_dataset(shared_path("chest_xray_fullres"))
    ds = ds.subset(np.r_[0:6, len(ds) - 6 : len(ds)])
    decoded = load_images(ds, size=128, cache_dir=cache_dir, workers=0)
    assert decoded.images.shape == (12, 128, 128, 3) and decoded.skipped.empty
    assert decoded.manifest["width"].min() > 128  # draft never went below the target
    assert 20 < decoded.images.mean() < 235


def test_real_pneumoniamnist(cache_dir):
    ds = open_dataset(shared_path("pneumoniamnist", "pneumoniamnist_trainval.npz"))
    assert (ds.splits == "train").sum() == 4708 and (ds.splits == "val").sum() == 524
    assert np.bincount(ds.labels[ds.splits == "train"]).tolist() == [1214, 3494]
    decoded = load_images(ds.subset(np.arange(50)), size=28, channels="L", cache_dir=cache_dir)
    assert decoded.images.shape == (50, 28, 28, 1)


def test_real_cifar_slice(cache_dir):
    ds = open_dataset(shared_path("cifar10_sample"))
    assert len(ds.class_names) == 10 and len(ds) == 10_000
    pick = np.concatenate([np.flatnonzero(ds.labels == c)[:3] for c in range(10)])
    decoded = load_images(ds.subset(pick), DecodeSettings(size=32), cache_dir=cache_dir)
    assert decoded.images.shape == (30, 32, 32, 3)


# -- files that are not regular files ---------------------------------------------------------


def _odd_entries(folder: Path) -> dict[str, str]:
    """A FIFO, a socket, a dangling symlink, a symlink loop and a folder named x.jpg; name -> reason."""
    import socket

    folder.mkdir(parents=True, exist_ok=True)
    os.mkfifo(folder / "p.jpg")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "s.png"))
    sock.close()
    os.symlink(folder / "nowhere.png", folder / "dangling.png")
    os.symlink(folder / "loop.png", folder / "loop.png")
    (folder / "dir.jpg").mkdir()
    return {
        "p.jpg": "not_a_regular_file",
        "s.png": "not_a_regular_file",
        "dangling.png": "missing",
        "loop.png": "symlink_loop",
    }


@pytest.fixture
def no_hang():
    """Fail (instead of hanging the suite) if the test blocks, e.g. reading a FIFO."""
    import signal

    def hung(*_):
        raise TimeoutError("blocked: a FIFO was opened?")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("layout", ["flat", "classes"])
def test_fifos_sockets_and_broken_links_are_skipped_by_name_never_opened(tmp_path, cache_dir, layout, no_hang):
    root = tmp_path / "data"
    where = root if layout == "flat" else root / "A"
    _img(where / "ok.png")
    expected = _odd_entries(where)
    ds = open_dataset(root)
    decoded = load_images(ds, size=8, cache_dir=cache_dir, workers=0)
    reason = {Path(p).name: r.split(":")[0] for p, r in zip(decoded.manifest["path"], decoded.manifest["reason"])}
    for name, why in expected.items():
        assert reason[name] == why, (name, reason)
    assert len(decoded) == 1  # the folder dir.jpg is walked (it is empty), never opened


def test_an_unreadable_subfolder_is_noted_not_dropped(tmp_path, cache_dir, monkeypatch):
    root = tmp_path / "data"
    _img(root / "A" / "ok.png")
    _img(root / "B" / "locked" / "hidden.png")
    locked = root / "B" / "locked"
    real = os.scandir

    def deny(path="."):
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", deny)
    ds = open_dataset(root)
    decoded = load_images(ds, size=8, cache_dir=cache_dir, workers=0)
    row = decoded.manifest[decoded.manifest["path"] == str(locked)].iloc[0]
    assert row["status"] == "skipped" and row["reason"].startswith("unreadable") and row["label"] == "B"


def test_files_are_hashed_in_bounded_chunks(tmp_path, monkeypatch):
    """A large file is streamed into blake2b, never read whole (a 2 GB file once cost 2.45 GB RSS)."""
    import builtins

    import pixsort.data.cache as cache_module

    big = tmp_path / "big.png"
    data = os.urandom(3 * cache_module.HASH_CHUNK + 123)
    big.write_bytes(data)
    real_open = builtins.open
    sizes: list[int] = []

    class Guarded:
        def __init__(self, handle):
            self._handle = handle

        def read(self, n=-1):
            if n is None or n < 0 or n > cache_module.HASH_CHUNK:
                pytest.fail(f"read({n}) of a whole file")
            sizes.append(n)
            return self._handle.read(n)

        def readinto(self, buffer):
            if len(buffer) > cache_module.HASH_CHUNK:
                pytest.fail("readinto a buffer larger than a chunk")
            sizes.append(len(buffer))
            return self._handle.readinto(buffer)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._handle.close()

    monkeypatch.setattr(cache_module, "open", lambda *a, **k: Guarded(real_open(*a, **k)), raising=False)
    digest = cache_module.ContentHasher(None).file_hash(str(big))
    assert digest == cache_module.hash_bytes(data) and len(sizes) >= 4


@pytest.mark.parametrize("failure", [MemoryError(), OSError(5, "Input/output error")])
def test_transient_decode_failures_are_not_cached(tmp_path, cache_dir, monkeypatch, failure):
    _img(tmp_path / "pics" / "a.png", 10)
    _img(tmp_path / "pics" / "b.png", 200)
    real = load_module.decode_image

    def flaky(source, settings, **kw):
        if str(source).endswith("b.png"):
            raise failure
        return real(source, settings, **kw)

    monkeypatch.setattr(load_module, "decode_image", flaky)
    first = load_images(open_dataset(tmp_path / "pics"), size=8, cache_dir=cache_dir, workers=0)
    assert len(first) == 1 and first.skipped["reason"].iloc[0].split(":")[0] in ("out_of_memory", "read_error")
    monkeypatch.setattr(load_module, "decode_image", real)
    second = load_images(open_dataset(tmp_path / "pics"), size=8, cache_dir=cache_dir, workers=0)
    assert len(second) == 2 and second.skipped.empty


def test_an_os_error_with_an_errno_while_decoding_is_not_truncated(tmp_path, monkeypatch):
    from pixsort.data.decode import decode_image

    path = _img(tmp_path / "a.png")

    def eio(self):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(Image.Image, "load", eio)
    with pytest.raises(OSError):
        decode_image(path, DecodeSettings(size=8))


def test_deterministic_skips_are_still_cached(tmp_path, cache_dir, monkeypatch):
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "text.png").write_text("not an image")
    _img(tmp_path / "pics" / "ok.png")
    load_images(open_dataset(tmp_path / "pics"), size=8, cache_dir=cache_dir, workers=0)
    calls = count_decodes(monkeypatch)
    again = load_images(open_dataset(tmp_path / "pics"), size=8, cache_dir=cache_dir, workers=0)
    assert calls == [] and again.skipped["reason"].iloc[0].startswith("not_an_image")


# -- the packed decoded-image cache: small images kept at their own size -----------------


def _small_set(root: Path, n: int = 6) -> Path:
    root.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for i in range(n):
        h, w = 10 + i, 12 + 2 * i  # all smaller than the 32 px target
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / f"s{i}.png")
    big = rng.integers(0, 255, (50, 40, 3), dtype=np.uint8)
    Image.fromarray(big).save(root / "big.png")
    return root


def test_small_images_are_cached_at_their_size_and_read_back_as_a_direct_decode(tmp_path, cache_dir):
    from pixsort.data.cache import DecodedStore
    from pixsort.data.decode import decode_image
    from pixsort.data.lazy import PackedImages

    folder = _small_set(tmp_path / "small")
    ds = open_dataset(folder)
    settings = DecodeSettings(size=32)
    decoded = load_images(ds, settings, cache_dir=cache_dir, workers=0)
    assert isinstance(decoded.images, PackedImages)
    direct = np.stack([decode_image(p, settings)[0] for p in decoded.paths])
    assert np.array_equal(np.asarray(decoded.images), direct)  # resized on access = resized on decode
    assert decoded.images.shape == (7, 32, 32, 3) and decoded.images[3].shape == (32, 32, 3)
    assert np.array_equal(decoded.images[[4, 1]], direct[[4, 1]])
    assert np.array_equal(decoded.images[np.arange(7) % 2 == 0], direct[::2])
    sub = decoded.select(np.array([5, 0]))
    assert isinstance(sub.images, PackedImages) and np.array_equal(np.asarray(sub.images), direct[[5, 0]])
    stored = DecodedStore(Path(cache_dir), settings).stored_bytes()
    own = sum((10 + i) * (12 + 2 * i) * 3 for i in range(6)) + 32 * 32 * 3  # the big one at the target size
    assert stored == own < 7 * 32 * 32 * 3 / 2
    again = load_images(ds, settings, cache_dir=cache_dir, workers=0)
    assert np.array_equal(np.asarray(again.images), direct)


def test_a_torn_tail_of_the_packed_file_is_cut_and_entries_stay_whole(tmp_path, cache_dir):
    from pixsort.data.cache import DecodedStore

    folder = _small_set(tmp_path / "torn")
    settings = DecodeSettings(size=32)
    first = load_images(open_dataset(folder), settings, cache_dir=cache_dir, workers=0)
    expected = np.asarray(first.images)
    store = DecodedStore(Path(cache_dir), settings)
    with open(store.pixels_path, "ab") as f:
        f.write(b"\x01" * 777)  # a crash mid-append: bytes no index line points to
    rng = np.random.default_rng(9)
    Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(folder / "new.png")
    second = load_images(open_dataset(folder), settings, cache_dir=cache_dir, workers=0)
    paths = second.paths
    assert np.array_equal(np.asarray(second.images)[[paths.index(p) for p in first.paths]], expected)
    assert store.stored_bytes() == DecodedStore(Path(cache_dir), settings)._end


def test_the_fixed_row_layout_of_earlier_versions_is_rebuilt(tmp_path, cache_dir):
    folder = _small_set(tmp_path / "old")
    settings = DecodeSettings(size=32)
    old = Path(cache_dir) / "decoded" / settings.key()
    old.mkdir(parents=True)
    (old / "pixels.u8").write_bytes(b"\x00" * 3072)
    (old / "index.jsonl").write_text('{"k": "x", "row": 0}\n')
    decoded = load_images(open_dataset(folder), settings, cache_dir=cache_dir, workers=0)
    assert len(decoded) == 7 and not old.exists()


def _entry_batch(keys, size=4, value=7):
    from pixsort.data.cache import CacheEntry

    image = np.full((size, size, 3), value, dtype=np.uint8)
    return [(k, image, CacheEntry(0, "", "", size, size, "RGB", "PNG")) for k in keys]


def test_two_writers_appending_in_turn_see_each_others_entries(cache_dir):
    """Each append reads only what others added since its last read, and places its
    images after theirs."""
    from pixsort.data.cache import DecodedStore

    settings = DecodeSettings(size=32)
    a, b = DecodedStore(Path(cache_dir), settings), DecodedStore(Path(cache_dir), settings)
    a.append(_entry_batch(["k1", "k2"], value=1))
    b.append(_entry_batch(["k3"], value=3))
    a.append(_entry_batch(["k4"], value=4))
    b.append(_entry_batch(["k1", "k5"], value=5))  # k1 is known by now: not stored twice
    fresh = DecodedStore(Path(cache_dir), settings)
    for store in (a, b, fresh):
        store._reload()
        assert sorted(store.entries) == ["k1", "k2", "k3", "k4", "k5"]
        assert store._rows == 5 and store._end == store.stored_bytes() == 5 * 4 * 4 * 3
    offsets = sorted(e.offset for e in fresh.entries.values())
    assert offsets == [0, 48, 96, 144, 192]  # no two images share bytes
    images = np.asarray(fresh.images([fresh.entries[k] for k in ["k1", "k3", "k4", "k5"]]).take(np.arange(4)))
    assert [int(im[0, 0, 0]) for im in images] == [1, 3, 4, 5]


def test_a_torn_index_line_costs_only_its_own_entry(cache_dir):
    from pixsort.data.cache import DecodedStore

    settings = DecodeSettings(size=32)
    store = DecodedStore(Path(cache_dir), settings)
    store.append(_entry_batch(["k1"]))
    with open(store.index_path, "ab") as f:
        f.write(b'{"k": "k2", "row": 1, "reas')  # a crash mid-line
    other = DecodedStore(Path(cache_dir), settings)
    assert sorted(other.entries) == ["k1"]
    other.append(_entry_batch(["k3"]))
    assert sorted(DecodedStore(Path(cache_dir), settings).entries) == ["k1", "k3"]


def test_an_index_cleared_meanwhile_is_read_again(cache_dir):
    from pixsort.data.cache import DecodedStore

    settings = DecodeSettings(size=32)
    store = DecodedStore(Path(cache_dir), settings)
    store.append(_entry_batch(["k1", "k2"]))
    store.index_path.write_text("")  # another process cleared the cache
    store.pixels_path.write_bytes(b"")
    store._reload()
    assert store.entries == {} and store._rows == 0 and store._end == 0
