"""Choose the number of clusters of images by a label-free criterion (the silhouette,
or one of :mod:`pixsort.cluster.images.criteria`), with the silhouette, Davies-Bouldin
and Calinski-Harabasz reported beside it.

The silhouette is O(n^2) in time and memory, so above ``sample_size`` points it is
computed on one seeded random sample, the same for every candidate k (so the
candidates are compared on equal terms).  Davies-Bouldin and Calinski-Harabasz are
linear and use every point.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_samples

from pixsort.cluster.images.criteria import CRITERIA, SubsampleFit, kmeans_labels, make_criterion
from pixsort.cluster.images.methods import Partition
from pixsort.cluster.select import best_k, silhouette_sample_index

DEFAULT_SAMPLE_SIZE = 4000
# The silhouette curve is "flat" when every candidate lies within this of the best: on
# the CIFAR-10 test set all of k = 2..10 scored 0.152-0.165 and the chosen 6 was no
# better than its neighbours; candidates within NEAR_BEST of the best are named as
# equally good choices.
FLAT_SPREAD = 0.02
NEAR_BEST = 0.005
STABLE_TOL = 0.02  # stability: the k this close to the most stable one count as stable
# the same rules for the other criteria, on their own scales (all "higher is better")
FLAT_SPREADS = {"silhouette": FLAT_SPREAD, "umap_silhouette": 0.02, "stability": 0.02, "eigengap": 0.002}
NEAR_BESTS = {"silhouette": NEAR_BEST, "umap_silhouette": 0.005, "stability": 0.005, "eigengap": 0.0005}
LABELS = {"silhouette": "silhouette", "umap_silhouette": "UMAP silhouette", "stability": "stability",
          "eigengap": "eigengap"}  # fmt: skip


@dataclass
class KCandidate:
    """Scores of one candidate partition.

    ``silhouette_values`` holds the per-point silhouette of the sampled points
    (``KSelection.sample_index``), for the silhouette plot; ``scores`` the other
    criteria computed for it (name -> score, higher is better).
    """

    k: int
    partition: Partition
    silhouette: float
    davies_bouldin: float
    calinski_harabasz: float
    silhouette_values: np.ndarray = field(repr=False)
    scores: dict[str, float] = field(default_factory=dict)

    def score(self, criterion: str) -> float:
        """This candidate's score by ``criterion`` (NaN where it was not computed)."""
        if criterion == "silhouette":
            return self.silhouette
        return float(self.scores.get(criterion, float("nan")))


