"""Exact and near-duplicate groups from content hashes and embedding neighbours.

Exact copies share a content hash (:func:`pixsort.data.cache.hash_file` of the file's
bytes).  Near-copies are pairs whose embeddings (centred, unit length) have a cosine
similarity of at least :data:`NEAR_SIMILARITY`; only the k nearest neighbours of each
image are looked at (:class:`~pixsort.cluster.images.neighbours.NeighbourSearch`), so
memory and time stay linear in n.  Links of both kinds are joined by union-find
(:func:`pixsort.data.similar.union_groups`): a group is every image reachable through
copies.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pixsort.cluster.images.neighbours import NeighbourSearch
from pixsort.data.similar import label_pairs, union_groups

NEAR_SIMILARITY = 0.90
"""Cosine similarity (centred efficientnet_lite1 embeddings, mirror-averaged) from which
two images are taken as near-copies.  Measured by ``bench/audit.py`` on the 5,216 chest
X-rays of the Kaggle train split with 100 planted near-copies (resized to 60%,
re-encoded at JPEG quality 50, cropped by 5%, a third each): the nearest distinct X-ray
of an image reaches 0.883 at most (99.9%: 0.863), so at 0.90 no false group forms; but the
planted copies sit at 0.63-0.95 (median 0.86) from their originals, so only 29% of them
are found.  Raw (uncentred) cosines overlap as well (copies >= 0.93 for 95% of them,
distinct X-rays up to 0.965).  These embeddings do not tell a re-encoded or cropped X-ray
from another patient's; exact copies (the hash) are always found."""


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
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group ids of copies.

    Parameters
    ----------
    hashes : (n,) content hashes ("" for none)
    similarities, indices : ndarray (n, k), the self k-NN answer (own row excluded)
    threshold : cosine similarity of a near-copy

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
    return _singletons_out(union_groups(n, exact, near)), _singletons_out(union_groups(n, exact)), best


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
) -> pd.DataFrame:
    """Near-copies in the audited set of each image of another (held-out) set.

    Parameters
    ----------
    Z : ndarray (n, d), the audited set's centred unit embeddings
    other_Z : ndarray (m, d), the other set's, centred with the audited set's mean
    hashes, other_hashes : content hashes

    Returns
    -------
    DataFrame with other (row in the other set), row (in the audited set), similarity,
    exact: one row per pair at similarity >= threshold or with one hash.
    """
    rows = []
    if len(other_Z) and len(Z):
        search = search or NeighbourSearch(Z)
        sims, idx = search.search(other_Z, min(k, len(Z)))
        o, c = np.nonzero(sims >= threshold)
        rows.append(pd.DataFrame({"other": o, "row": idx[o, c], "similarity": sims[o, c]}))
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


__all__ = ["NEAR_SIMILARITY", "centred_unit", "duplicate_groups", "group_table", "leaks_against", "near_links"]
