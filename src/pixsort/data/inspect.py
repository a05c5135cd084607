"""Summaries of a source for ``pixsort inspect``: counts, modes, sizes, duplicates, skips."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from pixsort.data.decode import DecodeSettings
from pixsort.data.load import NoUsableImages, load_images
from pixsort.data.sources import ImageDataset

# decoding at thumbnail size through draft mode is the cheapest full check that a
# file decodes to the end (a header-only probe misses truncated JPEGs)
_PROBE = DecodeSettings(size=32, channels="L", resize="squash")


@dataclass
class Inspection:
    """What ``pixsort inspect`` reports.  ``to_dict`` gives the ``--json`` form."""

    dataset: ImageDataset
    manifest: pd.DataFrame

    @property
    def loaded(self) -> pd.DataFrame:
        return self.manifest[self.manifest["status"] == "loaded"]

    @property
    def skipped(self) -> pd.DataFrame:
        return self.manifest[self.manifest["status"] == "skipped"]

    def counts(self) -> pd.DataFrame:
        """Usable images per split (rows) and class (columns)."""
        ok = self.loaded
        frame = pd.DataFrame(
            {
                "split": ok["split"].replace("", "(none)"),
                "class": ok["label"].replace("", "(unlabeled)"),
            }
        )
        return frame.groupby(["split", "class"]).size().unstack(fill_value=0)

    def modes(self) -> dict[str, int]:
        return self.loaded["mode"].value_counts().to_dict()

    def size_range(self) -> dict[str, int]:
        ok = self.loaded
        if ok.empty:
            return {}
        return {
            "min_width": int(ok["width"].min()),
            "max_width": int(ok["width"].max()),
            "min_height": int(ok["height"].min()),
            "max_height": int(ok["height"].max()),
        }

    def duplicates(self) -> list[list[str]]:
        """Groups of paths with byte-identical content."""
        ok = self.manifest[self.manifest["content_hash"] != ""]
        groups = ok.groupby("content_hash")["path"].apply(list)
        return [paths for paths in groups if len(paths) > 1]

    def to_dict(self) -> dict:
        counts = self.counts()
        return {
            "source": str(self.dataset.root),
            "kind": self.dataset.kind,
            "items": len(self.manifest),
            "loaded": len(self.loaded),
            "skipped": len(self.skipped),
            "classes": self.dataset.class_names,
            "counts": {split: {c: int(n) for c, n in row.items()} for split, row in counts.iterrows()},
            "modes": {k: int(v) for k, v in self.modes().items()},
            "sizes": self.size_range(),
            "duplicates": self.duplicates(),
            "skipped_files": [{"path": r.path, "reason": r.reason} for r in self.skipped.itertuples(index=False)],
        }


def inspect_dataset(
    dataset: ImageDataset, *, cache_dir=None, workers: int | None = None, progress: bool = True
) -> Inspection:
    """Decode every item once (thumbnail-sized, cached) and summarise the source."""
    try:
        decoded = load_images(dataset, _PROBE, cache_dir=cache_dir, workers=workers, progress=progress)
        manifest = decoded.manifest
    except NoUsableImages as exc:
        manifest = exc.manifest
    return Inspection(dataset, manifest)
