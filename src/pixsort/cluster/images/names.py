"""Names of image clusters from the backbone's own ImageNet classifier.

Each member's most likely ImageNet class and group (``features.backbones.imagenet``)
counts as a vote when the classifier gives it at least :data:`MIN_PROB`; a cluster is
named by the class most of its members vote for when that class holds at least
:data:`MIN_SHARE` of them (and half the share of the most shared group), else by the
group, else it has "no common label" (X-rays, scans, anything ImageNet has no word for).
The share is always stated beside the name, and the three most shared classes and
groups are kept as tags.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NO_COMMON_LABEL = "no common label"
# Chosen on 1,000 CIFAR-10 sample images (k = 10) and 400 chest X-rays (k = 2), Lite1:
# MIN_PROB 0.2 / MIN_SHARE 0.25 named 9 of the 10 CIFAR clusters (truck or van, watercraft,
# sorrel for horses, bird, small mammal for frogs, dog for dogs, deer and cats) and neither
# X-ray cluster;
# MIN_PROB 0.1-0.15 named the X-ray clusters "sea creature" (28-47%), MIN_SHARE 0.4 left
# 6-9 CIFAR clusters unnamed.
MIN_SHARE = 0.25  # of a cluster's members
MIN_PROB = 0.2  # a member votes for its top class (group) only this sure of it
N_TAGS = 3

__all__ = ["MIN_PROB", "MIN_SHARE", "NO_COMMON_LABEL", "describe_clusters", "display_names"]


def _tally(index: np.ndarray, prob: np.ndarray, names: Sequence[str], n: int) -> list[dict]:
    votes = index[(prob >= MIN_PROB) & (index >= 0)]
    if not len(votes):
        return []
    values, counts = np.unique(votes, return_counts=True)
    order = np.lexsort((values, -counts))[:N_TAGS]  # most votes first, ties by index
    return [{"label": names[int(values[i])], "share": round(float(counts[i]) / n, 4)} for i in order]


def describe_clusters(guesses, labels: np.ndarray, n_clusters: int, class_names, group_names) -> list[dict]:
    """One description per cluster ``0..n_clusters-1``.

    Parameters
    ----------
    guesses : ClassGuesses of the clustered images, length n
    labels : ndarray of int, shape (n,)  -- cluster of each image (-1: noise, not counted)
    class_names, group_names : the names behind ``guesses``' indices

    Returns
    -------
    list of dict: ``name`` (a class, a group, or :data:`NO_COMMON_LABEL`), ``share`` (of
    the members voting for it; 0 with no common label), ``level`` ("class", "group" or
    None), ``classes`` and ``groups`` (up to three ``{"label", "share"}`` each).
    """
    labels = np.asarray(labels)
    out = []
    for c in range(int(n_clusters)):
        members = np.flatnonzero(labels == c)
        n = max(len(members), 1)
        classes = _tally(guesses.class_index[members], guesses.class_prob[members], class_names, n)
        groups = _tally(guesses.group_index[members], guesses.group_prob[members], group_names, n)
        name, share, level = NO_COMMON_LABEL, 0.0, None
        group_share = groups[0]["share"] if groups else 0.0
        # the class is the more precise name, unless a group holds twice its share
        if classes and classes[0]["share"] >= max(MIN_SHARE, group_share / 2):
            name, share, level = classes[0]["label"], classes[0]["share"], "class"
        elif groups and groups[0]["share"] >= MIN_SHARE:
            name, share, level = groups[0]["label"], groups[0]["share"], "group"
        out.append({"name": name, "share": share, "level": level, "classes": classes, "groups": groups})
    return out


def display_names(descriptions: Sequence[dict]) -> list[str] | None:
    """Cluster names for tables, pages and the server: each named cluster's label, the
    others :data:`NO_COMMON_LABEL`, a repeated name numbered ("dog", "dog 2"); None when
    no cluster has a common label (then clusters stay numbers)."""
    if not any(d["level"] for d in descriptions):
        return None
    seen: dict[str, int] = {}
    names = []
    for d in descriptions:
        name = d["name"]
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 or not d["level"] else f"{name} {seen[name]}")
    return names
