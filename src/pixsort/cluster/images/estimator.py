"""``ImageClusterer``: group unlabeled pictures, choosing the number of groups.

>>> cl = ImageClusterer()                        # the defaults measured best (bench/cluster.py)
>>> cl.fit("photos/")                            # a folder, ImageDataset, DecodedImages or uint8 array
>>> cl.n_clusters_, cl.labels_[:5]               # k chosen by k_criterion over k_min..k_max
>>> cl.predict(new_images)                       # uint8 (n, H, W, C) decoded with cl.decode_settings
>>> cl.save("models/photos"); ImageClusterer.load("models/photos")

Pipeline: decode (cached) -> features (pretrained backbone, autoencoder or pixels;
cached by image content) -> :class:`~pixsort.features.reduce.EmbeddingReducer`
(L2 per layer, PCA by variance share, whitening) -> neighbour smoothing
(:mod:`pixsort.cluster.images.smooth`) -> partition (k-means, agglomerative, HDBSCAN or
spectral; k given or chosen by ``k_criterion``) -> optional SCAN-style head.

A saved model is a folder with ``model.json`` and ``weights.safetensors`` (the
reducer, cluster centres, training embeddings and labels, head and autoencoder
weights); nothing is pickled.
"""

from __future__ import annotations

import os
import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClusterMixin

from pixsort.base.errors import ModelFileError, check_fitted
from pixsort.base.images import check_images
from pixsort.base.modelfile import model_problem, read_model_folder, write_model_folder
from pixsort.base.params import Integral, Interval, Real, StrOptions, validate_params
from pixsort.cluster.images.criteria import CRITERIA, DEFAULT_K_CRITERION
from pixsort.cluster.images.head import ClusteringHead
from pixsort.cluster.images.memory import StageMemory
from pixsort.cluster.images.methods import (
    METHODS,
    NEEDS_K,
    Partition,
    canonical_partition,
    check_size,
    cluster_means,
    partition,
    tsne_layout,
)
from pixsort.cluster.images.names import describe_clusters, display_names
from pixsort.cluster.images.neighbours import NeighbourSearch
from pixsort.cluster.images.select import KCandidate, KSelection, choose_k, score_partition, select_k
from pixsort.cluster.images.smooth import NeighbourSmoothing
from pixsort.cluster.metrics import cluster_class_table, clustering_scores
from pixsort.cluster.select import silhouette_sample_index
from pixsort.data import (
    DecodedImages,
    DecodeSettings,
    ImageDataset,
    default_cache_dir,
    load_images,
    open_dataset,
)
from pixsort.data.lazy import LazyImages
from pixsort.features.backbones.imagenet import imagenet_labels
from pixsort.features.extract import (
    FeatureSpec,
    build_extractor,
    default_decode_settings,
    extract_features,
    extractor_from_config,
    image_keys,
)
from pixsort.features.names import is_timm, parse_feature_name
from pixsort.features.reduce import EmbeddingReducer, l2_normalize
from pixsort.features.store import EmbeddingSet

HEADS = ("scan",)
EXACT_SILHOUETTE_MAX = 20_000  # above this the per-image silhouette uses centres (linear time)
# parameters of a run, not of the model: never saved with it
RUN_PARAMS = ("cache_dir", "progress")
# below this many images the reduce and smooth stages refit in a second or two (the CIFAR
# sample's Lite1 embeddings, 2 cores beside another job: 2,000 in 1.4 s, 5,000 in 2.5 s,
# 10,000 in 5.2 s): not worth an entry in the cache
REMEMBER_MIN_ROWS = 5000


@dataclass
class TrainingImages:
    """What ``fit`` clustered: the usable images and what is known about them."""

    images: np.ndarray  # uint8 (n, H, W, C)
    paths: list[str]
    keys: list[str] | None
    labels: np.ndarray  # int64 (n,), -1 unknown
    class_names: list[str]
    manifest: pd.DataFrame  # one row per input item, skipped ones included


@dataclass
class ClusterAssignment:
    """Where images fall in a fitted clustering (:meth:`ImageClusterer.assign`).

    Attributes
    ----------
    clusters : ndarray of int64, shape (n,)
    distances : ndarray of float32, shape (n, n_clusters)  -- to every cluster centre
    neighbor_distances : ndarray of float32, shape (n, m)
    neighbor_indices : ndarray of int64, shape (n, m)  -- into ``train_paths_``, closest first
    """

    clusters: np.ndarray
    distances: np.ndarray
    neighbor_distances: np.ndarray
    neighbor_indices: np.ndarray


