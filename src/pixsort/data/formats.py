"""The one allow-list of image formats every reader decodes (files, arrays' sources, uploads).

Pillow can open many more formats (EPS runs Ghostscript; others are rarely fuzzed), so
:func:`pixsort.data.decode_image` passes ``formats=ACCEPTED_FORMATS`` to ``Image.open``
and anything else is skipped as ``unsupported_format``, whatever the file is named.
The server also sniffs uploads by their first bytes with :func:`sniff_format`.
"""

from __future__ import annotations

ACCEPTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP")

# Magic bytes of the accepted formats: (offset, bytes, Pillow format name).
SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "JPEG"),
    (0, b"\x89PNG\r\n\x1a\n", "PNG"),
    (0, b"GIF87a", "GIF"),
    (0, b"GIF89a", "GIF"),
    (0, b"BM", "BMP"),
    (0, b"II*\x00", "TIFF"),
    (0, b"MM\x00*", "TIFF"),
    (8, b"WEBP", "WEBP"),  # after b"RIFF" + 4-byte size, checked below
)


def sniff_format(head: bytes) -> str | None:
    """The accepted image format that ``head`` (the first bytes of a file) starts with, or None."""
    for offset, magic, name in SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            if name == "WEBP" and head[:4] != b"RIFF":
                continue
            return name
    return None


__all__ = ["ACCEPTED_FORMATS", "SIGNATURES", "sniff_format"]
