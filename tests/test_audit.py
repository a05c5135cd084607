"""``pixsort audit``: planted exact copies, near-copies (resized, re-encoded, cropped),
leakage across splits and into a held-out folder, an outlier, dark / blurred / tiny /
elongated / grey images, flipped labels found by cleanlab, the CLI end to end, and the
CSVs opening in pandas.  Pixel features (32 x 32) keep it fast; the measured figures on
real X-rays are in ``bench/audit.py``."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFilter

from pixsort.auditing import ImageAuditor, duplicate_groups
from pixsort.auditing.duplicates import HASH_DISTANCE, group_table
from pixsort.auditing.outliers import outlier_scores
from pixsort.auditing.quality import pixel_statistics, quality_table

N_PER_CLASS = 30
FLIPPED = ("blue_000", "blue_001", "blue_002", "blue_003")  # blue pictures filed under red


def field_image(c: int, rng: np.random.Generator, side: int = 64) -> np.ndarray:
    """A smooth random colour field with pixel texture: class 0 reddish, 1 bluish; no two alike."""
    coarse = rng.uniform(0, 1, (4, 4, 3))
    up = np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize((side, side), Image.BICUBIC), float)
    tint = np.array([170, 60, 60]) if c == 0 else np.array([60, 60, 170])
    image = 0.3 * up + 0.7 * tint + rng.normal(0, 8, (side, side, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def save(path: Path, pixels: np.ndarray, quality: int = 95) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(pixels[..., 0] if pixels.ndim == 3 and pixels.shape[-1] == 1 else pixels)
    image.save(path, **({"quality": quality} if path.suffix == ".jpg" else {}))
    return path


def resized(image: Image.Image, share: float = 0.6) -> Image.Image:
    return image.resize((round(image.width * share), round(image.height * share)), Image.BILINEAR)


def reencoded(image: Image.Image, quality: int = 50) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def cropped(image: Image.Image, share: float = 0.05) -> Image.Image:
    dx, dy = round(image.width * share / 2), round(image.height * share / 2)
    return image.crop((dx, dy, image.width - dx, image.height - dy))


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """train/{red,blue} (30 each, 4 blue ones filed as red), val/{red,blue} (8 each), and:
    2 byte-identical copies of red_005 in train, a byte-identical copy of red_006 in val
    (a leak across splits), a resized, a re-encoded and a cropped copy of red_007..009,
    a green outlier, a dark, a blurred, a tiny, an elongated and a grey picture; plus a
    held-out folder with a resized copy of blue_010 and 5 unrelated pictures."""
    root = tmp_path_factory.mktemp("audit") / "data"
    rng = np.random.default_rng(0)
    files = {}
    for split, n in (("train", N_PER_CLASS), ("val", 8)):
        for c, cls in enumerate(("red", "blue")):
            for i in range(n):
                name = f"{cls}_{i:03d}" if split == "train" else f"v{cls}_{i:03d}"
                folder = "red" if split == "train" and name in FLIPPED else cls
                files[name] = save(root / split / folder / f"{name}.png", field_image(c, rng))
    red = root / "train" / "red"
    exact = [red / "red_005_copy1.png", red / "red_005_copy2.png"]
    for p in exact:
        p.write_bytes(files["red_005"].read_bytes())
    leak = root / "val" / "red" / "red_006_again.png"
    leak.write_bytes(files["red_006"].read_bytes())
    near = {}
    for name, make in (("red_007", resized), ("red_008", reencoded), ("red_009", cropped)):
        target = red / f"{name}_{make.__name__}.jpg"
        make(Image.open(files[name]).convert("RGB")).save(target, quality=90)
        near[name] = target
    odd = {
        "outlier": save(red / "odd_green.png", np.tile(np.array([0, 255, 0], np.uint8), (64, 64, 1))),
        "dark": save(red / "odd_dark.png", (field_image(0, rng) // 14).astype(np.uint8)),
        "blurry": red / "odd_blurry.png",
        "tiny": save(red / "odd_tiny.png", field_image(0, rng, side=20)),
        "extreme_aspect": save(
            red / "odd_long.png", np.asarray(Image.fromarray(field_image(0, rng)).resize((160, 40)))
        ),
        "grey": save(red / "odd_grey.png", np.asarray(Image.fromarray(field_image(0, rng)).convert("L"))),
    }
    Image.fromarray(field_image(0, rng)).filter(ImageFilter.GaussianBlur(4)).save(odd["blurry"])
    other = root.parent / "heldout"
    against = save(other / "blue" / "h_copy.jpg", np.asarray(resized(Image.open(files["blue_010"]))))
    for i in range(5):
        save(other / "blue" / f"h_{i}.png", field_image(1, rng))
    return {"root": root, "files": files, "exact": exact, "leak": leak, "near": near, "odd": odd,
            "other": other, "against": against}  # fmt: skip


@pytest.fixture(scope="module")
def run(planted, tmp_path_factory):
    from pixsort import audit

    out = tmp_path_factory.mktemp("audit_out")
    cache = tmp_path_factory.mktemp("audit_cache")
    return audit(planted["root"], out, against=planted["other"], features="pixels", cache_dir=cache, progress=False)


def _rows(run) -> pd.DataFrame:
    return pd.read_csv(run.outputs.files["audit"], keep_default_na=False, na_values=[""])


def _row(table: pd.DataFrame, path: Path) -> pd.Series:
    return table.set_index("path").loc[str(path)]


def test_exact_copies_are_one_group(run, planted):
    table = _rows(run)
    original = _row(table, planted["files"]["red_005"])
    assert original["group_size"] == 3
    for p in planted["exact"]:
        r = _row(table, p)
        assert r["group"] == original["group"] and r["exact_group"] == original["exact_group"]
    dup = pd.read_csv(run.outputs.files["duplicates"])
    group = dup[dup["group"] == original["group"]]
    assert set(group["kind"]) == {"exact"} and group["keep"].sum() == 1 and len(group) == 3


def test_near_copies_join_their_originals_and_nothing_else(run, planted):
    table = _rows(run)
    for name, copy in planted["near"].items():
        a, b = _row(table, planted["files"][name]), _row(table, copy)
        assert not pd.isna(a["group"]) and a["group"] == b["group"], name
        assert pd.isna(b["exact_group"]), name
    # the planted groups and nothing else: red_005 (3), red_006 (train + val), and the three near pairs
    dup = pd.read_csv(run.outputs.files["duplicates"])
    assert dup["group"].nunique() == 5
    assert run.summary["duplicates"]["n_near_groups"] == 3


def test_a_copy_across_splits_is_a_leak(run, planted):
    dup = pd.read_csv(run.outputs.files["duplicates"], keep_default_na=False)
    spans = dup[dup["spans_splits"]]
    assert set(spans["path"]) == {str(planted["files"]["red_006"]), str(planted["leak"])}
    assert spans["group_splits"].iloc[0] == "train;val"
    assert run.summary["duplicates"]["n_groups_spanning_splits"] == 1


def test_against_lists_the_held_out_copy_only(run, planted):
    leaks = pd.read_csv(run.outputs.files["leakage"])
    assert set(leaks["other_path"]) == {str(planted["against"])}
    assert set(leaks["path"]) == {str(planted["files"]["blue_010"])}
    assert not leaks["exact"].any() and (leaks["similarity"] >= run.auditor.near_threshold).all()


def test_outlier_scores_highest_for_the_planted_one(run, planted):
    table = _rows(run).dropna(subset=["outlier_score"])
    top = table.sort_values("outlier_score", ascending=False).head(3)
    # the green frame, and other planted odd pictures (near black, grey: like no other)
    odd = {str(p) for p in planted["odd"].values()}
    assert str(planted["odd"]["outlier"]) in set(top["path"]) and set(top["path"]) <= odd
    flagged = set(table.loc[table["outlier"].astype(bool), "path"])
    assert str(planted["odd"]["outlier"]) in flagged and len(flagged) <= 3


@pytest.mark.parametrize("flag", ["dark", "blurry", "tiny", "extreme_aspect"])
def test_quality_flags_find_the_planted_picture(run, planted, flag):
    table = _rows(run)
    flagged = set(table.loc[table[flag].astype(bool), "path"])
    assert str(planted["odd"][flag]) in flagged
    assert len(flagged) <= 2, flagged


def test_grey_among_colour(run, planted):
    table = _rows(run)
    assert set(table.loc[table["grey_among_colour"].astype(bool), "path"]) == {str(planted["odd"]["grey"])}
    assert not table["colour_among_grey"].astype(bool).any()


def test_flipped_labels_top_the_label_issues(run, planted):
    issues = pd.read_csv(run.outputs.files["label_issues"])
    flipped = {str(planted["root"] / "train" / "red" / f"{n}.png") for n in FLIPPED}
    # cleanlab flags most of them, first
    found = flipped & set(issues["path"])
    assert len(found) >= len(FLIPPED) - 1 and set(issues["path"].head(len(found))) == found
    assert (issues.set_index("path").loc[sorted(found), "suggested_label"] == "blue").all()
    assert (issues["issue_rank"].to_numpy() == np.arange(1, len(issues) + 1)).all()
    # and every flipped one has a lower out-of-fold probability of its label than any other image
    table = _rows(run).dropna(subset=["label_quality"]).sort_values("label_quality")
    assert set(table["path"].head(len(FLIPPED))) == flipped


def test_every_file_is_a_row_and_outputs_open(run, planted):
    table = _rows(run)
    on_disk = {str(p) for p in planted["root"].rglob("*") if p.is_file()}
    assert set(table["path"]) == on_disk and len(table) == len(on_disk)
    summary = json.loads(run.outputs.files["summary"].read_text())
    assert summary["near_threshold"] == run.auditor.near_threshold and "near_threshold_source" in summary
    assert summary["hash_distance"] == run.auditor.hash_distance and summary["hash_crop"] == 0.95
    assert "nearest_distinct_bits_min_0.1pct_1pct_median" in summary["hash_source"]
    exact_copy = _row(table, planted["exact"][0])  # byte-identical: the same pixels, 0 bits
    assert exact_copy["nearest_hash_bits"] == 0 and (table["nearest_hash_bits"].dropna() >= 0).all()
    assert summary["class_balance"]["red"]["train"] == N_PER_CLASS + len(FLIPPED) + 2 + 3 + 6
    balance = pd.read_csv(run.outputs.files["class_balance"], index_col=0)
    assert balance.loc["blue", "val"] == 8
    html = run.outputs.files["report"].read_text()
    assert "thumbs/" in html and "odd_green.png" in html
    assert run.positions.shape == (len(run.rows), 2) and np.isfinite(run.positions).all()


def test_skipped_files_are_listed_with_their_reason(planted, tmp_path):
    from pixsort import audit

    data = tmp_path / "data"
    for cls in ("red", "blue"):
        for i in range(4):
            save(data / cls / f"{cls}{i}.png", field_image(int(cls == "blue"), np.random.default_rng(i)))
    (data / "red" / "broken.png").write_bytes(b"not a picture")
    result = audit(data, tmp_path / "out", features="pixels", cache_dir=tmp_path / "c", progress=False)
    table = pd.read_csv(result.outputs.files["audit"], keep_default_na=False)
    row = table.set_index("path").loc[str(data / "red" / "broken.png")]
    assert row["status"] == "skipped" and row["reason"]
    assert result.summary["label_issues"]["scored"] == 0  # 4 per class: too few for 5 folds


def test_cli_end_to_end(planted, tmp_path):
    from typer.testing import CliRunner

    from pixsort.cli import app

    out = tmp_path / "out"
    args = ["audit", str(planted["root"]), "--out", str(out), "--features", "pixels", "--labels-from", "none"]
    result = CliRunner().invoke(app, [*args, "--cache-dir", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    assert "duplicate groups" in result.output
    for name in ("audit.csv", "duplicates.csv", "label_issues.csv", "summary.json", "report.html"):
        assert (out / name).is_file(), name
    assert len(pd.read_csv(out / "label_issues.csv")) == 0  # no labels asked for
    bad = CliRunner().invoke(app, ["audit", str(planted["root"]), "--out", str(out), "--labels-from", "x"])
    assert bad.exit_code == 2 and "labels_from" in bad.output


def test_cli_hash_distance_decides_the_pixel_near_copies(planted, tmp_path):
    """With embeddings asking for identity, the re-encoded copy (its dHash 29 bits from its
    original's: these fields' pixel noise moves the hash) joins its original through the
    pixel hashes at 32 bits, not at the default 9; exact copies are one group either way."""
    from typer.testing import CliRunner

    from pixsort.cli import app

    tables = {}
    for bits in (None, 32, 300):
        out = tmp_path / f"out{bits}"
        args = ["audit", str(planted["root"]), "--out", str(out), "--features", "pixels", "--labels-from", "none"]
        args += ["--near-threshold", "0.99999", "--cache-dir", str(tmp_path / "c")]
        result = CliRunner().invoke(app, args + ([] if bits is None else ["--hash-distance", str(bits)]))
        if bits == 300:
            assert result.exit_code == 2 and "hash_distance" in result.output
            continue
        assert result.exit_code == 0, result.output
        summary = json.loads((out / "summary.json").read_text())
        assert summary["hash_distance"] == (HASH_DISTANCE if bits is None else bits)
        assert summary["hash_distance_source"] == ("given" if bits else "default: measured (hash_source)")
        tables[bits] = pd.read_csv(out / "audit.csv", keep_default_na=False, na_values=[""]).set_index("path")
    original, copy = str(planted["files"]["red_008"]), str(planted["near"]["red_008"])
    assert 9 < tables[None].loc[copy, "nearest_hash_bits"] <= 32
    assert pd.isna(tables[None].loc[copy, "group"])
    assert tables[32].loc[copy, "group"] == tables[32].loc[original, "group"]
    exact = [str(p) for p in planted["exact"]]
    for table in tables.values():
        assert table.loc[exact, "group"].nunique() == 1 and not pd.isna(table.loc[exact[0], "group"])
    distinct = str(planted["files"]["red_010"])
    assert pd.isna(tables[32].loc[distinct, "group"])


# -- the pieces on arrays ---------------------------------------------------------------


def test_duplicate_groups_chain_through_neighbours():
    hashes = ["a", "a", "", "", "b"]
    sims = np.array([[1, 0.1], [1, 0.1], [0.95, 0.2], [0.95, 0.2], [0.1, 0.0]])
    idx = np.array([[1, 2], [0, 2], [3, 0], [2, 0], [0, 1]])
    group, exact, best = duplicate_groups(hashes, sims, idx, threshold=0.9)
    assert group.tolist() == [0, 0, 1, 1, -1] and exact.tolist() == [0, 0, -1, -1, -1]
    table = group_table(
        group, exact, list("vwxyz"), np.array(["train", "val", "train", "train", "train"]), list("AAAAB")
    )
    assert table.groupby("group")["spans_splits"].first().tolist() == [True, False]
    assert table.groupby("group")["kind"].first().tolist() == ["exact", "near"]


def test_outlier_score_leaves_copies_out():
    sims = np.array([[1.0, 0.5, 0.4], [1.0, 0.5, 0.4], [0.5, 0.5, 0.3]])
    idx = np.array([[1, 2, 0], [0, 2, 1], [0, 1, 0]])
    scores = outlier_scores(sims, idx, np.array([0, 0, -1]), k=1)
    assert scores.tolist() == pytest.approx([0.5, 0.5, 0.5])


def test_quality_statistics_on_arrays():
    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    flat = np.full((1, 64, 64, 3), 128, np.uint8)
    ramp = np.broadcast_to(np.linspace(0, 255, 64, dtype=np.uint8)[None, None, :, None], (1, 64, 64, 3))
    stats = pixel_statistics(np.concatenate([sharp, flat, ramp]))
    q = quality_table(stats, width=[64, 64, 64, 8], height=[64, 64, 64, 40])
    assert q["low_contrast"].tolist() == [False, False, True, False]
    assert q["blurry"].tolist() == [False, False, False, True]  # detail-free, but not flat
    assert q["tiny"].tolist() == [False] * 3 + [True] and q["extreme_aspect"].tolist() == [False] * 3 + [True]


def test_auditor_checks_its_parameters():
    with pytest.raises(ValueError, match="near_threshold"):
        ImageAuditor(near_threshold=1.5).fit(np.ones((3, 2)))
    with pytest.raises(ValueError, match="outlier_k"):
        ImageAuditor(n_neighbors=2, outlier_k=3).fit(np.ones((3, 2)))


def test_map_has_one_point_per_audited_image_with_the_flags(run, planted):
    page = run.outputs.files["map"].read_text(encoding="utf-8")
    data = json.loads(page.split("window.PIXSORT_MAP=", 1)[1].split(";</script>", 1)[0])
    table = _rows(run)
    loaded = table[table["status"] == "loaded"]
    assert data["n"] == len(loaded) == len(run.rows)
    assert data["paths"] == loaded["path"].tolist()
    fields = {f["name"]: f for f in data["fields"]}
    for name in ("class", "split", "duplicate_group", "duplicate", "outlier", "label_issue", "dark", "blurry"):
        assert fields[name]["kind"] == "category", name
    for name in ("outlier_score", "label_quality", "nearest_similarity"):
        assert fields[name]["kind"] == "number", name

    def value(name, path):
        f, i = fields[name], data["paths"].index(str(path))
        return f["categories"][f["codes"][i]]

    assert value("dark", planted["odd"]["dark"]) == "True"
    assert value("dark", planted["files"]["red_010"]) == "False"
    assert value("outlier", planted["odd"]["outlier"]) == "True"
    assert value("duplicate_group", planted["exact"][0]) == value("duplicate_group", planted["files"]["red_005"]) != ""
    for name in ("label_issue", "outlier", "blurry"):  # every point's flag is audit.csv's
        column = [fields[name]["categories"][c] == "True" for c in fields[name]["codes"]]
        assert column == loaded[name].astype(bool).tolist(), name
    assert sum(fields["label_issue"]["categories"][c] == "True" for c in fields["label_issue"]["codes"]) >= 1
    assert value("class", planted["files"]["blue_010"]) == "blue"
    nb = data["neighbours"]
    assert nb["k"] >= 1 and len(nb["index"]) == nb["k"] * data["n"]
    i = data["paths"].index(str(planted["exact"][0]))
    twins = {str(p) for p in (planted["exact"][1], planted["files"]["red_005"])}
    assert data["paths"][nb["index"][i * nb["k"]]] in twins
    report = run.outputs.files["report"].read_text(encoding="utf-8")
    assert 'href="map.html"' in report


def _decoded(image: Image.Image, side: int = 64) -> np.ndarray:
    """As the audit's decode does: RGB, squashed to side x side."""
    return np.asarray(image.convert("RGB").resize((side, side), Image.BILINEAR))