class ImageClusterer(ClusterMixin, BaseEstimator):
    """Cluster images; choose k without labels; place new images in the clusters.

    Parameters
    ----------
    features : str, default "efficientnet_lite1"
        Lite1 is the default because it measured best on the CIFAR-10 sample
        (k-means accuracy 0.629-0.630 over seeds, Lite0 0.598-0.619, Lite2 0.629 at
        1.3x Lite1's time).  ``efficientnet_lite0/1/2`` or any name of
        :func:`pixsort.features.backbones.list_backbones`, ``timm:<model>`` (where
        timm imports), two or more of those joined by ``+`` (their embeddings side by
        side, :class:`~pixsort.features.fused.FusedExtractor`), ``autoencoder``
        (trained on the images) or ``pixels``.
    layers : "auto", None, int or names, default "auto"
        Backbone feature maps pooled into the embedding, each L2-normalised on its
        own: "auto" = the last two for the built-in backbones (measured best on the
        CIFAR-10 sample), the final one for timm models; None = the final one.
    tta : bool, default False
        Average each image's embedding with its mirror image's (pretrained features;
        twice the forwards).  Off by default: over ten train sets (the CIFAR-10 sample
        and its draws, PneumoniaMNIST, digits, two draws of full-size chest X-rays) it
        moved ACC by -0.050..+0.014 for Lite1 at 240 px (mean -0.006; +0.01 on the
        X-rays), not worth double the embedding time.
    runtime : {"auto", "torch", "onnx"}, default "auto"
        What computes a pretrained backbone
        (:class:`~pixsort.features.embed.PretrainedExtractor`): ONNX Runtime where it
        measured faster on this CPU, else torch.
    device : {"auto", "cpu", "cuda", "mps"}, default "auto"
        Where torch embeds: a GPU torch sees, else the CPU.
    precision : {"auto", "fp32", "bf16", "int8"}, default "auto"
        Embedding precision: "auto" = bf16 on CPUs with native bf16, else fp32;
        "int8" = a quantized ONNX Runtime graph (its own embeddings and cache).
    image_size : int, optional
        Decode size, and a pretrained backbone's input size; default: what the
        extractor needs (the backbone's own input size).  Measured (``bench/input_size.py``,
        Lite1, default stages at the true k): 160 px against Lite1's 240 on the 32 px
        CIFAR-10 sample 0.667 against 0.630 (10,000 images), but 0.802 against 0.834 on
        the 28 px PneumoniaMNIST, so the backbone's size stays the default.
    n_components : float or int or None, default 0.9
        PCA: share of variance kept (float) or dimensions (int); None skips PCA.
    whiten : bool, default True
        Whiten the PCA components (k-means then weighs every kept direction equally).
    smoothing : int, default 10
        Steps of neighbour smoothing before partitioning (0: off); see
        :class:`~pixsort.cluster.images.smooth.NeighbourSmoothing`.
    smoothing_neighbors : int, default 20
        At most 5% of the images (no smoothing below 40 images).
    method : {"kmeans", "agglomerative", "hdbscan", "spectral", "tsne-kmeans"}, default "kmeans"
        ``tsne-kmeans``: k-means in a 2-D t-SNE layout of the reduced embeddings
        (recipe (b) of the seed notebooks; ``layout_`` holds the layout); new images
        take the cluster of their nearest training image.
    n_clusters : int, optional
        Fixed k; when None, k is chosen in ``[k_min, k_max]`` by ``k_criterion``
        (HDBSCAN finds its own number of clusters).
    k_min, k_max : int, default 2 and 10
    k_criterion : {"silhouette", "stability", "umap_silhouette", "eigengap"}, default "silhouette"
        What chooses k (see :mod:`pixsort.cluster.images.criteria`), computed on the
        silhouette sample of the clustering space.  ``stability``: among the k whose
        k-means partitions of random subsamples agree (ARI) within 0.02 of the most
        stable k, the one with the highest silhouette (k-means whatever ``method``:
        90 agglomerative or spectral fits would cost minutes).  Measured
        (``bench/k_choice.py``, six train sets with known classes): within 1 of the true
        k on 3 of 6 (digits, 4 uneven CIFAR classes, PneumoniaMNIST), the silhouette on
        2; no criterion found the 10 CIFAR-10 classes (stability chose 2, the silhouette
        8 on a flat curve).  The silhouette is the default: stability costs about 5x
        more and chose the coarser, less accurate k on the CIFAR sample.
    k_widen : bool, default False
        When the chosen k is ``k_max``, also try ``k_max + 1 .. 2 * k_max``.
        Off by default: on the digits demo (10 true classes, k in 2..12) the silhouette
        kept rising, widening chose k = 24 and accuracy fell from 0.833 to 0.520.  Either
        way ``selection_.notes()`` says when the choice sits at the edge of the range or
        the curve is flat.
    head : None or "scan", default None
        Refine the partition with a clustering head trained on the frozen embeddings
        (nearest-neighbour consistency); see :mod:`pixsort.cluster.images.head`.
    n_representatives : int, default 5
        Members closest to its centre flagged as representatives of each cluster.
    silhouette_sample : int, default 4000
        Points the silhouette of each candidate k is computed on.
    random_state : int, default 0
    batch_size : int, default 64
        Feature-extraction batch size.
    cache_dir : path, optional
        Decoded-image and embedding cache (default :func:`pixsort.data.default_cache_dir`).
    autoencoder : dict, optional
        Settings of :class:`~pixsort.features.autoencoder.AutoencoderExtractor`.
    progress : bool, default True

    Attributes
    ----------
    decode_settings : DecodeSettings
        How images are decoded for this model (also for ``predict``): the fitted
        ``decode_settings_``, or before ``fit`` what the parameters ask for.
    feature_spec_ : FeatureSpec
        The parsed feature settings.
    n_clusters_ : int
    labels_ : ndarray of int64, shape (n,)  -- cluster of each training image (-1: noise)
    cluster_centers_ : ndarray (n_clusters_, d)  -- in the clustering space (reduced, smoothed)
    embeddings_ : ndarray (n, d)  -- training images in the clustering space
    distances_ : ndarray (n,)  -- distance of each training image to its cluster centre
    silhouette_values_ : ndarray (n,)  -- per-image silhouette (exact up to 20,000 images)
    representative_ : ndarray of bool (n,)
    selection_ : KSelection or None  -- every candidate k with its scores
    scores_ : dict  -- silhouette, davies_bouldin, calinski_harabasz of the final partition
    train_paths_, train_labels_, class_names_, manifest_ : what was clustered
    extractor_, reducer_, smoother_, head_ : the fitted stages (smoother_/head_ may be None)
    cluster_names_ : list of str or None  -- by the ImageNet classifier (``cluster.images.names``)
        where the backbone has one and a cluster has a common label, or the user's
        (:meth:`rename_clusters`); None: clusters are numbers
    cluster_descriptions_ : list of dict or None  -- per cluster, what the ImageNet
        classifier sees: name, share, level, the three most shared classes and groups
    timings_ : dict of seconds per stage
    stages_from_cache_ : bool -- the reducer and the neighbour graph were read from the
        cache (a re-clustering of the same embeddings), not fitted
    """

    _parameter_constraints: dict = {
        "features": [str],
        "layers": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left"), str, tuple, list, None],
        "tta": ["boolean"],
        "runtime": [StrOptions({"auto", "torch", "onnx"})],
        "device": [StrOptions({"auto", "cpu", "cuda", "mps"})],
        "precision": [StrOptions({"auto", "fp32", "bf16", "int8"})],
        "image_size": [Interval(Integral, 8, 4096, closed="both"), None],
        "n_components": [Interval(Integral, 1, None, closed="left"), Interval(Real, 0, 1, closed="right"), None],
        "whiten": ["boolean"],
        "smoothing": [Interval(Integral, 0, None, closed="left")],
        "smoothing_neighbors": [Interval(Integral, 1, None, closed="left")],
        "method": [StrOptions(set(METHODS))],
        "n_clusters": [Interval(Integral, 2, None, closed="left"), None],
        "k_min": [Interval(Integral, 2, None, closed="left")],
        "k_max": [Interval(Integral, 2, None, closed="left")],
        "k_widen": ["boolean"],
        "k_criterion": [StrOptions(set(CRITERIA))],
        "head": [StrOptions(set(HEADS)), None],
        "n_representatives": [Interval(Integral, 0, None, closed="left")],
        "silhouette_sample": [Interval(Integral, 10, None, closed="left")],
        "random_state": [Interval(Integral, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "cache_dir": [str, os.PathLike, None],
        "autoencoder": [dict, None],
        "progress": ["boolean"],
    }

    def __init__(
        self,
        features: str = "efficientnet_lite1",
        layers="auto",
        tta: bool = False,
        runtime: str = "auto",
        device: str = "auto",
        precision: str = "auto",
        image_size: int | None = None,
        n_components: float | int | None = 0.9,
        whiten: bool = True,
        smoothing: int = 10,
        smoothing_neighbors: int = 20,
        method: str = "kmeans",
        n_clusters: int | None = None,
        k_min: int = 2,
        k_max: int = 10,
        k_widen: bool = False,
        k_criterion: str = DEFAULT_K_CRITERION,
        head: str | None = None,
        n_representatives: int = 5,
        silhouette_sample: int = 4000,
        random_state: int = 0,
        batch_size: int = 64,
        cache_dir: str | os.PathLike | None = None,
        autoencoder: dict | None = None,
        progress: bool = True,
    ):
        self.features = features
        self.layers = layers
        self.tta = tta
        self.runtime = runtime
        self.device = device
        self.precision = precision
        self.image_size = image_size
        self.n_components = n_components
        self.whiten = whiten
        self.smoothing = smoothing
        self.smoothing_neighbors = smoothing_neighbors
        self.method = method
        self.n_clusters = n_clusters
        self.k_min = k_min
        self.k_max = k_max
        self.k_widen = k_widen
        self.k_criterion = k_criterion
        self.head = head
        self.n_representatives = n_representatives
        self.silhouette_sample = silhouette_sample
        self.random_state = random_state
        self.batch_size = batch_size
        self.cache_dir = cache_dir
        self.autoencoder = autoencoder
        self.progress = progress

    # -- parameters ----------------------------------------------------------------

    def check_params(self) -> FeatureSpec:
        """Check the parameters once (the constraints table, then what excludes what)
        and return the parsed feature settings.  ``fit`` calls it first; call it to fail
        early (e.g. before decoding a source)."""
        validate_params(self)
        if self.n_clusters is None and self.k_min > self.k_max:
            raise ValueError(f"need 2 <= k_min <= k_max, got k_min={self.k_min}, k_max={self.k_max}")
        if self.method == "hdbscan" and self.head is not None:
            raise ValueError("a clustering head needs a number of clusters; use it with kmeans/agglomerative/spectral")
        return self._feature_spec()

    def _feature_spec(self) -> FeatureSpec:
        layers = self.layers
        if layers == "auto":
            parsed = parse_feature_name(self.features)
            builtin = parsed.is_pretrained and not any(is_timm(n) for n in parsed.parts or (parsed.name,))
            layers = 2 if builtin else None
        return FeatureSpec(
            self.features,
            layers,
            self.tta,
            self.batch_size,
            self.autoencoder or {},
            self.random_state,
            runtime=self.runtime,
            device=self.device,
            precision=self.precision,
            input_size=self.image_size if parse_feature_name(self.features).is_pretrained else None,
        )

    @property
    def decode_settings(self) -> DecodeSettings:
        """How images are decoded for this model: as fitted, or as the parameters ask."""
        fitted = getattr(self, "decode_settings_", None)
        if fitted is not None:
            return fitted
        return default_decode_settings(self._feature_spec(), self.image_size)

    def model_params(self) -> dict:
        """The parameters that define the model (saved with it): all but ``RUN_PARAMS``."""
        return {k: v for k, v in self.get_params(deep=False).items() if k not in RUN_PARAMS}

    # -- fitting -------------------------------------------------------------------

    def fit(self, X: Any, y: np.ndarray | None = None, *, labels=None) -> ImageClusterer:
        """Cluster ``X``.

        Parameters
        ----------
        X : path (folder, .npz, .npy, .csv), ImageDataset, DecodedImages, uint8
            array (n, H, W, C) decoded with ``decode_settings``, or an
            :class:`~pixsort.features.store.EmbeddingSet` (``pixsort embed``; its
            feature settings must be this clusterer's).
        y : ndarray (n,), optional
            Known labels of array input (only used by :meth:`score`; -1 = unknown).
        labels : for path input of ``.npy`` arrays, passed to ``open_dataset``.
        """
        spec = self.check_params()
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        if isinstance(X, EmbeddingSet):
            data, decode, raw = self._stored_embeddings(X, spec)
            timings["features"] = time.perf_counter() - t0
        else:
            data, decode = self._training_images(X, y, labels, default_decode_settings(spec, self.image_size))
            timings["decode"] = time.perf_counter() - t0
        if len(data.images) < 3:
            raise ValueError(f"need at least 3 usable images to cluster, got {len(data.images)}")
        check_size(self.method, len(data.images))  # before the features are computed, not after
        self.feature_spec_, self.decode_settings_ = spec, decode

        if not isinstance(X, EmbeddingSet):
            t = time.perf_counter()
            self.extractor_ = build_extractor(spec, progress=self.progress, size=decode.size)
            eval_callback = self._autoencoder_eval(data.labels) if spec.is_autoencoder else None
            keys = data.keys if data.keys is not None else image_keys(data.images)
            raw = extract_features(
                self.extractor_,
                spec,
                data.images,
                keys,
                self.cache_dir,
                decode,
                fit=True,
                progress=self.progress,
                eval_callback=eval_callback,
            )
            timings["features"] = time.perf_counter() - t

        Z = self._reduce_and_smooth(raw, timings)

        t = time.perf_counter()
        part, self.selection_ = self._partition(Z)
        timings["cluster"] = time.perf_counter() - t

        self.head_ = None
        if self.head == "scan":
            t = time.perf_counter()
            self.head_ = ClusteringHead(part.n_clusters, random_state=self.random_state).fit(Z)
            part = canonical_partition(Z, self.head_.predict(Z))
            self.head_ = _reorder_head(self.head_, Z, part)
            timings["head"] = time.perf_counter() - t

        t = time.perf_counter()
        self._set_fitted(Z, part, data)
        self._describe_clusters(raw)
        timings["scores"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t0
        self.timings_ = timings
        return self

    def _reduce_and_smooth(self, raw: np.ndarray, timings: dict[str, float]) -> np.ndarray:
        """Fit ``reducer_`` and ``smoother_`` on ``raw`` (n, d) -> the clustering space (n, d').

        From :data:`REMEMBER_MIN_ROWS` images up, the fitted stages are kept by content in
        the cache (:mod:`.memory`): a re-clustering of the same embeddings (another k or
        method, or the same images from a store) reads them back instead of refitting."""
        t = time.perf_counter()
        reducer = EmbeddingReducer(
            self.n_components, whiten=self.whiten, block_sizes=_feature_blocks(self.extractor_, raw.shape[1])
        )
        n_neighbors = smoothing_neighbours(self.smoothing_neighbors, len(raw))
        smoother = NeighbourSmoothing(n_neighbors, int(self.smoothing)) if self.smoothing and n_neighbors >= 2 else None
        memory = None
        if len(raw) >= REMEMBER_MIN_ROWS:
            memory = StageMemory(self.cache_dir if self.cache_dir is not None else default_cache_dir())
        key = memory.key(raw, reducer, smoother) if memory is not None else None
        stored = memory.load(key, reducer, smoother) if memory is not None else None
        self.stages_from_cache_ = stored is not None
        graph = None
        if stored is not None:  # the stored fit: its reducer and graph, no eigh and no search
            reducer, graph = stored
            Z = reducer.transform(raw)
        else:
            Z = reducer.fit_transform(raw)
        self.reducer_, self.smoother_ = reducer, smoother
        timings["reduce"] = time.perf_counter() - t
        if smoother is not None:
            t = time.perf_counter()
            Z = smoother.fit_transform(Z, neighbours=graph)
            timings["smooth"] = time.perf_counter() - t
        if memory is not None and stored is None:
            memory.save(key, reducer, smoother)
        return Z

    def _describe_clusters(self, raw: np.ndarray) -> None:
        """Name the clusters by the backbone's ImageNet classifier, where it has one."""
        self.cluster_descriptions_ = None
        guess = getattr(self.extractor_, "class_guesses", None)
        guesses = guess(raw) if callable(guess) else None
        if guesses is None:
            return
        vocabulary = imagenet_labels()
        self.cluster_descriptions_ = describe_clusters(
            guesses, self.labels_, self.n_clusters_, vocabulary.class_names, vocabulary.group_names
        )
        self.cluster_names_ = display_names(self.cluster_descriptions_)

    def rename_clusters(self, names: Mapping[int, str]) -> ImageClusterer:
        """Give clusters names of your own (``{cluster: name}``); the others keep theirs.

        Names are plain text: stripped, at most :data:`MAX_NAME_LENGTH` characters, no
        control characters.  They are saved with the model and shown by ``assign``, the
        report and the server.
        """
        self._check_fitted()
        current = list(self.cluster_names_ or [f"cluster {c}" for c in range(self.n_clusters_)])
        for cluster, name in names.items():
            if isinstance(cluster, bool) or not isinstance(cluster, (int, np.integer)):
                raise ValueError(f"cluster ids are integers, got {cluster!r}")
            if not 0 <= int(cluster) < self.n_clusters_:
                raise ValueError(f"cluster {cluster} does not exist: this model has clusters 0..{self.n_clusters_ - 1}")
            current[int(cluster)] = _check_cluster_name(name)
        self.cluster_names_ = current
        return self

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_train_search", None)  # a faiss index: rebuilt on use
        return state

    def fit_predict(self, X: Any, y: np.ndarray | None = None) -> np.ndarray:
        return self.fit(X, y).labels_

    def _stored_embeddings(self, store: EmbeddingSet, spec: FeatureSpec):
        """Training data, decode settings and raw features from an embedding set; the
        images are decoded only where the report shows them."""
        made = store.feature_settings
        asked = {"name": spec.name, "layers": spec.layers, "tta": spec.tta}
        if _tuple_or_value(made["layers"]) != _tuple_or_value(asked["layers"]) or any(
            made[k] != asked[k] for k in ("name", "tta")
        ):
            raise ValueError(
                f"the embedding set {store.folder} holds features={made['name']!r}, layers={made['layers']!r}, "
                f"tta={made['tta']!r}; this clusterer asks for features={spec.name!r}, layers={spec.layers!r}, "
                f"tta={spec.tta!r}: pass the set's settings (ImageClusterer(features=..., layers=..., tta=...))"
            )
        self.extractor_ = extractor_from_config(store.extractor_config)
        decode = store.decode_settings
        manifest = store.items.drop(columns=["row"])
        data = TrainingImages(
            LazyImages(store.paths, decode), store.paths, store.keys, store.labels, store.class_names, manifest
        )
        return data, decode, store.vectors

    def _training_images(self, X: Any, y, labels, planned: DecodeSettings) -> tuple[TrainingImages, DecodeSettings]:
        """The images to cluster and how they were decoded."""
        if isinstance(X, (str, os.PathLike)):
            X = open_dataset(X, labels=labels)
        if isinstance(X, ImageDataset):
            X = load_images(X, planned, cache_dir=self.cache_dir, progress=self.progress)
        if isinstance(X, DecodedImages):
            return TrainingImages(
                X.images, X.paths, list(X.keys), np.asarray(X.labels, dtype=np.int64), list(X.class_names), X.manifest
            ), X.settings
        images = np.asarray(X)
        if images.ndim != 4 or images.dtype != np.uint8:
            raise ValueError(
                f"expected a path, ImageDataset, DecodedImages or uint8 images (n, H, W, C); "
                f"got {type(X).__name__} {getattr(images, 'dtype', '')} {getattr(images, 'shape', '')}"
            )
        n = len(images)
        lab = np.full(n, -1, dtype=np.int64) if y is None else np.asarray(y, dtype=np.int64).ravel()
        if len(lab) != n:
            raise ValueError(f"y has {len(lab)} labels for {n} images")
        decode = DecodeSettings(
            size=tuple(images.shape[1:3]), channels="L" if images.shape[-1] == 1 else "RGB", resize=planned.resize
        )
        paths = [f"array[{i}]" for i in range(n)]
        classes = [str(c) for c in range(int(lab.max()) + 1)] if (lab >= 0).any() else []
        manifest = pd.DataFrame(
            {
                "path": paths,
                "label": [str(v) if v >= 0 else "" for v in lab],
                "split": "",
                "status": "loaded",
                "reason": "",
            }
        )
        return TrainingImages(images, paths, None, lab, classes, manifest), decode

    def _partition(self, Z: np.ndarray) -> tuple[Partition, KSelection | None]:
        self.layout_ = None
        if not NEEDS_K[self.method]:
            return partition(Z, self.method, None, self.random_state), None
        layout = {}
        if self.method == "tsne-kmeans":  # one layout for every candidate and the final fit
            self.layout_ = tsne_layout(Z, self.random_state)
            layout = {"layout": self.layout_}
        if self.n_clusters is not None:
            k = min(int(self.n_clusters), len(Z) - 1)
            return partition(Z, self.method, k, self.random_state, **layout), None
        k_max = min(self.k_max, len(Z) - 1)
        k_min = min(self.k_min, k_max)
        ks = list(range(k_min, k_max + 1))
        # k-means restarts: a few per candidate while comparing, the full ten for the chosen k
        quick = {"n_init": 3, **layout} if self.method in ("kmeans", "tsne-kmeans") else {}

        def candidates(k_values: list[int], scorer=None) -> KSelection:
            return select_k(
                Z,
                k_values,
                lambda k: partition(Z, self.method, k, self.random_state, **quick),
                sample_size=self.silhouette_sample,
                random_state=self.random_state,
                criterion=self.k_criterion,
                scorer=scorer,
            )

        selection = candidates(ks)
        top = min(2 * k_max, len(Z) - 1)
        if self.k_widen and selection.at_upper_edge and top > k_max:
            # the criterion still rose at k_max: try up to twice as many before choosing
            more = candidates(list(range(k_max + 1, top + 1)), scorer=selection.scorer)
            tried = selection.candidates + more.candidates
            deciding = selection.deciding
            chosen = choose_k(
                [c.k for c in tried],
                [c.score(deciding) for c in tried],
                deciding,
                silhouettes=[c.silhouette for c in tried],
            )
            selection = KSelection(
                tried,
                chosen,
                selection.sample_index,
                asked_range=(k_min, k_max),
                criterion=self.k_criterion,
                scorer=selection.scorer,
                fell_back=selection.fell_back,
            )
        if quick:
            best = score_partition(
                Z,
                partition(Z, self.method, selection.best_k, self.random_state, **layout),
                selection.sample_index,
                selection.best_k,
            )
            best = selection.rescore(best)
            selection.candidates = [best if c.k == best.k else c for c in selection.candidates]
        return selection.best.partition, selection

    def _set_fitted(self, Z: np.ndarray, part: Partition, data: TrainingImages) -> None:
        self.embeddings_ = Z.astype(np.float32)
        self.labels_ = part.labels
        self.cluster_centers_ = part.centers
        self.n_clusters_ = part.n_clusters
        self.train_paths_ = list(data.paths)
        self.train_labels_ = data.labels
        self.class_names_ = list(data.class_names)
        self.manifest_ = data.manifest
        self.cluster_names_ = None
        self.map_positions_ = None  # the 2-D layout of the map, set by the workflow that draws it
        self.distances_ = _own_centre_distance(Z, part)
        self.silhouette_values_ = _per_image_silhouette(Z, part)
        self.representative_ = _representatives(self.distances_, part.labels, self.n_representatives)
        sample = silhouette_sample_index(len(Z), self.silhouette_sample, self.random_state)
        final = score_partition(Z, part, sample)
        self.scores_ = {
            "silhouette": final.silhouette,
            "davies_bouldin": final.davies_bouldin,
            "calinski_harabasz": final.calinski_harabasz,
            "n_clusters": self.n_clusters_,
            "n_noise": int((part.labels < 0).sum()),
        }

    def _autoencoder_eval(self, labels: np.ndarray):
        """Accuracy of k-means on the latents every few epochs, when labels are known."""
        if not (labels >= 0).any():
            return None
        k = self.n_clusters or len(np.unique(labels[labels >= 0]))

        def evaluate(epoch: int, latents: np.ndarray) -> dict:
            Z = EmbeddingReducer(self.n_components, whiten=self.whiten).fit_transform(latents)
            pred = partition(Z, "kmeans", k, self.random_state).labels
            s = clustering_scores(labels, pred)
            return {"accuracy": s["accuracy"], "nmi": s["nmi"]}

        return evaluate

    # -- using the fitted model ----------------------------------------------------

    def _check_fitted(self) -> None:
        check_fitted(self, "labels_")

    def embed(self, images: np.ndarray) -> np.ndarray:
        """Images (n, H, W, C) uint8 -> the reduced embedding (n, d) the clusters live in."""
        self._check_fitted()
        images = check_images(images)
        raw = extract_features(self.extractor_, self.feature_spec_, images, None, None, fit=False, progress=False)
        Z = self.reducer_.transform(raw)
        return Z if self.smoother_ is None else self.smoother_.transform(Z)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Cluster of each image, shape (n,).

        k-means and the head assign by their own rule (nearest centre, most probable
        cluster); the other methods take the cluster of the nearest training image.
        """
        return self._predict_embedded(self.embed(images))

    def _predict_embedded(self, Z: np.ndarray) -> np.ndarray:
        if self.head_ is not None:
            return self.head_.predict(Z)
        if self.method == "kmeans":
            return _squared_distances(Z, self.cluster_centers_).argmin(axis=1).astype(np.int64)
        _, idx = self._nearest_train(Z, 1)
        return self.labels_[idx[:, 0]]

    def transform(self, images: np.ndarray) -> np.ndarray:
        """Euclidean distance of each image to each cluster centre, shape (n, n_clusters_)."""
        Z = self.embed(images)
        return np.sqrt(_squared_distances(Z, self.cluster_centers_)).astype(np.float32)

    def kneighbors(self, images: np.ndarray, n_neighbors: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """Nearest training images: (distances (n, m), indices (n, m)) into ``train_paths_``."""
        return self._nearest_train(self.embed(images), n_neighbors)

    def assign(self, images: np.ndarray, n_neighbors: int = 5) -> ClusterAssignment:
        """``predict``, ``transform`` and ``kneighbors`` from one embedding of ``images``.

        Embedding is the costly step (a backbone pass, twice with TTA), so serving and
        ``pixsort assign`` ask for all three answers at once.  ``n_neighbors=0`` skips
        the neighbour search.
        """
        Z = self.embed(images)
        clusters = self._predict_embedded(Z)
        distances = np.sqrt(_squared_distances(Z, self.cluster_centers_)).astype(np.float32)
        if n_neighbors > 0:
            nn_dist, nn_idx = self._nearest_train(Z, n_neighbors)
        else:
            nn_dist, nn_idx = np.zeros((len(Z), 0), np.float32), np.zeros((len(Z), 0), np.int64)
        return ClusterAssignment(clusters, distances, nn_dist, nn_idx)

    def train_neighbours(self, n_neighbors: int = 8, *, within_graph: bool = False) -> np.ndarray:
        """Each training image's nearest other training images in the reduced space
        (before smoothing), closest first: int32 (n, min(n_neighbors, n - 1)) row indices.

        The neighbour graph the smoothing diffused over where it has that many columns
        (no second search over the set: at 50k rows that search costs as much as the
        fit's); a search otherwise (smoothing off, a loaded model, more neighbours).
        ``within_graph``: where there is a graph, at most its columns and never a search."""
        self._check_fitted()
        graph = getattr(self.smoother_, "neighbours_", None)
        usable = graph is not None and len(graph) == len(self.labels_)
        if usable and (graph.shape[1] >= n_neighbors or within_graph):
            return graph[:, :n_neighbors]
        space = l2_normalize(self.embeddings_ if self.smoother_ is None else self.smoother_.reference_)
        k = min(int(n_neighbors), len(space) - 1)
        if k < 1:
            return np.zeros((len(space), 0), dtype=np.int32)
        _, idx = NeighbourSearch(space).search(space, k, exclude_self=True)
        return idx.astype(np.int32)

    def _nearest_train(self, Z: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        self._check_fitted()
        m = max(1, min(int(m), len(self.embeddings_)))
        # unit rows: |a - b|^2 = 2 - 2 <a, b>; inner products in float64 keep near-duplicates in order
        search = getattr(self, "_train_search", None)
        if search is None or search.reference.shape != self.embeddings_.shape:
            search = self._train_search = NeighbourSearch(self.embeddings_)
        sims, idx = search.search(Z, m)
        return np.sqrt(np.maximum(2.0 - 2.0 * sims, 0.0)).astype(np.float32), idx

    def score(self, labels: np.ndarray | None = None) -> dict:
        """Accuracy (Hungarian), NMI, ARI, purity of ``labels_`` against the known
        labels (the training labels by default)."""
        self._check_fitted()
        y = self.train_labels_ if labels is None else np.asarray(labels)
        return clustering_scores(y, self.labels_)

    def cluster_class_table(self, labels: np.ndarray | None = None) -> pd.DataFrame:
        self._check_fitted()
        y = self.train_labels_ if labels is None else np.asarray(labels)
        return cluster_class_table(y, self.labels_, self.class_names_)

    def assignments(self) -> pd.DataFrame:
        """One row per training image: path, cluster (and its name, where clusters are
        named), distance to centre, silhouette, representative flag (and the known
        label, when there is one)."""
        self._check_fitted()
        frame = pd.DataFrame({"path": self.train_paths_, "cluster": self.labels_})
        if self.cluster_names_:
            names = self.cluster_names_
            frame["cluster_name"] = [names[c] if 0 <= c < len(names) else "" for c in self.labels_]
        frame = frame.assign(
            **{
                "distance_to_centre": np.round(self.distances_, 6),
                "silhouette": np.round(self.silhouette_values_, 6),
                "representative": self.representative_,
            }
        )
        if (self.train_labels_ >= 0).any():
            names = self.class_names_
            frame["label"] = [names[v] if 0 <= v < len(names) else "" for v in self.train_labels_]
        return frame

    # -- persistence ---------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``model.json`` + ``weights.safetensors`` into the folder ``path``."""
        self._check_fitted()
        arrays = {f"reducer.{k}": v for k, v in self.reducer_.get_arrays().items()}
        arrays.update(
            {
                "centers": self.cluster_centers_,
                "train_embeddings": self.embeddings_,
                "train_labels": self.labels_,
                "train_distances": self.distances_.astype(np.float32),
                "train_class_labels": self.train_labels_,
            }
        )
        if self.head_ is not None:
            arrays.update({f"head.{k}": v for k, v in self.head_.get_arrays().items()})
        if self.smoother_ is not None:  # its smoothed rows are train_embeddings
            arrays["smoother.reference"] = self.smoother_.reference_
        arrays["train_silhouettes"] = self.silhouette_values_.astype(np.float32)
        positions = getattr(self, "map_positions_", None)
        if positions is not None:  # the 2-D layout of every training image (the map's)
            arrays["map_positions"] = np.asarray(positions, dtype=np.float32)
        if self.selection_ is not None:
            arrays["selection.k"] = np.array([c.k for c in self.selection_.candidates], dtype=np.int64)
            arrays["selection.labels"] = np.stack([c.partition.labels for c in self.selection_.candidates])
            arrays["selection.sample_index"] = self.selection_.sample_index.astype(np.int64)
            arrays["selection.silhouettes"] = np.stack(
                [c.silhouette_values for c in self.selection_.candidates]
            ).astype(np.float32)
        extractor_state = getattr(self.extractor_, "state_dict", None)
        if callable(extractor_state) and self.feature_spec_.is_autoencoder:
            arrays.update({f"extractor.{k}": v.numpy() for k, v in extractor_state().items()})
        meta = {
            "decode": self.decode_settings_.to_dict(),
            "params": self.model_params(),
            "extractor": self.extractor_.to_config(),
            "reducer": self.reducer_.get_params(),
            "head": self.head_.get_params() if self.head_ is not None else None,
            "smoother": self.smoother_.get_params() if self.smoother_ is not None else None,
            "n_clusters": self.n_clusters_,
            "cluster_names": self.cluster_names_,
            "cluster_descriptions": getattr(self, "cluster_descriptions_", None),
            "class_names": self.class_names_,
            "train_paths": self.train_paths_,
            # what relative train_paths are relative to (the working directory of the fit)
            "train_paths_root": getattr(self, "train_paths_root_", None) or os.getcwd(),
            "scores": self.scores_,
            "selection": None if self.selection_ is None else self.selection_.table().to_dict(orient="list"),
        }
        return write_model_folder(path, "clusterer", meta, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike, *, meta: dict | None = None) -> ImageClusterer:
        """Rebuild a clusterer saved by :meth:`save` (no pickle involved); ``meta``
        is its ``model.json`` when already read."""
        folder, meta, arrays = read_model_folder(path, "clusterer", meta=meta)
        try:
            _check_clusterer_folder(folder, meta, arrays)
            return cls._from_folder(meta, arrays)
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as exc:
            raise model_problem(folder, exc) from None

    @classmethod
    def _from_folder(cls, meta: dict, arrays: dict) -> ImageClusterer:
        import torch

        params = dict(meta["params"])
        params["layers"] = _tuple_or_value(params.get("layers"))
        params.setdefault("k_criterion", "silhouette")  # saved before k_criterion existed: k chosen by silhouette
        model = cls(**params, progress=False)
        spec = model.check_params()
        model.feature_spec_, model.decode_settings_ = spec, DecodeSettings.from_dict(meta["decode"])
        model.extractor_ = build_extractor(spec, progress=False, config=meta["extractor"])
        if spec.is_autoencoder:
            state = {
                k[len("extractor.") :]: torch.from_numpy(v.copy())
                for k, v in arrays.items()
                if k.startswith("extractor.")
            }
            model.extractor_.load_state_dict(state)
        model.reducer_ = EmbeddingReducer.from_arrays(
            meta["reducer"], {k[len("reducer.") :]: v for k, v in arrays.items() if k.startswith("reducer.")}
        )
        model.head_ = None
        if meta.get("head"):
            model.head_ = ClusteringHead.from_arrays(
                meta["head"], {k[len("head.") :]: v for k, v in arrays.items() if k.startswith("head.")}
            )
        model.smoother_ = None
        if meta.get("smoother"):
            model.smoother_ = NeighbourSmoothing.from_arrays(
                meta["smoother"], {"reference": arrays["smoother.reference"], "smoothed": arrays["train_embeddings"]}
            )
        model.cluster_centers_ = arrays["centers"]
        model.embeddings_ = arrays["train_embeddings"]
        model.labels_ = arrays["train_labels"].astype(np.int64)
        model.distances_ = arrays["train_distances"]
        model.train_labels_ = arrays["train_class_labels"].astype(np.int64)
        model.n_clusters_ = int(meta["n_clusters"])
        model.cluster_names_ = meta.get("cluster_names")
        model.cluster_descriptions_ = meta.get("cluster_descriptions")
        model.class_names_ = list(meta.get("class_names") or [])
        model.train_paths_ = list(meta["train_paths"])
        model.train_paths_root_ = meta.get("train_paths_root")
        model.scores_ = meta.get("scores", {})
        model.selection_ = _selection_from_arrays(meta.get("selection"), arrays, model.embeddings_, model.k_criterion)
        model.silhouette_values_ = arrays.get("train_silhouettes", np.full(len(model.labels_), np.nan))
        positions = arrays.get("map_positions")
        fits = positions is not None and positions.shape == (len(model.labels_), 2)
        model.map_positions_ = positions if fits else None
        model.representative_ = _representatives(model.distances_, model.labels_, model.n_representatives)
        return model


# -- helpers -------------------------------------------------------------------------


def _check_clusterer_folder(folder, meta: dict, arrays: dict) -> None:
    """The clusterer's model.json and tensors agree, or one ModelFileError says where not."""
    for name in ("centers", "train_embeddings", "train_labels", "train_distances", "train_class_labels"):
        if name not in arrays:
            raise ModelFileError(f"{folder}: weights.safetensors has no {name!r} tensor")
    centers, embeddings = arrays["centers"], arrays["train_embeddings"]
    if centers.ndim != 2 or embeddings.ndim != 2 or centers.shape[1] != embeddings.shape[1]:
        raise ModelFileError(
            f"{folder}: cluster centres {centers.shape} and training embeddings {embeddings.shape} disagree"
        )
    n_clusters = meta["n_clusters"]
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, int) or n_clusters != len(centers):
        raise ModelFileError(
            f"{folder}: model.json says n_clusters={n_clusters!r} but the weights hold {len(centers)} cluster centres"
        )
    n = len(embeddings)
    for name in ("train_labels", "train_distances", "train_class_labels"):
        if len(arrays[name]) != n:
            raise ModelFileError(f"{folder}: {name} has {len(arrays[name])} rows, the training embeddings {n}")
    if meta["train_paths"] and len(meta["train_paths"]) != n:
        raise ModelFileError(f"{folder}: model.json lists {len(meta['train_paths'])} training paths for {n} embeddings")
    labels = arrays["train_labels"]
    if labels.size and int(labels.max()) >= len(centers):
        raise ModelFileError(f"{folder}: a training label ({int(labels.max())}) names no cluster centre")
    names = meta.get("cluster_names")
    if names is not None and (
        not isinstance(names, list) or len(names) != len(centers) or not all(isinstance(v, str) for v in names)
    ):
        raise ModelFileError(f"{folder}: model.json's cluster_names must be {len(centers)} strings, one per cluster")
    described = meta.get("cluster_descriptions")
    if described is not None and (not isinstance(described, list) or len(described) != len(centers)):
        raise ModelFileError(f"{folder}: model.json's cluster_descriptions must list one entry per cluster")


def smoothing_neighbours(requested: int, n: int) -> int:
    """The neighbours smoothing uses for ``n`` images: ``requested``, at most 5% of the
    images (on a small set a fixed 20 would average across groups); below 2, no smoothing."""
    return min(int(requested), n // 20)


def _squared_distances(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    A = np.asarray(A, dtype=np.float64)  # float32 cancellation misorders near-equal distances
    B = np.asarray(B, dtype=np.float64)
    d2 = (A * A).sum(1)[:, None] - 2.0 * A @ B.T + (B * B).sum(1)[None, :]
    return np.maximum(d2, 0.0)


def _own_centre_distance(Z: np.ndarray, part: Partition) -> np.ndarray:
    out = np.full(len(Z), np.nan, dtype=np.float32)
    kept = part.labels >= 0
    diff = Z[kept] - part.centers[part.labels[kept]]
    out[kept] = np.sqrt((diff * diff).sum(1))
    return out


def _per_image_silhouette(Z: np.ndarray, part: Partition) -> np.ndarray:
    """Exact silhouette per image up to EXACT_SILHOUETTE_MAX images; above, the
    simplified (centre-based) silhouette, which is linear in n."""
    from sklearn.metrics import silhouette_samples

    labels = part.labels
    out = np.full(len(Z), np.nan, dtype=np.float32)
    kept = labels >= 0
    if len(np.unique(labels[kept])) < 2:
        return out
    if kept.sum() <= EXACT_SILHOUETTE_MAX:
        out[kept] = silhouette_samples(Z[kept], labels[kept])
        return out
    d = np.sqrt(_squared_distances(Z[kept], part.centers))
    own = d[np.arange(len(d)), labels[kept]]
    d[np.arange(len(d)), labels[kept]] = np.inf
    other = d.min(axis=1)
    out[kept] = (other - own) / np.maximum(np.maximum(other, own), 1e-12)
    return out


def _representatives(distances: np.ndarray, labels: np.ndarray, m: int) -> np.ndarray:
    flags = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels[labels >= 0]):
        members = np.flatnonzero(labels == c)
        flags[members[np.argsort(distances[members], kind="stable")[:m]]] = True
    return flags


def _reorder_head(head: ClusteringHead, Z: np.ndarray, part: Partition) -> ClusteringHead:
    """Permute the head's outputs so its argmax equals the canonical cluster numbers."""
    raw = head.predict(Z)
    k = head.weight_.shape[0]
    mapping = np.arange(k)
    for new in range(part.n_clusters):
        olds = np.unique(raw[part.labels == new])
        mapping[new] = olds[0]
    unused = [o for o in range(k) if o not in set(mapping[: part.n_clusters])]
    mapping[part.n_clusters :] = unused[: k - part.n_clusters]
    head.weight_ = head.weight_[mapping]
    head.bias_ = head.bias_[mapping]
    if part.n_clusters < k:  # outputs no training image chose can never win
        head.bias_[part.n_clusters :] = -1e9
    return head


MAX_NAME_LENGTH = 80


def _check_cluster_name(name) -> str:
    if not isinstance(name, str):
        raise ValueError(f"a cluster name is text, got {name!r}")
    text = name.strip()
    if not text or len(text) > MAX_NAME_LENGTH or any(unicodedata.category(ch)[0] == "C" for ch in text):
        raise ValueError(f"a cluster name is 1..{MAX_NAME_LENGTH} printable characters, got {name!r}")
    return text


def _feature_blocks(extractor, width: int) -> list[int] | None:
    """Widths of the backbone layers concatenated in the raw features (None: one block)."""
    try:
        blocks = list(extractor.feature_blocks)
    except (AttributeError, KeyError):  # not a backbone extractor (pixels, autoencoder) or no layer info
        return None
    return blocks if len(blocks) > 1 and sum(blocks) == width else None


def _selection_from_arrays(
    table: dict | None, arrays: dict, Z: np.ndarray, criterion: str = "silhouette"
) -> KSelection | None:
    """The k selection saved by ``save`` (candidates' labels, sampled silhouettes and
    the scores of every criterion computed)."""
    if not table or "selection.labels" not in arrays:
        return None
    if criterion != "silhouette" and criterion not in table:
        raise ValueError(f"the k selection was made by {criterion!r} but the saved table has no such column")
    candidates = []
    for i, k in enumerate(arrays["selection.k"].tolist()):
        labels = arrays["selection.labels"][i].astype(np.int64)
        n_found = int(labels.max()) + 1 if (labels >= 0).any() else 0
        part = Partition(labels, cluster_means(Z, labels, n_found))
        candidates.append(
            KCandidate(
                int(k),
                part,
                float(table["silhouette"][i]),
                float(table["davies_bouldin"][i]),
                float(table["calinski_harabasz"][i]),
                arrays["selection.silhouettes"][i],
                {name: float(table[name][i]) for name in CRITERIA if name != "silhouette" and name in table},
            )
        )
    chosen = int(np.asarray(table["k"])[np.asarray(table["chosen"], dtype=bool)][0])
    # a criterion that could not be computed (too few images) left the choice to the silhouette
    fell_back = criterion != "silhouette" and not np.isfinite([c.score(criterion) for c in candidates]).any()
    return KSelection(candidates, chosen, arrays["selection.sample_index"], criterion=criterion, fell_back=fell_back)


def _tuple_or_value(v):
    return tuple(v) if isinstance(v, list) else v


__all__ = ["ClusterAssignment", "ImageClusterer"]
