"""Reading a CSV of records and encoding each column by its type (the ``data`` stage for tables).

A column is read as text first, so that nothing is guessed by the CSV parser, then:

* missing markers (empty, ``-``, ``-99`` by default) become missing; a numeric marker
  also matches its other spellings (``-99`` matches ``-99.0``);
* a column whose values are all TRUE/FALSE, True/False, 1/0, yes/no (t/f, y/n) is
  **boolean** -> one 0/1 feature, missing counted as false;
* a column whose values all parse as numbers is **numeric** -> one float feature,
  missing (and infinite) values filled with the column median;
* anything else is **categorical** -> one 0/1 feature per value (``Column=value``),
  missing sets none of them;
* columns with fewer than two distinct values are reported and dropped, as are
  pandas' unnamed row-index columns and categorical columns whose every value is
  distinct (names, not features).

Every input row is kept, in file order; duplicated ids and rows with no true
feature are reported, never dropped.  A second table can be joined by id for
describing clusters (``join_attributes``); it never feeds the clustering.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

DEFAULT_MISSING: tuple[str, ...] = ("", "-", "-99", "NA", "N/A", "NaN", "nan", "null")

_TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1", "1.0"})
_FALSE_WORDS = frozenset({"false", "f", "no", "n", "0", "0.0"})

# categorical columns with at least this many rows whose values are all distinct are
# names or free text; one-hot encoding them would give one feature per row
_IDENTIFIER_MIN_ROWS = 20


class TableError(ValueError):
    """A CSV that cannot be read or encoded as a table of records; the message names the file."""


@dataclass
class EncodedTable:
    """A table of records ready for clustering.

    Attributes
    ----------
    ids : pd.Series, shape (n_rows,)
        The id column as read (text), in file order; may hold duplicates.
    features : pd.DataFrame, shape (n_rows, n_features)
        Encoded float features (0/1 for boolean and one-hot columns, raw numbers for
        numeric ones), same row order as ``ids``.
    feature_kinds : pd.Series, shape (n_features,)
        ``"binary"`` or ``"numeric"`` per encoded feature.
    column_types : dict
        Source column -> ``"boolean"``, ``"numeric"`` or ``"categorical"`` for the
        columns kept.
    dropped : dict
        Source column -> why it was dropped.
    missing : pd.Series
        Source column -> number of missing cells (kept columns with any missing).
    duplicate_ids : pd.Series
        Id -> number of rows carrying it, for ids on more than one row.
    empty_rows : np.ndarray of int
        Positions of rows with no true feature (binary tables only).
    attributes : pd.DataFrame or None, shape (n_rows, n_attributes)
        A joined table aligned to the rows, for describing clusters only.
    join : JoinReport or None
    """

    ids: pd.Series
    features: pd.DataFrame
    feature_kinds: pd.Series
    column_types: dict[str, str]
    dropped: dict[str, str] = field(default_factory=dict)
    missing: pd.Series = field(default_factory=lambda: pd.Series(dtype=int))
    duplicate_ids: pd.Series = field(default_factory=lambda: pd.Series(dtype=int))
    empty_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    attributes: pd.DataFrame | None = None
    join: JoinReport | None = None
    source: str = ""

    @property
    def is_binary(self) -> bool:
        """True when every encoded feature is 0/1 (the binary-distance methods apply)."""
        return bool((self.feature_kinds == "binary").all())

    def notes(self) -> list[str]:
        """What was done to the data, in plain words, for the report and the CLI."""
        out = [
            f"{len(self.ids)} rows, {len(self.column_types)} columns used -> {self.features.shape[1]} features "
            f"({_count_types(self.column_types)})."
        ]
        for column, reason in self.dropped.items():
            out.append(f"Dropped column {column!r}: {reason}.")
        if len(self.missing):
            cells = ", ".join(f"{c} ({n})" for c, n in self.missing.items())
            out.append(f"Missing cells: {cells}.")
        if len(self.duplicate_ids):
            shown = ", ".join(f"{i} x{n}" for i, n in self.duplicate_ids.head(10).items())
            more = f" and {len(self.duplicate_ids) - 10} more" if len(self.duplicate_ids) > 10 else ""
            out.append(f"{len(self.duplicate_ids)} ids appear on more than one row (all rows kept): {shown}{more}.")
        if len(self.empty_rows):
            out.append(
                f"{len(self.empty_rows)} rows have no true feature; they are kept and set aside as "
                "'no true feature' rather than clustered."
            )
        if self.join is not None:
            out.extend(self.join.notes())
        return out


@dataclass
class JoinReport:
    """How a second table matched the rows of the first."""

    source: str
    on: str
    matched_rows: int
    unmatched_ids: list[str]
    duplicate_keys: pd.Series  # key -> number of records in the joined table
    conflicts: pd.Series  # attribute -> number of keys whose duplicate records disagree

    def notes(self) -> list[str]:
        out = [f"Joined {os.path.basename(self.source)} on {self.on!r}: {self.matched_rows} rows matched."]
        if self.unmatched_ids:
            shown = ", ".join(self.unmatched_ids[:10])
            more = f" and {len(self.unmatched_ids) - 10} more" if len(self.unmatched_ids) > 10 else ""
            out.append(f"{len(self.unmatched_ids)} ids have no record there (attributes missing): {shown}{more}.")
        if len(self.duplicate_keys):
            out.append(
                f"{len(self.duplicate_keys)} keys have several records there; an attribute is used where "
                "those records agree and is missing where they disagree"
                + (f" ({', '.join(f'{c}: {n}' for c, n in self.conflicts.items())})." if len(self.conflicts) else ".")
            )
        return out


def read_text_table(path: str | os.PathLike, missing: tuple[str, ...] = DEFAULT_MISSING) -> pd.DataFrame:
    """Read a CSV as text with missing markers turned into NaN.

    UTF-8 (with or without a byte-order mark) or UTF-16 with a byte-order mark; CRLF
    line endings; cell whitespace stripped; header names stripped and made unique
    (``a``, ``a.1``).  Returns a DataFrame of ``object`` columns holding ``str`` or NaN,
    shape (n_rows, n_columns).  Raises :class:`TableError` naming the file when it is
    not such a CSV.
    """
    with open(path, "rb") as handle:
        head = handle.read(4)
    encoding = "utf-16" if head[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    try:
        frame = pd.read_csv(
            path, dtype=str, keep_default_na=False, na_filter=False, encoding=encoding, skipinitialspace=True
        )
    except UnicodeError:
        raise TableError(f"{path}: not UTF-8 text (nor UTF-16 with a byte-order mark)") from None
    except pd.errors.EmptyDataError:
        raise TableError(f"{path}: no header row (the file is empty)") from None
    except (pd.errors.ParserError, csv.Error) as exc:
        raise TableError(f"{path}: not a readable CSV ({str(exc).strip()[:200]})") from None
    frame.columns = _unique_names([str(c).strip() for c in frame.columns])
    frame = frame.astype(object).apply(lambda col: col.str.strip())
    return frame.apply(lambda col: col.mask(_is_missing(col, missing)))


def _unique_names(names: list[str]) -> list[str]:
    """Header names made unique the way pandas does (``a``, ``a.1``, ``a.2``)."""
    seen: set[str] = set()
    out = []
    for name in names:
        candidate, n = name, 0
        while candidate in seen:
            n += 1
            candidate = f"{name}.{n}"
        seen.add(candidate)
        out.append(candidate)
    return out


def infer_column_type(values: pd.Series) -> str:
    """``"constant"``, ``"boolean"``, ``"numeric"`` or ``"categorical"`` for a text column (NaN = missing)."""
    present = values.dropna()
    if present.nunique() < 2:
        return "constant"
    words = set(present.str.lower().unique())
    if words <= (_TRUE_WORDS | _FALSE_WORDS):
        return "boolean"
    if pd.to_numeric(present, errors="coerce").notna().all():
        return "numeric"
    return "categorical"


def encode_table(frame: pd.DataFrame, id_column: str, *, source: str = "") -> EncodedTable:
    """Encode a text table (as from :func:`read_text_table`) column by column.

    ``id_column`` identifies rows and is not a feature.  Raises :class:`TableError` when it
    is absent or when no usable feature column remains.
    """
    if id_column not in frame.columns:
        raise TableError(
            f"{source or 'the table'}: id column {id_column!r} not in the table; "
            f"columns are: {', '.join(frame.columns[:20])}"
        )
    ids = frame[id_column].copy()
    no_id = ids.isna()
    ids[no_id] = [f"<row {i} has no id>" for i in np.flatnonzero(no_id)]
    ids = ids.astype(str).rename(id_column).reset_index(drop=True)

    blocks: list[pd.DataFrame] = []
    kinds: list[str] = []
    column_types: dict[str, str] = {}
    dropped: dict[str, str] = {}
    missing: dict[str, int] = {}
    for column in frame.columns:
        if column == id_column:
            continue
        values = frame[column].reset_index(drop=True)
        kind, reason = _classify(column, values)
        if reason:
            dropped[column] = reason
            continue
        column_types[column] = kind
        block = _ENCODERS[kind](column, values)
        n_missing = int(values.isna().sum())
        if kind == "numeric":
            n_missing += int((~np.isfinite(pd.to_numeric(values.dropna()).astype(float))).sum())
        if n_missing:
            missing[column] = n_missing
        blocks.append(block)
        kinds.extend(["numeric" if kind == "numeric" else "binary"] * block.shape[1])
    if not blocks:
        raise TableError(
            f"{source or 'the table'}: no usable feature column: every column other than the id was dropped ({dropped})"
        )

    features = pd.concat(blocks, axis=1)
    feature_kinds = pd.Series(kinds, index=features.columns, name="kind")
    counts = ids.value_counts(sort=False)
    duplicate_ids = counts[counts > 1].sort_values(ascending=False, kind="stable")
    empty_rows = np.zeros(0, dtype=int)
    if (feature_kinds == "binary").all():
        empty_rows = np.flatnonzero(features.to_numpy().sum(axis=1) == 0)
    return EncodedTable(
        ids=ids,
        features=features,
        feature_kinds=feature_kinds,
        column_types=column_types,
        dropped=dropped,
        missing=pd.Series(missing, dtype=int),
        duplicate_ids=duplicate_ids,
        empty_rows=empty_rows,
        source=str(source),
    )


def read_table(
    path: str | os.PathLike,
    id_column: str,
    *,
    missing: tuple[str, ...] = DEFAULT_MISSING,
    join: str | os.PathLike | None = None,
    on: str | None = None,
) -> EncodedTable:
    """Read and encode ``path``; optionally attach a second table's columns as ``attributes``.

    ``on`` names the key column of the joined table (default: ``id_column``).
    """
    table = encode_table(read_text_table(path, missing), id_column, source=str(path))
    if join is not None:
        other = read_text_table(join, missing)
        table.attributes, table.join = join_attributes(table.ids, other, on or id_column, source=str(join))
    return table


def join_attributes(
    ids: pd.Series, other: pd.DataFrame, on: str, *, source: str = ""
) -> tuple[pd.DataFrame, JoinReport]:
    """Align ``other``'s columns to ``ids`` (many rows may share an id).

    Keys with several records in ``other`` are resolved column by column: the value
    is kept where the records agree (ignoring missing) and left missing where they
    disagree, since guessing which record is meant would put facts on the wrong row.
    Numeric-looking columns come back as floats.  Returns (attributes of shape
    (len(ids), n_attributes), report).
    """
    if on not in other.columns:
        raise TableError(
            f"{source or 'the joined table'}: join column {on!r} not in the joined table; "
            f"columns are: {', '.join(other.columns[:20])}"
        )
    keep = [c for c in other.columns if c != on and not _is_row_index(c, other[c])]
    other = other[other[on].notna()]
    key_counts = other[on].value_counts(sort=False)
    duplicate_keys = key_counts[key_counts > 1].sort_values(ascending=False, kind="stable")

    def agreed(values: pd.Series) -> object:
        distinct = values.dropna().unique()
        return distinct[0] if len(distinct) == 1 else np.nan

    per_key = other.groupby(on, sort=False)[keep].agg(agreed)
    conflicts = {}
    if len(duplicate_keys):
        dup = other[other[on].isin(duplicate_keys.index)]
        n_distinct = dup.groupby(on)[keep].nunique()
        conflicts = {c: int(n) for c, n in (n_distinct > 1).sum().items() if n}
    for column in keep:
        if infer_column_type(other[column]) == "numeric":
            per_key[column] = pd.to_numeric(per_key[column])
    attributes = per_key.reindex(ids.to_numpy()).reset_index(drop=True)
    matched = ids.isin(per_key.index)
    report = JoinReport(
        source=source,
        on=on,
        matched_rows=int(matched.sum()),
        unmatched_ids=list(dict.fromkeys(ids[~matched])),
        duplicate_keys=duplicate_keys,
        conflicts=pd.Series(conflicts, dtype=int),
    )
    return attributes, report


def parse_missing_markers(text: str | None) -> tuple[str, ...]:
    """``"-,-99,NA"`` -> ``("", "-", "-99", "NA")``: the empty cell is always missing.
    None gives ``DEFAULT_MISSING``."""
    if text is None:
        return DEFAULT_MISSING
    markers = tuple(m.strip() for m in text.split(","))
    return markers if "" in markers else ("", *markers)


def _is_missing(values: pd.Series, markers: tuple[str, ...]) -> pd.Series:
    flags = values.isin(markers)
    numeric_markers = pd.to_numeric(pd.Series(markers, dtype=object), errors="coerce").dropna()
    if len(numeric_markers):
        flags |= pd.to_numeric(values, errors="coerce").isin(numeric_markers.to_numpy())
    return flags


def _classify(column: str, values: pd.Series) -> tuple[str, str]:
    """(type, reason to drop or "")."""
    if _is_row_index(column, values):
        return "index", "an unnamed row index (0, 1, 2, ...)"
    kind = infer_column_type(values)
    if kind == "constant":
        present = values.dropna().unique()
        what = f"always {present[0]!r}" if len(present) else "always missing"
        return kind, f"constant ({what})"
    if kind == "categorical":
        present = values.dropna()
        if len(present) >= _IDENTIFIER_MIN_ROWS and present.is_unique:
            return kind, "every value is distinct (a name, not a feature)"
    return kind, ""


def _is_row_index(column: str, values: pd.Series) -> bool:
    if not (column == "" or column.startswith("Unnamed:")):
        return False
    numbers = pd.to_numeric(values, errors="coerce")
    return bool(numbers.notna().all() and (numbers.to_numpy() == np.arange(len(values))).all())


def _encode_boolean(column: str, values: pd.Series) -> pd.DataFrame:
    # missing counts as false: for presence/absence features "not recorded" is the usual meaning
    return pd.DataFrame({column: values.str.lower().isin(_TRUE_WORDS).astype(float)})


def _encode_numeric(column: str, values: pd.Series) -> pd.DataFrame:
    numbers = pd.to_numeric(values).astype(float)
    numbers = numbers.mask(~np.isfinite(numbers))  # inf, -inf and overflowing numbers are missing too
    median = numbers.median()
    return pd.DataFrame({column: numbers.fillna(0.0 if np.isnan(median) else median)})


def _encode_categorical(column: str, values: pd.Series) -> pd.DataFrame:
    dummies = pd.get_dummies(values, prefix=column, prefix_sep="=", dtype=float)
    return dummies[sorted(dummies.columns)]


_ENCODERS = {"boolean": _encode_boolean, "numeric": _encode_numeric, "categorical": _encode_categorical}


def _count_types(column_types: dict[str, str]) -> str:
    counts = pd.Series(list(column_types.values()), dtype=object).value_counts()
    return ", ".join(f"{n} {kind}" for kind, n in counts.items())