@dataclass
class KSelection:
    """All candidates, in increasing k, and the one chosen (highest ``criterion``)."""

    candidates: list[KCandidate]
    best_k: int
    sample_index: np.ndarray = field(repr=False)
    asked_range: tuple[int, int] | None = None  # the range before it was widened (None: not widened)
    criterion: str = "silhouette"
    # what scores further candidates by the criterion (None: silhouette, or a loaded model)
    scorer: Callable[[int, Partition], float] | None = field(default=None, repr=False, compare=False)
    fell_back: bool = False  # the criterion could not be computed: k was chosen by silhouette

    @property
    def best(self) -> KCandidate:
        return self[self.best_k]

    @property
    def at_upper_edge(self) -> bool:
        """The chosen k is the largest tried: a larger one might score higher."""
        return self.best_k == max(c.k for c in self.candidates) and len(self.candidates) > 1

    @property
    def at_lower_edge(self) -> bool:
        """The chosen k is the smallest tried: the criterion prefers the coarsest split."""
        return self.best_k == min(c.k for c in self.candidates) and len(self.candidates) > 1

    @property
    def next_to_lower_edge(self) -> bool:
        """The chosen k is one above the smallest tried, which scored within the flat spread
        of it (while larger k fall away): the choice leans to the coarse end of the range.
        (On 7 CIFAR classes of 1,000 to 100 images the silhouette chose k = 3 at 0.261, with
        k = 2 at 0.255.)"""
        ks = sorted(c.k for c in self.candidates)
        if len(ks) < 3 or self.best_k != ks[1] or self.flat:
            return False
        gap = self.best.score(self.deciding) - self[ks[0]].score(self.deciding)
        return bool(np.isfinite(gap) and gap < FLAT_SPREADS.get(self.deciding, FLAT_SPREAD))

    @property
    def label(self) -> str:
        return LABELS.get(self.deciding, self.deciding)

    @property
    def deciding(self) -> str:
        """The criterion that chose: ``criterion``, or the silhouette where it fell back."""
        return "silhouette" if self.fell_back else self.criterion

    def scores(self) -> list[float]:
        """The deciding criterion's score of each candidate, in increasing k."""
        return [c.score(self.deciding) for c in self.candidates]

    def stable_ks(self) -> list[int]:
        """For ``stability``: the k within :data:`STABLE_TOL` of the most stable, in increasing k."""
        ks = [c.k for c in self.candidates]
        return [ks[i] for i in stable_positions([c.score("stability") for c in self.candidates])]

    def near_best(self) -> list[int]:
        """The chosen k, then the others (best first) scoring within :data:`NEAR_BESTS` of it."""
        top = self.best.score(self.deciding)
        near = NEAR_BESTS.get(self.deciding, NEAR_BEST)
        others = [c.k for c in self.ranked() if c.k != self.best_k and abs(top - c.score(self.deciding)) <= near]
        return [self.best_k, *others]

    @property
    def flat(self) -> bool:
        """No k is clearly better: every finite score within :data:`FLAT_SPREADS` of the best."""
        scores = [s for s in self.scores() if np.isfinite(s)]
        return len(scores) > 2 and max(scores) - min(scores) < FLAT_SPREADS.get(self.deciding, FLAT_SPREAD)

    def notes(self) -> list[str]:
        """What a user should know about the choice: a widened range, a choice at the
        edge of the range, a flat curve, other k about as good."""
        ks = [c.k for c in self.candidates]
        out = []
        if self.asked_range is not None:
            out.append(
                f"the best k sat at the top of {self.asked_range[0]}..{self.asked_range[1]}, "
                f"so the range was widened to {min(ks)}..{max(ks)}"
            )
        if self.fell_back:
            out.append(
                f"too few images for the {LABELS.get(self.criterion, self.criterion)} criterion: "
                "k was chosen by silhouette"
            )
        if self.at_upper_edge:
            out.append(
                f"k = {self.best_k} is the largest k tried and the {self.label} was still "
                f"{'as high as at its best' if self.deciding == 'stability' else 'rising'}: "
                "more clusters may fit better (raise --k-max)"
            )
        smallest = min(ks)
        # k = 1 cannot be scored by these criteria, so at k_min = 2 a lower k is not an option:
        # the coarsest split won, which in pretrained features is often a broad theme
        # (animals / vehicles) rather than the classes a user has in mind
        hint = "lower --k-min" if smallest > 2 else "give --k if you know how many groups there are"
        if self.at_lower_edge:
            out.append(
                f"k = {self.best_k} is the smallest k tried and the {self.label} was highest there: "
                f"the coarsest split won, which may be broader than the groups you expect ({hint})"
            )
        elif self.next_to_lower_edge:
            out.append(
                f"k = {self.best_k} is next to the smallest k tried and k = {smallest} scored nearly as well "
                f"({self[smallest].score(self.deciding):.3f} against {self.best.score(self.deciding):.3f} by "
                f"{self.label}): the coarsest splits lead, which may be broader than the groups you expect ({hint})"
            )
        near = self.near_best()
        if self.flat:
            scores = [s for s in self.scores() if np.isfinite(s)]
            best3 = ", ".join(f"k = {c.k} ({c.score(self.deciding):.3f})" for c in self.ranked(3))
            out.append(
                f"the {self.label} curve is flat ({min(scores):.3f}..{max(scores):.3f} over k = {min(ks)}..{max(ks)}): "
                f"no k is clearly better; the best three: {best3}"
            )
        elif self.deciding == "stability":
            stable = self.stable_ks()
            if len(stable) > 1:
                out.append(
                    f"k = {', '.join(map(str, stable))} were about as stable (within {STABLE_TOL} of the most "
                    f"stable); the silhouette chose k = {self.best_k} among them"
                )
        elif len(near) > 1 and not (self.next_to_lower_edge and near[1:] == [smallest]):
            out.append(
                f"k = {', '.join(map(str, near[1:]))} scored within {NEAR_BESTS.get(self.deciding, NEAR_BEST)} "
                f"of k = {self.best_k} by {self.label}"
            )
        return out

    def ranked(self, n: int | None = None) -> list[KCandidate]:
        """The ``n`` candidates with the highest criterion score, best first (ties: smaller k)."""
        scored = [c for c in self.candidates if np.isfinite(c.score(self.deciding))]
        return sorted(scored, key=lambda c: (-c.score(self.deciding), c.k))[:n]

    def __getitem__(self, k: int) -> KCandidate:
        for c in self.candidates:
            if c.k == k:
                return c
        raise KeyError(k)

    def table(self) -> pd.DataFrame:
        """One row per candidate k: silhouette (higher is better), Davies-Bouldin
        (lower is better), Calinski-Harabasz (higher is better), a column per other
        criterion computed (higher is better), chosen flag."""
        columns = {
            "k": [c.k for c in self.candidates],
            "silhouette": [c.silhouette for c in self.candidates],
            "davies_bouldin": [c.davies_bouldin for c in self.candidates],
            "calinski_harabasz": [c.calinski_harabasz for c in self.candidates],
        }
        computed = {name for c in self.candidates for name in c.scores}
        for name in CRITERIA:
            if name in computed:
                columns[name] = [c.score(name) for c in self.candidates]
        columns["chosen"] = [c.k == self.best_k for c in self.candidates]
        return pd.DataFrame(columns)

    def rescore(self, candidate: KCandidate) -> KCandidate:
        """``candidate`` with the criterion's score added (a refitted partition)."""
        if self.scorer is not None:
            candidate.scores[self.criterion] = self.scorer(candidate.k, candidate.partition)
        return candidate


