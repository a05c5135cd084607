"""Clustering the records of a table (e.g. heroes by 167 true/false powers) and
describing each cluster by what sets it apart.

* :mod:`~.estimator` - :class:`TableClusterer` (k-modes, agglomerative on
  Jaccard/Hamming, k-means on principal components, HDBSCAN), method comparison;
* :mod:`~.profiles` - prevalence and lift with corrected tests, central members,
  joined attributes by cluster;
* :mod:`~.views` - 2-D coordinates of the rows under the clusterer's distance.
"""

from pixsort.cluster.table.estimator import TableClusterer, compare_methods, describe_method

__all__ = ["TableClusterer", "compare_methods", "describe_method"]
