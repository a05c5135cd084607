"""From a feature name to features: one name picks the extractor (the grammar of
:mod:`pixsort.features.names`), and the embeddings of pretrained and pixel
extractors go through the on-disk cache.

Names: any backbone of :func:`pixsort.features.backbones.list_backbones`
(``efficientnet_lite0`` ...), ``timm:<model>``, backbones joined by ``+`` (their
embeddings side by side), ``autoencoder`` (trained on the images being clustered, so
never cached), ``pixels``.

Cache keys are the images' content hashes joined with a digest of the decode
settings (the same file decoded at another size is another input), plus a
``-hflip`` suffix for the mirrored copies used by test-time augmentation.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pixsort.data import DecodeSettings, default_cache_dir
from pixsort.data.cache import hash_array
from pixsort.data.lazy import ImageRows, MirroredImages
from pixsort.features.backbones import get_pretrained_cfg, list_backbones
from pixsort.features.base import CONFIG_FORMAT, EXTRACTORS, ImageExtractor
from pixsort.features.cache import EmbeddingCache
from pixsort.features.names import SPECIAL_FEATURES, FeatureName, is_timm, parse_feature_name

PIXEL_SIZE = 32  # raw pixels only make sense for small images: 32x32x3 = 3072 dims
CHUNK = 2048  # images embedded per call: bounds the float copies of large decoded sizes


def check_feature_name(name: str) -> FeatureName:
    """:func:`~pixsort.features.names.parse_feature_name`, and a registered backbone for
    a backbone name (ValueError listing the known names and a close match)."""
    parsed = parse_feature_name(name)
    if parsed.kind == "backbone":
        get_pretrained_cfg(name)
    for part in parsed.parts:
        if parse_feature_name(part).kind == "backbone":
            get_pretrained_cfg(part)
    return parsed


def list_features() -> list[str]:
    """Feature names usable here (``timm:<model>`` works too where timm imports)."""
    return [*list_backbones(), *SPECIAL_FEATURES]


@dataclass(frozen=True)
class FeatureSpec:
    """What the clusterer asked for (parameters only; no model is built)."""

    name: str
    layers: object = None
    tta: bool = False
    batch_size: int = 64
    autoencoder: dict = field(default_factory=dict)
    random_state: int = 0
    runtime: str = "auto"
    device: str = "auto"
    precision: str = "auto"
    input_size: int | None = None  # a pretrained backbone's input side (None: its own)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_kind", check_feature_name(self.name).kind)
        unknown = set(self.autoencoder) - AUTOENCODER_PARAMS
        if unknown:
            raise ValueError(f"unknown autoencoder settings {sorted(unknown)}; known: {sorted(AUTOENCODER_PARAMS)}")

    @property
    def is_autoencoder(self) -> bool:
        return self._kind == "autoencoder"

    @property
    def is_pixels(self) -> bool:
        return self._kind == "pixels"

    @property
    def is_pretrained(self) -> bool:
        return self._kind in ("backbone", "timm", "fused")

    @property
    def is_timm(self) -> bool:
        return self._kind == "timm"

    @property
    def is_fused(self) -> bool:
        return self._kind == "fused"


AUTOENCODER_PARAMS = frozenset(
    {"latent_dim", "image_size", "channels", "epochs", "batch_size", "learning_rate", "flip"}
)


def default_decode_settings(spec: FeatureSpec, image_size: int | None = None) -> DecodeSettings:
    """Decode size: ``image_size`` when given, else what the extractor consumes
    (the backbone's input size, the autoencoder's size, 32 for pixels)."""
    if image_size is not None:
        return DecodeSettings(size=int(image_size))
    if spec.is_pixels:
        return DecodeSettings(size=PIXEL_SIZE)
    if spec.is_autoencoder:
        return DecodeSettings(size=int(spec.autoencoder.get("image_size", 32)))
    if spec.is_timm:
        return DecodeSettings(size=224)
    if spec.is_fused:
        if spec.input_size is not None:
            return DecodeSettings(size=int(spec.input_size))
        # at the backbones' own sizes: decoded at the largest, each resizes to its own
        parts = parse_feature_name(spec.name).parts
        sizes = [(224, 224) if is_timm(n) else tuple(get_pretrained_cfg(n).input_size[1:]) for n in parts]
        return DecodeSettings(size=max(sizes))
    _, h, w = get_pretrained_cfg(spec.name).input_size
    return DecodeSettings(size=(h, w))


def build_extractor(spec: FeatureSpec, progress: bool = True, config: dict | None = None, size=None) -> ImageExtractor:
    """The extractor object for ``spec`` (from a saved ``config`` when given).

    ``size``: the decode size, which raw pixels keep (default ``PIXEL_SIZE``)."""
    if config is not None:
        return extractor_from_config(config)
    if spec.is_autoencoder:
        from pixsort.features.autoencoder import AutoencoderExtractor

        return AutoencoderExtractor(**spec.autoencoder, random_state=spec.random_state, progress=progress)
    if spec.is_pixels:
        from pixsort.features.pixels import PixelExtractor

        return PixelExtractor(size=PIXEL_SIZE if size is None else size)
    common = dict(
        layers=spec.layers,
        batch_size=spec.batch_size,
        precision=spec.precision,
        runtime=spec.runtime,
        device=spec.device,
        input_size=spec.input_size,
        progress="auto" if progress else False,
    )
    if spec.is_fused:
        from pixsort.features.fused import FusedExtractor

        return FusedExtractor(backbones=list(parse_feature_name(spec.name).parts), **common)
    from pixsort.features.embed import PretrainedExtractor

    return PretrainedExtractor(backbone=spec.name, **common)


def extractor_from_config(config: dict, expected: type[ImageExtractor] = ImageExtractor) -> ImageExtractor:
    """Rebuild an extractor from ``ImageExtractor.to_config()`` output."""
    if not isinstance(config, dict) or "type" not in config or "params" not in config:
        raise ValueError(f"not an extractor config (needs 'type' and 'params'): {config!r}")
    if config.get("format", CONFIG_FORMAT) > CONFIG_FORMAT:
        raise ValueError(f"extractor config format {config['format']} is newer than this pixsort understands")
    # the built-in extractors register themselves when their modules are imported
    import pixsort.features.autoencoder
    import pixsort.features.embed
    import pixsort.features.fused
    import pixsort.features.pixels  # noqa: F401

    kind = config["type"]
    if kind not in EXTRACTORS:
        raise ValueError(f"unknown extractor type {kind!r}; known: {sorted(EXTRACTORS)}")
    klass = EXTRACTORS[kind]
    if not issubclass(klass, expected):
        raise ValueError(f"config describes a {kind}, not a {expected.__name__}")
    params = dict(config["params"])
    if kind == "PretrainedExtractor" and "dtype" in params:  # files written before one precision vocabulary
        params["precision"] = {"float32": "fp32", "bfloat16": "bf16"}.get(params.pop("dtype"), "auto")
    extractor = klass(**params)
    extractor._validate_params()
    return extractor


def image_keys(images: np.ndarray) -> list[str]:
    """Content hashes of in-memory images (for the embedding cache)."""
    return [hash_array(im) for im in images]


def extract_features(
    extractor,
    spec: FeatureSpec,
    images: np.ndarray,
    keys: list[str] | None,
    cache_root: str | os.PathLike | None,
    decode: DecodeSettings | None = None,
    *,
    fit: bool = False,
    progress: bool = True,
    eval_callback: Callable[[int, np.ndarray], dict] | None = None,
) -> np.ndarray:
    """Raw features (n, D) float32 of uint8 ``images`` (n, H, W, C).

    ``fit`` trains the autoencoder first.  With ``keys`` (content hashes), pretrained
    and pixel features are read from / written to the cache under ``cache_root``
    (default: the data cache root).  With ``spec.tta``, pretrained features are
    the mean of each image's and its mirror image's embeddings.
    """
    if spec.is_autoencoder:
        if fit:
            extractor.fit(images, eval_callback=eval_callback)
        return extractor.transform(images)
    cache_dir = None
    if keys is not None:
        cache_dir = embedding_cache_dir(cache_root)
        keys = _cache_keys(keys, decode)

    def run(batch: np.ndarray, batch_keys: list[str] | None) -> np.ndarray:
        return extractor.transform(batch, keys=batch_keys, cache_dir=cache_dir if batch_keys else None)

    out = _chunked(run, images, keys)
    if spec.tta and spec.is_pretrained:
        flipped_keys = None if keys is None else _mirror_keys(keys)
        _chunked(run, images, flipped_keys, flip=True, add_to=out)
        out *= 0.5
    return out


def embedding_cache_dir(cache_root: str | os.PathLike | None) -> Path:
    """The embedding cache under ``cache_root`` (default: the data cache root)."""
    return (Path(cache_root) if cache_root is not None else default_cache_dir()) / "embeddings"


def _cache_keys(keys: list[str], decode: DecodeSettings | None) -> list[str]:
    suffix = _decode_digest(decode)
    return [f"{k}-{suffix}" for k in keys]


def _mirror_keys(keys: list[str]) -> list[str]:
    """The cache keys of the mirrored copies (the test-time view) of ``keys``."""
    return [f"{k}-hflip" for k in keys]


def stored_features(
    extractor_id: str,
    spec: FeatureSpec,
    keys: list[str],
    cache_root: str | os.PathLike | None,
    decode: DecodeSettings | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """What :func:`extract_features` returns for the images of content hashes ``keys``,
    read from the cache alone (written there by an earlier call, in any process):
    ``(features (n, D) float32, found (n,) bool)``; rows not found are zero."""
    cache = EmbeddingCache(embedding_cache_dir(cache_root), extractor_id)
    keys = _cache_keys(list(keys), decode)
    out, found = cache.lookup(keys)
    if spec.tta and spec.is_pretrained:
        flipped, found_flipped = cache.lookup(_mirror_keys(keys), dim=out.shape[1])
        out += flipped  # the same operations, in the same order, as extract_features
        out *= 0.5
        found &= found_flipped
    return out, found


def stored_mask(
    extractor_id: str,
    spec: FeatureSpec,
    keys: list[str],
    cache_root: str | os.PathLike | None,
    decode: DecodeSettings | None = None,
) -> np.ndarray:
    """``found`` (n,) bool of :func:`stored_features`, without reading a vector."""
    cache = EmbeddingCache(embedding_cache_dir(cache_root), extractor_id)
    keys = _cache_keys(list(keys), decode)
    found = cache.contains(keys)
    if spec.tta and spec.is_pretrained:
        found &= cache.contains(_mirror_keys(keys))
    return found


def _chunked(
    run, images: np.ndarray, keys: list[str] | None, flip: bool = False, add_to: np.ndarray | None = None
) -> np.ndarray:
    """``run`` over chunks of ``images``, into one (n, D) float32 array (or added to
    ``add_to`` in place): memory is the output plus one chunk."""
    out = add_to
    # with keys, a lazy set (pixels made on access) stays lazy: only cache misses are made
    lazy = keys is not None and isinstance(images, ImageRows)
    for s in range(0, len(images), CHUNK):
        batch = images.take(np.arange(s, min(s + CHUNK, len(images)))) if lazy else images[s : s + CHUNK]
        if flip and lazy:
            batch = MirroredImages(batch)
        elif flip:
            # with keys, a view: only cache misses are gathered (copied) for the network
            batch = batch[:, :, ::-1] if keys is not None else np.ascontiguousarray(batch[:, :, ::-1])
        rows = run(batch, None if keys is None else keys[s : s + CHUNK])
        if out is None:
            out = np.empty((len(images), rows.shape[1]), dtype=np.float32)
        if add_to is None:
            out[s : s + len(rows)] = rows
        else:
            out[s : s + len(rows)] += rows
    if out is None:  # no images: the extractor knows its width
        out = run(images[:0], None).astype(np.float32, copy=False)
    return out


def _decode_digest(decode: DecodeSettings | None) -> str:
    text = "array" if decode is None else decode.key()
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


__all__ = [
    "AUTOENCODER_PARAMS",
    "FeatureSpec",
    "build_extractor",
    "check_feature_name",
    "default_decode_settings",
    "embedding_cache_dir",
    "stored_mask",
    "extract_features",
    "extractor_from_config",
    "image_keys",
    "list_features",
    "stored_features",
]
