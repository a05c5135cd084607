"""The interactive map: every image at its 2-D position, as a thumbnail, in one HTML page.

:func:`build_map` makes the page (text) and its thumbnail atlases (JPEG bytes);
:func:`write_map` writes them into a folder::

    map.html              the page: its script, style and point data inline (no network)
    map_atlas/atlas_{i}.jpg   thumbnails packed ATLAS_SIDE x ATLAS_SIDE tiles per image

The page opens from ``file://`` (no ``fetch``: the data is inline, the atlases are
``<img>`` sources).  Its JavaScript and CSS ship in ``pixsort/report/static``.

Points carry a path, an optional link (relative to the page where the file is on
disk), and any number of fields: numeric ones (scores) show in the tooltip,
categorical ones (cluster, class, split, flag) also get a filter box and can colour
the points.  ``neighbours`` (n, k) are the row indices shown on a click
(:func:`nearest_indices` computes them with
:class:`~pixsort.cluster.images.neighbours.NeighbourSearch`, never n x n).
"""

from __future__ import annotations

import html
import io
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from pixsort.base.cells import FORMULA_PREFIXES

TILE = 32  # thumbnail side in the atlases, px
ATLAS_SIDE = 64  # tiles per atlas row and column (2048 px atlases, 4096 thumbnails each)
INLINE_ATLAS_MAX = 1024  # up to this many points the atlas goes inline as a data URI
MAX_CATEGORIES = 500  # a text field with more distinct values is shown, not filtered
MAP_FILE = "map.html"
ATLAS_FOLDER = "map_atlas"


@dataclass
class MapPage:
    """What :func:`build_map` made: the page and its atlases (JPEG bytes, in order)."""

    html: str
    atlases: list[bytes] = field(default_factory=list)
    n_points: int = 0


def build_map(
    positions: np.ndarray,
    paths: Sequence[str],
    *,
    images: Any = None,
    fields: Mapping[str, Any] | None = None,
    neighbours: np.ndarray | None = None,
    links: Sequence[str | None] | None = None,
    colour_by: str | None = None,
    title: str = "Map",
    atlas_url: str = ATLAS_FOLDER + "/atlas_{i}.jpg",
    inline_atlas: bool | None = None,
    tile: int = TILE,
) -> MapPage:
    """The map page for ``n`` points.

    Parameters
    ----------
    positions : array (n, 2)
        2-D layout (any scale; normalised here).
    paths : n str
        Shown on hover and exported by the selection.
    images : indexable of uint8 arrays (n, H, W[, C]), callable ``i -> array``, or None
        The thumbnails' source (an array, :class:`~pixsort.data.lazy.ImageRows`, ...);
        None draws dots only.  An image that cannot be read is a grey tile.
    fields : dict name -> array-like (n,)
        Per-point values.  Floats are scores (shown); integers, bools and text are
        categories (shown, filtered, colour the points); text with more than
        :data:`MAX_CATEGORIES` distinct values is only shown.
    neighbours : int array (n, k), optional
        Row indices of each point's nearest neighbours, closest first (-1: none).
    links : n str or None, optional
        Where a click opens the image (``None``: no link).
    colour_by : str, optional
        The categorical field that colours the points first (default: ``cluster`` if
        present, else the first categorical field).
    atlas_url : str
        Where the page loads atlas ``i`` from: a template with ``{i}``.
    inline_atlas : bool, optional
        Put the atlases in the page as data URIs (default: up to
        :data:`INLINE_ATLAS_MAX` points).
    """
    xy = np.asarray(positions, dtype=np.float64)
    n = len(xy)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"positions must be (n, 2), got {xy.shape}")
    if len(paths) != n:
        raise ValueError(f"{len(paths)} paths for {n} positions")
    if not np.isfinite(xy).all():
        raise ValueError("positions must be finite")
    columns = [_field(name, values, n) for name, values in (fields or {}).items()]
    categorical = [c["name"] for c in columns if c["kind"] == "category"]
    if colour_by is None:
        colour_by = "cluster" if "cluster" in categorical else (categorical[0] if categorical else None)
    elif colour_by not in categorical:
        raise ValueError(f"colour_by={colour_by!r} is not a categorical field ({', '.join(categorical) or 'none'})")
    lo = xy.min(axis=0) if n else np.zeros(2)
    span = float(np.max(xy.max(axis=0) - lo)) if n else 1.0
    unit = (xy - lo) / (span if span > 0 else 1.0)
    atlases = _atlases(images, n, tile) if images is not None else []
    if inline_atlas is None:
        inline_atlas = n <= INLINE_ATLAS_MAX
    if inline_atlas:
        import base64

        urls = ["data:image/jpeg;base64," + base64.b64encode(a).decode("ascii") for a in atlases]
    else:
        urls = [atlas_url.format(i=i) for i in range(len(atlases))]
    data: dict[str, Any] = {
        "title": str(title),
        "n": n,
        "x": np.round(unit[:, 0], 5).tolist(),
        "y": np.round(unit[:, 1], 5).tolist(),
        "paths": [str(p) for p in paths],
        "links": None if links is None else [None if v is None else str(v) for v in links],
        "fields": columns,
        "colour_by": colour_by,
        "atlas": {"urls": urls, "tile": tile, "per_row": ATLAS_SIDE} if atlases else None,
        "formula_prefixes": list(FORMULA_PREFIXES),
    }
    if links is not None and len(links) != n:
        raise ValueError(f"{len(links)} links for {n} points")
    if neighbours is not None:
        nb = np.asarray(neighbours, dtype=np.int64)
        if nb.ndim != 2 or len(nb) != n:
            raise ValueError(f"neighbours must be (n, k) with n={n}, got {nb.shape}")
        data["neighbours"] = {"k": int(nb.shape[1]), "index": nb.ravel().tolist()}
    page = _page(data, title)
    return MapPage(page, [] if inline_atlas else atlases, n)