def score_partition(X: np.ndarray, part: Partition, sample_index: np.ndarray, k: int | None = None) -> KCandidate:
    """Silhouette (on the sample), Davies-Bouldin and Calinski-Harabasz (on all points).

    Noise points (label -1) are left out.  A partition with fewer than two clusters
    gets NaN scores.  ``k`` is the number asked for (default: the clusters found).
    """
    k = part.n_clusters if k is None else int(k)
    labels = part.labels
    kept = labels >= 0
    n_found = len(np.unique(labels[kept]))
    values = np.full(len(sample_index), np.nan)
    if n_found < 2 or kept.sum() <= n_found:
        return KCandidate(k, part, float("nan"), float("nan"), float("nan"), values)
    s_idx = sample_index[kept[sample_index]]
    if len(np.unique(labels[s_idx])) >= 2:
        values[kept[sample_index]] = silhouette_samples(X[s_idx], labels[s_idx])
    Xk, lk = X[kept], labels[kept]
    return KCandidate(
        k=k,
        partition=part,
        silhouette=float(np.nanmean(values)) if np.isfinite(values).any() else float("nan"),
        davies_bouldin=float(davies_bouldin_score(Xk, lk)),
        calinski_harabasz=float(calinski_harabasz_score(Xk, lk)),
        silhouette_values=values,
    )


