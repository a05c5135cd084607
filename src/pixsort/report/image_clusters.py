"""Everything a fitted :class:`~pixsort.cluster.images.ImageClusterer` leaves in an
output folder (:func:`pixsort.workflows.cluster_images` computes the views and
saves the model, then calls :func:`write_cluster_outputs`).

Folder layout::

    clusters.csv           path, cluster, distance_to_centre, silhouette, representative (, label)
    manifest.csv           every input item, skipped ones with their reason
    clusters_summary.csv   one row per cluster: size, cohesion, representatives (, majority class)
    metrics.json           internal scores (silhouette, DB, CH), k selection, timings;
                           accuracy / NMI / ARI / purity when labels are known
    cluster_by_class.csv   when labels are known
    k_selection.csv, score_vs_k.png, silhouette/k{K}.png   when k was chosen
    montages/cluster_{C}.png   nearest-to-centre members, then random members
    scatter.png, scatter_thumbnails.png   2-D view of the clustering space
    map.html, map_atlas/   the interactive map of every image (:mod:`pixsort.report.map`)
    model/                 the saved model (``pixsort assign`` reads it)
    by_cluster/cluster_{C}/   optional copies or links of the files
    report.html

Plots use matplotlib's Agg backend; montages and the thumbnail scatter are
composed with PIL (faster, and exact pixels).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pixsort.cluster.images.names import display_names
from pixsort.data.lazy import ImageRows
from pixsort.report.figures import pyplot, save_figure, thumbnail
from pixsort.report.files import write_csv, write_json
from pixsort.report.html import HtmlReport
from pixsort.report.map import MAP_FILE, build_map, write_map

COPY_MODES = ("none", "copy", "link")
THUMB = 48  # thumbnail side in montages, px
SCATTER_THUMBS = 300
SCATTER_CANVAS = 1400


@dataclass
class ClusterOutputs:
    """Where :func:`write_cluster_outputs` put things."""

    folder: Path
    report: Path
    clusters_csv: Path
    manifest_csv: Path
    metrics: dict
    model: Path | None
    summary: pd.DataFrame
    files: dict[str, Path] = field(default_factory=dict)


# -- entry points ------------------------------------------------------------------------


def write_cluster_outputs(
    clusterer,
    images,
    out: str | os.PathLike,
    *,
    view: tuple[np.ndarray, np.ndarray],
    view_name: str = "tsne",
    title: str | None = None,
    n_montage: int = 8,
    copy_to_folders: str = "none",
    model_dir: Path | None = None,
    score: bool = True,
    reconstructions: tuple[np.ndarray, np.ndarray] | None = None,
    random_state: int | None = None,
    map_positions: np.ndarray | None = None,
) -> ClusterOutputs:
    """Write the outputs of a fitted clusterer into the folder ``out``.

    Parameters
    ----------
    clusterer : fitted ImageClusterer
    images : DecodedImages the clusterer was fitted on, or uint8 array (n, H, W, C) in
        the order of ``clusterer.train_paths_``; used for montages and thumbnails.
    view : (positions, coordinates (m, 2))
        The 2-D view of the clustering space
        (:func:`pixsort.cluster.images.views.view_coordinates`); ``view_name`` says how.
    n_montage : members per row of a cluster's montage (nearest, then random).
    copy_to_folders : {"none", "copy", "link"}
        Also place each clustered file in ``by_cluster/cluster_{C}/``.
    model_dir : where the model was saved, for the report's note.
    score : bool
        Compare with the known labels (accuracy, NMI, ARI, purity, cluster-by-class
        table) when there are any.
    reconstructions : (originals, reconstructions) of the autoencoder, if one was trained.
    map_positions : array (n, 2), optional
        The 2-D layout of every training image: written as the interactive ``map.html``.
    """
    if copy_to_folders not in COPY_MODES:
        raise ValueError(f"copy_to_folders must be one of {', '.join(COPY_MODES)}, got {copy_to_folders!r}")
    pixels = getattr(images, "images", images)
    if not isinstance(pixels, ImageRows):  # lazy sets: only the pictures shown are made
        pixels = np.asarray(pixels)
    if len(pixels) != len(clusterer.labels_):
        raise ValueError(f"{len(pixels)} images given for a clusterer fitted on {len(clusterer.labels_)}")
    seed = clusterer.random_state if random_state is None else random_state
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}

    assignments = clusterer.assignments()
    files["clusters"] = write_csv(assignments, folder / "clusters.csv")
    files["manifest"] = write_csv(clusterer.manifest_, folder / "manifest.csv")
    summary = cluster_summary(clusterer, score=score)
    files["summary"] = write_csv(summary, folder / "clusters_summary.csv")

    metrics = cluster_metrics(clusterer, score=score)
    table = None
    if "accuracy" in metrics:
        table = clusterer.cluster_class_table()
        files["cluster_by_class"] = write_csv(table, folder / "cluster_by_class.csv", index=True)
    selection = getattr(clusterer, "selection_", None)
    silhouette_plots: dict[int, Path] = {}
    if selection is not None:
        files["k_selection"] = write_csv(selection.table(), folder / "k_selection.csv")
        files["score_vs_k"] = plot_score_vs_k(selection, folder / "score_vs_k.png")
        for cand in selection.candidates:
            if np.isfinite(cand.silhouette):
                silhouette_plots[cand.k] = plot_silhouette(
                    cand, selection.sample_index, folder / "silhouette" / f"k{cand.k}.png"
                )
    montages = {
        c: write_montage(clusterer, pixels, c, folder / "montages" / f"cluster_{c}.png", n_montage, seed)
        for c in range(clusterer.n_clusters_)
    }
    idx, xy = view
    files["scatter"] = plot_scatter(xy, clusterer.labels_[idx], folder / "scatter.png", view_name)
    files["scatter_thumbnails"] = write_thumbnail_scatter(
        xy, pixels, clusterer.labels_[idx], folder / "scatter_thumbnails.png", seed, rows=idx
    )
    history = getattr(clusterer.extractor_, "history_", None)
    if history and reconstructions is not None:  # the autoencoder trained on these images
        files["autoencoder_history"] = write_csv(pd.DataFrame(history), folder / "autoencoder_history.csv")
        files["autoencoder_curves"] = plot_autoencoder_history(history, folder / "autoencoder_curves.png")
        files["reconstructions"] = write_reconstructions(*reconstructions, folder / "reconstructions.png")
    if map_positions is not None:
        files["map"] = write_cluster_map(clusterer, pixels, folder, map_positions, title=title)
    files["metrics"] = write_json(metrics, folder / "metrics.json")
    if copy_to_folders != "none":
        files["by_cluster"] = copy_into_cluster_folders(assignments, folder / "by_cluster", copy_to_folders)

    report = _write_html(clusterer, folder, title=title, metrics=metrics, summary=summary, table=table,
                         silhouette_plots=silhouette_plots, montages=montages, files=files, view=view_name,
                         model_dir=model_dir)  # fmt: skip
    return ClusterOutputs(folder, report, files["clusters"], files["manifest"], metrics, model_dir, summary, files)


def write_assignments(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """The table of :func:`pixsort.workflows.assign_images` as CSV."""
    return write_csv(table, path)


MAP_NEIGHBOURS = 8  # nearest training images shown when a point of the map is clicked
# Above this many images the map shows a seeded sample (every representative among it):
# the page and its atlases grow by ~0.5 kB per point, and a page of a million points
# would not open.  Every image stays in clusters.csv.
MAP_MAX_POINTS = 20_000


def map_rows(clusterer, max_points: int | None = None) -> np.ndarray:
    """The training rows the map shows (sorted): all of them up to ``max_points``
    (default :data:`MAP_MAX_POINTS`), else the representatives and a seeded sample of
    the others."""
    max_points = MAP_MAX_POINTS if max_points is None else int(max_points)
    n = len(clusterer.labels_)
    if n <= max_points:
        return np.arange(n)
    chosen = np.flatnonzero(np.asarray(clusterer.representative_, dtype=bool))[:max_points]
    rest = np.setdiff1d(np.arange(n), chosen)
    rng = np.random.default_rng(clusterer.random_state)
    extra = rng.choice(rest, max_points - len(chosen), replace=False)
    return np.sort(np.concatenate([chosen, extra]))


def cluster_map_fields(clusterer, rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The per-image fields of a clusterer's map: cluster (its name where named), class
    when labels are known, distance to centre, silhouette, representative flag (of the
    training ``rows``, default all)."""
    rows = np.arange(len(clusterer.labels_)) if rows is None else rows
    labels = np.asarray(clusterer.labels_)[rows]
    names = clusterer.cluster_names_ or []
    fields: dict[str, np.ndarray] = {"cluster": labels}
    if names:
        fields["cluster_name"] = np.array([names[c] if 0 <= c < len(names) else "" for c in labels], dtype=object)
    known = np.asarray(clusterer.train_labels_)[rows]
    if (known >= 0).any():
        cls = clusterer.class_names_
        fields["class"] = np.array([cls[v] if 0 <= v < len(cls) else "" for v in known], dtype=object)
    fields["distance_to_centre"] = np.asarray(clusterer.distances_, dtype=np.float64)[rows]
    fields["silhouette"] = np.asarray(clusterer.silhouette_values_, dtype=np.float64)[rows]
    fields["representative"] = np.asarray(clusterer.representative_, dtype=bool)[rows]
    return fields


