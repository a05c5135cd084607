"""What an audit leaves in a folder.

=====================  ================================================================
audit.csv              one row per input item (skipped ones too, with the reason): split,
                       label, every score and flag, duplicate group ids, 2-D position
duplicates.csv         one row per member of a duplicate group (exact, near or mixed)
label_issues.csv       likely label errors, most likely first, with the suggested label
leakage.csv            (``--against``) the other set's images with copies in this one
class_balance.csv      images per class and split
summary.json           counts, thresholds (and how they were chosen), timings
report.html            the findings, with thumbnails linking to the images
map.html, map_atlas/   the interactive map of every audited image (:mod:`pixsort.report.map`):
                       class, split, duplicate group, outlier, label issue and each quality
                       flag as filters; scores on hover; nearest neighbours on a click
thumbs/                the thumbnails the report shows
figures                nearest_similarity.png, outlier_scores.png
=====================  ================================================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd

from pixsort.auditing.duplicates import group_table
from pixsort.auditing.quality import QUALITY_FLAGS
from pixsort.report.figures import plain_text, pyplot, save_figure, thumbnail
from pixsort.report.files import write_csv, write_json
from pixsort.report.html import HtmlReport
from pixsort.report.map import MAP_FILE, write_map

THUMB_SIDE = 96
SHOWN = 24  # thumbnails per finding in the report
MAP_NEIGHBOURS = 8  # nearest images shown when a point of the map is clicked


@dataclass
class AuditOutputs:
    """The tables written (as DataFrames), the summary and the files, by name."""

    folder: Path
    table: pd.DataFrame
    duplicates: pd.DataFrame
    label_issues: pd.DataFrame
    class_balance: pd.DataFrame
    summary: dict
    leaks: pd.DataFrame | None = None
    files: dict[str, Path] = field(default_factory=dict)


def audit_table(manifest: pd.DataFrame, index: np.ndarray, auditor, quality: pd.DataFrame, positions, class_names):
    """audit.csv as a DataFrame: the manifest's rows, with the loaded ones' findings.

    Parameters
    ----------
    manifest : DataFrame, one row per input item (:func:`pixsort.data.load_images`)
    index : ndarray (n,), manifest row of each audited image
    auditor : fitted :class:`~pixsort.auditing.ImageAuditor`
    quality : DataFrame (n rows) from :func:`~pixsort.auditing.quality_table`
    positions : ndarray (n, 2), the 2-D layout
    class_names : list of str
    """
    frame = manifest[["path", "status", "reason", "split", "label", "mode", "content_hash"]].copy()
    n_items = len(frame)
    paths = manifest["path"].astype(str).to_numpy()

    def column(values, dtype, fill):
        out = pd.Series(pd.array([fill] * n_items, dtype=dtype))
        out.iloc[index] = values
        return out

    group = auditor.group_
    sizes = np.bincount(group[group >= 0], minlength=max(int(group.max()) + 1, 1))
    frame["group"] = column(np.where(group >= 0, group, pd.NA), "Int64", pd.NA)
    frame["exact_group"] = column(np.where(auditor.exact_group_ >= 0, auditor.exact_group_, pd.NA), "Int64", pd.NA)
    frame["group_size"] = column(np.where(group >= 0, sizes[np.clip(group, 0, None)], 1), "Int64", pd.NA)
    frame["nearest_similarity"] = column(np.round(auditor.nearest_similarity_, 6), "Float64", pd.NA)
    frame["nearest_path"] = column(paths[index][auditor.nearest_index_], object, "")
    bits = getattr(auditor, "nearest_hash_distance_", None)
    if bits is not None and (np.asarray(bits) >= 0).any():
        frame["nearest_hash_bits"] = column(np.where(bits >= 0, bits, pd.NA), "Int64", pd.NA)
    frame["outlier_score"] = column(np.round(auditor.outlier_score_, 6), "Float64", pd.NA)
    frame["outlier_z"] = column(np.round(auditor.outlier_z_, 3), "Float64", pd.NA)
    frame["outlier"] = column(auditor.outlier_, "boolean", pd.NA)
    for name in ("brightness", "contrast", "sharpness", "colourfulness", "aspect"):
        frame[name] = column(np.round(quality[name].to_numpy(dtype=np.float64), 3), "Float64", pd.NA)
    for name in QUALITY_FLAGS:
        frame[name] = column(quality[name].to_numpy(), "boolean", pd.NA)
    frame["n_quality_flags"] = column(quality["n_quality_flags"].to_numpy(), "Int64", pd.NA)
    frame.insert(frame.columns.get_loc("mode"), "width", manifest["width"])
    frame.insert(frame.columns.get_loc("mode"), "height", manifest["height"])
    scores = auditor.label_scores_
    if scores is not None:
        names = np.array([*class_names, ""], dtype=object)  # -1 -> ""
        frame["label_quality"] = column(np.round(scores["label_quality"].to_numpy(), 6), "Float64", pd.NA)
        frame["suggested_label"] = column(names[scores["suggested"].to_numpy()], object, "")
        frame["p_suggested"] = column(np.round(scores["p_suggested"].to_numpy(), 6), "Float64", pd.NA)
        frame["label_issue"] = column(scores["label_issue"].to_numpy(), "boolean", pd.NA)
        frame["issue_rank"] = column(np.where(scores["issue_rank"] > 0, scores["issue_rank"], pd.NA), "Int64", pd.NA)
    frame["x"] = column(np.round(positions[:, 0], 5), "Float64", pd.NA)
    frame["y"] = column(np.round(positions[:, 1], 5), "Float64", pd.NA)
    return frame


def audit_map_fields(loaded: pd.DataFrame) -> dict[str, np.ndarray]:
    """The per-image fields of the audit's map, from the audited rows of audit.csv (n rows,
    in the order of the layout): class, split, duplicate group (text, "" for none),
    whether in a group, outlier and label-issue flags, each quality flag (categories, so
    they filter), and the scores (outlier score, nearest similarity, label quality)."""

    def flag(name):
        return loaded[name].fillna(False).astype(bool).to_numpy() if name in loaded else None

    group = loaded["group"]
    fields: dict[str, np.ndarray] = {
        "class": loaded["label"].astype(str).to_numpy(dtype=object),
        "split": loaded["split"].astype(str).to_numpy(dtype=object),
        "duplicate_group": np.array(["" if pd.isna(g) else str(int(g)) for g in group], dtype=object),
        "duplicate": group.notna().to_numpy(dtype=bool),
        "outlier": flag("outlier"),
        "outlier_score": loaded["outlier_score"].to_numpy(dtype=np.float64, na_value=np.nan),
        "nearest_similarity": loaded["nearest_similarity"].to_numpy(dtype=np.float64, na_value=np.nan),
    }
    if "label_issue" in loaded:
        fields["label_issue"] = flag("label_issue")
        fields["label_quality"] = loaded["label_quality"].to_numpy(dtype=np.float64, na_value=np.nan)
        fields["suggested_label"] = loaded["suggested_label"].astype(str).to_numpy(dtype=object)
    for name in QUALITY_FLAGS:
        fields[name] = flag(name)
    return {k: v for k, v in fields.items() if v is not None}


def label_issue_table(table: pd.DataFrame) -> pd.DataFrame:
    """label_issues.csv: the flagged rows of audit.csv, most likely wrong first."""
    cols = ["issue_rank", "path", "split", "label", "suggested_label", "label_quality", "p_suggested"]
    if "label_issue" not in table:
        return pd.DataFrame(columns=cols)
    rows = table[table["label_issue"].fillna(False).astype(bool)]
    return rows.sort_values("issue_rank")[cols].reset_index(drop=True)


def class_balance(manifest: pd.DataFrame) -> pd.DataFrame:
    """Loaded images per class (rows) and split (columns), with totals."""
    loaded = manifest[manifest["status"] == "loaded"]
    split = loaded["split"].replace("", "(none)")
    label = loaded["label"].replace("", "(unlabelled)")
    table = pd.crosstab(label, split, margins=True, margins_name="total")
    table.index.name, table.columns.name = "class", None
    return table


def write_audit_outputs(
    out: str | os.PathLike,
    *,
    manifest: pd.DataFrame,
    index: np.ndarray,
    auditor,
    quality: pd.DataFrame,
    positions: np.ndarray,
    class_names: list[str],
    images,
    summary: dict,
    leaks: pd.DataFrame | None = None,
    title: str = "Audit",
    map_thumbs=None,
) -> AuditOutputs:
    """Write every audit output (see the module notes) and return them.

    ``images`` (n, H, W, C): the decoded audited images, for the thumbnails; ``summary``:
    what the use case knows (source, features, timings), completed here with the counts;
    ``map_thumbs`` (n, TILE, TILE, 3) uint8: the map's thumbnails already made
    (:func:`pixsort.report.map.tile_pixels`; default: made here from ``images``)."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    table = audit_table(manifest, index, auditor, quality, positions, class_names)
    loaded = table.iloc[index]
    duplicates = group_table(
        auditor.group_,
        auditor.exact_group_,
        loaded["path"].astype(str).tolist(),
        loaded["split"].to_numpy(dtype=object),
        loaded["label"].astype(str).tolist(),
    )
    issues = label_issue_table(table)
    balance = class_balance(manifest)
    files = {
        "audit": write_csv(table, folder / "audit.csv"),
        "duplicates": write_csv(duplicates, folder / "duplicates.csv"),
        "label_issues": write_csv(issues, folder / "label_issues.csv"),
        "class_balance": write_csv(balance, folder / "class_balance.csv", index=True),
    }
    if leaks is not None:
        files["leakage"] = write_csv(leaks, folder / "leakage.csv")
    summary = {**summary, **_counts(table, duplicates, issues, auditor, leaks, balance)}
    files["nearest_similarity"] = _plot_similarity(auditor, folder / "nearest_similarity.png")
    files["outlier_scores"] = _plot_outliers(auditor, folder / "outlier_scores.png")
    files["summary"] = write_json(summary, folder / "summary.json")
    files["map"] = write_map(
        folder,
        positions,
        loaded["path"].astype(str).tolist(),
        images=images if map_thumbs is None else map_thumbs,
        fields=audit_map_fields(loaded),
        neighbours=auditor.neighbour_indices_[:, :MAP_NEIGHBOURS],
        title=f"{plain_text(title)}: map",
        colour_by="class" if loaded["label"].astype(str).ne("").any() else "duplicate",
        name=MAP_FILE,
    )
    files["report"] = _write_html(
        folder, title, summary, table, duplicates, issues, balance, leaks, index, images, files
    )
    return AuditOutputs(folder, table, duplicates, issues, balance, summary, leaks, files)