def write_map(
    folder: str | os.PathLike,
    positions: np.ndarray,
    paths: Sequence[str],
    *,
    images: Any = None,
    fields: Mapping[str, Any] | None = None,
    neighbours: np.ndarray | None = None,
    links: Sequence[str | None] | str | None = "auto",
    name: str = MAP_FILE,
    **options,
) -> Path:
    """Write the map of :func:`build_map` into ``folder`` (``name`` and its atlases);
    returns the page's path.

    ``links="auto"``: each path that is a file on disk is linked relative to the page
    (absolute where no relative path exists); other paths (array members) get none.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(links, str) and links == "auto":
        links = file_links(paths, folder)
    page = build_map(positions, paths, images=images, fields=fields, neighbours=neighbours, links=links, **options)
    atlas_dir = folder / ATLAS_FOLDER
    if atlas_dir.is_dir():  # an earlier, larger map's atlases must not linger
        for old in atlas_dir.glob("atlas_*.jpg"):
            old.unlink()
    for i, data in enumerate(page.atlases):
        atlas_dir.mkdir(exist_ok=True)
        (atlas_dir / f"atlas_{i}.jpg").write_bytes(data)
    path = folder / name
    path.write_text(page.html, encoding="utf-8")
    return path


def file_links(paths: Sequence[str], folder: Path) -> list[str | None]:
    """Each path that is a file on disk, as a URL relative to ``folder`` (else None).

    Each directory is resolved once, not each file (one stat per file instead of a
    resolve: resolving each of 20,000 files took 2.2 s under a profiler); a link to a
    symlinked file is a link to the symlink, which the browser follows."""
    from urllib.parse import quote

    base = Path(folder).resolve()
    prefixes: dict[str, str | None] = {}  # directory -> its URL relative to folder, "" for folder itself
    out: list[str | None] = []
    for p in paths:
        text = os.fspath(p)
        if not os.path.isfile(text):
            out.append(None)
            continue
        head, name = os.path.split(text)
        if head not in prefixes:
            try:
                rel = Path(os.path.relpath(Path(head or ".").resolve(), base)).as_posix()
                prefixes[head] = "" if rel == "." else quote(os.fsencode(rel)) + "/"
            except ValueError:  # another drive
                prefixes[head] = None
        prefix = prefixes[head]
        # the name's bytes on disk, percent-encoded: a name that is not UTF-8 still links
        out.append(prefix + quote(os.fsencode(name)) if prefix is not None else (Path(head).resolve() / name).as_uri())
    return out


def nearest_indices(embeddings: np.ndarray, k: int = 8) -> np.ndarray:
    """Each row's ``k`` nearest other rows by cosine (int32 (n, k), closest first)."""
    from pixsort.cluster.images.neighbours import NeighbourSearch

    Z = np.asarray(embeddings, dtype=np.float32)
    if len(Z) < 2 or k < 1:
        return np.zeros((len(Z), 0), dtype=np.int32)
    norms = np.linalg.norm(Z, axis=1, keepdims=True)
    Z = Z / np.where(norms > 0, norms, 1)
    _, idx = NeighbourSearch(Z).search(Z, min(k, len(Z) - 1), exclude_self=True)
    return idx.astype(np.int32)


