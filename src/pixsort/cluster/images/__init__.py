"""Clustering images: embeddings -> reduced space -> neighbour smoothing -> partition.

* :mod:`~.estimator` - :class:`ImageClusterer` (fit / predict / transform /
  kneighbors / assign / save / load);
* :mod:`~.methods` - k-means, agglomerative, HDBSCAN, spectral, as :class:`Partition`;
* :mod:`~.select` - k chosen by a criterion, with silhouette, Davies-Bouldin and Calinski-Harabasz;
* :mod:`~.criteria` - the label-free k criteria besides the silhouette (UMAP silhouette,
  subsample stability, k-NN graph eigengap);
* :mod:`~.smooth` - diffusion of the embeddings on their k-NN graph;
* :mod:`~.head` - an optional SCAN-style clustering head.
"""

from pixsort.cluster.images.estimator import ClusterAssignment, ImageClusterer

__all__ = ["ClusterAssignment", "ImageClusterer"]
