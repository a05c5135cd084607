"""Default groups of a carved validation split: patients from Kaggle-style file names,
byte-identical and near-identical copies, joined by union; the hash and the union on
their own; and the counts on the real chest X-ray train split (skipped without ../shared)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import shared_path
from pixsort.data import carve_validation, open_dataset
from pixsort.data.similar import DHASH_SETTINGS, dhash, hamming, label_pairs, near_pairs, union_groups
from pixsort.data.split import KAGGLE_PATIENT_PATTERN, default_groups, patient_pattern
from synthetic import blob_image, write_images


def _noise_image(seed: int, size: int = 40) -> np.ndarray:
    """A smooth random picture: its dHash bits are close to independent of another's."""
    rng = np.random.default_rng(seed)
    return blob_image(seed % 2, (size, size), rng, channels=1)


def _brighter(image: np.ndarray, by: int = 6) -> np.ndarray:
    return np.clip(image.astype(np.int16) + by, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- the hash and the union


def test_dhash_bits_read_left_to_right_gradients():
    h, w = DHASH_SETTINGS.hw
    rising = np.tile(np.arange(w, dtype=np.uint8) * 7, (1, h, 1))  # brighter to the right: every bit set
    falling = rising[:, :, ::-1].copy()
    hr, hf = dhash(rising), dhash(falling)
    assert hr.shape == (1, 4) and hr.dtype == np.uint64
    assert (hr == np.iinfo(np.uint64).max).all() and (hf == 0).all()
    assert int(hamming(hr, hf)[0]) == 256
    with pytest.raises(ValueError, match="dhash expects"):
        dhash(np.zeros((1, 8, 9), np.uint8))


def test_near_pairs_finds_exactly_the_close_hashes():
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, size=(30, 4), dtype=np.uint64)
    three, forty = np.zeros(4, np.uint64), np.zeros(4, np.uint64)
    three[0], forty[2] = 0b1011, 2**40 - 1
    hashes[7] = hashes[3] ^ three  # 3 bits from item 3
    hashes[20] = hashes[3] ^ forty  # 40 bits away: not a copy
    i, j = near_pairs(hashes, 8)
    assert list(zip(i.tolist(), j.tolist())) == [(3, 7)]
    i, j = near_pairs(hashes, 40)  # 7 and 20 are 43 bits apart
    assert list(zip(i.tolist(), j.tolist())) == [(3, 7), (3, 20)]


def test_union_groups_joins_chains_and_numbers_by_first_item():
    groups = union_groups(7, (np.array([0, 1]), np.array([1, 2])), (np.array([5]), np.array([3])))
    assert groups.tolist() == [0, 0, 0, 1, 2, 1, 3]
    i, j = label_pairs(["a", None, "b", "a", "", "b", "a"])
    assert sorted(zip(i.tolist(), j.tolist())) == [(3, 0), (5, 2), (6, 0)]
    assert union_groups(3).tolist() == [0, 1, 2]


# ----------------------------------------------------------------------------- patients from file names


@pytest.fixture
def kaggle_folder(tmp_path):
    """Kaggle-named images: IM-0001 (2 files) and NORMAL2-IM-0001 (1 file) are two
    patients; person1 (bacteria and virus), person2; one file of person2 is a
    byte-identical copy of person3's, and person4's is a brightened copy of person5's."""
    img = {k: _noise_image(k) for k in range(12)}
    files = {
        "NORMAL/IM-0001-0001.png": img[0],
        "NORMAL/IM-0001-0002.png": img[1],
        "NORMAL/NORMAL2-IM-0001-0001.png": img[2],
        "NORMAL/IM-0002-0001-0001.png": img[3],
        "PNEUMONIA/person1_bacteria_1.png": img[4],
        "PNEUMONIA/person1_virus_2.png": img[5],
        "PNEUMONIA/person2_bacteria_3.png": img[6],
        "PNEUMONIA/person3_bacteria_4.png": img[6],  # the same bytes as person2's
        "PNEUMONIA/person5_virus_6.png": img[8],
        "PNEUMONIA/person4_virus_5.png": _brighter(img[8]),  # near-identical to person5's
        "PNEUMONIA/person6_virus_7.png": img[9],
        "PNEUMONIA/person7_virus_8.png": img[10],
    }
    write_images(tmp_path / "data", files)
    return tmp_path / "data"


def _group_of(ds, grouping, name: str) -> int:
    return int(grouping.groups[next(i for i, p in enumerate(ds.paths) if p.endswith(name))])


