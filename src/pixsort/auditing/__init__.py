"""The audit stage: what is in a folder of images before anyone trains on it.

* :mod:`~.duplicates` - exact copies (content hash) and near-copies (cosine similarity
  of embeddings, k nearest neighbours), joined into groups; leakage across splits and
  into a held-out set;
* :mod:`~.outliers` - the k-NN distance score of every image;
* :mod:`~.quality` - dark, bright, low-contrast, blurred, tiny, elongated images, and
  greyscale among colour (or the reverse), from the decoded pixels and native sizes;
* :mod:`~.labels` - likely label errors: out-of-fold probabilities of a linear probe on
  the embeddings, ranked by cleanlab;
* :mod:`~.auditor` - :class:`ImageAuditor`, which runs them all on one embedding matrix;
* :mod:`~.measures` - the per-image pixel measurements (statistics, hashes, map
  thumbnails) in one read of the decoded images, kept in the content-keyed cache.

It sits above ``cluster`` (it searches neighbours with
:class:`~pixsort.cluster.images.neighbours.NeighbourSearch`) and below ``report``; it
writes no output file (only cache records, through :mod:`pixsort.features.cache`).
"""

from pixsort.auditing.auditor import ImageAuditor
from pixsort.auditing.duplicates import NEAR_SIMILARITY, duplicate_groups, leaks_against
from pixsort.auditing.labels import label_issues
from pixsort.auditing.quality import QUALITY_FLAGS, quality_table

__all__ = [
    "NEAR_SIMILARITY",
    "QUALITY_FLAGS",
    "ImageAuditor",
    "duplicate_groups",
    "label_issues",
    "leaks_against",
    "quality_table",
]
