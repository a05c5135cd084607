"""Spreadsheet cells: text a spreadsheet would run as a formula (CSV injection) is
written with a leading ``'``; readers of pixsort's own CSVs take it off again."""

from __future__ import annotations

import re

# A cell starting with one of these is run as a formula by spreadsheets.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise_cell(value):
    """``value`` with a ``'`` in front when it is text a spreadsheet would run as a formula.

    Numbers (and text that is a plain number, such as ``-3.5``) are left as they are.
    """
    if not isinstance(value, str) or not value.startswith(FORMULA_PREFIXES):
        return value
    try:
        float(value)
    except ValueError:
        return "'" + value
    return value


def restore_cell(value):
    """The text :func:`neutralise_cell` was given (for reading pixsort's CSVs back)."""
    if isinstance(value, str) and value.startswith("'") and value[1:2] and value[1:].startswith(FORMULA_PREFIXES):
        return value[1:] if neutralise_cell(value[1:]) == value else value
    return value


def utf8_text(value: str) -> str:
    """``value`` as text UTF-8 can carry: bytes of a file name that are not UTF-8 (held by
    Python as surrogates) become ``\\udcXX`` escapes, the way pixsort's CSVs write them."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


_ESCAPED_SURROGATE = re.compile(r"\\udc([89a-f][0-9a-f])")


def restore_utf8_text(value):
    """The text :func:`utf8_text` was given: ``\\udcXX`` escapes (the bytes 0x80-0xff of a
    file name that are not UTF-8) back to the surrogates Python opens the file with."""
    if not isinstance(value, str) or "\\udc" not in value:
        return value
    return _ESCAPED_SURROGATE.sub(lambda m: chr(0xDC00 + int(m.group(1), 16)), value)