# -- parts -------------------------------------------------------------------------------


def _field(name: str, values: Any, n: int) -> dict:
    arr = np.asarray(values)
    if arr.shape != (n,):
        raise ValueError(f"field {name!r} has shape {arr.shape}, expected ({n},)")
    if arr.dtype.kind == "f":
        digits = [None if not math.isfinite(x) else float(f"{x:.5g}") for x in arr.astype(np.float64).tolist()]
        return {"name": str(name), "kind": "number", "values": digits}
    if arr.dtype.kind in "iub":  # cluster numbers, class codes, flags: categories in numeric order
        categories, codes = np.unique(arr, return_inverse=True)
        cats = [str(c) for c in categories.tolist()]
    else:
        text = ["" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in arr.tolist()]
        categories, codes = np.unique(np.asarray(text, dtype=object), return_inverse=True)
        cats = [str(c) for c in categories]
        if len(cats) > MAX_CATEGORIES:
            return {"name": str(name), "kind": "text", "values": text}
    return {"name": str(name), "kind": "category", "categories": cats, "codes": codes.astype(int).ravel().tolist()}


def _tile(image: Any, tile: int):
    from PIL import Image

    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    im = Image.fromarray(arr).convert("RGB")
    resample = Image.NEAREST if max(im.size) < tile else Image.BILINEAR
    return im.resize((tile, tile), resample)


def tile_pixels(image: Any, tile: int = TILE) -> np.ndarray:
    """The map's thumbnail of one image: uint8 (tile, tile, 3), as its atlas holds it
    (an array of these as ``images`` makes the same atlases again, with no resizing)."""
    return np.asarray(_tile(image, tile), dtype=np.uint8)


def _atlases(images: Any, n: int, tile: int) -> list[bytes]:
    from PIL import Image

    lookup = callable(images) and not hasattr(images, "__getitem__")
    get: Callable[[int], Any] = images if lookup else getattr(images, "stored", images.__getitem__)
    many = getattr(images, "stored_many", None)  # files decoded by several processes at once
    per = ATLAS_SIDE * ATLAS_SIDE
    out = []
    for start in range(0, n, per):
        count = min(per, n - start)
        rows = math.ceil(count / ATLAS_SIDE)
        sheet = Image.new("RGB", (ATLAS_SIDE * tile, rows * tile), (200, 200, 200))
        sheet_images = many(np.arange(start, start + count)) if many is not None else None
        for j in range(count):
            try:
                thumb = _tile(get(start + j) if sheet_images is None else sheet_images[j], tile)
            except Exception:  # an unreadable image is a grey tile, not a failed map
                continue
            sheet.paste(thumb, ((j % ATLAS_SIDE) * tile, (j // ATLAS_SIDE) * tile))
        buf = io.BytesIO()
        sheet.save(buf, format="JPEG", quality=82)
        out.append(buf.getvalue())
    return out


def _static(name: str) -> str:
    return resources.files("pixsort.report").joinpath("static", name).read_text(encoding="utf-8")


def _script_json(value: Any) -> str:
    # inside <script>: no "</script>", no HTML comment openers, no line separators
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _page(data: dict, title: str) -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'><link rel='icon' href='data:,'>"
        f"<title>{html.escape(str(title))}</title><style>{_static('map.css')}</style></head><body>"
        f"{_static('map_body.html')}"
        f"<script>window.PIXSORT_MAP={_script_json(data)};</script>"
        f"<script>{_static('map.js')}</script></body></html>"
    )


__all__ = [
    "ATLAS_SIDE",
    "MAP_FILE",
    "TILE",
    "MapPage",
    "build_map",
    "file_links",
    "nearest_indices",
    "tile_pixels",
    "write_map",
]