def map_neighbours(clusterer, rows: np.ndarray, k: int = MAP_NEIGHBOURS) -> np.ndarray:
    """Each shown row's nearest training images that the map also shows, as positions
    in ``rows`` (int32 (m, k), closest first, -1 where fewer are shown): on a sampled
    map, those among its nearest ``2 k / share`` training images (at most the
    smoothing's neighbour graph: no second search over the whole set)."""
    n = len(clusterer.labels_)
    if len(rows) == n:
        return clusterer.train_neighbours(k)
    wanted = min(n - 1, max(k, int(np.ceil(2 * k * n / max(len(rows), 1)))))
    graph = clusterer.train_neighbours(wanted, within_graph=True)[rows]
    where = np.full(n, -1, dtype=np.int32)
    where[rows] = np.arange(len(rows), dtype=np.int32)
    found = where[graph]
    # the shown ones first, in their order of closeness: a stable sort on "not shown"
    order = np.argsort(found < 0, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(found, order, axis=1)


def _cluster_map_args(clusterer, positions: np.ndarray, images, title: str) -> dict:
    n = len(clusterer.labels_)
    rows = map_rows(clusterer)
    if len(rows) < n:
        title = f"{title} (a sample of {len(rows):,} of {n:,} images; all are in clusters.csv)"
        if isinstance(images, ImageRows):
            images = images.take(rows)
        elif images is not None:
            source = images
            images = lambda i: source[int(rows[i])]
    paths = [clusterer.train_paths_[int(i)] for i in rows] if len(rows) < n else clusterer.train_paths_
    return {
        "positions": np.asarray(positions)[rows],
        "paths": paths,
        "images": images,
        "title": title,
        "fields": cluster_map_fields(clusterer, rows),
        "neighbours": map_neighbours(clusterer, rows),
    }


def cluster_map_page(clusterer, positions: np.ndarray, images, *, title: str | None = None, **options):
    """The map of a fitted clusterer (:func:`pixsort.report.map.build_map`): the training
    images (up to :data:`MAP_MAX_POINTS`, else a sample) at ``positions`` (n, 2),
    thumbnails from ``images``, their :data:`MAP_NEIGHBOURS` nearest shown images on a click."""
    args = _cluster_map_args(clusterer, positions, images, title or "Map of the image clusters")
    return build_map(args.pop("positions"), args.pop("paths"), **args, **options)


def write_cluster_map(clusterer, images, folder: Path, positions: np.ndarray, title: str | None = None) -> Path:
    """``map.html`` (and its atlases) of a fitted clusterer in ``folder``."""
    args = _cluster_map_args(clusterer, positions, images, f"{title or 'Image clusters'}: map")
    return write_map(folder, args.pop("positions"), args.pop("paths"), name=MAP_FILE, **args)


# -- tables ------------------------------------------------------------------------------


def cluster_metrics(clusterer, score: bool = True) -> dict:
    """Internal scores, k selection and timings; external scores when labels are known."""
    manifest = clusterer.manifest_
    metrics: dict = {
        "n_images": int(len(clusterer.labels_)),
        "n_skipped": int((manifest["status"] != "loaded").sum()) if "status" in manifest else 0,
        "n_clusters": int(clusterer.n_clusters_),
        "features": clusterer.features,
        "method": clusterer.method,
        "internal": dict(clusterer.scores_),
        "params": clusterer.model_params(),
        "n_dimensions": int(clusterer.embeddings_.shape[1]),
        "smoothing_neighbors_used": (
            int(clusterer.smoother_.n_neighbors) if getattr(clusterer, "smoother_", None) is not None else 0
        ),
    }
    selection = getattr(clusterer, "selection_", None)
    if selection is not None:
        metrics["k_selection"] = selection.table().to_dict(orient="records")
        metrics["chosen_k"] = int(selection.best_k)
        metrics["k_criterion"] = selection.criterion
        metrics["k_notes"] = selection.notes()
    if score and (np.asarray(clusterer.train_labels_) >= 0).any():
        metrics.update(clusterer.score())
    metrics["timings_s"] = {k: round(float(v), 3) for k, v in getattr(clusterer, "timings_", {}).items()}
    return metrics


def _tags(tags: list[dict]) -> str:
    return "; ".join(f"{t['label']} {t['share']:.0%}" for t in tags)


def cluster_caption(clusterer, c: int) -> str:
    """ "cluster 3: tabby (52% of its images)", or the user's name, or "cluster 3"."""
    names = clusterer.cluster_names_ or []
    described = getattr(clusterer, "cluster_descriptions_", None) or []
    text = f"cluster {c}"
    if c < len(names) and names[c]:
        text += f": {names[c]}"
    automatic = (display_names(described) if described else None) or []
    # the share belongs to the ImageNet name, not to one a user gave instead
    if c < len(automatic) and described[c]["level"] and (c >= len(names) or names[c] == automatic[c]):
        text += f" ({described[c]['share']:.0%} of its images)"
    return text


def cluster_summary(clusterer, n_names: int = 3, score: bool = True) -> pd.DataFrame:
    """One row per cluster: size, share, mean distance to centre, mean silhouette,
    the files nearest its centre, its name and what the backbone's ImageNet classifier
    sees in it (where it has one: the most shared class or group and the three most
    shared of each, with their shares) and, when labels are known, its majority class."""
    labels = clusterer.labels_
    names = clusterer.cluster_names_ or []
    described = getattr(clusterer, "cluster_descriptions_", None) or []
    known = np.asarray(clusterer.train_labels_)
    rows = []
    for c in [*range(clusterer.n_clusters_), *([-1] if (labels < 0).any() else [])]:
        members = np.flatnonzero(labels == c)
        if c >= 0:
            nearest = members[np.argsort(clusterer.distances_[members], kind="stable")[:n_names]]
        else:
            nearest = members[:n_names]
        row = {
            "cluster": c if c >= 0 else "noise",
            "size": len(members),
            "share": round(len(members) / len(labels), 4),
            "mean_distance": round(float(np.nanmean(clusterer.distances_[members])), 4) if c >= 0 else float("nan"),
            "mean_silhouette": round(_nanmean(clusterer.silhouette_values_[members]), 4),
            "representatives": "; ".join(Path(clusterer.train_paths_[i]).name for i in nearest),
        }
        if c >= 0 and c < len(names):
            row["name"] = names[c]
        if c >= 0 and c < len(described):
            row["imagenet_name"] = described[c]["name"]
            row["imagenet_share"] = described[c]["share"]
            row["imagenet_classes"] = _tags(described[c]["classes"])
            row["imagenet_groups"] = _tags(described[c]["groups"])
        lab = known[members]
        lab = lab[lab >= 0]
        if score and len(lab):
            top = np.bincount(lab).argmax()
            cls = clusterer.class_names_
            row["majority_class"] = cls[top] if top < len(cls) else str(top)
            row["majority_share"] = round(float((lab == top).mean()), 4)
        rows.append(row)
    return pd.DataFrame(rows)


# how each k criterion chooses, in the report's words
CHOICE_RULES = {
    "silhouette": "the highest mean silhouette wins (ties go to the smaller k).",
    "umap_silhouette": "the highest mean silhouette in a 2-D UMAP layout of the sampled points wins "
    "(ties go to the smaller k).",
    "stability": "among the k whose partitions of random subsamples agree about as well as the most stable k's "
    "(adjusted Rand index on the points they share), the highest mean silhouette wins.",
    "eigengap": "the k after which the eigenvalues of the neighbour graph's normalised Laplacian jump most wins.",
}


# -- figures -----------------------------------------------------------------------------


def _colors(k: int) -> np.ndarray:
    plt = pyplot()
    cmap = plt.get_cmap("tab10" if k <= 10 else "tab20")
    return np.array([cmap(i % cmap.N) for i in range(max(k, 1))])


def plot_score_vs_k(selection, path: Path) -> Path:
    """The criterion that chose k (first), then silhouette, Davies-Bouldin and
    Calinski-Harabasz against k; the chosen k marked."""
    plt = pyplot()
    table = selection.table()
    panels = [("silhouette", "higher"), ("davies_bouldin", "lower"), ("calinski_harabasz", "higher")]
    if selection.criterion != "silhouette" and selection.criterion in table:
        panels.insert(0, (selection.criterion, "higher"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4))
    for ax, (col, better) in zip(axes, panels):
        ax.plot(table["k"], table[col], "o-", color="#3465a4")
        chosen = table[table["chosen"]]
        ax.plot(chosen["k"], chosen[col], "o", color="#cc0000", ms=10, label=f"chosen k={selection.best_k}")
        chooser = " - chooses k" if col == selection.criterion else ""
        ax.set_title(f"{col.replace('_', '-')} ({better} is better){chooser}")
        ax.set_xlabel("k")
        ax.set_xticks(table["k"])
        ax.grid(alpha=0.3)
    axes[0].legend(loc="best")
    return save_figure(fig, path)


def plot_silhouette(candidate, sample_index: np.ndarray, path: Path) -> Path:
    """The classic silhouette plot: each cluster's sorted per-point silhouettes as a
    band, the mean as a dashed line (on the points the silhouette was sampled on)."""
    plt = pyplot()
    values = np.asarray(candidate.silhouette_values)
    labels = candidate.partition.labels[sample_index]
    k = candidate.partition.n_clusters
    colors = _colors(k)
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    y = 0
    gap = max(2, len(values) // 100)
    for c in range(k):
        v = np.sort(values[(labels == c) & np.isfinite(values)])
        if not len(v):
            continue
        ax.fill_betweenx(np.arange(y, y + len(v)), 0, v, color=colors[c], alpha=0.8, lw=0)
        ax.text(-0.05, y + len(v) / 2, str(c), ha="right", va="center", fontsize=8)
        y += len(v) + gap
    ax.axvline(candidate.silhouette, color="#cc0000", ls="--", label=f"mean {candidate.silhouette:.3f}")
    ax.set_xlim(min(-0.1, float(np.nanmin(values)) - 0.05) if np.isfinite(values).any() else -0.1, 1)
    ax.set_yticks([])
    ax.set_xlabel("silhouette")
    ax.set_title(f"k = {candidate.k}")
    ax.legend(loc="lower right", fontsize=8)
    return save_figure(fig, path)


def plot_scatter(xy: np.ndarray, labels: np.ndarray, path: Path, view: str) -> Path:
    plt = pyplot()
    k = int(labels.max()) + 1 if len(labels) and labels.max() >= 0 else 1
    colors = _colors(k)
    fig, ax = plt.subplots(figsize=(7, 6))
    noise = labels < 0
    if noise.any():
        ax.scatter(xy[noise, 0], xy[noise, 1], s=4, c="#bbbbbb", label="noise")
    size = 12 if len(xy) < 2000 else 4
    for c in range(k):
        m = labels == c
        if m.any():
            ax.scatter(xy[m, 0], xy[m, 1], s=size, color=colors[c], label=str(c))
            cx, cy = np.median(xy[m], axis=0)
            ax.text(
                cx,
                cy,
                str(c),
                fontsize=11,
                weight="bold",
                ha="center",
                va="center",
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "alpha": 0.7, "lw": 0},
            )
    ax.set_title(f"{view.upper() if view != 'tsne' else 't-SNE'} view of the clustering space")
    ax.set_xticks([])
    ax.set_yticks([])
    if k <= 20:
        ax.legend(loc="center left", bbox_to_anchor=(1, 0.5), fontsize=8, markerscale=1.5, title="cluster")
    return save_figure(fig, path)


def write_thumbnail_scatter(
    xy: np.ndarray,
    images: np.ndarray,
    labels: np.ndarray,
    path: Path,
    random_state: int,
    n_thumbs: int = SCATTER_THUMBS,
    rows: np.ndarray | None = None,
) -> Path:
    """The 2-D view with a seeded sample of the images drawn at their positions,
    framed in their cluster's colour; point ``i`` is ``images[rows[i]]`` (default
    ``images[i]``)."""
    from PIL import Image

    n = len(xy)
    pick = (
        np.arange(n)
        if n <= n_thumbs
        else np.sort(np.random.default_rng(random_state).choice(n, n_thumbs, replace=False))
    )
    side = 40 if n_thumbs >= 200 else 56
    canvas = Image.new("RGB", (SCATTER_CANVAS, SCATTER_CANVAS), "white")
    lo = xy.min(axis=0)
    span = np.maximum(xy.max(axis=0) - lo, 1e-9)
    usable = SCATTER_CANVAS - side - 8
    colors = (_colors(int(labels.max()) + 1 if (labels >= 0).any() else 1)[:, :3] * 255).astype(int)
    for i in pick:
        x, y = ((xy[i] - lo) / span * usable + 4).astype(int)
        y = SCATTER_CANVAS - side - y  # y grows upwards in the plot
        colour = tuple(colors[labels[i]]) if labels[i] >= 0 else (170, 170, 170)
        framed = Image.new("RGB", (side, side), colour)
        framed.paste(thumbnail(images[i if rows is None else rows[i]], side - 6), (3, 3))
        canvas.paste(framed, (int(x), int(y)))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path


def write_montage(clusterer, images: np.ndarray, cluster: int, path: Path, n: int, random_state: int) -> Path:
    """Top row: the ``n`` members nearest the centre; below: ``n`` random others."""
    from PIL import Image, ImageDraw

    members = np.flatnonzero(clusterer.labels_ == cluster)
    nearest = members[np.argsort(clusterer.distances_[members], kind="stable")[:n]]
    rest = np.setdiff1d(members, nearest)
    rng = np.random.default_rng(random_state + cluster)
    random = np.sort(rng.choice(rest, min(n, len(rest)), replace=False)) if len(rest) else rest
    label_h = 16
    width = max(n, 1) * (THUMB + 4) + 4
    rows = [("nearest to centre", nearest), ("random members", random)]
    rows = [r for r in rows if len(r[1])]
    canvas = Image.new("RGB", (width, len(rows) * (THUMB + label_h + 6) + 2), "white")
    draw = ImageDraw.Draw(canvas)
    y = 2
    for caption, picks in rows:
        draw.text((4, y), caption, fill=(60, 60, 80))
        y += label_h
        for j, i in enumerate(picks):
            canvas.paste(thumbnail(images[i], THUMB), (4 + j * (THUMB + 4), y))
        y += THUMB + 6
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path


def plot_autoencoder_history(history: list[dict], path: Path) -> Path:
    """Reconstruction loss per epoch and, where labels were known, k-means accuracy / NMI
    of the latent vectors every few epochs."""
    plt = pyplot()
    frame = pd.DataFrame(history)
    scored = [c for c in ("accuracy", "nmi") if c in frame]
    fig, axes = plt.subplots(1, 2 if scored else 1, figsize=(10 if scored else 5, 3.4), squeeze=False)
    axes[0, 0].plot(frame["epoch"], frame["loss"], marker="o", color="#3465a4")
    axes[0, 0].set(title="reconstruction loss (MSE)", xlabel="epoch")
    axes[0, 0].grid(alpha=0.3)
    if scored:
        ax = axes[0, 1]
        for c in scored:
            rows = frame[frame[c].notna()]
            ax.plot(rows["epoch"], rows[c], marker="o", label=c)
        ax.set(title="k-means on the latent vectors", xlabel="epoch", ylim=(0, 1))
        ax.legend()
        ax.grid(alpha=0.3)
    return save_figure(fig, path)


def write_reconstructions(originals: np.ndarray, recon: np.ndarray, path: Path) -> Path:
    """Originals (top row) above the autoencoder's reconstructions (bottom row)."""
    from PIL import Image

    side = 64
    sheet = Image.new("RGB", (side * len(originals), side * 2), "white")
    for i in range(len(originals)):
        sheet.paste(thumbnail(originals[i], side), (i * side, 0))
        sheet.paste(thumbnail(recon[i], side), (i * side, side))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


# -- files -------------------------------------------------------------------------------


def copy_into_cluster_folders(assignments: pd.DataFrame, root: Path, mode: str) -> Path:
    """One folder per cluster (``noise`` for -1) holding copies of or symbolic links
    to its files; names that collide get their row number as prefix.

    What an earlier run wrote under ``root`` is removed first (the files listed in its
    ``.pixsort-folders.json``, then the cluster folders left empty; a folder written
    before that list existed is removed when it is a ``cluster_<n>``/``noise`` folder
    of plain files and links only), so a rerun with another k leaves no stale folders;
    nothing else in ``root`` is touched."""
    root.mkdir(parents=True, exist_ok=True)
    _remove_cluster_folders(root)
    made: list[str] = []
    for number, row in enumerate(assignments.itertuples(index=False)):
        src = Path(row.path)
        if not src.is_file():  # array or archive members have no file of their own
            continue
        folder = root / ("noise" if row.cluster < 0 else f"cluster_{row.cluster}")
        folder.mkdir(exist_ok=True)
        dest = folder / src.name
        if dest.exists() or dest.is_symlink():
            dest = folder / f"{number}_{src.name}"
        if dest.exists() or dest.is_symlink():
            continue
        if mode == "link":
            os.symlink(src.resolve(), dest)
        else:
            shutil.copy2(src, dest)
        made.append(dest.relative_to(root).as_posix())
    (root / _FOLDERS_MANIFEST).write_text(json.dumps({"files": made}), encoding="utf-8")
    return root


_FOLDERS_MANIFEST = ".pixsort-folders.json"
_CLUSTER_FOLDER = re.compile(r"^(cluster_-?\d+|noise)$")


def _remove_cluster_folders(root: Path) -> None:
    manifest = root / _FOLDERS_MANIFEST
    had_manifest = manifest.exists()
    if had_manifest:
        try:
            listed = json.loads(manifest.read_text(encoding="utf-8")).get("files", [])
        except (OSError, ValueError, AttributeError):
            listed = []
        for name in listed:
            parts = Path(name).parts
            path = root / name
            if len(parts) == 2 and _CLUSTER_FOLDER.match(parts[0]) and (path.is_symlink() or path.is_file()):
                path.unlink()
        manifest.unlink()
    for folder in root.iterdir():
        if not folder.is_dir() or folder.is_symlink() or not _CLUSTER_FOLDER.match(folder.name):
            continue
        entries = list(folder.iterdir())
        if not had_manifest and all(e.is_symlink() or e.is_file() for e in entries):
            for e in entries:  # a folder from before the list: plain copies and links only
                e.unlink()
        if not any(folder.iterdir()):
            folder.rmdir()


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=float)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