@pytest.fixture(scope="module")
def hashed_copies():
    """40 distinct pictures with fine structure (a 12 x 12 field), and of the first 12 a
    resized (60%), a re-encoded (JPEG 50) or a 5%-cropped copy in turn; their pixel hashes."""
    rng = np.random.default_rng(3)
    originals = []
    for _ in range(40):
        coarse = rng.uniform(0, 255, (12, 12)).astype(np.uint8)
        grey = np.asarray(Image.fromarray(coarse).resize((160, 160), Image.BICUBIC))
        originals.append(Image.fromarray(grey).convert("RGB"))
    kinds = [resized, reencoded, cropped]
    copies = [kinds[k % 3](originals[k]) for k in range(12)]
    images = np.stack([_decoded(im) for im in originals + copies])
    from pixsort.auditing.duplicates import copy_hashes

    return images, copy_hashes(images), [kinds[k % 3].__name__ for k in range(12)]


def test_pixel_hashes_group_each_kind_of_copy_and_nothing_else(hashed_copies):
    from pixsort.auditing.duplicates import HASH_DISTANCE, hash_distance, hash_links

    images, hashes, kinds = hashed_copies
    assert hashes.shape == (52, 2, 4) and hashes.dtype == np.uint64
    n = len(images)
    no_embedding_links = (np.zeros((n, 1)), np.zeros((n, 1), np.int64))  # every cosine 0: only pixels link
    links = hash_links(hashes)[:2]
    group, exact, _ = duplicate_groups([""] * n, *no_embedding_links, threshold=0.9, pixel_links=links)
    for k, kind in enumerate(kinds):
        assert group[k] >= 0 and group[k] == group[40 + k], kind
    assert len(set(group[group >= 0])) == 12 and (group[12:40] == -1).all()
    assert (exact == -1).all()
    i, j, bits = hash_links(hashes)
    assert sorted(zip(i.tolist(), j.tolist())) == [(k, 40 + k) for k in range(12)]
    assert (bits <= HASH_DISTANCE).all()
    # the crop is found through the centre hash: whole against whole alone is far apart
    from pixsort.data.similar import hamming

    crops = [k for k, kind in enumerate(kinds) if kind == "cropped"]
    whole = hamming(hashes[crops, 0], hashes[[40 + k for k in crops], 0])
    assert (whole > HASH_DISTANCE).all() and (hash_distance(hashes, np.array(crops), np.array(crops) + 40) <= 9).all()
    # distinct pictures are far apart
    a, b = np.triu_indices(40, 1)
    assert hash_distance(hashes, a, b).min() > 2 * HASH_DISTANCE


