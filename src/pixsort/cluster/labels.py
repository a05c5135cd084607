"""Cluster labels shared by image and table clustering: the noise label and the
numbering by decreasing cluster size."""

from __future__ import annotations

import numpy as np

NOISE = -1  # HDBSCAN noise, and table rows set aside (no true feature)


def order_by_size(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Renumber clusters so 0 is the largest (ties: the one whose first member comes
    first); every negative label (noise) becomes ``NOISE``.  Equal inputs give equal labels whatever the backend.

    Returns ``(labels, order)`` where ``order[raw_label]`` is the new label.
    """
    raw = np.asarray(raw, dtype=np.int64)
    clustered = raw[raw >= 0]
    if not len(clustered):
        return raw.copy(), np.zeros(0, dtype=np.int64)
    present, first_seen, counts = np.unique(clustered, return_index=True, return_counts=True)
    ranking = present[np.lexsort((first_seen, -counts))]
    order = np.full(present.max() + 1, NOISE, dtype=np.int64)
    order[ranking] = np.arange(len(ranking))
    return np.where(raw < 0, NOISE, order[np.clip(raw, 0, None)]), order


__all__ = ["NOISE", "order_by_size"]
