"""The one CSV writer: spreadsheet formulas in text cells are neutralised, numbers kept."""

from __future__ import annotations

import pandas as pd

from pixsort.report.files import neutralise_cell, write_csv


def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(tmp_path):
    frame = pd.DataFrame(
        {
            "path": ['=HYPERLINK("http://x")', "+1+cmd", "-2+3", "@SUM(A1)", "\tx", "ok.png", "-3.5"],
            "score": [-1.5, 2.0, -3.0, 0.0, 1.0, 1.0, 1.0],
            "n": [-1, 2, 3, 4, 5, 6, 7],
        }
    )
    written = write_csv(frame, tmp_path / "t.csv")
    out = pd.read_csv(written, keep_default_na=False)
    assert out["path"].tolist()[:5] == ['\'=HYPERLINK("http://x")', "'+1+cmd", "'-2+3", "'@SUM(A1)", "'\tx"]
    assert neutralise_cell("\rx") == "'\rx" and neutralise_cell(-2) == -2
    assert out["path"].tolist()[-2:] == ["ok.png", "-3.5"]
    assert out["score"].tolist() == frame["score"].tolist() and out["n"].tolist() == frame["n"].tolist()
    assert frame["path"].iloc[0].startswith("=")  # the caller's frame is untouched


def test_csv_index_and_header_are_neutralised_too(tmp_path):
    frame = pd.DataFrame({"=cmd": [1]}, index=pd.Index(["@evil"], name="label"))
    text = write_csv(frame, tmp_path / "t.csv", index=True).read_text()
    assert "'=cmd" in text and "'@evil" in text