# -- HTML --------------------------------------------------------------------------------


def _write_html(clusterer, folder: Path, *, title, metrics, summary, table, silhouette_plots, montages, files, view,
                model_dir) -> Path:  # fmt: skip
    def rel(p: Path) -> str:
        return Path(os.path.relpath(p, folder)).as_posix()

    selection = clusterer.selection_

    how = (
        f"k = {clusterer.n_clusters_} chosen by {selection.label} over {selection.table()['k'].min()}.."
        f"{selection.table()['k'].max()}"
        if selection is not None
        else f"k = {clusterer.n_clusters_}"
    )
    rep = HtmlReport(title or "Image clusters", subtitle=f"{clusterer.features} features, {clusterer.method}; {how}")
    rep.section("Summary")
    kv = {
        "images": metrics["n_images"],
        "skipped files": metrics["n_skipped"],
        "clusters": metrics["n_clusters"],
        "silhouette": metrics["internal"].get("silhouette"),
        "Davies-Bouldin": metrics["internal"].get("davies_bouldin"),
        "Calinski-Harabasz": metrics["internal"].get("calinski_harabasz"),
    }
    if "accuracy" in metrics:
        kv.update(
            {
                "accuracy (Hungarian)": metrics["accuracy"],
                "NMI": metrics["nmi"],
                "ARI": metrics["ari"],
                "purity": metrics["purity"],
            }
        )
    rep.key_values({k: ("n/a" if v is None else v) for k, v in kv.items()})
    rep.paragraph(
        "Files: clusters.csv (one row per image), manifest.csv (every input, skipped ones with "
        "their reason), metrics.json" + (", model/ (for pixsort assign)" if model_dir else "") + ".",
        "note",
    )
    rep.section("Clusters", "Each cluster's size, how tight it is, and the images nearest its centre.")
    rep.table(summary, index=False)
    if table is not None:
        rep.section(
            "Clusters against the known classes",
            "Counts per cluster and class; matched_class is the one-to-one (Hungarian) match "
            "that accuracy is computed from.",
        )
        rep.table(table)
    if selection is not None:
        rep.section(
            "Choosing k",
            f"Each candidate k was clustered and scored; {CHOICE_RULES.get(selection.deciding, '')}",
        )
        for note in selection.notes():
            rep.paragraph(note[0].upper() + note[1:] + ".", "warn")
        rep.image(rel(files["score_vs_k"]), caption="Scores against k")
        rep.table(selection.table(), index=False)
        for k, p in silhouette_plots.items():
            rep.image(
                rel(p), caption=f"Silhouette plot, k = {k}" + (" (chosen)" if k == selection.best_k else ""), width=380
            )
    rep.section("Members of each cluster", "Top row: the images nearest the centre; bottom: random members.")
    for c, p in montages.items():
        rep.image(rel(p), caption=f"{cluster_caption(clusterer, c)} ({int((clusterer.labels_ == c).sum())} images)")
    if "reconstructions" in files:
        rep.section(
            "The autoencoder",
            "Trained on these images; its latent vectors are the features. "
            "Loss per epoch and, where labels are known, k-means accuracy / NMI every few epochs "
            "(autoencoder_history.csv).",
        )
        rep.image(rel(files["autoencoder_curves"]), caption="Training curves", width=700)
        rep.image(rel(files["reconstructions"]), caption="Originals (top) and reconstructions (bottom)", width=700)
    rep.section("Map of the clustering space", f"2-D {view} view; neighbouring points are similar images.")
    if "map" in files:
        rep.link(rel(files["map"]), "Open the interactive map of every image (pan, zoom, hover, filter, select)")
    rep.image(rel(files["scatter"]), caption="Points coloured by cluster", width=560)
    rep.image(rel(files["scatter_thumbnails"]), caption="A sample of the images at their positions", width=700)
    timings = metrics.get("timings_s") or {}
    if timings:
        rep.section("Timings")
        rep.key_values({f"{k} (s)": v for k, v in timings.items()})
    return rep.write(folder / "report.html")


__all__ = [
    "COPY_MODES",
    "MAP_MAX_POINTS",
    "ClusterOutputs",
    "cluster_map_fields",
    "cluster_map_page",
    "map_neighbours",
    "map_rows",
    "cluster_metrics",
    "cluster_summary",
    "copy_into_cluster_folders",
    "write_assignments",
    "write_cluster_map",
    "write_cluster_outputs",
]
