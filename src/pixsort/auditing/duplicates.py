"""Exact and near-duplicate groups from content hashes, pixel hashes and embedding neighbours.

Exact copies share a content hash (:func:`pixsort.data.cache.hash_file` of the file's
bytes).  Near-copies are linked by either of two signals:

* pixels: the 256-bit difference hash of :mod:`pixsort.data.similar`, taken of the whole
  image and of its centre :data:`HASH_CROP` (so a copy cropped by 5% matches its
  original's centre); two images are copies when the smallest distance between one's
  whole-image hash and the other's whole or centre hash is at most
  :data:`HASH_DISTANCE` bits (:func:`copy_hashes`, :func:`hash_links`);
* embeddings: centred unit embeddings with a cosine similarity of at least
  :data:`NEAR_SIMILARITY`.

Only nearest neighbours are looked at (:class:`~pixsort.cluster.images.neighbours.NeighbourSearch`
over the embeddings, and over the hashes as +-1 vectors, whose inner product is
``1 - 2 * distance / 256``), never all n x n pairs.  Links of every kind are joined by
union-find (:func:`pixsort.data.similar.union_groups`): a group is every image reachable
through copies.

Measured by ``bench/audit.py`` on the 5,216 chest X-rays of the Kaggle train split plus
100 planted copies (resized to 60%, JPEG quality 50, cropped by 5%; a third each), hashes
taken of the 240 x 240 decode the embeddings use (:func:`hash_distance`, bits):

=========================  ==============================================================
pair                       bits
=========================  ==============================================================
copy, resized              0-4 (median 1, 95%: 3)
copy, re-encoded           0-7 (median 2, 95%: 5)
copy, cropped 5%           0-6 (median 2, 95%: 6); whole vs whole alone: 17-47 (median 26)
nearest distinct X-ray     >= 11 (0.1%: 13, 1%: 16; 4 images at 11, 5 within 12)
=========================  ==============================================================

so :data:`HASH_DISTANCE` = 9 takes every planted copy and no distinct X-ray (two bits above
the worst copy, two below the nearest distinct pair): recall 100% of each kind, no false
group.  A centre of 90% as a third view added nothing for these copies and brought
distinct X-rays to 9 bits (an exploratory run with PIL's bilinear resize).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pixsort.cluster.images.neighbours import NeighbourSearch
from pixsort.data.similar import DHASH_SETTINGS, hamming, label_pairs, union_groups

HASH_CROP = 0.95
"""Share of each side kept for the second (centre) hash: a 5% crop's original centre."""
HASH_DISTANCE = 9
"""Bits from which two hashes are no longer copies (see the module notes' table)."""
HASH_NEIGHBOURS = 5  # hash neighbours looked at per image and view

NEAR_SIMILARITY = 0.90
"""Cosine similarity (centred efficientnet_lite1 embeddings, mirror-averaged) from which
two images are taken as near-copies.  Measured by ``bench/audit.py`` on the 5,216 chest
X-rays of the Kaggle train split with 100 planted near-copies (resized to 60%,
re-encoded at JPEG quality 50, cropped by 5%, a third each): the nearest distinct X-ray
of an image reaches 0.883 at most (99.9%: 0.863), so at 0.90 no false group forms; but the
planted copies sit at 0.63-0.95 (median 0.86) from their originals, so only 29% of them
are found.  Raw (uncentred) cosines overlap as well (copies >= 0.93 for 95% of them,
distinct X-rays up to 0.965).  These embeddings do not tell a re-encoded or cropped X-ray
from another patient's; exact copies (the hash) are always found, and the pixel hash
(:data:`HASH_DISTANCE`) finds the planted near-copies this threshold misses."""


def _box_weights(size: int, out: int, lo: float, hi: float) -> np.ndarray:
    """(out, size) weights averaging ``[lo, hi)`` of a row of ``size`` pixels into
    ``out`` equal boxes (area resampling, partial pixels weighted by overlap)."""
    edges = lo + (hi - lo) * np.arange(out + 1) / out
    left, right = np.arange(size)[None, :], np.arange(1, size + 1)[None, :]
    overlap = np.clip(np.minimum(right, edges[1:, None]) - np.maximum(left, edges[:-1, None]), 0, None)
    return (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)