def choose_k(
    ks: Sequence[int],
    scores: Sequence[float],
    criterion: str = "silhouette",
    stable_tol: float = STABLE_TOL,
    silhouettes: Sequence[float] | None = None,
) -> int | None:
    """The candidate a criterion picks: the highest score (ties: the smaller k); for
    ``stability``, among the k whose stability is within :data:`STABLE_TOL` of the most
    stable, the one with the highest ``silhouettes`` (without them: the largest such k).

    Stability alone is near its maximum for every k up to the true one (merging two
    real groups is as reproducible as not merging them), so its argmax is nearly
    always k = 2; the largest stable k over-splits where small tight clumps are
    reproducible too (120 images of 3 patterns after neighbour smoothing: k = 3, 4 and 9
    all scored 1.0).  Stability keeps the reproducible k, the silhouette picks among them.
    """
    if criterion != "stability":
        return best_k(ks, scores)
    stable = stable_positions(scores, stable_tol)
    if not stable:
        return None
    largest = max(int(ks[i]) for i in stable)
    if silhouettes is None:
        return largest
    chosen = best_k([ks[i] for i in stable], [silhouettes[i] for i in stable])
    return chosen if chosen is not None else largest


def stable_positions(stability: Sequence[float], tol: float = STABLE_TOL) -> list[int]:
    """Positions of the finite stability scores within ``tol`` of the highest."""
    finite = [i for i, s in enumerate(stability) if np.isfinite(s)]
    if not finite:
        return []
    top = max(float(stability[i]) for i in finite)
    return [i for i in finite if float(stability[i]) >= top - tol]


def select_k(
    X: np.ndarray,
    k_values: Iterable[int],
    fit: Callable[[int], Partition],
    sample_size: int | None = DEFAULT_SAMPLE_SIZE,
    random_state: int = 0,
    progress: Callable[[int], None] | None = None,
    criterion: str = "silhouette",
    subsample_fit: SubsampleFit | None = None,
    scorer: Callable[[int, Partition], float] | None = None,
) -> KSelection:
    """Fit one partition per candidate k and keep the one with the best ``criterion``.

    Parameters
    ----------
    X : ndarray, shape (n, d)
        The space the partitions were made in (distances are Euclidean).
    k_values : candidate numbers of clusters (each >= 2 and < n)
    fit : ``fit(k) -> Partition``
    sample_size : points the silhouette (and the other criteria) are computed on (None: all)
    progress : called with each k once it is scored
    criterion : one of :data:`~pixsort.cluster.images.criteria.CRITERIA`
    subsample_fit : ``fit(points, k, seed) -> labels``, the partition the ``stability``
        criterion fits on subsamples (None: k-means with three restarts)
    scorer : an earlier selection's ``scorer`` to reuse (the same sample and criterion)

    Ties (equal score) go to the smaller k.
    """
    ks = sorted({int(k) for k in k_values})
    if not ks:
        raise ValueError("no candidate k given")
    if ks[0] < 2 or ks[-1] >= len(X):
        raise ValueError(f"candidate k must lie in [2, n_samples - 1] = [2, {len(X) - 1}], got {ks[0]}..{ks[-1]}")
    if criterion not in CRITERIA:
        raise ValueError(f"unknown k criterion {criterion!r}; choose from {', '.join(CRITERIA)}")
    X = np.asarray(X, dtype=np.float32)
    sample_index = silhouette_sample_index(len(X), sample_size, random_state)
    if scorer is None:
        scorer = make_criterion(criterion, X, sample_index, ks, random_state, fit=subsample_fit or kmeans_labels)
    selection = KSelection([], ks[0], sample_index, criterion=criterion, scorer=scorer)
    for k in ks:
        selection.candidates.append(selection.rescore(score_partition(X, fit(k), sample_index, k)))
        if progress is not None:
            progress(k)
    chosen = choose_k(ks, selection.scores(), criterion, silhouettes=[c.silhouette for c in selection.candidates])
    if chosen is None and criterion != "silhouette":
        # too few points for the criterion (a subsample no larger than k): the silhouette decides
        chosen = best_k(ks, [c.silhouette for c in selection.candidates])
        selection.fell_back = chosen is not None
    if chosen is None:
        raise ValueError("no candidate k produced at least two clusters")
    selection.best_k = chosen
    return selection


__all__ = [
    "DEFAULT_SAMPLE_SIZE",
    "FLAT_SPREAD",
    "FLAT_SPREADS",
    "NEAR_BEST",
    "NEAR_BESTS",
    "KCandidate",
    "KSelection",
    "score_partition",
    "select_k",
]