def test_kaggle_names_give_patients_and_copies_join_them(kaggle_folder, tmp_path):
    ds = open_dataset(kaggle_folder)
    g = default_groups(ds, cache_dir=tmp_path / "cache", workers=0)
    assert g.pattern == KAGGLE_PATIENT_PATTERN and g.pattern_source == "kaggle" and g.method == "patients+copies"
    assert g.n_items == 12 and g.n_named == 12
    # patients: IM-0001, NORMAL2-IM-0001, IM-0002, person1..7
    assert g.n_patient_groups == 10
    same = _group_of(ds, g, "/IM-0001-0001.png")
    assert _group_of(ds, g, "/IM-0001-0002.png") == same
    assert _group_of(ds, g, "NORMAL2-IM-0001-0001.png") != same  # NORMAL2-IM-0001 is not IM-0001
    assert _group_of(ds, g, "person1_bacteria_1.png") == _group_of(ds, g, "person1_virus_2.png")
    # copies: person2 = person3 (bytes), person4 ~ person5 (a brightened copy)
    assert _group_of(ds, g, "person2_bacteria_3.png") == _group_of(ds, g, "person3_bacteria_4.png")
    assert _group_of(ds, g, "person4_virus_5.png") == _group_of(ds, g, "person5_virus_6.png")
    assert (g.n_exact_copy_groups, g.n_exact_copies, g.n_near_copy_pairs) == (1, 1, 1)
    assert g.n_copy_groups == 2 and g.n_copy_groups_across_patients == 2
    assert _group_of(ds, g, "person6_virus_7.png") != _group_of(ds, g, "person7_virus_8.png")
    assert g.n_groups == 8 == len(np.unique(g.groups))
    assert "8 groups of 12 images" in g.describe() and "10 patients" in g.describe()
    d = g.to_dict()
    assert "groups" not in d and d["n_groups"] == 8


def test_pattern_is_used_only_when_most_names_show_it(tmp_path):
    img = {f"NORMAL/IM-{i:04d}-0001.png": _noise_image(i) for i in range(8)}
    img.update({f"PNEUMONIA/scan_{i}.png": _noise_image(100 + i) for i in range(2)})  # 8 of 10 = 80%
    write_images(tmp_path / "a", img)
    ds = open_dataset(tmp_path / "a")
    assert patient_pattern(ds) == KAGGLE_PATIENT_PATTERN
    (tmp_path / "a" / "NORMAL" / "IM-0000-0001.png").rename(tmp_path / "a" / "NORMAL" / "scan_x.png")  # 7 of 10
    ds = open_dataset(tmp_path / "a")
    assert patient_pattern(ds) is None
    g = default_groups(ds, cache_dir=tmp_path / "cache", workers=0)
    assert g.method == "copies" and g.pattern is None and g.n_patient_groups == 0
    assert g.n_groups == 10  # distinct pictures, no names: one group each


def test_user_pattern_overrides_and_grouping_can_be_off(kaggle_folder, tmp_path):
    ds = open_dataset(kaggle_folder)
    g = default_groups(ds, pattern=r"person\d", cache_dir=tmp_path / "cache", workers=0)  # one digit: person1..7
    assert g.pattern_source == "user" and g.pattern == r"person\d"
    assert _group_of(ds, g, "/IM-0001-0001.png") != _group_of(ds, g, "/IM-0001-0002.png")  # IM- names unmatched
    off = default_groups(ds, patients=False, copies=False)
    assert off.method == "none" and off.groups is None and off.describe() == "no grouping"
    patients_only = default_groups(ds, copies=False)
    assert patients_only.method == "patients" and patients_only.n_copy_groups == 0
    assert _group_of(ds, patients_only, "person2_bacteria_3.png") != _group_of(
        ds, patients_only, "person3_bacteria_4.png"
    )


def test_carved_validation_keeps_each_group_on_one_side(tmp_path):
    """40 patients of 2-3 images, plus copies across patients: no group is split."""
    images = {}
    for p in range(40):
        cls = "PNEUMONIA" if p % 2 else "NORMAL"
        for k in range(2 + p % 2):
            images[f"{cls}/person{p}_virus_{k}.png"] = _noise_image(1000 + 10 * p + k)
    for p in range(0, 10, 2):  # person p's first image copied under person p+20's name
        images[f"NORMAL/person{p + 20}_virus_9.png"] = images[f"NORMAL/person{p}_virus_0.png"]
    write_images(tmp_path / "d", images)
    ds = open_dataset(tmp_path / "d")
    g = default_groups(ds, cache_dir=tmp_path / "cache", workers=0)
    assert g.n_patient_groups == 40 and g.n_exact_copy_groups == 5 and g.n_groups == 35
    for seed in range(3):
        out = carve_validation(ds, 0.25, random_state=seed, groups=g.groups)
        assert set(g.groups[out.splits == "train"]).isdisjoint(g.groups[out.splits == "val"])
        assert 0.1 < (out.splits == "val").mean() < 0.4


def test_real_chest_xray_train_groups(tmp_path_factory):
    """The Kaggle train split: 2,846 patients; 24 sets of byte-identical files, each
    within one patient; no near-identical pair of different files (256-bit dHash
    within 8 bits), so no two patients are merged."""
    root = shared_path("chest_xray", "train")
    ds = open_dataset(root)
    g = default_groups(ds, cache_dir=tmp_path_factory.mktemp("cache"), workers=2)
    assert g.pattern_source == "kaggle" and g.n_items == 5216 and g.n_named == 5216
    assert g.n_patient_groups == 2846
    assert (g.n_exact_copy_groups, g.n_exact_copies) == (24, 26)
    assert g.n_near_copy_pairs == 0 and g.n_copy_groups_across_patients == 0
    assert g.n_groups == 2846
