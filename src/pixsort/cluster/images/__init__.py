"""Clustering images: embeddings -> reduced space -> neighbour smoothing -> partition.

* :mod:`~.estimator` - :class:`ImageClusterer` (fit / predict / transform /
  kneighbors / assign / save / load);
* :mod:`~.methods` - k-means, agglomerative, HDBSCAN, spectral, as :class:`Partition`;
* :mod:`~.select` - k chosen by silhouette, with Davies-Bouldin and Calinski-Harabasz;
* :mod:`~.smooth` - diffusion of the embeddings on their k-NN graph;
* :mod:`~.head` - an optional SCAN-style clustering head.
"""

from pixsort.cluster.images.estimator import ClusterAssignment, ImageClusterer

__all__ = ["ClusterAssignment", "ImageClusterer"]