def copy_hashes(images, crop: float = HASH_CROP, block: int = 256) -> np.ndarray:
    """Difference hashes of each image whole and of its centre ``crop``: ``(n, 2, 4)`` uint64.

    Parameters
    ----------
    images : uint8 array-like (n, H, W[, C]) (an array, a memmap, PackedImages)
        Area-resampled to the 34 x 32 grey grid of
        :data:`~pixsort.data.similar.DHASH_SETTINGS` (two small matrix products per
        image), then hashed as :func:`pixsort.data.similar.dhash` does.
    """
    from pixsort.data.similar import dhash

    n = len(images)
    out = np.zeros((n, 2, 4), np.uint64)
    gh, gw = DHASH_SETTINGS.hw
    weights = {}
    for start in range(0, n, block):
        part = np.asarray(images[start : start + block])
        if part.ndim == 3:
            part = part[..., None]
        m, h, w, c = part.shape
        if part.shape[1:] not in weights:
            crops = (1.0, crop)
            rows = [_box_weights(h, gh, h * (1 - s) / 2, h * (1 + s) / 2) for s in crops]
            cols = np.concatenate([_box_weights(w, gw, w * (1 - s) / 2, w * (1 + s) / 2) for s in crops]).T
            # the grey mean over channels folded into the column weights: (w * c, 2 * gw)
            weights[part.shape[1:]] = rows, np.repeat(cols, c, axis=0) / c
        rows, cols = weights[part.shape[1:]]
        across = (part.reshape(m * h, w * c).astype(np.float32) @ cols).reshape(m, h, 2 * gw)  # one GEMM
        for v in (0, 1):
            small = np.matmul(rows[v], across[:, :, v * gw : (v + 1) * gw])
            out[start : start + m, v] = dhash(np.clip(np.rint(small), 0, 255).astype(np.uint8))
    return out