def test_pixel_hashes_find_copies_in_another_set(hashed_copies):
    from pixsort.auditing.duplicates import leaks_against

    images, hashes, kinds = hashed_copies
    Z, other_Z = np.eye(40, 8, dtype=np.float32), np.zeros((12, 8), np.float32)  # no embedding links
    leaks = leaks_against(
        Z, [""] * 40, other_Z, [""] * 12, 0.9, pixel_hashes=hashes[:40], other_pixel_hashes=hashes[40:]
    )
    assert sorted(zip(leaks["other"], leaks["row"])) == [(k, k) for k in range(12)]


# -- the measurement cache ----------------------------------------------------------------


def _outputs(folder: Path) -> dict:
    """Every output file's bytes but summary.json (its timings and cache counts differ)."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "summary.json"
    }


def test_an_audit_from_the_measurement_cache_writes_the_same_outputs(planted, tmp_path):
    from pixsort import audit

    cache = tmp_path / "cache"
    first = audit(planted["root"], tmp_path / "a", features="pixels", cache_dir=cache, progress=False)
    n = len(first.rows)
    copies = n - len(set(first.decoded.keys))  # byte-identical files: measured once
    assert first.summary["pixel_measures"] == {"measured": n - copies, "from_cache": copies}
    second = audit(planted["root"], tmp_path / "b", features="pixels", cache_dir=cache, progress=False)
    assert second.summary["pixel_measures"] == {"measured": 0, "from_cache": n}
    a, b = _outputs(tmp_path / "a"), _outputs(tmp_path / "b")
    assert a.keys() == b.keys() and "audit.csv" in a and "map.html" in a
    assert [k for k in a if a[k] != b[k]] == []
    # and both equal a run that measured without any cache of the pixels (a fresh one)
    third = audit(planted["root"], tmp_path / "c", features="pixels", cache_dir=tmp_path / "fresh", progress=False)
    assert third.summary["pixel_measures"]["from_cache"] == copies
    assert (tmp_path / "c" / "audit.csv").read_bytes() == a["audit.csv"]


def test_measures_equal_the_direct_computation_and_shards_not_files_per_image(tmp_path, monkeypatch):
    from pixsort.auditing import measures as measures_module
    from pixsort.auditing.duplicates import copy_hashes
    from pixsort.data import DecodeSettings
    from pixsort.features.cache import EmbeddingCache
    from pixsort.report.map import TILE, tile_pixels

    monkeypatch.setattr(measures_module, "CHUNK", 16)
    rng = np.random.default_rng(1)
    images = np.stack([field_image(i % 2, rng, side=48) for i in range(100)])
    keys = [f"k{i:03d}" for i in range(100)]
    keys[99] = keys[98]  # a copy: measured once, given the same record
    images[99] = images[98]
    settings = DecodeSettings(size=48)

    def measure(imgs, ks):
        return measures_module.measure_pixels(imgs, ks, settings, tile_pixels, TILE, tmp_path, progress=False)

    cold = measure(images, keys)
    assert cold.n_measured == 99
    pd.testing.assert_frame_equal(cold.statistics, pixel_statistics(images[:99]).reindex(range(100)).ffill())
    np.testing.assert_array_equal(cold.hashes[:99], copy_hashes(images[:99]))
    np.testing.assert_array_equal(cold.thumbs, np.stack([tile_pixels(im) for im in images]))
    assert cold.thumbs.shape == (100, TILE, TILE, 3)

    class NoPixels:  # a warm run reads no image
        shape, dtype = images.shape, np.uint8

        def __len__(self):
            return len(images)

        def __getitem__(self, index):
            raise AssertionError("pixels read although every image is cached")

    warm = measure(NoPixels(), keys)
    assert warm.n_measured == 0
    pd.testing.assert_frame_equal(warm.statistics, cold.statistics)
    np.testing.assert_array_equal(warm.hashes, cold.hashes)
    np.testing.assert_array_equal(warm.thumbs, cold.thumbs)
    store = EmbeddingCache(tmp_path / "audit", measures_module.measures_id(settings, TILE), dtype=np.uint8)
    shards = -(-99 // 16)
    assert store.n_files() == 2 * shards + 1 < len(images)  # matrix + manifest per shard, the identity file
    # new images are measured, known ones read: one more shard
    more = np.concatenate([images[:5], np.stack([field_image(1, rng, side=48)])])
    again = measure(more, keys[:5] + ["new"])
    assert again.n_measured == 1 and store.n_files() == 2 * shards + 3
    np.testing.assert_array_equal(again.hashes[:5], cold.hashes[:5])
    # another decode size is another store: nothing read from this one
    assert measures_module.measures_id(DecodeSettings(size=64), TILE) != measures_module.measures_id(settings, TILE)
