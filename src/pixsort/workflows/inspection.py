"""What a source holds, and what cannot be used (``pixsort inspect``)."""

from __future__ import annotations

import os

from pixsort.data import open_dataset
from pixsort.data.inspect import Inspection, inspect_dataset
from pixsort.report.files import check_writable, write_csv


def inspect_source(
    path: str | os.PathLike,
    *,
    manifest_csv: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> Inspection:
    """Decode every item of ``path`` once (thumbnail-sized, cached) and summarise it;
    with ``manifest_csv``, also write the manifest (one row per file) there."""
    if manifest_csv is not None:
        check_writable(manifest_csv)
    result = inspect_dataset(open_dataset(path), cache_dir=cache_dir, workers=workers, progress=progress)
    if manifest_csv is not None:
        write_csv(result.manifest, manifest_csv)
    return result


__all__ = ["inspect_source"]
