"""Property tests for the table reader (``cluster-table``'s data stage): whatever the
bytes or the CSV dialect, the answer is an encoded table or a :class:`TableError`
naming the file, never another exception, and each case ends quickly."""

from __future__ import annotations

import csv
import io
import time
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pixsort.data.tables import EncodedTable, TableError, read_table

CELL = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "-", "-99", "NA", "nan", "inf", "-inf", "1e309", "TRUE", "no", "=1+1", '"', "\n", "\r\n"]),
    st.integers(-(10**30), 10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "latin-1", "cp1252"]
TIME_LIMIT_S = 5.0
MEMORY_LIMIT = 64 * 2**20


def _check(tmp_path, data: bytes) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(data)
    tracemalloc.start()
    start = time.monotonic()
    try:
        table = read_table(path, "id")
    except TableError as exc:
        assert str(path) in str(exc) or "t.csv" in str(exc), exc
    else:
        assert isinstance(table, EncodedTable)
        assert len(table.ids) == table.features.shape[0]
        assert table.features.shape[1] >= 1
        assert np.isfinite(table.features.to_numpy()).all()  # clustering refuses inf/nan
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert time.monotonic() - start < TIME_LIMIT_S
    assert peak < MEMORY_LIMIT, peak


@st.composite
def csv_files(draw) -> bytes:
    n_cols = draw(st.integers(1, 6))
    header = draw(
        st.lists(
            st.sampled_from(["id", "", " ", "a", "a", "b", "Unnamed: 0", "id "]) | st.text(max_size=6),
            min_size=n_cols,
            max_size=n_cols,
        )
    )
    if draw(st.booleans()):
        header[draw(st.integers(0, n_cols - 1))] = "id"
    rows = draw(st.lists(st.lists(CELL, min_size=0, max_size=n_cols + 2), max_size=25))  # ragged
    delimiter = draw(st.sampled_from([",", ";", "\t", "|", " "]))
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC, csv.QUOTE_NONE]))
    buf = io.StringIO()
    terminator = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    writer = csv.writer(buf, delimiter=delimiter, quoting=quoting, escapechar="\\", lineterminator=terminator)
    for row in [header, *rows]:
        try:
            writer.writerow(row)
        except csv.Error:  # QUOTE_NONE cannot write a lone empty field
            buf.write(delimiter.join(row) + terminator)
    text = buf.getvalue()
    if draw(st.booleans()):
        text += "x" * draw(st.sampled_from([0, 10, 200_000]))  # a huge last cell
    encoding = draw(st.sampled_from(ENCODINGS))
    return text.encode(encoding, errors="replace")


PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPS
@given(data=st.binary(max_size=2000))
def test_random_bytes_give_a_table_or_a_table_error(tmp_path, data):
    _check(tmp_path, data)


@PROPS
@given(data=csv_files())
def test_random_csv_dialects_give_a_table_or_a_table_error(tmp_path, data):
    _check(tmp_path, data)


@PROPS
@given(prefix=st.sampled_from([b"", b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\x00"]), body=st.binary(max_size=300))
def test_valid_header_then_random_bytes(tmp_path, prefix, body):
    _check(tmp_path, prefix + b"id,a,b\n1,x,2\n2,y,3\n" + body)


def test_utf16_with_bom_is_read(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes("id,power\nA,fly\nB,swim\nC,fly\n".encode("utf-16"))
    table = read_table(path, "id")
    assert list(table.ids) == ["A", "B", "C"]


def test_error_names_the_file(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"\x00\xff\xfe\x81garbage")
    with pytest.raises(TableError, match="t.csv"):
        read_table(path, "id")


def test_headers_equal_once_stripped_are_made_unique(tmp_path):
    # 'id' and 'id ' were one name after stripping: frame['id'] was a frame, not a column
    path = tmp_path / "t.csv"
    path.write_bytes(b"id,id ,a\n1,x,p\n2,y,q\n3,z,p\n")
    table = read_table(path, "id")
    assert list(table.ids) == ["1", "2", "3"]
    assert "id.1" in table.column_types


def test_inf_and_nan_cells_stay_finite_features(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"id,a,b\n1,inf,x\n2,-inf,y\n3,nan,x\n4,2,y\n")
    table = read_table(path, "id")
    assert len(table.ids) == 4
    assert np.isfinite(table.features.to_numpy()).all()
    assert table.missing["a"] == 3


def test_a_column_of_only_infinities_gives_finite_features(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"id,a,b\n1,inf,x\n2,-inf,y\n3,inf,x\n")
    table = read_table(path, "id")
    assert np.isfinite(table.features.to_numpy()).all()
