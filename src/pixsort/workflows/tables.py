"""Cluster the records of a CSV table and describe each cluster."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pandas as pd

from pixsort.cluster.table import TableClusterer, compare_methods, describe_method
from pixsort.cluster.table.profiles import profile_clusters
from pixsort.cluster.table.views import map_coordinates
from pixsort.data.tables import EncodedTable, parse_missing_markers, read_table
from pixsort.report.table_clusters import TableRunResult, write_table_outputs


@dataclass
class TableRun:
    """What :func:`cluster_table` did: the encoded table, the fitted clusterer, the
    method comparison (if asked for) and the outputs."""

    table: EncodedTable
    clusterer: TableClusterer
    comparison: pd.DataFrame | None
    outputs: TableRunResult

    @property
    def method(self) -> str:
        """A short label of the method used, e.g. ``k-means (PCA 10)``."""
        return describe_method(self.clusterer)


def cluster_table(
    csv: str | os.PathLike,
    id_column: str,
    out: str | os.PathLike,
    *,
    join: str | os.PathLike | None = None,
    on: str | None = None,
    missing: str | None = None,
    compare: bool = False,
    noun: str = "rows",
    **params,
) -> TableRun:
    """Read ``csv`` (one ``id_column``, the rest features), cluster its rows, describe
    the clusters (with the columns of ``join`` matched ``on`` a key), write every
    output into ``out``.

    ``missing``: comma-separated missing markers (None: the defaults).  ``params`` go to
    :class:`~pixsort.cluster.table.TableClusterer` (method, n_clusters, k_range, metric,
    linkage, scaling, min_cluster_size, stability_runs, random_state ...).  ``compare``
    also fits every method and tabulates them.
    """
    table = read_table(csv, id_column, missing=parse_missing_markers(missing), join=join, on=on)
    clusterer = TableClusterer(**params).fit(table.features)
    comparison = None
    if compare:
        common = {k: params[k] for k in ("random_state", "stability_runs") if k in params}
        comparison = compare_methods(table.features, **common)
    described = profile_clusters(table, clusterer, noun)
    outputs = write_table_outputs(
        table, clusterer, described, out, view=map_coordinates(clusterer), comparison=comparison
    )
    return TableRun(table, clusterer, comparison, outputs)


__all__ = ["TableRun", "cluster_table"]