def _counts(table, duplicates, issues, auditor, leaks, balance) -> dict:
    loaded = table[table["status"] == "loaded"]
    kinds = duplicates.drop_duplicates("group")["kind"].value_counts() if len(duplicates) else pd.Series(dtype=int)
    spans = duplicates.drop_duplicates("group")["spans_splits"].sum() if len(duplicates) else 0
    skipped = table[table["status"] != "loaded"]
    counts = {
        "n_items": len(table),
        "n_audited": len(loaded),
        "n_skipped": len(skipped),
        "skipped_reasons": skipped["reason"].astype(str).str.split(":").str[0].value_counts().to_dict(),
        "duplicates": {
            "n_groups": int(duplicates["group"].nunique()) if len(duplicates) else 0,
            "n_images_in_groups": len(duplicates),
            "n_redundant": int((~duplicates["keep"]).sum()) if len(duplicates) else 0,
            "n_exact_groups": int(kinds.get("exact", 0)),
            "n_near_groups": int(kinds.get("near", 0)),
            "n_mixed_groups": int(kinds.get("mixed", 0)),
            "n_groups_spanning_splits": int(spans),
        },
        "outliers": {"n_flagged": int(auditor.outlier_.sum())},
        "quality_flags": {name: int(loaded[name].fillna(False).astype(bool).sum()) for name in QUALITY_FLAGS},
        "label_issues": {**auditor.label_info_, "n_listed": len(issues)},
        "class_balance": {
            str(c): {str(s): int(v) for s, v in row.items()} for c, row in balance.drop(index="total").iterrows()
        },
    }
    if leaks is not None:
        counts["leakage"] = {
            "n_other_images_with_copies": int(leaks["other_path"].nunique()) if len(leaks) else 0,
            "n_pairs": len(leaks),
            "n_exact_pairs": int(leaks["exact"].sum()) if len(leaks) else 0,
        }
    return counts