def hash_distance(hashes: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Bits between images ``i`` and ``j`` (arrays of positions): the smallest of whole
    vs whole, whole vs the other's centre and centre vs the other's whole."""
    a, b = hashes[i], hashes[j]
    return np.minimum.reduce([hamming(a[:, 0], b[:, 0]), hamming(a[:, 0], b[:, 1]), hamming(a[:, 1], b[:, 0])])


def _signs(words: np.ndarray) -> np.ndarray:
    bits = np.unpackbits(np.ascontiguousarray(words).view(np.uint8), axis=1)
    return (bits.astype(np.float32) * 2 - 1) / np.sqrt(bits.shape[1], dtype=np.float32)


def hash_candidates(hashes: np.ndarray, others: np.ndarray | None = None, k: int = HASH_NEIGHBOURS):
    """Candidate copy pairs ``(i, j)`` by hash: for each image of ``others`` (default: the
    same set) its ``k`` nearest whole-image hashes of ``hashes`` by its whole and by its
    centre hash, and (for another set) the reverse; exact distances are taken after."""
    same = others is None
    others = hashes if same else others
    if not len(hashes) or not len(others):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    found_i, found_j = [], []
    for ref, query, swap in ((hashes, others, False), *(() if same else ((others, hashes, True),))):
        # +-1/16 components: every inner product is a multiple of 1/256, exact in float32
        search = NeighbourSearch(_signs(ref[:, 0]), exact_dtype=np.float32)
        kk = min(k + (1 if same else 0), len(ref))
        for view in (0, 1):
            _, idx = search.search(_signs(query[:, view]), kk)
            q = np.repeat(np.arange(len(query)), idx.shape[1])
            r = idx.ravel()
            keep = (r >= 0) & ((q != r) if same else True)
            q, r = q[keep], r[keep]
            found_i.append(r if swap else q)  # (position in others, position in hashes)
            found_j.append(q if swap else r)
    return np.concatenate(found_i).astype(np.int64), np.concatenate(found_j).astype(np.int64)


def hash_pairs(hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every candidate pair ``(i, j)``, ``i < j``, among hash neighbours, with its
    :func:`hash_distance` in bits: ``(i, j, bits)``."""
    q, r = hash_candidates(hashes)
    if len(q) == 0:
        return q, r, np.zeros(0, np.int64)
    pairs = np.unique(np.stack([np.minimum(q, r), np.maximum(q, r)], axis=1), axis=0)
    return pairs[:, 0], pairs[:, 1], hash_distance(hashes, pairs[:, 0], pairs[:, 1])


def hash_links(hashes: np.ndarray, max_distance: int = HASH_DISTANCE):
    """Pairs ``(i, j)``, ``i < j``, of copies by pixel hash among hash neighbours, with
    their distances: ``(i, j, bits)``."""
    i, j, bits = hash_pairs(hashes)
    keep = bits <= max_distance
    return i[keep], j[keep], bits[keep]


def nearest_bits(n: int, i: np.ndarray, j: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """Bits to the nearest other image per image (n,) from the pairs of :func:`hash_pairs`
    (-1 where an image is in no pair)."""
    best = np.full(n, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(best, i, bits)
    np.minimum.at(best, j, bits)
    return np.where(best == np.iinfo(np.int64).max, -1, best)


def centred_unit(X: np.ndarray, mean: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rows minus ``mean`` (default: their mean), scaled to unit length; returns (rows, mean).

    Pretrained embeddings are all positive, so raw cosines of unrelated images are
    high; centring spreads them and leaves copies near 1."""
    X = np.asarray(X, dtype=np.float32)
    if mean is None:
        mean = X.mean(axis=0) if len(X) else np.zeros(X.shape[1], np.float32)
    Z = X - mean
    Z /= np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)
    return Z, mean


def near_links(similarities: np.ndarray, indices: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(i, j)`` with ``i < j`` among each row's neighbours at similarity >= threshold.

    Parameters
    ----------
    similarities, indices : ndarray (n, k)
        A k-NN answer of the rows against themselves (own row excluded).
    """
    rows = np.repeat(np.arange(len(indices)), indices.shape[1])
    cols = indices.ravel()
    keep = (similarities.ravel() >= threshold) & (cols >= 0)
    i, j = rows[keep], cols[keep]
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    if len(lo) == 0:
        return lo, hi
    pairs = np.unique(np.stack([lo, hi], axis=1), axis=0)
    return pairs[:, 0], pairs[:, 1]


def duplicate_groups(
    hashes: list[str] | np.ndarray,
    similarities: np.ndarray,
    indices: np.ndarray,
    threshold: float = NEAR_SIMILARITY,
    pixel_links: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group ids of copies.

    Parameters
    ----------
    hashes : (n,) content hashes ("" for none)
    similarities, indices : ndarray (n, k), the self k-NN answer (own row excluded)
    threshold : cosine similarity of a near-copy
    pixel_links : (i, j) pairs of copies by pixel hash (:func:`hash_links`), optional

    Returns
    -------
    group : ndarray (n,) int64
        Group id, or -1 for an image with no copy; ids 0..g-1 in order of first member.
    exact_group : ndarray (n,) int64
        The same for byte-identical copies only.
    best : ndarray (n,) float64
        Similarity to the nearest other image (NaN where k = 0).
    """
    n = len(hashes)
    exact = label_pairs(np.asarray(hashes, dtype=object))
    near = near_links(similarities, indices, threshold) if indices.size else (np.zeros(0, np.int64),) * 2
    best = similarities[:, 0].astype(np.float64) if similarities.size else np.full(n, np.nan)
    links = [exact, near] + ([tuple(pixel_links)] if pixel_links is not None else [])
    return _singletons_out(union_groups(n, *links)), _singletons_out(union_groups(n, exact)), best


def _singletons_out(groups: np.ndarray) -> np.ndarray:
    """Group ids with single-member groups set to -1 and the rest renumbered 0..g-1."""
    if len(groups) == 0:
        return groups.astype(np.int64)
    sizes = np.bincount(groups)
    out = np.where(sizes[groups] > 1, groups, -1)
    shared = out >= 0
    _, first = np.unique(out[shared], return_index=True)
    codes = np.full(len(groups), -1, np.int64)
    if shared.any():
        ids = np.unique(out[shared])
        order = np.argsort(np.flatnonzero(shared)[first])  # number by first member
        rank = np.empty(len(ids), np.int64)
        rank[order] = np.arange(len(ids))
        codes[shared] = rank[np.searchsorted(ids, out[shared])]
    return codes


def group_table(
    group: np.ndarray, exact_group: np.ndarray, paths: list[str], splits: np.ndarray, labels: list[str]
) -> pd.DataFrame:
    """One row per member of a duplicate group: group, kind (exact, near, mixed), size,
    splits of the group, whether it spans splits (leak), path, split, label, keep (the
    first member of each group, which ``train --exclude duplicates.csv`` keeps)."""
    members = np.flatnonzero(group >= 0)
    if len(members) == 0:
        cols = ["group", "kind", "size", "group_splits", "spans_splits", "path", "split", "label", "keep"]
        return pd.DataFrame(columns=cols)
    frame = pd.DataFrame(
        {
            "group": group[members],
            "exact": exact_group[members],
            "path": [paths[i] for i in members],
            "split": np.asarray(splits, dtype=object)[members],
            "label": [labels[i] for i in members],
        }
    )
    by = frame.groupby("group")
    size = by["path"].transform("size")
    all_exact = by["exact"].transform(lambda e: bool((e >= 0).all() and e.nunique() == 1))
    any_exact = by["exact"].transform(lambda e: bool((e >= 0).any()))
    frame["kind"] = np.where(all_exact, "exact", np.where(any_exact, "mixed", "near"))
    frame["size"] = size
    used = by["split"].transform(lambda s: ";".join(sorted({v for v in s if v}) or [""]))
    frame["group_splits"] = used
    frame["spans_splits"] = by["split"].transform(lambda s: len({v for v in s if v}) > 1)
    frame["keep"] = ~frame.duplicated("group")
    cols = ["group", "kind", "size", "group_splits", "spans_splits", "path", "split", "label", "keep"]
    return frame[cols].sort_values(["group", "path"], kind="stable").reset_index(drop=True)


def leaks_against(
    Z: np.ndarray,
    hashes: list[str],
    other_Z: np.ndarray,
    other_hashes: list[str],
    threshold: float = NEAR_SIMILARITY,
    k: int = 5,
    search: NeighbourSearch | None = None,
    pixel_hashes: np.ndarray | None = None,
    other_pixel_hashes: np.ndarray | None = None,
    max_distance: int = HASH_DISTANCE,
) -> pd.DataFrame:
    """Near-copies in the audited set of each image of another (held-out) set.

    Parameters
    ----------
    Z : ndarray (n, d), the audited set's centred unit embeddings
    other_Z : ndarray (m, d), the other set's, centred with the audited set's mean
    hashes, other_hashes : content hashes
    pixel_hashes, other_pixel_hashes : ndarray (n, 2, 4), (m, 2, 4) from :func:`copy_hashes`, optional

    Returns
    -------
    DataFrame with other (row in the other set), row (in the audited set), similarity,
    exact: one row per pair at similarity >= threshold, within ``max_distance`` bits of
    pixel hash, or with one content hash.
    """
    rows = []
    if len(other_Z) and len(Z):
        search = search or NeighbourSearch(Z)
        sims, idx = search.search(other_Z, min(k, len(Z)))
        o, c = np.nonzero(sims >= threshold)
        rows.append(pd.DataFrame({"other": o, "row": idx[o, c], "similarity": sims[o, c]}))
    if pixel_hashes is not None and other_pixel_hashes is not None and len(pixel_hashes) and len(other_pixel_hashes):
        o, r = hash_candidates(np.asarray(pixel_hashes), np.asarray(other_pixel_hashes))
        a, b = np.asarray(other_pixel_hashes)[o], np.asarray(pixel_hashes)[r]
        bits = np.minimum.reduce([hamming(a[:, 0], b[:, 0]), hamming(a[:, 0], b[:, 1]), hamming(a[:, 1], b[:, 0])])
        o, r = o[bits <= max_distance], r[bits <= max_distance]
        sim = np.einsum("ij,ij->i", other_Z[o], Z[r]) if len(other_Z) else np.ones(len(o))
        rows.append(pd.DataFrame({"other": o, "row": r, "similarity": sim}))
    where = {}
    for i, h in enumerate(hashes):
        if h:
            where.setdefault(h, []).append(i)
    exact = [(o, i) for o, h in enumerate(other_hashes) if h in where for i in where[h]]
    if exact:
        e = np.array(exact, dtype=np.int64)
        sim = np.einsum("ij,ij->i", other_Z[e[:, 0]], Z[e[:, 1]]) if len(other_Z) else np.ones(len(e))
        rows.append(pd.DataFrame({"other": e[:, 0], "row": e[:, 1], "similarity": sim}))
    if not rows:
        return pd.DataFrame({"other": [], "row": [], "similarity": [], "exact": []})
    frame = pd.concat(rows, ignore_index=True).drop_duplicates(["other", "row"])
    oh = np.asarray(other_hashes, dtype=object)[frame["other"].to_numpy()]
    ah = np.asarray(hashes, dtype=object)[frame["row"].to_numpy()]
    frame["exact"] = (oh == ah) & (oh != "")
    return frame.sort_values(["other", "similarity"], ascending=[True, False]).reset_index(drop=True)


__all__ = [
    "HASH_CROP",
    "HASH_DISTANCE",
    "NEAR_SIMILARITY",
    "centred_unit",
    "copy_hashes",
    "duplicate_groups",
    "group_table",
    "hash_candidates",
    "hash_distance",
    "hash_links",
    "leaks_against",
    "near_links",
    "hash_pairs",
    "nearest_bits",
]
