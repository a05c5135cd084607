"""The data stage: find images (:func:`open_dataset`), decode and cache them
(:func:`load_images`), split them (:func:`carve_validation`, :func:`holdout`, keeping the patients and copies
of :func:`default_groups` on one side), and
read tables of records (:mod:`pixsort.data.tables`)."""

import pandas as _pd

from pixsort.data.cache import default_cache_dir
from pixsort.data.decode import DecodeSettings, SkipImage, decode_array, decode_image
from pixsort.data.load import DecodedImages, NoUsableImages, load_images
from pixsort.data.sources import ImageDataset, SourceError, open_dataset
from pixsort.data.split import (
    Grouping,
    carve_validation,
    dedupe,
    default_groups,
    groups_from_pattern,
    has_usable_validation,
    holdout,
)

# pandas 3 keeps text in pyarrow arrays wherever pyarrow is installed (``pixsort[ray]`` brings
# it), and those cannot hold the surrogates Python gives file names that are not UTF-8: a
# folder with one such file would fail every command.  pixsort's tables keep Python strings.
_pd.set_option("mode.string_storage", "python")

__all__ = [
    "DecodeSettings",
    "DecodedImages",
    "Grouping",
    "ImageDataset",
    "NoUsableImages",
    "SkipImage",
    "SourceError",
    "carve_validation",
    "dedupe",
    "decode_array",
    "decode_image",
    "default_cache_dir",
    "default_groups",
    "groups_from_pattern",
    "has_usable_validation",
    "holdout",
    "load_images",
    "open_dataset",
]