def _plot_similarity(auditor, path: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.hist(np.clip(auditor.nearest_similarity_, -1, 1), bins=100, color="#4a6fa5")
    ax.axvline(auditor.near_threshold, color="#c0392b", linestyle="--", label=f"near-copy ≥ {auditor.near_threshold}")
    ax.set_yscale("log")
    ax.set_xlabel("cosine similarity to the nearest other image")
    ax.set_ylabel("images")
    ax.legend()
    return save_figure(fig, path)


def _plot_outliers(auditor, path: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.hist(auditor.outlier_score_, bins=100, color="#4a6fa5")
    if auditor.outlier_.any():
        ax.axvline(auditor.outlier_score_[auditor.outlier_].min(), color="#c0392b", linestyle="--", label="outliers")
        ax.legend()
    ax.set_yscale("log")
    ax.set_xlabel(f"mean cosine distance to the {auditor.outlier_k} nearest images (copies left out)")
    ax.set_ylabel("images")
    return save_figure(fig, path)


def _href(folder: Path, path: str) -> str | None:
    """A relative link from the report to an image file (None for array items)."""
    if not os.path.isfile(path):
        return None
    return quote(Path(os.path.relpath(os.path.abspath(path), folder.resolve())).as_posix())


def _write_html(folder, title, summary, table, duplicates, issues, balance, leaks, index, images, files) -> Path:
    thumbs = folder / "thumbs"
    row_of = {int(m): r for r, m in enumerate(index)}  # manifest row -> audited image
    path_row = {p: int(m) for m, p in zip(index, table["path"].iloc[index])}

    def item(path: str, text: str):
        m = path_row.get(path)
        if m is None:
            return None
        target = thumbs / f"{row_of[m]}.png"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            thumbnail(images[row_of[m]], THUMB_SIDE).save(target)
        return (f"thumbs/{target.name}", _href(folder, path), text)

    def gallery(rows: pd.DataFrame, caption, text):
        items = [item(str(r["path"]), text(r)) for _, r in rows.head(SHOWN).iterrows()]
        rep.gallery([i for i in items if i], caption=caption, side=THUMB_SIDE)

    d, lab = summary["duplicates"], summary["label_issues"]
    rep = HtmlReport(
        plain_text(title), subtitle=f"{summary['n_audited']} images audited, {summary['n_skipped']} skipped"
    )
    rep.section("Summary")
    rep.key_values(
        {
            "images": summary["n_audited"],
            "skipped": summary["n_skipped"],
            "duplicate groups": d["n_groups"],
            "groups across splits": d["n_groups_spanning_splits"],
            "outliers": summary["outliers"]["n_flagged"],
            "label issues": lab.get("n_issues", 0),
        }
    )
    rep.paragraph(
        f"Near-copies: cosine similarity ≥ {summary['near_threshold']} of centred {summary['features']['name']} "
        f"embeddings ({summary['near_threshold_source']}), or a pixel difference hash within "
        f"{summary.get('hash_distance', '-')} bits (whole image vs whole or centre {summary.get('hash_crop', '-')}); "
        "exact copies: identical content hash.",
        "note",
    )
    if "map" in files:
        rep.link(files["map"].name, "Open the interactive map of every image (filter by class, split, duplicate, flag)")
    rep.table(balance, caption="Images per class and split")
    rep.section("Duplicates", "Each group: byte-identical (exact) or near-identical copies; the first is kept.")
    rep.image("nearest_similarity.png", caption="Similarity of each image to its nearest other image")
    for g, rows in list(duplicates.groupby("group"))[:SHOWN]:
        kind, splits = rows["kind"].iloc[0], rows["group_splits"].iloc[0]
        leak = " — spans splits" if rows["spans_splits"].iloc[0] else ""
        gallery(rows, f"group {g}: {kind}, {len(rows)} images, splits {splits or '-'}{leak}", lambda r: r["path"])
    if leaks is not None:
        rep.section("Leakage from the other set", f"{len(leaks)} pairs; see leakage.csv.")
        rep.table(leaks.head(50), index=False)
    rep.section("Outliers", "Images far from every neighbour (highest score first).")
    rep.image("outlier_scores.png", caption="Outlier scores")
    ranked = table[table["status"] == "loaded"].sort_values("outlier_score", ascending=False)
    gallery(ranked, "Highest outlier scores", lambda r: f"{r['outlier_score']:.3f} {r['path']}")
    rep.section("Image quality")
    for name in QUALITY_FLAGS:
        flagged = table[table[name].fillna(False).astype(bool)]
        if len(flagged):
            gallery(flagged, f"{name}: {len(flagged)} images", lambda r: r["path"])
    rep.key_values(summary["quality_flags"])
    rep.section("Likely label errors", lab.get("note") or "Out-of-fold probe probabilities ranked by cleanlab.")
    if len(issues):
        gallery(issues, "Most likely wrong first", lambda r: f"{r['label']} → {r['suggested_label']}: {r['path']}")
        rep.table(issues.head(100), index=False)
    skipped = table[table["status"] != "loaded"]
    if len(skipped):
        rep.section("Skipped files")
        rep.table(skipped[["path", "reason"]], index=False)
    return rep.write(folder / "report.html")


__all__ = [
    "AuditOutputs",
    "audit_map_fields",
    "audit_table",
    "class_balance",
    "label_issue_table",
    "write_audit_outputs",
]
