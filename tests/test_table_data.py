"""Reading and type-encoding CSV tables (pixsort.data.tables)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pixsort.data.tables import (
    DEFAULT_MISSING,
    infer_column_type,
    join_attributes,
    parse_missing_markers,
    read_table,
    read_text_table,
)

SUPERHERO = Path(__file__).resolve().parents[2] / "shared" / "data" / "superhero"


def write_csv(path: Path, lines: list[str], *, crlf: bool = False, bom: bool = False) -> Path:
    text = ("\r\n" if crlf else "\n").join(lines) + ("\r\n" if crlf else "\n")
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode())
    return path


@pytest.mark.parametrize(
    "values",
    [["TRUE", "FALSE", "TRUE"], ["True", "False", "False"], ["1", "0", "1"], ["yes", "no", "YES"], ["y", "n", "n"]],
)
def test_boolean_spellings_become_one_zero_one_feature(tmp_path, values):
    csv = write_csv(tmp_path / "t.csv", ["id,power", *(f"r{i},{v}" for i, v in enumerate(values))])
    table = read_table(csv, "id")
    assert table.column_types == {"power": "boolean"}
    expected = [1.0 if v.lower() in ("true", "1", "yes", "y") else 0.0 for v in values]
    assert table.features["power"].tolist() == expected
    assert table.is_binary


def test_numeric_and_categorical_columns_are_encoded_by_type(tmp_path):
    csv = write_csv(
        tmp_path / "t.csv",
        ["id,height,side,flies", "a,180,good,TRUE", "b,,bad,FALSE", "c,170,good,FALSE", "d,190,-,TRUE"],
    )
    table = read_table(csv, "id")
    assert table.column_types == {"height": "numeric", "side": "categorical", "flies": "boolean"}
    # missing height -> median of 170/180/190; missing side -> no indicator set
    assert table.features["height"].tolist() == [180.0, 180.0, 170.0, 190.0]
    assert table.features[["side=bad", "side=good"]].to_numpy().tolist() == [[0, 1], [1, 0], [0, 1], [0, 0]]
    assert table.feature_kinds.to_dict() == {
        "height": "numeric",
        "side=bad": "binary",
        "side=good": "binary",
        "flies": "binary",
    }
    assert not table.is_binary
    assert table.missing.to_dict() == {"height": 1, "side": 1}


def test_constant_and_all_missing_columns_are_reported_and_dropped(tmp_path):
    csv = write_csv(tmp_path / "t.csv", ["id,always,never,x", "a,TRUE,-,TRUE", "b,TRUE,,FALSE", "c,TRUE,-99,TRUE"])
    table = read_table(csv, "id")
    assert list(table.features.columns) == ["x"]
    assert set(table.dropped) == {"always", "never"}
    assert "constant" in table.dropped["always"] and "'TRUE'" in table.dropped["always"]
    assert "always missing" in table.dropped["never"]
    assert any("Dropped column 'always'" in note for note in table.notes())


def test_missing_markers_match_numeric_spellings_and_are_configurable(tmp_path):
    csv = write_csv(tmp_path / "t.csv", ["id,weight,mood", "a,-99.0,?", "b,60,happy", "c,80,sad", "d,-99,happy"])
    default = read_table(csv, "id")
    assert default.missing["weight"] == 2  # -99 and -99.0 both
    assert default.features["weight"].tolist() == [70.0, 60.0, 80.0, 70.0]
    assert "mood=?" in default.features.columns  # "?" is not a default marker

    custom = read_table(csv, "id", missing=parse_missing_markers("?"))
    assert "mood=?" not in custom.features.columns
    assert custom.missing["mood"] == 1
    assert custom.features["weight"].min() == -99.0  # -99 is a value now
    assert parse_missing_markers(None) == DEFAULT_MISSING
    assert parse_missing_markers("-, NA") == ("", "-", "NA")


def test_crlf_and_byte_order_mark_are_handled(tmp_path):
    lines = ["name,Flight,Stealth", "A,TRUE,FALSE", "B,FALSE,TRUE", "C,TRUE,TRUE"]
    plain = read_table(write_csv(tmp_path / "plain.csv", lines), "name")
    windows = read_table(write_csv(tmp_path / "win.csv", lines, crlf=True, bom=True), "name")
    assert windows.ids.name == "name"  # not "\ufeffname"
    assert list(windows.features.columns) == ["Flight", "Stealth"]  # not "Stealth\r"
    pd.testing.assert_frame_equal(windows.features, plain.features)


def test_duplicated_ids_are_reported_and_every_row_is_kept(tmp_path):
    lines = ["id,a,b", "x,TRUE,FALSE", "y,FALSE,TRUE", "x,TRUE,TRUE", "z,TRUE,FALSE", "x,FALSE,TRUE"]
    csv = write_csv(tmp_path / "t.csv", lines)
    table = read_table(csv, "id")
    assert len(table.features) == 5
    assert table.ids.tolist() == ["x", "y", "x", "z", "x"]
    assert table.duplicate_ids.to_dict() == {"x": 3}
    assert any("x x3" in note for note in table.notes())


def test_rows_with_no_true_feature_are_found(tmp_path):
    csv = write_csv(tmp_path / "t.csv", ["id,a,b", "p,TRUE,FALSE", "q,FALSE,FALSE", "r,FALSE,TRUE", "s,-,FALSE"])
    table = read_table(csv, "id")
    assert table.empty_rows.tolist() == [1, 3]
    assert len(table.features) == 4


def test_unnamed_index_and_name_like_columns_are_not_features(tmp_path):
    rows = [f"{i},hero{i},{'TRUE' if i % 2 else 'FALSE'},{'FALSE' if i % 3 else 'TRUE'}" for i in range(25)]
    table = read_table(write_csv(tmp_path / "t.csv", [",name,a,b", *rows]), "a")
    assert "Unnamed: 0" in table.dropped and "row index" in table.dropped["Unnamed: 0"]
    assert "name" in table.dropped and "distinct" in table.dropped["name"]


def test_unknown_id_column_is_a_clear_error(tmp_path):
    csv = write_csv(tmp_path / "t.csv", ["id,a", "x,TRUE", "y,FALSE"])
    with pytest.raises(ValueError, match="id column 'hero' not in the table"):
        read_table(csv, "hero")


def test_infer_column_type():
    assert infer_column_type(pd.Series(["1", "0", np.nan], dtype=object)) == "boolean"
    assert infer_column_type(pd.Series(["1.5", "2", "-3"], dtype=object)) == "numeric"
    assert infer_column_type(pd.Series(["a", "b", "1"], dtype=object)) == "categorical"
    assert infer_column_type(pd.Series(["a", "a", np.nan], dtype=object)) == "constant"


def test_join_keeps_agreed_values_of_duplicate_keys_and_reports_the_rest():
    ids = pd.Series(["Batman", "Robin", "Batman", "Nobody"], name="hero")
    other = pd.DataFrame(
        {
            "name": ["Batman", "Batman", "Robin"],
            "Publisher": ["DC", "DC", "DC"],
            "Height": ["188", "178", "165"],
            "Eyes": ["blue", np.nan, "green"],
        },
        dtype=object,
    )
    attributes, report = join_attributes(ids, other, "name")
    assert attributes["Publisher"].tolist()[:3] == ["DC", "DC", "DC"]
    assert pd.isna(attributes.loc[3, "Publisher"])  # unmatched id
    assert pd.isna(attributes.loc[0, "Height"])  # the two Batman records disagree
    assert attributes.loc[1, "Height"] == 165.0  # numeric column parsed
    assert attributes.loc[0, "Eyes"] == "blue"  # one record missing, the other decides
    assert report.matched_rows == 3
    assert report.unmatched_ids == ["Nobody"]
    assert report.duplicate_keys.to_dict() == {"Batman": 2}
    assert report.conflicts.to_dict() == {"Height": 1}


def test_join_through_read_table(tmp_path):
    powers = write_csv(tmp_path / "p.csv", ["hero,fly", "A,TRUE", "B,FALSE", "C,TRUE"], crlf=True)
    info = write_csv(tmp_path / "i.csv", [",name,side", "0,A,good", "1,B,-", "2,Z,bad"], bom=True)
    table = read_table(powers, "hero", join=info, on="name")
    assert list(table.attributes.columns) == ["side"]  # unnamed index dropped
    assert table.attributes["side"].tolist()[0] == "good"
    assert table.attributes["side"].isna().tolist() == [False, True, True]
    assert table.join.unmatched_ids == ["C"]


def test_read_text_table_strips_cells(tmp_path):
    frame = read_text_table(write_csv(tmp_path / "t.csv", ["id , a", " x , TRUE ", "y,-"]))
    assert list(frame.columns) == ["id", "a"]
    assert frame["a"].tolist()[0] == "TRUE" and pd.isna(frame["a"].tolist()[1])


@pytest.mark.skipif(not SUPERHERO.is_dir(), reason=f"superhero data not found at {SUPERHERO}")
def test_superhero_tables_read_as_documented():
    table = read_table(
        SUPERHERO / "super_hero_powers.csv", "hero_names", join=SUPERHERO / "heroes_information.csv", on="name"
    )
    assert table.features.shape == (667, 167)
    assert table.is_binary and not table.dropped
    assert table.features.columns[-1] == "Omniscient"  # no stray "\r" from the CRLF file
    assert table.join.matched_rows == 643
    assert len(table.join.unmatched_ids) == 24
    assert table.join.duplicate_keys["Goliath"] == 3
    assert "Unnamed: 0" not in table.attributes.columns
    weight = table.attributes["Weight"]
    assert weight.dtype.kind == "f"
    assert weight.isna().any() and not (weight == -99).any()  # -99.0 read as missing
