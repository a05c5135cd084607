"""A clustering head trained on frozen embeddings with nearest-neighbour consistency
(in the spirit of SCAN, Van Gansbeke et al. 2020).

Each point and one of its k nearest neighbours (in the embedding space) should get
the same cluster: the loss is ``-log <p_i, p_j>`` averaged over such pairs, minus
``entropy_weight`` times the entropy of the mean prediction (which stops every point
from falling into one cluster).  Only a linear layer is trained, on cached
embeddings, so a few dozen epochs over 10,000 points take seconds on a CPU.
Several heads are trained at once from different seeds; the one with the lowest
loss is kept (SCAN's recipe).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pixsort.base.errors import check_fitted
from pixsort.base.runtime import tune_cpu


def nearest_neighbors(Z: np.ndarray, k: int) -> np.ndarray:
    """Indices (n, k) of each row's k nearest other rows by inner product (cosine
    for unit rows), exact; see :class:`pixsort.cluster.images.neighbours.NeighbourSearch`."""
    from pixsort.cluster.images.neighbours import NeighbourSearch

    return NeighbourSearch(Z).search(Z, k, exclude_self=True)[1]


class ClusteringHead:
    """Linear softmax head over frozen embeddings, trained with SCAN's loss.

    Parameters
    ----------
    n_clusters : int
    n_neighbors : int, default 20
        Neighbours mined per point; each step pairs a point with a random one.
    epochs : int, default 40
    batch_size : int, default 256
    learning_rate : float, default 1e-3 (Adam)
    weight_decay : float, default 1e-4
    entropy_weight : float, default 5.0
    n_heads : int, default 5
        Heads trained in parallel from different initialisations; lowest loss kept.
    random_state : int, default 0

    Attributes
    ----------
    weight_ : ndarray (n_clusters, d), bias_ : ndarray (n_clusters,)
    loss_ : float -- final loss of the kept head
    history_ : list of dict -- per epoch: consistency, entropy, loss (kept head)
    """

    def __init__(
        self,
        n_clusters: int,
        n_neighbors: int = 20,
        epochs: int = 40,
        batch_size: int = 256,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-4,
        entropy_weight: float = 5.0,
        n_heads: int = 5,
        random_state: int = 0,
    ):
        self.n_clusters = n_clusters
        self.n_neighbors = n_neighbors
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.entropy_weight = entropy_weight
        self.n_heads = n_heads
        self.random_state = random_state
        if n_clusters < 2:
            raise ValueError(f"n_clusters must be >= 2, got {n_clusters}")
        if n_neighbors < 1 or epochs < 1 or batch_size < 2 or n_heads < 1:
            raise ValueError("n_neighbors, epochs and n_heads must be >= 1 and batch_size >= 2")

    def get_params(self) -> dict:
        return {
            k: getattr(self, k)
            for k in (
                "n_clusters",
                "n_neighbors",
                "epochs",
                "batch_size",
                "learning_rate",
                "weight_decay",
                "entropy_weight",
                "n_heads",
                "random_state",
            )
        }

    def fit(self, Z: np.ndarray, neighbors: np.ndarray | None = None) -> ClusteringHead:
        """Train on embeddings ``Z`` (n, d); ``neighbors`` (n, m) may be passed if known."""
        tune_cpu()
        Z = np.ascontiguousarray(Z, dtype=np.float32)
        n, d = Z.shape
        if n <= self.n_clusters:
            raise ValueError(f"need more points ({n}) than clusters ({self.n_clusters})")
        nbrs = nearest_neighbors(Z, self.n_neighbors) if neighbors is None else np.asarray(neighbors)
        gen = torch.Generator().manual_seed(self.random_state)
        torch.manual_seed(self.random_state)
        H, K = self.n_heads, self.n_clusters
        layer = torch.nn.Linear(d, H * K)
        opt = torch.optim.Adam(layer.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)
        X = torch.from_numpy(Z)
        N = torch.from_numpy(nbrs)
        self.history_ = []
        for _ in range(self.epochs):
            order = torch.randperm(n, generator=gen)
            sums = torch.zeros(3, H)
            batches = 0
            for s in range(0, n, self.batch_size):
                a = order[s : s + self.batch_size]
                if len(a) < 2:
                    continue
                pick = torch.randint(N.shape[1], (len(a),), generator=gen)
                b = N[a, pick]
                cons, ent = self._losses(layer, X[a], X[b])
                loss = cons - self.entropy_weight * ent
                opt.zero_grad(set_to_none=True)
                loss.sum().backward()
                opt.step()
                sums += torch.stack([cons.detach(), ent.detach(), loss.detach()])
                batches += 1
            self.history_.append(sums / max(batches, 1))
        # keep the head with the lowest loss over the whole set
        with torch.no_grad():
            cons, ent = self._losses(layer, X, X[N[:, 0]])
            total = cons - self.entropy_weight * ent
        best = int(total.argmin())
        self.weight_ = layer.weight.detach().view(H, K, d)[best].numpy().copy()
        self.bias_ = layer.bias.detach().view(H, K)[best].numpy().copy()
        self.loss_ = float(total[best])
        self.history_ = [
            {"consistency": float(h[0, best]), "entropy": float(h[1, best]), "loss": float(h[2, best])}
            for h in self.history_
        ]
        return self

    def _losses(self, layer: torch.nn.Linear, xa: torch.Tensor, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-head consistency (H,) and entropy of the mean prediction (H,)."""
        H, K = self.n_heads, self.n_clusters
        pa = F.softmax(layer(xa).view(-1, H, K), dim=2)
        pb = F.softmax(layer(xb).view(-1, H, K), dim=2)
        cons = -torch.log((pa * pb).sum(dim=2).clamp_min(1e-8)).mean(dim=0)
        mean = pa.mean(dim=0).clamp_min(1e-8)
        ent = -(mean * mean.log()).sum(dim=1)
        return cons, ent

    def predict_proba(self, Z: np.ndarray) -> np.ndarray:
        """Cluster probabilities (n, n_clusters)."""
        self._check_fitted()
        logits = np.asarray(Z, dtype=np.float32) @ self.weight_.T + self.bias_
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, Z: np.ndarray) -> np.ndarray:
        self._check_fitted()
        return (np.asarray(Z, dtype=np.float32) @ self.weight_.T + self.bias_).argmax(axis=1).astype(np.int64)

    def get_arrays(self) -> dict[str, np.ndarray]:
        self._check_fitted()
        return {"weight": self.weight_, "bias": self.bias_}

    @classmethod
    def from_arrays(cls, params: dict, arrays: dict[str, np.ndarray]) -> ClusteringHead:
        head = cls(**params)
        head.weight_ = np.asarray(arrays["weight"], dtype=np.float32)
        head.bias_ = np.asarray(arrays["bias"], dtype=np.float32)
        return head

    def _check_fitted(self) -> None:
        check_fitted(self, "weight_")


__all__ = ["ClusteringHead", "nearest_neighbors"]
